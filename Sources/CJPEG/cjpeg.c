#include "cjpeg.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

struct mm_jpeg {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX + 64];
};

// libjpeg's default error_exit calls exit(); jump back to the shim function instead.
static void on_error(j_common_ptr cinfo) {
    mm_jpeg *jpeg = (mm_jpeg *)cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, jpeg->message);
    longjmp(jpeg->escape, 1);
}

// Warnings that mean the pixels are garbage: a truncated file or corrupt entropy data would
// otherwise decode "successfully" into grey or smeared blocks.
static int is_fatal_warning(int code) {
    switch (code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        return 1;
    default:
        return 0;
    }
}

static void on_message(j_common_ptr cinfo, int level) {
    if (level == -1 && is_fatal_warning(cinfo->err->msg_code)) on_error(cinfo);
    // Other warnings (extraneous bytes, unknown JFIF revision…) and trace messages are harmless.
}

static void silent(j_common_ptr cinfo) { (void)cinfo; }

mm_jpeg *mm_jpeg_create(void) {
    mm_jpeg *jpeg = calloc(1, sizeof(mm_jpeg));
    if (!jpeg) return NULL;
    jpeg->cinfo.err = jpeg_std_error(&jpeg->err);
    jpeg->err.error_exit = on_error;
    jpeg->err.emit_message = on_message;
    jpeg->err.output_message = silent;
    jpeg->cinfo.client_data = jpeg;
    if (setjmp(jpeg->escape)) {
        free(jpeg);
        return NULL;
    }
    jpeg_create_decompress(&jpeg->cinfo);
    return jpeg;
}

void mm_jpeg_destroy(mm_jpeg *jpeg) {
    if (!jpeg) return;
    jpeg_destroy_decompress(&jpeg->cinfo);
    free(jpeg);
}

void mm_jpeg_abort(mm_jpeg *jpeg) { jpeg_abort_decompress(&jpeg->cinfo); }

const char *mm_jpeg_message(const mm_jpeg *jpeg) { return jpeg->message; }

// Every entry point sets the escape point in its own frame: longjmp may only return to a live one.
#define GUARD(jpeg)                            \
    if (setjmp((jpeg)->escape)) {              \
        jpeg_abort_decompress(&(jpeg)->cinfo); \
        return -1;                             \
    }

int mm_jpeg_read_header(mm_jpeg *jpeg, const unsigned char *data, size_t size,
                        int *width, int *height, mm_jpeg_color *color) {
    jpeg->message[0] = 0;
    jpeg->err.num_warnings = 0;
    GUARD(jpeg)
    jpeg_mem_src(&jpeg->cinfo, data, (unsigned long)size);
    jpeg_read_header(&jpeg->cinfo, TRUE);
    *width = (int)jpeg->cinfo.image_width;
    *height = (int)jpeg->cinfo.image_height;
    switch (jpeg->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        *color = MM_JPEG_GRAY;
        jpeg->cinfo.out_color_space = JCS_EXT_RGBX;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        *color = MM_JPEG_CMYK;
        jpeg->cinfo.out_color_space = JCS_CMYK;
        break;
    default:
        *color = MM_JPEG_COLOR;
        jpeg->cinfo.out_color_space = JCS_EXT_RGBX;
        break;
    }
    return 0;
}

int mm_jpeg_start(mm_jpeg *jpeg, int scale_num, int *out_width, int *out_height) {
    GUARD(jpeg)
    jpeg->cinfo.scale_num = (unsigned int)scale_num;
    jpeg->cinfo.scale_denom = 8;
    jpeg_calc_output_dimensions(&jpeg->cinfo);
    *out_width = (int)jpeg->cinfo.output_width;
    *out_height = (int)jpeg->cinfo.output_height;
    return 0;
}

int mm_jpeg_begin(mm_jpeg *jpeg, int x0, int width, int *out_x0, int *out_width) {
    GUARD(jpeg)
    jpeg_start_decompress(&jpeg->cinfo);
    JDIMENSION x = (JDIMENSION)x0, w = (JDIMENSION)width;
    // Columns outside the crop skip the IDCT, upsampling and colour conversion.
    if (x > 0 || w < jpeg->cinfo.output_width) jpeg_crop_scanline(&jpeg->cinfo, &x, &w);
    *out_x0 = (int)x;
    *out_width = (int)w;
    return 0;
}

int mm_jpeg_read_rows(mm_jpeg *jpeg, unsigned char *pixels, size_t stride, int y0, int height) {
    GUARD(jpeg)
    // Rows above the region are entropy-decoded only; rows below are never touched.
    if (y0 > 0) jpeg_skip_scanlines(&jpeg->cinfo, (JDIMENSION)y0);
    JDIMENSION end = (JDIMENSION)(y0 + height);
    if (end > jpeg->cinfo.output_height) end = jpeg->cinfo.output_height;
    while (jpeg->cinfo.output_scanline < end) {
        JSAMPROW rows[4];
        int n = 0;
        for (; n < 4 && jpeg->cinfo.output_scanline + n < end; n++)
            rows[n] = pixels + (size_t)(jpeg->cinfo.output_scanline + n - (JDIMENSION)y0) * stride;
        jpeg_read_scanlines(&jpeg->cinfo, rows, (JDIMENSION)n);
    }
    // Trailing rows and markers are of no interest, and a missing EOI is not worth rejecting an
    // image whose pixels all arrived, so the image is released without reading to the end.
    jpeg_abort_decompress(&jpeg->cinfo);
    return 0;
}
