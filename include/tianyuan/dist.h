/* Tianyuan's communicator: collectives between the processes of a job, on engines clusters
 * already run (MPI on the CPU, NCCL on GPUs), each loaded with dlopen at init so that the
 * library itself needs neither.
 *
 * A process is a world of one until ty_dist_init: rank 0 of 1, and every collective is a
 * local copy (MegEngine's get_rank/get_world_size say the same before init_process_group).
 * Groups are sub-communicators of chosen world ranks; group 0 is the world.
 *
 * Every collective has a timeout: a wait that passes it fails with TY_ERR_TIMEOUT and a
 * message naming the collective, the group and (for send/recv) the peer. MPI cannot cancel a
 * collective in flight, so after a timeout or a failed peer the communicator is broken: every
 * later call fails at once with the first error, the buffers of the abandoned call stay
 * MPI's, and the documented recovery is to end the job and restart from a checkpoint.
 *
 * Deterministic mode: float sums combine the ranks' values in a pairwise tree over the rank
 * index (((x0 + x1) + (x2 + x3)) + ...; an odd last one is carried up) on every rank, so
 * results are bitwise reproducible and equal on every rank. It also turns gradients' sums
 * over the batch axis into the same tree over the batch index (as the algorithm policy's
 * TY_ALGO_REPRODUCIBLE does), so data-parallel training on a power-of-two world whose size
 * divides the batch gives the bits of one process on the whole batch.
 *
 * Thread safety: calls are serialised by one lock; a work handle belongs to one thread.
 */
#ifndef TIANYUAN_DIST_H
#define TIANYUAN_DIST_H

#include "tianyuan/tianyuan.h"

typedef enum ty_dist_mode { TY_DIST_SUM = 0, TY_DIST_MAX = 1, TY_DIST_MIN = 2 } ty_dist_mode;

enum {
    TY_DIST_WORLD = 0,       /* the group id of the world */
    TY_DIST_MAX_GROUPS = 64, /* groups alive at once, the world included */
};

/* What a ty_dist_args describes. count is the elements of one rank's block:
 *   BARRIER          nothing moves
 *   ALL_REDUCE       send[count] -> recv[count] on every rank (send == recv: in place)
 *   BROADCAST        root's send[count] -> recv[count] on every rank
 *   ALL_GATHER       send[count] -> recv[size * count], rank r's block at r * count
 *   REDUCE_SCATTER   send[size * count] -> recv[count], block r of the reduction on rank r
 *   REDUCE           send[count] -> recv[count] on root (recv untouched elsewhere)
 *   GATHER           send[count] -> recv[size * count] on root (recv untouched elsewhere)
 *   SCATTER          root's send[size * count] -> recv[count], block r to rank r
 *   ALL_TO_ALL       send[size * count] -> recv[size * count]: block j of rank i lands as
 *                    block i of rank j
 *   SEND / RECV      send[count] to rank `root` / recv[count] from rank `root` (the peer)
 * Ranks are ranks in the group. */
typedef enum ty_dist_coll {
    TY_COLL_BARRIER = 0,
    TY_COLL_ALL_REDUCE,
    TY_COLL_BROADCAST,
    TY_COLL_ALL_GATHER,
    TY_COLL_REDUCE_SCATTER,
    TY_COLL_REDUCE,
    TY_COLL_GATHER,
    TY_COLL_SCATTER,
    TY_COLL_ALL_TO_ALL,
    TY_COLL_SEND,
    TY_COLL_RECV,
    TY_COLL_COUNT
} ty_dist_coll;

typedef struct ty_dist_args {
    ty_dist_coll coll;
    int group;
    const void *send;
    void *recv;
    int64_t count;
    ty_dtype dtype;
    ty_dist_mode mode; /* reductions only */
    int root;          /* root of broadcast/reduce/gather/scatter; peer of send/recv */
} ty_dist_args;

/* An asynchronous collective in flight (owned by its caller). */
typedef struct ty_dist_work ty_dist_work;

