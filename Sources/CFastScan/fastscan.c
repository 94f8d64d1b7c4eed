#include "fastscan.h"

#include <immintrin.h>
#include <string.h>

// The portable kernel: a block's 32 sums (wrapping like the SIMD ones).
static void block_portable(const uint8_t *codes, int32_t pairs, const uint8_t *table, uint16_t sums[32]) {
    memset(sums, 0, 32 * sizeof(uint16_t));
    for (int32_t p = 0; p < pairs; p++) {
        const uint8_t *c = codes + 32 * p, *t = table + 32 * p;
        for (int j = 0; j < 16; j++) {
            sums[j] += t[c[j] & 15] + t[16 + (c[16 + j] & 15)];
            sums[16 + j] += t[c[j] >> 4] + t[16 + (c[16 + j] >> 4)];
        }
    }
}

// The SIMD kernels look up four pairs at a time and add the lookups as bytes (table values ≤ 63,
// so no byte wraps), then widen them into four uint16 accumulators: the low and high nibbles'
// rows (0–15, 16–31), each as 16-bit words (even row + 256 × odd row, wrapping) and as the odd
// rows alone; the even rows are words − 256 × odd at the end. Each 128-bit lane holds one
// sub-quantiser of a pair, so the two lanes are added last.
#define WIDEN(words, odd, bytes)                                    \
    do {                                                            \
        words = _mm256_add_epi16(words, bytes);                     \
        odd = _mm256_add_epi16(odd, _mm256_srli_epi16(bytes, 8));   \
    } while (0)

__attribute__((target("avx2"))) static inline void finish(__m256i low_words, __m256i low_odd, __m256i high_words,
                                                          __m256i high_odd, uint16_t sums[32]) {
    __m256i low_even = _mm256_sub_epi16(low_words, _mm256_slli_epi16(low_odd, 8));
    __m256i high_even = _mm256_sub_epi16(high_words, _mm256_slli_epi16(high_odd, 8));
    // Lanes added: 8 even rows and 8 odd rows, interleaved back into row order.
    __m128i le = _mm_add_epi16(_mm256_castsi256_si128(low_even), _mm256_extracti128_si256(low_even, 1));
    __m128i lo = _mm_add_epi16(_mm256_castsi256_si128(low_odd), _mm256_extracti128_si256(low_odd, 1));
    __m128i he = _mm_add_epi16(_mm256_castsi256_si128(high_even), _mm256_extracti128_si256(high_even, 1));
    __m128i ho = _mm_add_epi16(_mm256_castsi256_si128(high_odd), _mm256_extracti128_si256(high_odd, 1));
    _mm_storeu_si128((__m128i *)(sums + 0), _mm_unpacklo_epi16(le, lo));
    _mm_storeu_si128((__m128i *)(sums + 8), _mm_unpackhi_epi16(le, lo));
    _mm_storeu_si128((__m128i *)(sums + 16), _mm_unpacklo_epi16(he, ho));
    _mm_storeu_si128((__m128i *)(sums + 24), _mm_unpackhi_epi16(he, ho));
}

__attribute__((target("avx2"))) static void block_avx2(const uint8_t *codes, int32_t pairs, const uint8_t *table,
                                                       uint16_t sums[32]) {
    const __m256i nibble = _mm256_set1_epi8(15);
    __m256i low_words = _mm256_setzero_si256(), low_odd = _mm256_setzero_si256();
    __m256i high_words = _mm256_setzero_si256(), high_odd = _mm256_setzero_si256();
    for (int32_t p = 0; p < pairs; p += 4) {
        __m256i low = _mm256_setzero_si256(), high = _mm256_setzero_si256();
        for (int32_t g = p; g < p + 4 && g < pairs; g++) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(codes + 32 * g));
            __m256i t = _mm256_loadu_si256((const __m256i *)(table + 32 * g));
            low = _mm256_add_epi8(low, _mm256_shuffle_epi8(t, _mm256_and_si256(c, nibble)));
            high = _mm256_add_epi8(high, _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble)));
        }
        WIDEN(low_words, low_odd, low);
        WIDEN(high_words, high_odd, high);
    }
    finish(low_words, low_odd, high_words, high_odd, sums);
}

