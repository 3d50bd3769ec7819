/* The NCCL engine (GPUs): libnccl.so.2 and the CUDA runtime loaded with dlopen at init, the
 * unique id broadcast over MPI (so jobs start with mpirun), one GPU per rank (the local rank
 * modulo the devices). Tianyuan's tensors live in host memory for now, so each operation
 * stages its buffers through device memory on the rank's stream; an event after the copy back
 * is what test() polls. Without NCCL, CUDA or a GPU, init fails with TY_ERR_UNSUPPORTED
 * "NCCL not available (...)". A group is its own NCCL communicator: its members build an MPI
 * communicator of theirs, its rank 0 makes a unique id and broadcasts it over that one.
 * Only NCCL's stable C ABI is read: enums by value, ncclUniqueId as 128 bytes. Without GPUs,
 * tests/dist/run.sh runs this engine on stand-ins (tests/dist/fake_nccl.c, fake_cudart.c). */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_impl.h"

typedef struct nccl_id {
    char internal[128];
} nccl_id;
typedef void *handle;

enum { CUDA_SUCCESS_ = 0, CUDA_NOT_READY_ = 600, H2D = 1, D2H = 2 };

typedef struct nccl_api {
    void *nccl, *cudart;
    int (*GetUniqueId)(nccl_id *);
    int (*CommInitRank)(handle *, int, nccl_id, int);
    int (*CommAbort)(handle);
    int (*CommDestroy)(handle);
    int (*CommGetAsyncError)(handle, int *);
    const char *(*GetErrorString)(int);
    int (*AllReduce)(const void *, void *, size_t, int, int, handle, handle);
    int (*Broadcast)(const void *, void *, size_t, int, int, handle, handle);
    int (*Reduce)(const void *, void *, size_t, int, int, int, handle, handle);
    int (*AllGather)(const void *, void *, size_t, int, handle, handle);
    int (*ReduceScatter)(const void *, void *, size_t, int, int, handle, handle);
    int (*Send)(const void *, size_t, int, int, handle, handle);
    int (*Recv)(void *, size_t, int, int, handle, handle);
    int (*GroupStart)(void);
    int (*GroupEnd)(void);
    int (*GetDeviceCount)(int *);
    int (*SetDevice)(int);
    int (*StreamCreate)(handle *);
    int (*Malloc)(void **, size_t);
    int (*Free)(void *);
    int (*MemcpyAsync)(void *, const void *, size_t, int, handle);
    int (*EventCreate)(handle *);
    int (*EventRecord)(handle, handle);
    int (*EventQuery)(handle);
    int (*EventDestroy)(handle);
    const char *(*CudaErrorString)(int);
    handle stream;
    double timeout_s; /* of the id broadcasts */
} nccl_api;

static nccl_api nc;

/* A communicator: the world's or a group's (the engine's comm handle points to one). */
typedef struct nccl_comm {
    handle comm;
    void *mpi; /* the MPI communicator of the same ranks (the id's bootstrap) */
    int rank, size;
} nccl_comm;

static nccl_comm world;

typedef struct sym {
    const char *name;
    size_t offset;
    int cuda; /* from the CUDA runtime, else from NCCL */
} sym;

#define N(f) {"nccl" #f, offsetof(nccl_api, f), 0}
#define C(f, n) {"cuda" #n, offsetof(nccl_api, f), 1}
static const sym symbols[] = {
    N(GetUniqueId), N(CommInitRank), N(CommAbort), N(CommDestroy), N(CommGetAsyncError),
    N(GetErrorString), N(AllReduce), N(Broadcast), N(Reduce), N(AllGather), N(ReduceScatter),
    N(Send), N(Recv), N(GroupStart), N(GroupEnd),
    C(GetDeviceCount, GetDeviceCount), C(SetDevice, SetDevice), C(StreamCreate, StreamCreate),
    C(Malloc, Malloc), C(Free, Free), C(MemcpyAsync, MemcpyAsync), C(EventCreate, EventCreate),
    C(EventRecord, EventRecord), C(EventQuery, EventQuery), C(EventDestroy, EventDestroy),
    C(CudaErrorString, GetErrorString),
};
#undef N
#undef C

