#ifndef MM_CWEBP_H
#define MM_CWEBP_H

#include <stddef.h>

/// What a WebP file holds, read from its RIFF container without decoding pixels.
typedef struct {
    int width;       ///< canvas size
    int height;
    int has_alpha;   ///< the container's alpha flag (Pillow then opens the file as RGBA)
    int frames;      ///< 1 for a still image
} mm_webp_info;

/// Reads the container of `size` bytes at `data`. Returns 0, or -1 when it is not a valid WebP
/// (then `message` holds a short reason).
int mm_webp_read_info(const unsigned char *data, size_t size, mm_webp_info *info, const char **message);

/// Decodes the first frame onto the canvas as non-premultiplied RGBA (4 bytes per pixel, rows
/// `stride` bytes apart), exactly as Pillow's WebPAnimDecoder path does. `pixels` holds
/// stride × height bytes. Returns 0, or -1 with `message` set.
int mm_webp_decode_first_frame(const unsigned char *data, size_t size, unsigned char *pixels, size_t stride,
                               const char **message);

#endif