// Four queries at once: each pair's codes are loaded and split into nibbles once for all four
// (AVX-512VL only for its 32 registers: the vectors stay 256 bits wide).
#define GROUP 4
__attribute__((target("avx2,avx512vl,avx512bw"))) static void block_group(const uint8_t *codes, int32_t pairs,
                                                                          const uint8_t *tables, int64_t stride,
                                                                          uint16_t *sums) {
    const __m256i nibble = _mm256_set1_epi8(15);
    __m256i low_words[GROUP], low_odd[GROUP], high_words[GROUP], high_odd[GROUP];
    for (int q = 0; q < GROUP; q++) low_words[q] = low_odd[q] = high_words[q] = high_odd[q] = _mm256_setzero_si256();
    for (int32_t p = 0; p < pairs; p += 4) {
        __m256i low[GROUP], high[GROUP];
        for (int q = 0; q < GROUP; q++) low[q] = high[q] = _mm256_setzero_si256();
        for (int32_t g = p; g < p + 4 && g < pairs; g++) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(codes + 32 * g));
            __m256i cl = _mm256_and_si256(c, nibble), ch = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
            for (int q = 0; q < GROUP; q++) {
                __m256i t = _mm256_loadu_si256((const __m256i *)(tables + q * stride + 32 * g));
                low[q] = _mm256_add_epi8(low[q], _mm256_shuffle_epi8(t, cl));
                high[q] = _mm256_add_epi8(high[q], _mm256_shuffle_epi8(t, ch));
            }
        }
        for (int q = 0; q < GROUP; q++) {
            WIDEN(low_words[q], low_odd[q], low[q]);
            WIDEN(high_words[q], high_odd[q], high[q]);
        }
    }
    for (int q = 0; q < GROUP; q++) finish(low_words[q], low_odd[q], high_words[q], high_odd[q], sums + 32 * q);
}

// 6-bit codes. Eight lookups (values ≤ 31) are added as bytes, then widened as above: 16-bit words
// (even row + 256 × odd row) and the odd rows alone. G queries × B blocks at once: each block's
// codes are loaded once for the G queries and each table once for the B blocks (Zen 4 loads one
// 512-bit vector a cycle, as many as it permutes). Sums come out in row order.
#define LOOKUPS64 8
__attribute__((target("avx512f,avx512bw,avx512vbmi"), always_inline)) static inline void
wide64(const uint8_t *codes, int64_t block_bytes, int32_t groups, const uint8_t *tables, int64_t stride,
       uint16_t *sums, const int G, const int B) {
    __m512i words[2][4], odd[2][4];
    for (int q = 0; q < G; q++)
        for (int b = 0; b < B; b++) words[q][b] = odd[q][b] = _mm512_setzero_si512();
    for (int32_t g0 = 0; g0 < groups; g0 += LOOKUPS64) {
        __m512i bytes[2][4];
        for (int q = 0; q < G; q++)
            for (int b = 0; b < B; b++) bytes[q][b] = _mm512_setzero_si512();
        const int32_t g1 = g0 + LOOKUPS64 < groups ? g0 + LOOKUPS64 : groups;
        for (int32_t g = g0; g < g1; g++) {
            __m512i c[4];
            for (int b = 0; b < B; b++) c[b] = _mm512_loadu_si512(codes + b * block_bytes + 64 * g);
            for (int q = 0; q < G; q++) {
                __m512i t = _mm512_loadu_si512(tables + q * stride + 64 * g);
                for (int b = 0; b < B; b++) bytes[q][b] = _mm512_add_epi8(bytes[q][b], _mm512_permutexvar_epi8(c[b], t));
            }
        }
        for (int q = 0; q < G; q++)
            for (int b = 0; b < B; b++) {
                words[q][b] = _mm512_add_epi16(words[q][b], bytes[q][b]);
                odd[q][b] = _mm512_add_epi16(odd[q][b], _mm512_srli_epi16(bytes[q][b], 8));
            }
    }
    // Even rows 0, 2, … and odd rows 1, 3, … interleaved back into row order.
    const __m512i first = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37,
                                           5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i second = _mm512_add_epi16(first, _mm512_set1_epi16(16));
    for (int q = 0; q < G; q++)
        for (int b = 0; b < B; b++) {
            __m512i even = _mm512_sub_epi16(words[q][b], _mm512_slli_epi16(odd[q][b], 8));
            uint16_t *out = sums + (q * B + b) * 64;
            _mm512_storeu_si512(out, _mm512_permutex2var_epi16(even, first, odd[q][b]));
            _mm512_storeu_si512(out + 32, _mm512_permutex2var_epi16(even, second, odd[q][b]));
        }
}

