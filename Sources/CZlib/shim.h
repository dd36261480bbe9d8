#ifndef MANIFOLD_CZLIB_SHIM_H
#define MANIFOLD_CZLIB_SHIM_H
#include <zlib.h>

/* deflateInit2/inflateInit2 are macros, which Swift cannot call; these typed wrappers can. */
static inline int manifold_deflate_init_gzip(z_stream *stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

static inline int manifold_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 15 + 16);
}
#endif
