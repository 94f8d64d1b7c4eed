#ifndef MM_CJPEG_H
#define MM_CJPEG_H

#include <stddef.h>

/// A reusable libjpeg-turbo decompressor whose errors come back as return codes with a message
/// instead of libjpeg's default exit(). One per thread; reuse it across images.
typedef struct mm_jpeg mm_jpeg;

/// The colour model of the file, which decides how the pixels must be converted to RGB.
typedef enum {
    MM_JPEG_GRAY = 1,   ///< one component; decoded to RGBX by replication
    MM_JPEG_COLOR = 3,  ///< YCbCr or RGB; decoded to RGBX
    MM_JPEG_CMYK = 4,   ///< CMYK or YCCK; decoded to raw (Adobe-inverted) CMYK
} mm_jpeg_color;

mm_jpeg *mm_jpeg_create(void);
void mm_jpeg_destroy(mm_jpeg *jpeg);

/// Reads the header of `size` bytes at `data` (which must stay alive until `mm_jpeg_finish`).
/// Returns 0, or -1 with `mm_jpeg_message` set (the decompressor is then reset and reusable).
int mm_jpeg_read_header(mm_jpeg *jpeg, const unsigned char *data, size_t size,
                        int *width, int *height, mm_jpeg_color *color);

/// Chooses DCT-domain scaling `scale_num`/8 (1...8) and reports the output size it gives.
int mm_jpeg_start(mm_jpeg *jpeg, int scale_num, int *out_width, int *out_height);

/// Starts decoding only columns `x0 ..< x0 + width` of the (scaled) output. libjpeg widens the
/// range to whole iMCUs and reports the columns it will really deliver in `out_x0`/`out_width`.
int mm_jpeg_begin(mm_jpeg *jpeg, int x0, int width, int *out_x0, int *out_width);

/// Skips to row `y0` and decodes rows `y0 ..< y0 + height` (4 bytes per pixel of the columns
/// chosen by `mm_jpeg_begin`, rows `stride` bytes apart), then releases the image.
int mm_jpeg_read_rows(mm_jpeg *jpeg, unsigned char *pixels, size_t stride, int y0, int height);

/// Abandons the current image (after an error on the Swift side, or to skip the pixels).
void mm_jpeg_abort(mm_jpeg *jpeg);

/// The last error, e.g. "Premature end of JPEG file".
const char *mm_jpeg_message(const mm_jpeg *jpeg);

#endif