static ty_status
not_available(const char *why)
{
    return ty_set_error(TY_ERR_UNSUPPORTED, "dist init: NCCL not available (%s)", why);
}

static void *
open_first(const char *const *names, size_t n)
{
    void *lib = NULL;
    for (size_t i = 0; i < n && !lib; i++) {
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    return lib;
}

static ty_status
load_api(void)
{
    static const char *const nccl_names[] = {"libnccl.so.2", "libnccl.so"};
    static const char *const cuda_names[] = {"libcudart.so", "libcudart.so.12",
                                             "libcudart.so.11.0"};
    if (!nc.nccl && !(nc.nccl = open_first(nccl_names, 2))) {
        return not_available(dlerror());
    }
    if (!nc.cudart && !(nc.cudart = open_first(cuda_names, 3))) {
        return not_available("no CUDA runtime: libcudart.so");
    }
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        void *p = dlsym(symbols[i].cuda ? nc.cudart : nc.nccl, symbols[i].name);
        if (!p) {
            return not_available(symbols[i].name);
        }
        memcpy((char *)&nc + symbols[i].offset, &p, sizeof p);
    }
    return TY_OK;
}

static ty_status
nccl_fail(int code, const char *what)
{
    return ty_set_error(TY_ERR_IO, "%s: NCCL failed: %s (error %d)", what,
                        nc.GetErrorString ? nc.GetErrorString(code) : "", code);
}

static ty_status
cuda_fail(int code, const char *what)
{
    return ty_set_error(TY_ERR_DEVICE, "%s: CUDA failed: %s (error %d)", what,
                        nc.CudaErrorString ? nc.CudaErrorString(code) : "", code);
}

#define NCCL_TRY(call, what)                                                                       \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            return nccl_fail(rc_, (what));                                                         \
        }                                                                                          \
    } while (0)
#define CUDA_TRY(call, what)                                                                       \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != CUDA_SUCCESS_) {                                                                \
            return cuda_fail(rc_, (what));                                                         \
        }                                                                                          \
    } while (0)

/* The rank on this machine, as launchers say it (Open MPI, Slurm, torchrun), else rank. */
static int
local_rank(int rank)
{
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            return atoi(v);
        }
    }
    return rank;
}

/* c->comm: NCCL's communicator of c's ranks, c->rank 0's unique id sent over c->mpi. */
static ty_status
comm_init(nccl_comm *c, const char *what)
{
    nccl_id id;
    memset(&id, 0, sizeof id);
    if (c->rank == 0) {
        NCCL_TRY(nc.GetUniqueId(&id), what);
    }
    TY_TRY(ty_dist_mpi_bcast_bytes(c->mpi, &id, sizeof id, 0, nc.timeout_s));
    NCCL_TRY(nc.CommInitRank(&c->comm, c->size, id, c->rank), what);
    return TY_OK;
}

static ty_status
nccl_init(double timeout_s, int *rank, int *size, void **comm)
{
    TY_TRY(load_api());
    int ndev = 0;
    if (nc.GetDeviceCount(&ndev) != CUDA_SUCCESS_ || ndev < 1) {
        return not_available("no GPU");
    }
    nc.timeout_s = timeout_s;
    TY_TRY(ty_dist_mpi_backend.init(timeout_s, &world.rank, &world.size, &world.mpi));
    CUDA_TRY(nc.SetDevice(local_rank(world.rank) % ndev), "dist init");
    CUDA_TRY(nc.StreamCreate(&nc.stream), "dist init");
    TY_TRY(comm_init(&world, "dist init"));
    *rank = world.rank;
    *size = world.size;
    *comm = &world;
    return TY_OK;
}

static ty_status
nccl_finalize(int broken)
{
    if (world.comm) {
        int rc = broken ? nc.CommAbort(world.comm) : nc.CommDestroy(world.comm);
        world.comm = NULL;
        NCCL_TRY(rc, "dist finalize");
    }
    return ty_dist_mpi_backend.finalize(broken);
}

static void
nccl_abort(int code)
{
    if (world.comm) {
        nc.CommAbort(world.comm);
    }
    ty_dist_mpi_backend.end_job(code);
}

static void
nccl_free_group(void *comm)
{
    nccl_comm *c = comm;
    if (c->comm) {
        nc.CommDestroy(c->comm);
    }
    if (c->mpi) {
        ty_dist_mpi_backend.free_group(c->mpi);
    }
    free(c);
}

