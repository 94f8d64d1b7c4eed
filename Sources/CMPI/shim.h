// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are macros over addresses of
// library globals, which Swift cannot import; these inline functions hand them over. Only the
// calls mm makes are wrapped: non-blocking collectives (so that waits can time out), on floats
// and bytes, over MPI_COMM_WORLD.
#include <mpi.h>

static inline int mm_mpi_init(void) {
    int provided = 0;
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
}
static inline int mm_mpi_finalize(void) { return MPI_Finalize(); }
static inline int mm_mpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

/// Errors in collectives come back as codes instead of aborting the whole job.
static inline int mm_mpi_errors_return(void) { return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN); }

static inline int mm_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
static inline int mm_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

/// Ranks sharing this rank's host (its shared-memory node).
static inline int mm_mpi_local_size(int *size) {
    MPI_Comm node;
    int err = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    if (err != MPI_SUCCESS) return err;
    err = MPI_Comm_size(node, size);
    MPI_Comm_free(&node);
    return err;
}

/// In place when `send` is NULL.
static inline int mm_mpi_iallreduce_sum(const float *send, float *buffer, int count, MPI_Request *request) {
    return MPI_Iallreduce(send ? (const void *)send : MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, request);
}
static inline int mm_mpi_iallgather(const void *send, int count, void *receive, MPI_Request *request) {
    return MPI_Iallgather(send, count, MPI_BYTE, receive, count, MPI_BYTE, MPI_COMM_WORLD, request);
}
static inline int mm_mpi_ireduce_scatter_sum(const float *send, float *receive, int count, MPI_Request *request) {
    return MPI_Ireduce_scatter_block(send, receive, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, request);
}
static inline int mm_mpi_ibroadcast(void *buffer, int count, int root, MPI_Request *request) {
    return MPI_Ibcast(buffer, count, MPI_BYTE, root, MPI_COMM_WORLD, request);
}
static inline int mm_mpi_ibarrier(MPI_Request *request) { return MPI_Ibarrier(MPI_COMM_WORLD, request); }
static inline int mm_mpi_test(MPI_Request *request, int *done) { return MPI_Test(request, done, MPI_STATUS_IGNORE); }

static inline int mm_mpi_success(void) { return MPI_SUCCESS; }
static inline void mm_mpi_error_string(int code, char *text, int capacity) {
    char buffer[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, buffer, &length);
    if (length >= capacity) length = capacity - 1;
    for (int i = 0; i < length; i++) text[i] = buffer[i];
    text[length] = 0;
}
