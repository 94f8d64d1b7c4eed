#include "CICU.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/uversion.h>

// Returns the needed length; a result longer than `capacity` reports U_BUFFER_OVERFLOW_ERROR,
// which is not a failure here: the caller retries with the returned size.
static int32_t finish(int32_t n, UErrorCode status) {
    if (status == U_BUFFER_OVERFLOW_ERROR || U_SUCCESS(status)) return n;
    return -1;
}

static int32_t normalize(const UNormalizer2 *norm, UErrorCode status, const uint16_t *src,
                         int32_t length, uint16_t *dest, int32_t capacity) {
    if (U_FAILURE(status)) return -1;
    int32_t n = unorm2_normalize(norm, (const UChar *)src, length, (UChar *)dest, capacity, &status);
    return finish(n, status);
}

int32_t mm_icu_nfc(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity) {
    UErrorCode status = U_ZERO_ERROR;
    const UNormalizer2 *norm = unorm2_getNFCInstance(&status);
    return normalize(norm, status, src, length, dest, capacity);
}

int32_t mm_icu_nfkc(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity) {
    UErrorCode status = U_ZERO_ERROR;
    const UNormalizer2 *norm = unorm2_getNFKCInstance(&status);
    return normalize(norm, status, src, length, dest, capacity);
}

int32_t mm_icu_nfc_prefix(const uint16_t *src, int32_t length) {
    UErrorCode status = U_ZERO_ERROR;
    const UNormalizer2 *norm = unorm2_getNFCInstance(&status);
    if (U_FAILURE(status)) return 0;
    int32_t n = unorm2_spanQuickCheckYes(norm, (const UChar *)src, length, &status);
    return U_SUCCESS(status) ? n : 0;
}

int32_t mm_icu_lower(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity) {
    UErrorCode status = U_ZERO_ERROR;
    int32_t n = u_strToLower((UChar *)dest, capacity, (const UChar *)src, length, "", &status);
    return finish(n, status);
}

int32_t mm_icu_upper(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity) {
    UErrorCode status = U_ZERO_ERROR;
    int32_t n = u_strToUpper((UChar *)dest, capacity, (const UChar *)src, length, "", &status);
    return finish(n, status);
}

void mm_icu_unicode_version(char *dest, int32_t capacity) {
    UVersionInfo v;
    u_getUnicodeVersion(v);
    char buf[U_MAX_VERSION_STRING_LENGTH];
    u_versionToString(v, buf);
    int32_t i = 0;
    for (; i + 1 < capacity && buf[i]; i++) dest[i] = buf[i];
    if (capacity > 0) dest[i] = 0;
}
