#include "cpng.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>

struct mm_png {
    png_structp png;
    png_infop info;
    const unsigned char *data;
    size_t size, offset;
    int failed;
    int width, height, bit_depth, color_type;
    mm_png_kind kind;
    char message[256];
};

static void on_error(png_structp png_ptr, png_const_charp message) {
    mm_png *png = (mm_png *)png_get_error_ptr(png_ptr);
    snprintf(png->message, sizeof png->message, "%s", message);
    png_longjmp(png_ptr, 1);
}

static void on_warning(png_structp png_ptr, png_const_charp message) {
    (void)png_ptr;
    (void)message;  // CRC errors in ancillary chunks and the like: libpng already skips them
}

static void read_bytes(png_structp png_ptr, png_bytep out, size_t count) {
    mm_png *png = (mm_png *)png_get_io_ptr(png_ptr);
    if (count > png->size - png->offset) png_error(png_ptr, "file is truncated");
    memcpy(out, png->data + png->offset, count);
    png->offset += count;
}

mm_png *mm_png_open(const unsigned char *data, size_t size) {
    mm_png *png = calloc(1, sizeof(mm_png));
    if (!png) return NULL;
    png->data = data;
    png->size = size;
    png->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, png, on_error, on_warning);
    if (png->png) png->info = png_create_info_struct(png->png);
    if (!png->png || !png->info) {
        snprintf(png->message, sizeof png->message, "out of memory");
        png->failed = 1;
        return png;
    }
    if (setjmp(png_jmpbuf(png->png))) {
        png->failed = 1;
        return png;
    }
    png_set_read_fn(png->png, png, read_bytes);
    // Refuse decompression bombs before allocating anything for them.
    png_set_user_limits(png->png, 1u << 16, 1u << 16);
    png_read_info(png->png, png->info);
    png->width = (int)png_get_image_width(png->png, png->info);
    png->height = (int)png_get_image_height(png->png, png->info);
    png->bit_depth = png_get_bit_depth(png->png, png->info);
    png->color_type = png_get_color_type(png->png, png->info);

    // Everything becomes 8-bit, 4 bytes per pixel, the way PIL's PNG plugin reads it:
    // 16-bit samples keep their high byte, low-depth grey is scaled to 0...255, the palette is
    // expanded without its tRNS chunk (PIL's convert("RGB") ignores it too).
    if (png->bit_depth == 16) png_set_strip_16(png->png);
    switch (png->color_type) {
    case PNG_COLOR_TYPE_PALETTE:
        png->kind = MM_PNG_INDEXED;
        png_set_palette_to_rgb(png->png);
        png_set_filler(png->png, 0xff, PNG_FILLER_AFTER);
        break;
    case PNG_COLOR_TYPE_GRAY:
        png->kind = png->bit_depth == 1 ? MM_PNG_INDEXED : MM_PNG_RGB;
        if (png->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png->png);
        png_set_gray_to_rgb(png->png);
        png_set_filler(png->png, 0xff, PNG_FILLER_AFTER);
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        png->kind = MM_PNG_ALPHA;
        png_set_gray_to_rgb(png->png);
        break;
    case PNG_COLOR_TYPE_RGB:
        png->kind = MM_PNG_RGB;
        png_set_filler(png->png, 0xff, PNG_FILLER_AFTER);
        break;
    default:
        png->kind = MM_PNG_ALPHA;
        break;
    }
    png_set_interlace_handling(png->png);
    png_read_update_info(png->png, png->info);
    if (png_get_rowbytes(png->png, png->info) != (size_t)png->width * 4)
        png_error(png->png, "unexpected row layout after conversion");
    return png;
}

int mm_png_failed(const mm_png *png) { return png->failed; }

void mm_png_info(const mm_png *png, int *width, int *height, mm_png_kind *kind, int *bit_depth, int *gray) {
    *width = png->width;
    *height = png->height;
    *kind = png->kind;
    *bit_depth = png->bit_depth;
    *gray = (png->color_type & PNG_COLOR_MASK_COLOR) == 0;
}

int mm_png_read(mm_png *png, unsigned char *pixels, size_t stride) {
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)(png->height > 0 ? png->height : 1));
    if (!rows) {
        snprintf(png->message, sizeof png->message, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png->png))) {
        free(rows);
        png->failed = 1;
        return -1;
    }
    for (int y = 0; y < png->height; y++) rows[y] = pixels + (size_t)y * stride;
    png_read_image(png->png, rows);
    free(rows);
    return 0;
}

const char *mm_png_message(const mm_png *png) { return png->message; }

void mm_png_destroy(mm_png *png) {
    if (!png) return;
    if (png->png) png_destroy_read_struct(&png->png, png->info ? &png->info : NULL, NULL);
    free(png);
}
