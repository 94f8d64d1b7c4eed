// A small C interface to faiss's C++ library. Debian's libfaiss-dev (1.7.3) ships faiss's C API
// headers but not its compiled C API (libfaiss.a has no faiss_* symbols), so mm keeps its own
// few entry points here. Every function returns 0 on success, or -1 with a message in `error`.
#ifndef CFAISS_H
#define CFAISS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mmf_index mmf_index;

/// Builds an empty inner-product index from faiss's factory string (e.g. "IVF1024,Flat",
/// "HNSW32,SQ8") and trains it on `train` rows [ntrain, d]; rows go in with mmf_add.
int mmf_build(const char *factory, int d, const float *train, int64_t ntrain, mmf_index **out, char *error,
              size_t error_size);
/// Adds rows [n, d] to a trained index.
int mmf_add(mmf_index *index, const float *rows, int64_t n, char *error, size_t error_size);
int mmf_write(const mmf_index *index, const char *path, char *error, size_t error_size);
int mmf_read(const char *path, mmf_index **out, char *error, size_t error_size);
void mmf_free(mmf_index *index);
int64_t mmf_count(const mmf_index *index);
int mmf_dimension(const mmf_index *index);
/// 1 when inner product is the index's metric.
int mmf_is_inner_product(const mmf_index *index);
/// Sets a search parameter by faiss's ParameterSpace name ("nprobe", "efSearch").
int mmf_set_parameter(mmf_index *index, const char *name, double value, char *error, size_t error_size);
/// For each query row [nq, d], the k best: scores [nq, k] and row numbers [nq, k] (-1 when fewer).
int mmf_search(const mmf_index *index, const float *queries, int64_t nq, int64_t k, float *scores, int64_t *labels,
               char *error, size_t error_size);
/// For an IVF index of float rows over a flat quantizer (factory "IVFn,Flat"): its number of lists,
/// and its centroids [lists, d] in `centroids`; -1 for any other index.
int64_t mmf_ivf_flat_lists(const mmf_index *index, const float **centroids);
/// List `list` of such an index: its length, its rows [length, d] and their row numbers. The
/// pointers stay valid while the index lives and nothing is added.
int64_t mmf_ivf_flat_list(const mmf_index *index, int64_t list, const float **rows, const int64_t **ids);
/// faiss's OpenMP thread count.
void mmf_set_threads(int threads);

#ifdef __cplusplus
}
#endif
#endif
