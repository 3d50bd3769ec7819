/* A stand-in for NCCL (libnccl.so.2) made of MPI calls, so that the NCCL engine
 * (src/dist/nccl.c: its id bootstrap, staging, grouped sends and roots) runs under mpirun on
 * machines without GPUs, with tests/dist/fake_cudart.c. libmpi is already loaded (globally)
 * by the engine's bootstrap, so its functions are found with dlsym. Every call completes
 * before it returns (the fake stream runs at once). Float16/bfloat16 sums go through float32
 * for normal numbers only (what the tests send). A communicator is an MPI communicator of its
 * ranks: ncclCommInitRank builds it from the world, the id naming the world rank of its rank
 * 0 (which collects the members' world ranks). Built only for tests/dist/run.sh. */
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

/* The ncclComm_t of the fake: an MPI communicator and this rank's place in it. */
typedef struct fake_comm {
    h mpi;
    int rank, size;
} fake_comm;

static struct {
    int in_group, npending, next_id;
    h pending[MAX_PENDING];
} fake;

/* What ncclGetUniqueId writes: a mark, the world rank of the caller and a serial number. */
typedef struct fake_id {
    char mark[16];
    int root, serial;
} fake_id;

#define COMM(c) ((fake_comm *)(c))

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

typedef int (*send_fn)(const void *, int, h, int, int, h);
typedef int (*recv_fn)(void *, int, h, int, int, h, void *);

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
half_all_reduce(const void *s, void *r, size_t n, int dt, int op, const fake_comm *c)
{
    uint16_t *all = malloc(n * 2 * (size_t)c->size + 1);
    typedef int (*ag_fn)(const void *, int, h, void *, int, h, h);
    int rc = all ? MPI_FN(ag_fn, "Allgather")(s, (int)n * 2, bytes(), all, (int)n * 2, bytes(),
                                              c->mpi)
                 : INVALID_ARGUMENT;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        float acc = widen(all[i], dt == 9);
        for (int k = 1; k < c->size; k++) {
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
    fake_id f = {"fake-nccl", 0, fake.next_id++};
    typedef int (*rank_fn)(h, int *);
    int rc = MPI_FN(rank_fn, "Comm_rank")(world(), &f.root);
    memset(id, 0, sizeof *id);
    memcpy(id->internal, &f, sizeof f);
    return rc;
}

/* members[i] = the world rank of rank i of the communicator: rank 0 collects them. */
static int
gather_members(const fake_id *f, int nranks, int rank, int *members)
{
    int tag = 100 + f->serial % 1000, me[2] = {rank, 0};
    typedef int (*rank_fn)(h, int *);
    int rc = MPI_FN(rank_fn, "Comm_rank")(world(), &me[1]);
    if (rc == 0 && rank != 0) {
        rc = MPI_FN(send_fn, "Send")(me, 8, bytes(), f->root, tag, world());
        return rc ? rc : MPI_FN(recv_fn, "Recv")(members, 4 * nranks, bytes(), f->root, tag,
                                                 world(), NULL);
    }
    members[0] = me[1];
    for (int k = 1; k < nranks && rc == 0; k++) {
        int got[2] = {0, 0};
        rc = MPI_FN(recv_fn, "Recv")(got, 8, bytes(), -1 /* MPI_ANY_SOURCE */, tag, world(), NULL);
        members[got[0] % nranks] = got[1];
    }
    for (int k = 1; k < nranks && rc == 0; k++) {
        rc = MPI_FN(send_fn, "Send")(members, 4 * nranks, bytes(), members[k], tag, world());
    }
    return rc;
}

int
ncclCommInitRank(h *comm, int nranks, nccl_id id, int rank)
{
    fake_id f;
    memcpy(&f, id.internal, sizeof f);
    int *members = malloc(sizeof(int) * (size_t)nranks + 1);
    fake_comm *c = calloc(1, sizeof *c);
    if (memcmp(f.mark, "fake-nccl", 9) != 0 || !members || !c) { /* the id did not travel */
        free(members);
        free(c);
        return INVALID_ARGUMENT;
    }
    h all = NULL, some = NULL;
    typedef int (*group_fn)(h, h *);
    typedef int (*incl_fn)(h, int, const int *, h *);
    typedef int (*create_fn)(h, h, int, h *);
    int rc = gather_members(&f, nranks, rank, members);
    rc = rc ? rc : MPI_FN(group_fn, "Comm_group")(world(), &all);
    rc = rc ? rc : MPI_FN(incl_fn, "Group_incl")(all, nranks, members, &some);
    rc = rc ? rc : MPI_FN(create_fn, "Comm_create_group")(world(), some, 100, &c->mpi);
    typedef int (*group_free_fn)(h *);
    if (all) {
        MPI_FN(group_free_fn, "Group_free")(&all);
    }
    if (some) {
        MPI_FN(group_free_fn, "Group_free")(&some);
    }
    free(members);
    *c = (fake_comm){c->mpi, rank, nranks};
    if (rc != 0) {
        free(c);
        return rc;
    }
    *comm = c;
    return 0;
}

int
ncclCommAbort(h comm)
{
    (void)comm; /* the job ends: its communicators go with it */
    return 0;
}

int
ncclCommDestroy(h comm)
{
    typedef int (*free_fn)(h *);
    int rc = MPI_FN(free_fn, "Comm_free")(&COMM(comm)->mpi);
    free(comm);
    return rc;
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
    (void)stream;
    if (dt == 6 || dt == 9) {
        return half_all_reduce(s, r, n, dt, op, COMM(comm));
    }
    return MPI_FN(coll_fn, "Allreduce")(s, r, (int)n, mpi_dtype(dt), mpi_op(op), COMM(comm)->mpi);
}

int
ncclBroadcast(const void *s, void *r, size_t n, int dt, int root, h comm, h stream)
{
    (void)stream, (void)dt;
    if (COMM(comm)->rank == root && s != r && n > 0) {
        memcpy(r, s, n);
    }
    typedef int (*bcast_fn)(void *, int, h, int, h);
    return MPI_FN(bcast_fn, "Bcast")(r, (int)n, bytes(), root, COMM(comm)->mpi);
}

int
ncclReduce(const void *s, void *r, size_t n, int dt, int op, int root, h comm, h stream)
{
    (void)stream;
    typedef int (*reduce_fn)(const void *, void *, int, h, h, int, h);
    h t = mpi_dtype(dt);
    return t ? MPI_FN(reduce_fn, "Reduce")(s, r, (int)n, t, mpi_op(op), root, COMM(comm)->mpi)
             : INVALID_ARGUMENT;
}

int
ncclAllGather(const void *s, void *r, size_t n, int dt, h comm, h stream)
{
    (void)stream, (void)dt;
    typedef int (*ag_fn)(const void *, int, h, void *, int, h, h);
    return MPI_FN(ag_fn, "Allgather")(s, (int)n, bytes(), r, (int)n, bytes(), COMM(comm)->mpi);
}

int
ncclReduceScatter(const void *s, void *r, size_t n, int dt, int op, h comm, h stream)
{
    (void)stream;
    typedef int (*rs_fn)(const void *, void *, int, h, h, h);
    h t = mpi_dtype(dt);
    return t ? MPI_FN(rs_fn, "Reduce_scatter_block")(s, r, (int)n, t, mpi_op(op), COMM(comm)->mpi)
             : INVALID_ARGUMENT;
}

/* Sends and receives of a group wait at ncclGroupEnd; outside one, at once. */
static int
p2p(int send, void *buf, size_t n, int peer, h comm)
{
    typedef int (*p2p_fn)(void *, int, h, int, int, h, h *);
    typedef int (*wait_fn)(int, h *, void *);
    if (fake.npending == MAX_PENDING) {
        return INVALID_ARGUMENT;
    }
    h *req = &fake.pending[fake.npending++];
    p2p_fn start = (p2p_fn)mpi_sym(send ? "MPI_Isend" : "MPI_Irecv");
    int rc = start(buf, (int)n, bytes(), peer, 7, COMM(comm)->mpi, req);
    if (rc == 0 && !fake.in_group) {
        rc = MPI_FN(wait_fn, "Waitall")(fake.npending, fake.pending, NULL);
        fake.npending = 0;
    }
    return rc;
}

int
ncclSend(const void *s, size_t n, int dt, int peer, h comm, h stream)
{
    (void)stream, (void)dt;
    return p2p(1, (void *)(uintptr_t)s, n, peer, comm);
}

int
ncclRecv(void *r, size_t n, int dt, int peer, h comm, h stream)
{
    (void)stream, (void)dt;
    return p2p(0, r, n, peer, comm);
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
