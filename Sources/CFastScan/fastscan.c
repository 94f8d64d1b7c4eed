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
                                                                          uint16_t sums[GROUP][32]) {
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
    for (int q = 0; q < GROUP; q++) finish(low_words[q], low_odd[q], high_words[q], high_odd[q], sums[q]);
}

// The rows (bit j) of a block whose sum exceeds `above` (−1: every row).
__attribute__((target("avx2"))) static uint32_t over_avx2(const uint16_t sums[32], int32_t above) {
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

static uint32_t over_portable(const uint16_t sums[32], int32_t above) {
    uint32_t mask = 0;
    for (int j = 0; j < 32; j++)
        if ((int32_t)sums[j] > above) mask |= 1u << j;
    return mask;
}

int mmfs_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

int mmfs_has_avx512vl(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
}

// The kernels a scan uses: `level` 0 portable, 1 AVX2, 2 AVX2 with four-query groups.
typedef struct {
    void (*block)(const uint8_t *, int32_t, const uint8_t *, uint16_t *);
    uint32_t (*over)(const uint16_t *, int32_t);
    int group;
} kernels;

static kernels choose(int32_t level) {
    if (level >= 1 && mmfs_has_avx2()) {
        kernels k = {block_avx2, over_avx2, level >= 2 && mmfs_has_avx512vl()};
        return k;
    }
    kernels k = {block_portable, over_portable, 0};
    return k;
}

void mmfs_sums(const uint8_t *codes, int64_t blocks, int32_t pairs, const uint8_t *tables, int32_t queries,
               uint16_t *sums, int32_t level) {
    kernels k = choose(level);
    const int64_t block_bytes = 32 * (int64_t)pairs;
    uint16_t group[GROUP][32];
    for (int64_t b = 0; b < blocks; b++) {
        int32_t q = 0;
        for (; k.group && q + GROUP <= queries; q += GROUP) {
            block_group(codes + b * block_bytes, pairs, tables + q * block_bytes, block_bytes, group);
            for (int i = 0; i < GROUP; i++) memcpy(sums + ((q + i) * blocks + b) * 32, group[i], sizeof group[i]);
        }
        for (; q < queries; q++) k.block(codes + b * block_bytes, pairs, tables + q * block_bytes, sums + (q * blocks + b) * 32);
    }
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

// Trims a query's buffer to its best `keep` and returns the smallest sum a later row must beat
// (−1 while fewer than `keep` are kept).
static int32_t trim(uint64_t *kept, int32_t *count, int32_t keep) {
    if (*count < keep) return -1;
    if (*count > keep) select_largest(kept, *count, keep);
    *count = keep;
    uint64_t worst = kept[0];
    for (int32_t i = 1; i < keep; i++) if (kept[i] < worst) worst = kept[i];
    return (int32_t)(worst >> 32);
}

// Appends a block's rows in `mask` to query q's buffer, trimming it when full.
static void collect(uint64_t *buffer, int32_t *count, int32_t *above, int32_t keep, const uint16_t sums[32],
                    uint32_t mask, int64_t first, int64_t rows) {
    if (rows - first < 32) mask &= (1u << (rows - first)) - 1;
    for (; mask; mask &= mask - 1) {
        int j = __builtin_ctz(mask);
        buffer[(*count)++] = key(sums[j], (uint32_t)(first + j));
        if (*count == 2 * keep) *above = trim(buffer, count, keep);
    }
    if (*above < 0 && *count >= keep) *above = trim(buffer, count, keep);
}

void mmfs_scan(const uint8_t *codes, int64_t first_block, int64_t end_block, int64_t rows, int32_t pairs,
               const uint8_t *tables, int32_t queries, int32_t keep, uint64_t *kept, int32_t *count,
               int32_t *above, int32_t level) {
    kernels k = choose(level);
    const int64_t block_bytes = 32 * (int64_t)pairs;
    // About 128 KB of codes a chunk: they stay in L2 while every query passes over them.
    int64_t chunk = (128 << 10) / block_bytes;
    if (chunk < 1) chunk = 1;
    uint16_t sums[GROUP][32];
    for (int32_t q = 0; q < queries; q++) count[q] = 0, above[q] = -1;
    // Rows enter a query's buffer of 2 × keep when above the worst of its last trim; a full buffer
    // is trimmed back to keep (so a row costs O(1) on average, not a heap's O(log keep)). A later
    // row enters only when strictly better than that worst: ties go to earlier rows.
    for (int64_t start = first_block; start < end_block; start += chunk) {
        int64_t end = start + chunk < end_block ? start + chunk : end_block;
        int32_t q = 0;
        for (; k.group && q + GROUP <= queries; q += GROUP) {
            for (int64_t b = start; b < end; b++) {
                block_group(codes + b * block_bytes, pairs, tables + q * block_bytes, block_bytes, sums);
                for (int i = 0; i < GROUP; i++)
                    collect(kept + (int64_t)(q + i) * 2 * keep, &count[q + i], &above[q + i], keep, sums[i],
                            k.over(sums[i], above[q + i]), 32 * b, rows);
            }
        }
        for (; q < queries; q++) {
            for (int64_t b = start; b < end; b++) {
                k.block(codes + b * block_bytes, pairs, tables + q * block_bytes, sums[0]);
                collect(kept + (int64_t)q * 2 * keep, &count[q], &above[q], keep, sums[0], k.over(sums[0], above[q]),
                        32 * b, rows);
            }
        }
    }
    for (int32_t q = 0; q < queries; q++) trim(kept + (int64_t)q * 2 * keep, &count[q], keep);
}

void mmfs_merge(uint64_t *kept, int32_t *count, int32_t keep, const uint64_t *other, int32_t other_count) {
    for (int32_t i = 0; i < other_count; i++) kept[(*count)++] = other[i];
    trim(kept, count, keep);
}

uint32_t mmfs_row(uint64_t key) { return 0xFFFFFFFFu - (uint32_t)key; }
uint16_t mmfs_sum(uint64_t key) { return (uint16_t)(key >> 32); }
