// The scan of 4-bit product-quantised codes (mm's `pq-scan` approximate index): per row, the sum
// over sub-quantisers of a query's look-up table at the row's codes, in uint16 (wrapping modulo
// 2^16: callers size the tables so that it never wraps). Table values must be ≤ 63 (the SIMD
// kernels add four lookups as bytes before widening them).
//
// Codes come in blocks of 32 rows. A block holds `pairs` groups of 32 bytes, one per pair of
// sub-quantisers (2p, 2p+1): byte j (0…15) holds sub-quantiser 2p's code of row j in its low
// nibble and of row j+16 in its high nibble; byte 16+j the same for sub-quantiser 2p+1.
// A table is `pairs` groups of 32 bytes too: bytes 0…15 are sub-quantiser 2p's 16 values,
// 16…31 sub-quantiser 2p+1's (the layout one 256-bit byte shuffle reads).
#ifndef CFASTSCAN_H
#define CFASTSCAN_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the AVX2 kernels run on this CPU (otherwise the portable one does), and when the one
/// that scans four queries at once does (it needs AVX-512VL/BW for their 32 registers).
int mmfs_has_avx2(void);
int mmfs_has_avx512vl(void);

/// The sums of every row of `blocks` blocks for each of `queries` tables (consecutive, `pairs` ×
/// 32 bytes each): sums[(q * blocks + b) * 32 + j]. `level` picks the kernels (for tests): 0 the
/// portable one, 1 AVX2 one query at a time, 2 also four queries at a time (what scans use), each
/// when the CPU has it.
void mmfs_sums(const uint8_t *codes, int64_t blocks, int32_t pairs, const uint8_t *tables, int32_t queries,
               uint16_t *sums, int32_t level);

/// For each of `queries` tables (consecutive, `pairs` × 32 bytes each), the `keep` rows with the
/// largest sums among blocks [first_block, end_block) — rows at or past `rows` are padding — as
/// keys in kept[q * 2 * keep …] (room for 2 × keep each), count[q] of them, in no order; among
/// equal sums the earlier rows are kept. above[q] is the scan's per-query threshold (scratch);
/// `level` as for mmfs_sums. Codes are read in chunks that stay in cache while every query's table
/// passes over them: the codes stream from memory once per call, not once per query.
void mmfs_scan(const uint8_t *codes, int64_t first_block, int64_t end_block, int64_t rows, int32_t pairs,
               const uint8_t *tables, int32_t queries, int32_t keep, uint64_t *kept, int32_t *count,
               int32_t *above, int32_t level);

/// Merges another scan's kept keys (≤ keep, e.g. another thread's rows) into a buffer of room
/// 2 × keep holding ≤ keep: the best keep of both remain.
void mmfs_merge(uint64_t *kept, int32_t *count, int32_t keep, const uint64_t *other, int32_t other_count);

/// A kept key's row and sum.
uint32_t mmfs_row(uint64_t key);
uint16_t mmfs_sum(uint64_t key);

#ifdef __cplusplus
}
#endif
#endif