// nq ≤ 2 queries' sums over nb ≤ 4 blocks: two queries × four blocks share their loads; anything
// else (a lone query: the scan then streams from memory, and one block at a time streams best)
// block by block.
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void sums64_vbmi(const uint8_t *codes, int64_t block_bytes,
                                                                              int32_t groups, const uint8_t *tables,
                                                                              int64_t stride, int nq, int nb,
                                                                              uint16_t *sums) {
    if (nq == 2 && nb == 4) return wide64(codes, block_bytes, groups, tables, stride, sums, 2, 4);
    for (int q = 0; q < nq; q++)
        for (int b = 0; b < nb; b++)
            wide64(codes + b * block_bytes, 0, groups, tables + q * stride, 0, sums + (q * nb + b) * 64, 1, 1);
}

static void sums64_portable(const uint8_t *codes, int64_t block_bytes, int32_t groups, const uint8_t *tables,
                           int64_t stride, int nq, int nb, uint16_t *sums) {
    memset(sums, 0, (size_t)nq * nb * 64 * sizeof(uint16_t));
    for (int q = 0; q < nq; q++)
        for (int b = 0; b < nb; b++)
            for (int32_t g = 0; g < groups; g++) {
                const uint8_t *c = codes + b * block_bytes + 64 * g, *t = tables + q * stride + 64 * g;
                for (int j = 0; j < 64; j++) sums[(q * nb + b) * 64 + j] += t[c[j] & 63];
            }
}

// The rows (bit j) of a block whose sum exceeds `above` (−1: every row).
__attribute__((target("avx2"))) static uint64_t over_avx2(const uint16_t *sums, int32_t above) {
    if (above < 0) return 0xFFFFFFFFu;
    if (above >= 65535) return 0;
    // sum > above ⇔ max(sum, above + 1) = sum (unsigned 16-bit), packed to one bit a row.
    __m256i bar = _mm256_set1_epi16((short)(above + 1));
    __m256i a = _mm256_loadu_si256((const __m256i *)sums), b = _mm256_loadu_si256((const __m256i *)(sums + 16));
    __m256i over = _mm256_packs_epi16(_mm256_cmpeq_epi16(_mm256_max_epu16(a, bar), a),
                                      _mm256_cmpeq_epi16(_mm256_max_epu16(b, bar), b));
    // packs interleaves the lanes: bytes are rows 0–7, 16–23, 8–15, 24–31.
    return (uint32_t)_mm256_movemask_epi8(_mm256_permute4x64_epi64(over, 0xD8));
}

__attribute__((target("avx512f,avx512bw"))) static uint64_t over64_avx512(const uint16_t *sums, int32_t above) {
    if (above < 0) return ~0ull;
    if (above >= 65535) return 0;
    __m512i bar = _mm512_set1_epi16((short)above);
    return (uint64_t)_mm512_cmpgt_epu16_mask(_mm512_loadu_si512(sums), bar) |
           (uint64_t)_mm512_cmpgt_epu16_mask(_mm512_loadu_si512(sums + 32), bar) << 32;
}

static uint64_t over_portable(const uint16_t *sums, int32_t above, int rows) {
    uint64_t mask = 0;
    for (int j = 0; j < rows; j++)
        if ((int32_t)sums[j] > above) mask |= 1ull << j;
    return mask;
}
static uint64_t over32_portable(const uint16_t *sums, int32_t above) { return over_portable(sums, above, 32); }
static uint64_t over64_portable(const uint16_t *sums, int32_t above) { return over_portable(sums, above, 64); }

