#ifndef MM_CPNG_H
#define MM_CPNG_H

#include <stddef.h>

/// One PNG being decoded from memory with libpng, errors returned instead of aborting.
typedef struct mm_png mm_png;

/// What PIL would open the file as, which decides how it is resized and converted to RGB.
typedef enum {
    MM_PNG_RGB = 0,      ///< RGB or greyscale (any depth, tRNS ignored): RGBX
    MM_PNG_ALPHA = 1,    ///< RGBA or grey+alpha: RGBA (grey replicated)
    MM_PNG_INDEXED = 2,  ///< palette or 1-bit greyscale (PIL's "P" and "1"): RGBX from the palette
} mm_png_kind;

/// Reads the header of the `size` bytes at `data` (kept alive until `mm_png_destroy`).
/// Returns NULL only when out of memory; check `mm_png_failed` otherwise.
mm_png *mm_png_open(const unsigned char *data, size_t size);
int mm_png_failed(const mm_png *png);
void mm_png_info(const mm_png *png, int *width, int *height, mm_png_kind *kind, int *bit_depth, int *gray);

/// Decodes all rows (de-interlacing), 4 bytes per pixel, rows `stride` bytes apart. 0 or -1.
int mm_png_read(mm_png *png, unsigned char *pixels, size_t stride);

const char *mm_png_message(const mm_png *png);
void mm_png_destroy(mm_png *png);

#endif