/* Called by the members only (ranks: world ranks, numbered in the list's order). */
static ty_status
nccl_new_group(void *world_comm, int n, const int *ranks, void **comm)
{
    const nccl_comm *w = world_comm;
    nccl_comm *c = calloc(1, sizeof *c);
    TY_CHECK(c, TY_ERR_OOM, "new_group: no memory for a communicator");
    c->size = n;
    for (int i = 0; i < n; i++) {
        c->rank = ranks[i] == w->rank ? i : c->rank;
    }
    ty_status s = ty_dist_mpi_backend.new_group(w->mpi, n, ranks, &c->mpi);
    s = s == TY_OK ? comm_init(c, "new_group") : s;
    if (s != TY_OK) {
        nccl_free_group(c);
        return s;
    }
    *comm = c;
    return TY_OK;
}

/* NCCL's ncclDataType_t for a dtype (-1: moved as bytes, reduced in rank order). */
static int
nccl_dtype(ty_dtype dt)
{
    switch (dt) {
    case TY_INT8: return 0;
    case TY_UINT8: return 1;
    case TY_INT32: return 2;
    case TY_INT64: return 4;
    case TY_FLOAT16: return 6;
    case TY_FLOAT32: return 7;
    case TY_FLOAT64: return 8;
    case TY_BFLOAT16: return 9;
    default: return -1;
    }
}

static int
nccl_can_reduce(ty_dtype dt, ty_dist_mode mode)
{
    (void)mode;
    return nccl_dtype(dt) >= 0;
}

/* An operation in flight: device copies of its buffers and the event after the copy back. */
typedef struct nccl_req {
    void *dsend, *drecv;
    handle done;
    handle comm; /* whose asynchronous errors test() reads */
} nccl_req;

static void
req_free(nccl_req *q)
{
    if (q->done) {
        nc.EventDestroy(q->done);
    }
    nc.Free(q->dsend);
    nc.Free(q->drecv);
    free(q);
}

/* Grouped sends and receives: all_to_all, gather (every rank sends its block to root) and
 * scatter (root sends block r to rank r). */
static int
exchange(const nccl_comm *c, const ty_dist_args *a, nccl_req *q, size_t block)
{
    char *s = q->dsend, *d = q->drecv;
    handle comm = c->comm;
    int root = a->root, rank = c->rank, size = c->size, rc = nc.GroupStart();
    for (int r = 0; r < size && rc == 0; r++) {
        if (a->coll == TY_COLL_ALL_TO_ALL) {
            rc = nc.Send(s + (size_t)r * block, block, 1, r, comm, nc.stream);
            rc = rc ? rc : nc.Recv(d + (size_t)r * block, block, 1, r, comm, nc.stream);
        } else if (a->coll == TY_COLL_GATHER) {
            rc = r == 0 ? nc.Send(s, block, 1, root, comm, nc.stream) : 0;
            if (rc == 0 && rank == root) {
                rc = nc.Recv(d + (size_t)r * block, block, 1, r, comm, nc.stream);
            }
        } else {
            rc = rank == root ? nc.Send(s + (size_t)r * block, block, 1, r, comm, nc.stream) : 0;
            if (rc == 0 && r == 0) {
                rc = nc.Recv(d, block, 1, root, comm, nc.stream);
            }
        }
    }
    int end = nc.GroupEnd();
    return rc ? rc : end;
}