/* Joins the job: backend "mpi" (launched by mpirun or any MPI launcher), "nccl" (GPUs; its
 * unique id travels over MPI) or "self" (a world of one, no engine). timeout_s (> 0) is the
 * default timeout of every collective. TY_ERR_UNSUPPORTED when the engine's library cannot
 * be loaded; TY_ERR_INVALID_ARG when already initialised. */
TY_API ty_status ty_dist_init(const char *backend, double timeout_s) TY_NODISCARD;
TY_API int ty_dist_is_initialized(void);
/* The backend's name, "none" before init. Static string. */
TY_API const char *ty_dist_backend(void);
/* Leaves the job (MPI cannot be initialised again in the same process). After a broken
 * communicator it returns without waiting for the other ranks. */
TY_API ty_status ty_dist_finalize(void) TY_NODISCARD;
/* Ends every process of the job (MPI_Abort); returns only when there is no job to end. */
TY_API ty_status ty_dist_abort(int code) TY_NODISCARD;

/* This process's rank in a group (-1 where it is not a member) and the group's size. */
TY_API ty_status ty_dist_rank(int group, int *out) TY_NODISCARD;
TY_API ty_status ty_dist_size(int group, int *out) TY_NODISCARD;
/* A group of the given world ranks (distinct, in the order that numbers them), returned in
 * *out. Every rank of the world calls it with the same list (non-members get an id where
 * they are not a member): the ranks first compare their lists, within the timeout, so a
 * rank that passes another list is named and one that never calls makes it time out. */
TY_API ty_status ty_dist_new_group(int n, const int *ranks, int *out) TY_NODISCARD;

/* Waits until every rank of the group arrives (within the default timeout). */
TY_API ty_status ty_dist_barrier(int group) TY_NODISCARD;

/* Default timeout of every wait, seconds (> 0). */
TY_API ty_status ty_dist_set_timeout(double seconds) TY_NODISCARD;
TY_API double ty_dist_timeout(void);
TY_API void ty_dist_set_deterministic(int on);
TY_API int ty_dist_deterministic(void);

/* Starts a collective; *out is a new work handle (free it with ty_dist_work_free). */
TY_API ty_status ty_dist_start(const ty_dist_args *a, ty_dist_work **out) TY_NODISCARD;
/* Progresses w: *done = 1 when its results are in place. */
TY_API ty_status ty_dist_test(ty_dist_work *w, int *done) TY_NODISCARD;
/* Waits for w at most timeout_s seconds (<= 0: the default timeout). */
TY_API ty_status ty_dist_wait(ty_dist_work *w, double timeout_s) TY_NODISCARD;
/* Frees w. A work that did not finish is abandoned: the communicator is then broken. */
TY_API void ty_dist_work_free(ty_dist_work *w);
/* Start, wait with the default timeout, free. */
TY_API ty_status ty_dist_run(const ty_dist_args *a) TY_NODISCARD;
/* Counters of the works started in this process (gradient buckets in flight...). */
typedef struct ty_dist_stats {
    int64_t started;        /* collectives started (groups of one included) */
    int64_t in_flight;      /* started on an engine and not finished yet */
    int64_t peak_in_flight; /* the most in flight at once since the last reset */
} ty_dist_stats;
TY_API void ty_dist_get_stats(ty_dist_stats *out);
/* Sets peak_in_flight to the current in_flight. */
TY_API void ty_dist_reset_peak(void);
/* The collective's name ("all_reduce"...), for messages. */
TY_API const char *ty_dist_coll_name(ty_dist_coll c);

/* Whether op is a collective (a dist_* row of ops.def): it may wait for other processes, so
 * callers holding a lock (Python's GIL) release it around the call. */
static inline int
ty_op_is_collective(ty_op op)
{
    return op >= TY_OP_DIST_ALL_REDUCE && op <= TY_OP_DIST_RECV;
}

#endif
