// zlib's gz* file interface: reads the gzipped CLIP merges file (and plain files transparently).
#include <zlib.h>
