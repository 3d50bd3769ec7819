/* A stand-in for NCCL (libnccl.so.2) made of MPI calls, so that the NCCL engine
 * (src/dist/nccl.c: its id bootstrap, staging, grouped sends and roots) runs under mpirun on
 * machines without GPUs, with tests/dist/fake_cudart.c. libmpi is already loaded (globally)
 * by the engine's bootstrap, so its functions are found with dlsym. Every call completes
 * before it returns (the fake stream runs at once). Float16/bfloat16 sums go through float32
 * for normal numbers only (what the tests send). Built only for tests/dist/run.sh. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void *h;
typedef struct nccl_id {
    char internal[128];
} nccl_id;

int ncclGetUniqueId(nccl_id *id);
int ncclCommInitRank(h *comm, int nranks, nccl_id id, int rank);
int ncclCommAbort(h comm);
int ncclCommDestroy(h comm);
int ncclCommGetAsyncError(h comm, int *err);
const char *ncclGetErrorString(int code);
int ncclAllReduce(const void *s, void *r, size_t n, int dt, int op, h comm, h stream);
int ncclBroadcast(const void *s, void *r, size_t n, int dt, int root, h comm, h stream);
int ncclReduce(const void *s, void *r, size_t n, int dt, int op, int root, h comm, h stream);
int ncclAllGather(const void *s, void *r, size_t n, int dt, h comm, h stream);
int ncclReduceScatter(const void *s, void *r, size_t n, int dt, int op, h comm, h stream);
int ncclSend(const void *s, size_t n, int dt, int peer, h comm, h stream);
int ncclRecv(void *r, size_t n, int dt, int peer, h comm, h stream);
int ncclGroupStart(void);
int ncclGroupEnd(void);

enum { INVALID_ARGUMENT = 4, MAX_PENDING = 256 };

static struct {
    int rank, size, in_group, npending;
    h pending[MAX_PENDING];
} fake;

static void *
mpi_sym(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

#define MPI_FN(type, name) ((type)mpi_sym("MPI_" name))
typedef int (*coll_fn)(const void *, void *, int, h, h, h);

static h
world(void)
{
    return mpi_sym("ompi_mpi_comm_world");
}

static h
mpi_dtype(int dt)
{
    static const char *const names[] = {"ompi_mpi_int8_t", "ompi_mpi_uint8_t", "ompi_mpi_int32_t",
                                        "ompi_mpi_uint32_t", "ompi_mpi_int64_t", "ompi_mpi_uint64_t",
                                        NULL, "ompi_mpi_float", "ompi_mpi_double", NULL};
    return dt >= 0 && dt < 10 && names[dt] ? mpi_sym(names[dt]) : NULL;
}

static h
mpi_op(int op)
{
    return mpi_sym(op == 0 ? "ompi_mpi_op_sum" : op == 2 ? "ompi_mpi_op_max" : "ompi_mpi_op_min");
}

static h
bytes(void)
{
    return mpi_sym("ompi_mpi_uint8_t");
}

/* float16 / bfloat16 <-> float32 for normal numbers and zero */
static float
widen(uint16_t v, int bf)
{
    uint32_t bits;
    if (bf) {
        bits = (uint32_t)v << 16;
    } else {
        uint32_t sign = (uint32_t)(v >> 15) << 31, e = (v >> 10) & 0x1f, m = v & 0x3ff;
        bits = (v & 0x7fff) == 0 ? sign : sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t
narrow(float f, int bf)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if (bf) {
        return (uint16_t)(bits >> 16);
    }
    uint32_t sign = (bits >> 16) & 0x8000, e = (bits >> 23) & 0xff, m = (bits >> 13) & 0x3ff;
    return (bits & 0x7fffffff) == 0 ? (uint16_t)sign : (uint16_t)(sign | ((e - 112) << 10) | m);
}

/* float16/bfloat16 all_reduce: gather every rank's values, then combine in rank order */
static int
half_all_reduce(const void *s, void *r, size_t n, int dt, int op)
{
    uint16_t *all = malloc(n * 2 * (size_t)fake.size + 1);
    typedef int (*ag_fn)(const void *, int, h, void *, int, h, h);
    int rc = all ? MPI_FN(ag_fn, "Allgather")(s, (int)n * 2, bytes(), all, (int)n * 2, bytes(),
                                              world())
                 : INVALID_ARGUMENT;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        float acc = widen(all[i], dt == 9);
        for (int k = 1; k < fake.size; k++) {
            float v = widen(all[(size_t)k * n + i], dt == 9);
            acc = op == 0 ? acc + v : op == 2 ? (v > acc ? v : acc) : (v < acc ? v : acc);
        }
        ((uint16_t *)r)[i] = narrow(acc, dt == 9);
    }
    free(all);
    return rc;
}

