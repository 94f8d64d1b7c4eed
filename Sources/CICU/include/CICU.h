// A few ICU operations behind plain C names. ICU's headers rename every function with a version
// suffix through macros (u_strToLower → u_strToLower_72), which Swift's importer cannot follow,
// so Swift calls these wrappers instead. All strings are UTF-16; each function writes at most
// `capacity` units to `dest` and returns the length the full result needs, or -1 on an ICU error.
#ifndef CICU_H
#define CICU_H

#include <stdint.h>

/// NFC normalisation.
int32_t mm_icu_nfc(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity);

/// NFKC normalisation (used to build the full-width/half-width map the way ftfy does).
int32_t mm_icu_nfkc(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity);

/// Length of the prefix of `src` that is certainly already NFC (quick check "yes").
int32_t mm_icu_nfc_prefix(const uint16_t *src, int32_t length);

/// Full Unicode lowercase mapping with the root locale (SpecialCasing, Final_Sigma), as Python's str.lower.
int32_t mm_icu_lower(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity);

/// Full Unicode uppercase mapping with the root locale, as Python's str.upper.
int32_t mm_icu_upper(const uint16_t *src, int32_t length, uint16_t *dest, int32_t capacity);

/// The Unicode version of the linked ICU, e.g. "15.0".
void mm_icu_unicode_version(char *dest, int32_t capacity);

#endif
