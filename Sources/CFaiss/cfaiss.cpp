#include "cfaiss.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <exception>
#include <memory>

// From libgomp (its omp.h sits in GCC's private include folder, which clang does not search).
extern "C" void omp_set_num_threads(int);

struct mmf_index {
    std::unique_ptr<faiss::Index> index;
};

// Runs `body`, turning any C++ exception into -1 and its message.
template <typename F>
static int guarded(char *error, size_t error_size, F body) {
    try {
        body();
        return 0;
    } catch (const std::exception &e) {
        if (error && error_size) snprintf(error, error_size, "%s", e.what());
    } catch (...) {
        if (error && error_size) snprintf(error, error_size, "unknown faiss error");
    }
    return -1;
}

int mmf_build(const char *factory, int d, const float *train, int64_t ntrain, mmf_index **out, char *error,
              size_t error_size) {
    return guarded(error, error_size, [&] {
        std::unique_ptr<faiss::Index> index(faiss::index_factory(d, factory, faiss::METRIC_INNER_PRODUCT));
        // The factory turns on polysemous training for IVF-PQ: a simulated-annealing reordering of
        // the codes that only Hamming-filtered search uses (mm does not), and that dominates the
        // build time (35 s of 36 for 21,000 16-d rows, seen with faiss 1.15 as well).
        if (auto *ivfpq = dynamic_cast<faiss::IndexIVFPQ *>(index.get())) ivfpq->do_polysemous_training = false;
        if (!index->is_trained) index->train(ntrain, train);
        *out = new mmf_index{std::move(index)};
    });
}

int mmf_add(mmf_index *index, const float *rows, int64_t n, char *error, size_t error_size) {
    return guarded(error, error_size, [&] { index->index->add(n, rows); });
}

int mmf_write(const mmf_index *index, const char *path, char *error, size_t error_size) {
    return guarded(error, error_size, [&] { faiss::write_index(index->index.get(), path); });
}

int mmf_read(const char *path, mmf_index **out, char *error, size_t error_size) {
    return guarded(error, error_size, [&] {
        std::unique_ptr<faiss::Index> index(faiss::read_index(path, faiss::IO_FLAG_MMAP | faiss::IO_FLAG_READ_ONLY));
        *out = new mmf_index{std::move(index)};
    });
}

void mmf_free(mmf_index *index) { delete index; }
int64_t mmf_count(const mmf_index *index) { return index->index->ntotal; }
int mmf_dimension(const mmf_index *index) { return index->index->d; }
int mmf_is_inner_product(const mmf_index *index) { return index->index->metric_type == faiss::METRIC_INNER_PRODUCT; }

int mmf_set_parameter(mmf_index *index, const char *name, double value, char *error, size_t error_size) {
    return guarded(error, error_size, [&] { faiss::ParameterSpace().set_index_parameter(index->index.get(), name, value); });
}

int mmf_search(const mmf_index *index, const float *queries, int64_t nq, int64_t k, float *scores, int64_t *labels,
               char *error, size_t error_size) {
    return guarded(error, error_size, [&] { index->index->search(nq, queries, k, scores, labels); });
}

int64_t mmf_ivf_flat_lists(const mmf_index *index, const float **centroids) {
    auto *ivf = dynamic_cast<const faiss::IndexIVFFlat *>(index->index.get());
    if (!ivf || !ivf->invlists) return -1;
    auto *flat = dynamic_cast<const faiss::IndexFlat *>(ivf->quantizer);
    if (!flat || flat->ntotal != static_cast<faiss::Index::idx_t>(ivf->nlist) || flat->d != ivf->d) return -1;
    *centroids = flat->get_xb();
    return static_cast<int64_t>(ivf->nlist);
}

int64_t mmf_ivf_flat_list(const mmf_index *index, int64_t list, const float **rows, const int64_t **ids) {
    auto *ivf = static_cast<const faiss::IndexIVFFlat *>(index->index.get());
    *rows = reinterpret_cast<const float *>(ivf->invlists->get_codes(list));
    *ids = ivf->invlists->get_ids(list);
    return static_cast<int64_t>(ivf->invlists->list_size(list));
}

void mmf_set_threads(int threads) { omp_set_num_threads(threads); }