/* The NCCL call of a described operation on device buffers. */
static int
nccl_call(const nccl_comm *c, const ty_dist_args *a, nccl_req *q)
{
    handle comm = c->comm;
    int dt = nccl_dtype(a->dtype), op = a->mode == TY_DIST_SUM ? 0 : a->mode == TY_DIST_MAX ? 2 : 3;
    size_t n = (size_t)a->count, es = ty_dtype_size(a->dtype);
    switch (a->coll) {
    case TY_COLL_ALL_REDUCE: return nc.AllReduce(q->dsend, q->drecv, n, dt, op, comm, nc.stream);
    case TY_COLL_BROADCAST:
        return nc.Broadcast(q->dsend, q->drecv, n * es, 1, a->root, comm, nc.stream);
    case TY_COLL_ALL_GATHER: return nc.AllGather(q->dsend, q->drecv, n * es, 1, comm, nc.stream);
    case TY_COLL_REDUCE_SCATTER:
        return nc.ReduceScatter(q->dsend, q->drecv, n, dt, op, comm, nc.stream);
    case TY_COLL_REDUCE:
        return nc.Reduce(q->dsend, q->drecv, n, dt, op, a->root, comm, nc.stream);
    case TY_COLL_SEND: return nc.Send(q->dsend, n * es, 1, a->root, comm, nc.stream);
    case TY_COLL_RECV: return nc.Recv(q->drecv, n * es, 1, a->root, comm, nc.stream);
    case TY_COLL_BARRIER: /* an all_reduce of one byte */
        return nc.AllReduce(q->dsend, q->drecv, 1, 1, 0, comm, nc.stream);
    default: return exchange(c, a, q, n * es);
    }
}

/* Bytes of the send and recv buffers of a on this rank (at least 1: a barrier's byte). */
static void
staged_bytes(const ty_dist_args *a, int size, size_t *nsend, size_t *nrecv)
{
    size_t block = (size_t)a->count * ty_dtype_size(a->dtype), all = block * (size_t)size;
    int many_in = a->coll == TY_COLL_REDUCE_SCATTER || a->coll == TY_COLL_SCATTER ||
                  a->coll == TY_COLL_ALL_TO_ALL;
    int many_out = a->coll == TY_COLL_ALL_GATHER || a->coll == TY_COLL_GATHER ||
                   a->coll == TY_COLL_ALL_TO_ALL;
    *nsend = (many_in ? all : block) + 1;
    *nrecv = (many_out ? all : block) + 1;
}

static ty_status
nccl_start(void *comm, int size, const ty_dist_args *a, void **req)
{
    const nccl_comm *c = comm;
    const char *what = ty_dist_coll_name(a->coll);
    size_t nsend, nrecv;
    staged_bytes(a, size, &nsend, &nrecv);
    nccl_req *q = calloc(1, sizeof *q);
    TY_CHECK(q, TY_ERR_OOM, "%s: no memory for a request", what);
    int rc = nc.Malloc(&q->dsend, nsend);
    rc = rc ? rc : nc.Malloc(&q->drecv, nrecv);
    rc = rc ? rc : nc.EventCreate(&q->done);
    if (rc == 0 && a->send) {
        rc = nc.MemcpyAsync(q->dsend, a->send, nsend - 1, H2D, nc.stream);
    }
    if (rc != 0) {
        req_free(q);
        return cuda_fail(rc, what);
    }
    q->comm = c->comm;
    rc = nccl_call(c, a, q);
    if (rc != 0) {
        req_free(q);
        return nccl_fail(rc, what);
    }
    /* reduce and gather leave recv untouched away from root */
    int keep = (a->coll == TY_COLL_REDUCE || a->coll == TY_COLL_GATHER) && c->rank != a->root;
    rc = a->recv && !keep ? nc.MemcpyAsync(a->recv, q->drecv, nrecv - 1, D2H, nc.stream) : 0;
    rc = rc ? rc : nc.EventRecord(q->done, nc.stream);
    if (rc != 0) { /* NCCL still uses q's buffers: leave them to the broken communicator */
        return cuda_fail(rc, what);
    }
    *req = q;
    return TY_OK;
}

static ty_status
nccl_test(void *req, int *done)
{
    nccl_req *q = req;
    int async = 0;
    NCCL_TRY(nc.CommGetAsyncError(q->comm, &async), "dist test");
    NCCL_TRY(async, "dist test");
    int rc = nc.EventQuery(q->done);
    *done = rc == CUDA_SUCCESS_;
    if (rc != CUDA_SUCCESS_ && rc != CUDA_NOT_READY_) {
        return cuda_fail(rc, "dist test");
    }
    if (*done) {
        req_free(q);
    }
    return TY_OK;
}

const ty_dist_engine ty_dist_nccl_backend = {
    "nccl",          nccl_init,       nccl_finalize, nccl_abort, nccl_new_group,
    nccl_free_group, nccl_can_reduce, nccl_start,    nccl_test,
};
