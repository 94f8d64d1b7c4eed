#include "cwebp.h"

#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

int mm_webp_read_info(const unsigned char *data, size_t size, mm_webp_info *info, const char **message) {
    WebPData input = {data, size};
    WebPDemuxState state;
    WebPDemuxer *demux = WebPDemuxPartial(&input, &state);
    if (demux == NULL || state != WEBP_DEMUX_DONE) {
        if (demux) WebPDemuxDelete(demux);
        *message = (state == WEBP_DEMUX_PARSING_HEADER || state == WEBP_DEMUX_PARSED_HEADER)
                       ? "file ends inside the WebP container" : "invalid WebP container";
        return -1;
    }
    info->width = (int)WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH);
    info->height = (int)WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
    info->has_alpha = (WebPDemuxGetI(demux, WEBP_FF_FORMAT_FLAGS) & ALPHA_FLAG) != 0;
    info->frames = (int)WebPDemuxGetI(demux, WEBP_FF_FRAME_COUNT);
    WebPDemuxDelete(demux);
    return 0;
}

int mm_webp_decode_first_frame(const unsigned char *data, size_t size, unsigned char *pixels, size_t stride,
                               const char **message) {
    WebPAnimDecoderOptions options;
    if (!WebPAnimDecoderOptionsInit(&options)) { *message = "libwebp version mismatch"; return -1; }
    options.color_mode = MODE_RGBA;  // what Pillow asks for; RGB files leave alpha at 255
    options.use_threads = 0;
    WebPData input = {data, size};
    WebPAnimDecoder *decoder = WebPAnimDecoderNew(&input, &options);
    if (decoder == NULL) { *message = "invalid WebP data"; return -1; }
    WebPAnimInfo info;
    uint8_t *frame = NULL;
    int timestamp = 0;
    if (!WebPAnimDecoderGetInfo(decoder, &info) || !WebPAnimDecoderGetNext(decoder, &frame, &timestamp) || frame == NULL) {
        WebPAnimDecoderDelete(decoder);
        *message = "corrupt or truncated WebP bitstream";
        return -1;
    }
    size_t row = (size_t)info.canvas_width * 4;
    for (uint32_t y = 0; y < info.canvas_height; y++) memcpy(pixels + y * stride, frame + y * row, row);
    WebPAnimDecoderDelete(decoder);
    return 0;
}
