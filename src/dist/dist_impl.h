/* Private: what a communication engine (MPI, NCCL) provides to the frontend (dist.c).
 *
 * The frontend checks every argument, handles groups of one, deterministic sums and
 * timeouts; a backend only starts nonblocking operations on its communicators and tests
 * them. Every backend call happens under the frontend's lock. */
#ifndef TY_DIST_IMPL_H
#define TY_DIST_IMPL_H

#include "base/base.h"
#include "tianyuan/dist.h"

typedef struct ty_dist_engine {
    const char *name;
    /* Joins the job (within timeout_s where the engine waits for its peers): this
     * process's world rank and the world's size, and the world's communicator handle. Runs
     * under the frontend's lock: it may not call the public ty_dist_* functions. */
    ty_status (*init)(double timeout_s, int *rank, int *size, void **world);
    /* Leaves the job; `broken`: do not wait for the other ranks. */
    ty_status (*finalize)(int broken);
    void (*end_job)(int code); /* MPI_Abort: ends every process of the job */
    /* A communicator of the given world ranks (NULL in *comm where this rank is not one). */
    ty_status (*new_group)(void *world, int n, const int *ranks, void **comm);
    void (*free_group)(void *comm);
    /* Whether the engine reduces this dtype with this mode itself. */
    int (*can_reduce)(ty_dtype dt, ty_dist_mode mode);
    /* Starts a described operation on comm (a group of `size` ranks); *req is the engine's
     * request. The frontend rewrites what the engine cannot reduce into gathers. */
    ty_status (*start)(void *comm, int size, const ty_dist_args *a, void **req);
    /* *done = 1 when req finished (req is then released). */
    ty_status (*test)(void *req, int *done);
} ty_dist_engine;

extern const ty_dist_engine ty_dist_self_backend;
extern const ty_dist_engine ty_dist_mpi_backend;
extern const ty_dist_engine ty_dist_nccl_backend;

/* Loaded MPI (mpi.c), for the NCCL backend's bootstrap: broadcast of bytes over an MPI
 * communicator of the MPI engine (its world's or a group's). */
ty_status ty_dist_mpi_bcast_bytes(void *comm, void *buf, int64_t n, int root, double timeout_s);

/* dst[i] = dst[i] (op) src[i] for n elements of dt (combine.c). Float16 and bfloat16 are
 * combined through float32 by the caller (ty_dist_widen / ty_dist_narrow). */
void ty_dist_combine(void *dst, const void *src, int64_t n, ty_dtype dt, ty_dist_mode mode);
/* Block 0 of nblocks blocks of n elements = all of them combined in a pairwise tree over the
 * block index, ((b0 + b1) + (b2 + b3)) + ...: deterministic reductions' combine of the ranks
 * (the same tree as ops/batch_tree.h's over a batch). The other blocks are overwritten. */
void ty_dist_combine_tree(void *blocks, int nblocks, int64_t n, ty_dtype dt, ty_dist_mode mode);
/* The dtype ty_dist_combine accumulates dt in (float32 for float16/bfloat16, else dt). */
ty_dtype ty_dist_acc_dtype(ty_dtype dt);
/* Converts n elements between dt and its accumulation dtype. */
void ty_dist_widen(float *dst, const void *src, int64_t n, ty_dtype dt);
void ty_dist_narrow(void *dst, const float *src, int64_t n, ty_dtype dt);

/* Monotonic seconds. */
double ty_dist_now(void);

#endif