int mmfs_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

int mmfs_has_avx512vl(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
}

int mmfs_has_vbmi(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi");
}

int32_t mmfs_block_rows(int32_t bits) { return bits == 6 ? 64 : 32; }
int32_t mmfs_group_bytes(int32_t bits) { return bits == 6 ? 64 : 32; }

// 4-bit codes, one block at a time: four queries at once where the CPU allows, else one by one.
static void sums32_portable(const uint8_t *codes, int64_t block_bytes, int32_t pairs, const uint8_t *tables,
                           int64_t stride, int nq, int nb, uint16_t *sums) {
    (void)block_bytes, (void)nb;
    for (int q = 0; q < nq; q++) block_portable(codes, pairs, tables + q * stride, sums + 32 * q);
}

__attribute__((target("avx2"))) static void sums32_avx2(const uint8_t *codes, int64_t block_bytes, int32_t pairs,
                                                        const uint8_t *tables, int64_t stride, int nq, int nb,
                                                        uint16_t *sums) {
    (void)block_bytes, (void)nb;
    for (int q = 0; q < nq; q++) block_avx2(codes, pairs, tables + q * stride, sums + 32 * q);
}

__attribute__((target("avx2,avx512vl,avx512bw"))) static void sums32_group(const uint8_t *codes, int64_t block_bytes,
                                                                          int32_t pairs, const uint8_t *tables,
                                                                          int64_t stride, int nq, int nb,
                                                                          uint16_t *sums) {
    if (nq == GROUP) return block_group(codes, pairs, tables, stride, sums);
    sums32_avx2(codes, block_bytes, pairs, tables, stride, nq, nb, sums);
}

// The kernels a scan uses: `sums` of nq ≤ `queries` tables over nb ≤ `blocks` consecutive blocks
// (into sums[q][b][rows]), and `over`, the rows of a block's sums above a threshold.
typedef struct {
    int rows, queries, blocks;
    void (*sums)(const uint8_t *codes, int64_t block_bytes, int32_t groups, const uint8_t *tables, int64_t stride, int nq,
                 int nb, uint16_t *sums);
    uint64_t (*over)(const uint16_t *sums, int32_t above);
} kernels;

static kernels choose(int32_t bits, int32_t level) {
    if (bits == 6) {
        if (level >= 1 && mmfs_has_vbmi()) return (kernels){64, 2, 4, sums64_vbmi, over64_avx512};
        return (kernels){64, 1, 1, sums64_portable, over64_portable};
    }
    if (level >= 2 && mmfs_has_avx512vl()) return (kernels){32, GROUP, 1, sums32_group, over_avx2};
    if (level >= 1 && mmfs_has_avx2()) return (kernels){32, 1, 1, sums32_avx2, over_avx2};
    return (kernels){32, 1, 1, sums32_portable, over32_portable};
}

// Calls `visit` with each block's sums for every query, in chunks of about 128 KB of codes that
// stay in L2 while every query passes over them.
typedef void (*visitor)(void *context, int32_t query, int64_t block, const uint16_t *sums);

static void each_block(kernels k, const uint8_t *codes, int64_t first_block, int64_t end_block, int32_t groups,
                       int32_t group_bytes, const uint8_t *tables, int32_t queries, void *context, visitor visit) {
    const int64_t block_bytes = (int64_t)groups * group_bytes;
    // (Whole runs of the kernel's blocks, so that only the scan's last chunk has a shorter one.)
    int64_t chunk = (128 << 10) / block_bytes / k.blocks * k.blocks;
    if (chunk < 4) chunk = 4;
    uint16_t sums[2 * 4 * 64];  // the widest kernel's: GROUP × 32, 2 × 4 × 64
    for (int64_t start = first_block; start < end_block; start += chunk) {
        int64_t end = start + chunk < end_block ? start + chunk : end_block;
        for (int32_t q = 0; q < queries; q += k.queries) {
            int nq = queries - q < k.queries ? queries - q : k.queries;
            for (int64_t b = start; b < end; b += k.blocks) {
                int nb = end - b < k.blocks ? (int)(end - b) : k.blocks;
                k.sums(codes + b * block_bytes, block_bytes, groups, tables + q * block_bytes, block_bytes, nq, nb, sums);
                for (int i = 0; i < nq; i++)
                    for (int j = 0; j < nb; j++) visit(context, q + i, b + j, sums + (i * nb + j) * k.rows);
            }
        }
    }
}