int
ncclGetUniqueId(nccl_id *id)
{
    memset(id, 0, sizeof *id);
    memcpy(id->internal, "fake-nccl", 9);
    return 0;
}

int
ncclCommInitRank(h *comm, int nranks, nccl_id id, int rank)
{
    if (memcmp(id.internal, "fake-nccl", 9) != 0) { /* the id did not travel from rank 0 */
        return INVALID_ARGUMENT;
    }
    fake.rank = rank;
    fake.size = nranks;
    *comm = &fake;
    return 0;
}

int
ncclCommAbort(h comm)
{
    (void)comm;
    return 0;
}

int
ncclCommDestroy(h comm)
{
    (void)comm;
    return 0;
}

int
ncclCommGetAsyncError(h comm, int *err)
{
    (void)comm;
    *err = 0;
    return 0;
}

const char *
ncclGetErrorString(int code)
{
    return code ? "fake NCCL error" : "no error";
}

int
ncclAllReduce(const void *s, void *r, size_t n, int dt, int op, h comm, h stream)
{
    (void)comm, (void)stream;
    if (dt == 6 || dt == 9) {
        return half_all_reduce(s, r, n, dt, op);
    }
    return MPI_FN(coll_fn, "Allreduce")(s, r, (int)n, mpi_dtype(dt), mpi_op(op), world());
}

int
ncclBroadcast(const void *s, void *r, size_t n, int dt, int root, h comm, h stream)
{
    (void)comm, (void)stream, (void)dt;
    if (fake.rank == root && s != r && n > 0) {
        memcpy(r, s, n);
    }
    typedef int (*bcast_fn)(void *, int, h, int, h);
    return MPI_FN(bcast_fn, "Bcast")(r, (int)n, bytes(), root, world());
}

int
ncclReduce(const void *s, void *r, size_t n, int dt, int op, int root, h comm, h stream)
{
    (void)comm, (void)stream;
    typedef int (*reduce_fn)(const void *, void *, int, h, h, int, h);
    h t = mpi_dtype(dt);
    return t ? MPI_FN(reduce_fn, "Reduce")(s, r, (int)n, t, mpi_op(op), root, world())
             : INVALID_ARGUMENT;
}

int
ncclAllGather(const void *s, void *r, size_t n, int dt, h comm, h stream)
{
    (void)comm, (void)stream, (void)dt;
    typedef int (*ag_fn)(const void *, int, h, void *, int, h, h);
    return MPI_FN(ag_fn, "Allgather")(s, (int)n, bytes(), r, (int)n, bytes(), world());
}

int
ncclReduceScatter(const void *s, void *r, size_t n, int dt, int op, h comm, h stream)
{
    (void)comm, (void)stream;
    typedef int (*rs_fn)(const void *, void *, int, h, h, h);
    h t = mpi_dtype(dt);
    return t ? MPI_FN(rs_fn, "Reduce_scatter_block")(s, r, (int)n, t, mpi_op(op), world())
             : INVALID_ARGUMENT;
}

/* Sends and receives of a group wait at ncclGroupEnd; outside one, at once. */
static int
p2p(int send, void *buf, size_t n, int peer)
{
    typedef int (*p2p_fn)(void *, int, h, int, int, h, h *);
    typedef int (*wait_fn)(int, h *, void *);
    if (fake.npending == MAX_PENDING) {
        return INVALID_ARGUMENT;
    }
    h *req = &fake.pending[fake.npending++];
    p2p_fn start = (p2p_fn)mpi_sym(send ? "MPI_Isend" : "MPI_Irecv");
    int rc = start(buf, (int)n, bytes(), peer, 7, world(), req);
    if (rc == 0 && !fake.in_group) {
        rc = MPI_FN(wait_fn, "Waitall")(fake.npending, fake.pending, NULL);
        fake.npending = 0;
    }
    return rc;
}

int
ncclSend(const void *s, size_t n, int dt, int peer, h comm, h stream)
{
    (void)comm, (void)stream, (void)dt;
    return p2p(1, (void *)(uintptr_t)s, n, peer);
}

int
ncclRecv(void *r, size_t n, int dt, int peer, h comm, h stream)
{
    (void)comm, (void)stream, (void)dt;
    return p2p(0, r, n, peer);
}

int
ncclGroupStart(void)
{
    fake.in_group = 1;
    return 0;
}

int
ncclGroupEnd(void)
{
    typedef int (*wait_fn)(int, h *, void *);
    int rc = MPI_FN(wait_fn, "Waitall")(fake.npending, fake.pending, NULL);
    fake.in_group = 0;
    fake.npending = 0;
    return rc;
}
