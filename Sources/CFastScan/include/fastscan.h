// The scan of product-quantised codes (mm's `pq-scan` approximate index): per row, the sum over
// sub-quantisers of a query's look-up table at the row's codes, in uint16 (wrapping modulo 2^16:
// callers size the tables so that it never wraps).
//
// Two layouts, by bits per code:
//
// 4 bits (16 centroids): blocks of 32 rows. A block holds `groups` groups of 32 bytes, one per
// pair of sub-quantisers (2p, 2p+1): byte j (0…15) holds sub-quantiser 2p's code of row j in its
// low nibble and of row j+16 in its high nibble; byte 16+j the same for sub-quantiser 2p+1.
// A table is `groups` groups of 32 bytes too: bytes 0…15 are sub-quantiser 2p's 16 values,
// 16…31 sub-quantiser 2p+1's (the layout one 256-bit byte shuffle reads). Values ≤ 63 (the SIMD
// kernels add four lookups as bytes before widening them).
//
// 6 bits (64 centroids), a byte per code: blocks of 64 rows. A block holds `groups` groups of 64
// bytes, one per sub-quantiser: byte j is its code of row j (the low 6 bits are read). A table is
// `groups` groups of 64 bytes, one sub-quantiser's values each (what one AVX-512 VBMI byte
// permute reads). Values ≤ 31 (the SIMD kernel adds eight lookups as bytes).
#ifndef CFASTSCAN_H
#define CFASTSCAN_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the AVX2 kernels of 4-bit codes run on this CPU (otherwise the portable one does); when
/// the one that scans four queries at once does (it needs AVX-512VL/BW for their 32 registers);
/// when the AVX-512 VBMI kernel of 6-bit codes does.
int mmfs_has_avx2(void);
int mmfs_has_avx512vl(void);
int mmfs_has_vbmi(void);

/// Rows a block of `bits`-bit codes holds (32 or 64) and bytes a group (of codes or table) takes.
int32_t mmfs_block_rows(int32_t bits);
int32_t mmfs_group_bytes(int32_t bits);

/// The sums of every row of `blocks` blocks of `bits`-bit codes for each of `queries` tables
/// (consecutive, `groups` groups each): sums[(q * blocks + b) * block_rows + j]. `level` picks the
/// kernels (for tests): 0 the portable one; for 4 bits 1 AVX2 one query at a time, 2 also four
/// queries at a time (what scans use); for 6 bits 1 and 2 AVX-512 VBMI; each when the CPU has it.
void mmfs_sums(const uint8_t *codes, int64_t blocks, int32_t groups, const uint8_t *tables, int32_t queries,
               uint16_t *sums, int32_t bits, int32_t level);

/// For each of `queries` tables (consecutive, `groups` groups each), the `keep` rows with the
/// largest sums among blocks [first_block, end_block) — rows at or past `rows` are padding — as
/// keys in kept[q * 2 * keep …] (room for 2 × keep each), count[q] of them, in no order; among
/// equal sums the earlier rows are kept. above[q] is the scan's per-query threshold (scratch);
/// `bits` and `level` as for mmfs_sums. Codes are read in chunks that stay in cache while every
/// query's table passes over them: the codes stream from memory once per call, not once per query.
void mmfs_scan(const uint8_t *codes, int64_t first_block, int64_t end_block, int64_t rows, int32_t groups,
               const uint8_t *tables, int32_t queries, int32_t keep, uint64_t *kept, int32_t *count,
               int32_t *above, int32_t bits, int32_t level);

/// Merges another scan's kept keys (≤ keep, e.g. another thread's rows) into a buffer of room
/// 2 × keep holding ≤ keep: the best keep of both remain.
void mmfs_merge(uint64_t *kept, int32_t *count, int32_t keep, const uint64_t *other, int32_t other_count);

/// The inner products of `query` with rows[which[i]] (`dimension` floats each) into out[i]: the
/// re-scoring of a scan's candidates, with each row prefetched a few rows ahead.
void mmfs_dots(const float *query, const float *rows, int64_t dimension, const int64_t *which, int32_t n, float *out);

/// A kept key's row and sum.
uint32_t mmfs_row(uint64_t key);
uint16_t mmfs_sum(uint64_t key);

#ifdef __cplusplus
}
#endif
#endif