typedef struct {
    uint16_t *out;
    int64_t blocks;
    int rows;
} sums_context;

static void store_sums(void *context, int32_t query, int64_t block, const uint16_t *sums) {
    sums_context *c = context;
    memcpy(c->out + (query * c->blocks + block) * c->rows, sums, c->rows * sizeof(uint16_t));
}

void mmfs_sums(const uint8_t *codes, int64_t blocks, int32_t groups, const uint8_t *tables, int32_t queries,
               uint16_t *sums, int32_t bits, int32_t level) {
    kernels k = choose(bits, level);
    sums_context c = {sums, blocks, k.rows};
    each_block(k, codes, 0, blocks, groups, mmfs_group_bytes(bits), tables, queries, &c, store_sums);
}

// Kept rows are 64-bit keys, sum << 32 | (2^32 − 1 − row): a larger key is a larger sum, and
// among equal sums the earlier row. Keys are distinct, so "the best `keep`" is one set.
static uint64_t key(uint16_t sum, uint32_t row) { return (uint64_t)sum << 32 | (uint32_t)(0xFFFFFFFFu - row); }

// Reorders kept[0..<n] so that its `keep` largest keys come first (quickselect, median-of-three).
static void select_largest(uint64_t *kept, int32_t n, int32_t keep) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        uint64_t a = kept[lo], b = kept[mid], c = kept[hi];
        uint64_t pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (kept[i] > pivot) i++;
            while (kept[j] < pivot) j--;
            if (i <= j) {
                uint64_t t = kept[i]; kept[i] = kept[j]; kept[j] = t;
                i++;
                j--;
            }
        }
        // [lo, j] ≥ pivot ≥ [i, hi]: continue in the part holding position keep − 1.
        if (keep - 1 <= j) hi = j;
        else if (keep - 1 >= i) lo = i;
        else return;
    }
}

static uint16_t sum_of(uint64_t key) { return (uint16_t)(key >> 32); }

// Moves the keys of [from, n) whose sum is above `t` (or, with `equal`, is `t`) to the front of
// that range without a branch on the data (Lomuto: always swap, advance when taken); returns the
// end of the moved ones.
static int32_t partition(uint64_t *kept, int32_t from, int32_t n, uint16_t t, int equal) {
    int32_t w = from;
    for (int32_t i = from; i < n; i++) {
        uint64_t k = kept[i];
        kept[i] = kept[w];
        kept[w] = k;
        w += equal ? sum_of(k) == t : sum_of(k) > t;
    }
    return w;
}

// Trims a query's buffer to its best `keep` and returns the smallest sum a later row must beat
// (−1 while fewer than `keep` are kept). The keep-th largest sum T comes from histograms of the
// sums' high then low byte; the keys above T move to the front, then the ties at T, of which the
// earliest rows are kept. (A quickselect of every key costs several times more: its comparisons
// mispredict.)
static int32_t trim(uint64_t *kept, int32_t *count, int32_t keep) {
    const int32_t n = *count;
    if (n < keep) return -1;
    uint32_t high[256] = {0}, low[256] = {0};
    for (int32_t i = 0; i < n; i++) high[sum_of(kept[i]) >> 8]++;
    int32_t h = 255, above = 0;
    while (above + (int32_t)high[h] < keep) above += high[h--];
    for (int32_t i = 0; i < n; i++) low[sum_of(kept[i]) & 255] += (sum_of(kept[i]) >> 8) == h;
    int32_t l = 255;
    while (above + (int32_t)low[l] < keep) above += low[l--];
    const uint16_t t = (uint16_t)(h << 8 | l);
    if (n > keep) {
        int32_t ties = partition(kept, 0, n, t, 0), end = partition(kept, ties, n, t, 1);
        if (end - ties > keep - above) select_largest(kept + ties, end - ties, keep - above);
    }
    *count = keep;
    return t;
}

// Appends a block's rows in `mask` to query q's buffer, trimming it when full.
static void collect(uint64_t *buffer, int32_t *count, int32_t *above, int32_t keep, const uint16_t *sums,
                    uint64_t mask, int64_t first, int64_t rows) {
    if (rows - first < 64) mask &= (1ull << (rows - first)) - 1;
    for (; mask; mask &= mask - 1) {
        int j = __builtin_ctzll(mask);
        buffer[(*count)++] = key(sums[j], (uint32_t)(first + j));
        if (*count == 2 * keep) *above = trim(buffer, count, keep);
    }
    if (*above < 0 && *count >= keep) *above = trim(buffer, count, keep);
}

typedef struct {
    kernels k;
    int64_t rows;
    int32_t keep;
    uint64_t *kept;
    int32_t *count, *above;
} scan_context;

static void collect_block(void *context, int32_t q, int64_t block, const uint16_t *sums) {
    scan_context *c = context;
    collect(c->kept + (int64_t)q * 2 * c->keep, &c->count[q], &c->above[q], c->keep, sums, c->k.over(sums, c->above[q]),
            block * c->k.rows, c->rows);
}

void mmfs_scan(const uint8_t *codes, int64_t first_block, int64_t end_block, int64_t rows, int32_t groups,
               const uint8_t *tables, int32_t queries, int32_t keep, uint64_t *kept, int32_t *count,
               int32_t *above, int32_t bits, int32_t level) {
    // Rows enter a query's buffer of 2 × keep when above the worst of its last trim; a full buffer
    // is trimmed back to keep (so a row costs O(1) on average, not a heap's O(log keep)). A later
    // row enters only when strictly better than that worst: ties go to earlier rows.
    for (int32_t q = 0; q < queries; q++) count[q] = 0, above[q] = -1;
    scan_context c = {choose(bits, level), rows, keep, kept, count, above};
    each_block(c.k, codes, first_block, end_block, groups, mmfs_group_bytes(bits), tables, queries, &c, collect_block);
    for (int32_t q = 0; q < queries; q++) trim(kept + (int64_t)q * 2 * keep, &count[q], keep);
}

void mmfs_merge(uint64_t *kept, int32_t *count, int32_t keep, const uint64_t *other, int32_t other_count) {
    for (int32_t i = 0; i < other_count; i++) kept[(*count)++] = other[i];
    trim(kept, count, keep);
}

uint32_t mmfs_row(uint64_t key) { return 0xFFFFFFFFu - (uint32_t)key; }
uint16_t mmfs_sum(uint64_t key) { return (uint16_t)(key >> 32); }

// The re-scoring of a scan's candidates. Candidate rows lie scattered over the index (a 2 KB row
// each at 512-d, mostly out of cache): each row's cache lines are prefetched a few rows ahead, so
// that several rows are in flight while one is summed.
#define AHEAD 6
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float sum = _mm_cvtss_f32(h);
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float dot_portable(const float *a, const float *b, int64_t n) {
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void prefetch_row(const float *row, int64_t dimension) {
    const char *p = (const char *)row, *end = (const char *)(row + dimension);
    for (; p < end; p += 64) __builtin_prefetch(p, 0, 0);
}

void mmfs_dots(const float *query, const float *rows, int64_t dimension, const int64_t *which, int32_t n, float *out) {
    float (*dot)(const float *, const float *, int64_t) =
        mmfs_has_avx2() && __builtin_cpu_supports("fma") ? dot_avx2 : dot_portable;
    for (int32_t i = 0; i < n && i < AHEAD; i++) prefetch_row(rows + which[i] * dimension, dimension);
    for (int32_t i = 0; i < n; i++) {
        if (i + AHEAD < n) prefetch_row(rows + which[i + AHEAD] * dimension, dimension);
        out[i] = dot(query, rows + which[i] * dimension, dimension);
    }
}
