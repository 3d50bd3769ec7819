/* The MPI engine: Open MPI's libmpi loaded with dlopen at init, so the library builds, links
 * and runs without MPI. Only Open MPI's ABI is read: its handles (MPI_Comm, MPI_Datatype,
 * MPI_Op, MPI_Request...) are pointers, and the predefined ones (MPI_COMM_WORLD, MPI_FLOAT,
 * MPI_SUM...) are the addresses of exported objects (ompi_mpi_comm_world...), which dlsym
 * returns. Every operation is nonblocking (MPI-3 MPI_I*), tested by the frontend until done
 * or past its timeout. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_impl.h"

typedef void *mpi_handle; /* MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request, MPI_Group... */

enum {
    MPI_SUCCESS_ = 0,
    MPI_THREAD_SERIALIZED_ = 2, /* Open MPI's enum: SINGLE, FUNNELED, SERIALIZED, MULTIPLE */
    MPI_MAX_ERROR_STRING_ = 256,
};

typedef struct mpi_api {
    void *lib;
    int (*Initialized)(int *);
    int (*Finalized)(int *);
    int (*Init_thread)(int *, char ***, int, int *);
    int (*Finalize)(void);
    int (*Abort)(mpi_handle, int);
    int (*Comm_rank)(mpi_handle, int *);
    int (*Comm_size)(mpi_handle, int *);
    int (*Comm_set_errhandler)(mpi_handle, mpi_handle);
    int (*Comm_group)(mpi_handle, mpi_handle *);
    int (*Group_incl)(mpi_handle, int, const int *, mpi_handle *);
    int (*Group_free)(mpi_handle *);
    int (*Comm_create_group)(mpi_handle, mpi_handle, int, mpi_handle *);
    int (*Comm_free)(mpi_handle *);
    int (*Test)(mpi_handle *, int *, void *);
    int (*Error_string)(int, char *, int *);
    int (*Ibarrier)(mpi_handle, mpi_handle *);
    int (*Iallreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle, mpi_handle *);
    int (*Ibcast)(void *, int, mpi_handle, int, mpi_handle, mpi_handle *);
    int (*Iallgather)(const void *, int, mpi_handle, void *, int, mpi_handle, mpi_handle,
                      mpi_handle *);
    int (*Ireduce_scatter_block)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle,
                                 mpi_handle *);
    int (*Ireduce)(const void *, void *, int, mpi_handle, mpi_handle, int, mpi_handle,
                   mpi_handle *);
    int (*Igather)(const void *, int, mpi_handle, void *, int, mpi_handle, int, mpi_handle,
                   mpi_handle *);
    int (*Iscatter)(const void *, int, mpi_handle, void *, int, mpi_handle, int, mpi_handle,
                    mpi_handle *);
    int (*Ialltoall)(const void *, int, mpi_handle, void *, int, mpi_handle, mpi_handle,
                     mpi_handle *);
    int (*Isend)(const void *, int, mpi_handle, int, int, mpi_handle, mpi_handle *);
    int (*Irecv)(void *, int, mpi_handle, int, int, mpi_handle, mpi_handle *);
    mpi_handle comm_world, errors_return, op[3], dtype[TY_DTYPE_COUNT];
    int we_initialized;
} mpi_api;

static mpi_api mpi;

/* The symbols read from libmpi, each into its slot of `mpi`. */
typedef struct sym {
    const char *name;
    size_t offset;
} sym;

#define FN(n) {"MPI_" #n, offsetof(mpi_api, n)}
static const sym functions[] = {
    FN(Initialized), FN(Finalized),  FN(Init_thread), FN(Finalize),   FN(Abort),
    FN(Comm_rank),   FN(Comm_size),  FN(Comm_set_errhandler),         FN(Comm_group),
    FN(Group_incl),  FN(Group_free), FN(Comm_create_group),           FN(Comm_free),
    FN(Test),        FN(Error_string), FN(Ibarrier), FN(Iallreduce),  FN(Ibcast),
    FN(Iallgather),  FN(Ireduce_scatter_block),      FN(Ireduce),     FN(Igather),
    FN(Iscatter),    FN(Ialltoall),  FN(Isend),      FN(Irecv),
};
#undef FN

#define OBJ(n, field) {"ompi_mpi_" n, offsetof(mpi_api, field)}
static const sym objects[] = {
    OBJ("comm_world", comm_world),
    OBJ("errors_return", errors_return),
    OBJ("op_sum", op[TY_DIST_SUM]),
    OBJ("op_max", op[TY_DIST_MAX]),
    OBJ("op_min", op[TY_DIST_MIN]),
    OBJ("float", dtype[TY_FLOAT32]),
    OBJ("double", dtype[TY_FLOAT64]),
    OBJ("uint16_t", dtype[TY_FLOAT16]), /* moved as bits, reduced in rank order */
    OBJ("uint16_t", dtype[TY_BFLOAT16]),
    OBJ("int8_t", dtype[TY_INT8]),
    OBJ("uint8_t", dtype[TY_UINT8]),
    OBJ("int16_t", dtype[TY_INT16]),
    OBJ("int32_t", dtype[TY_INT32]),
    OBJ("int64_t", dtype[TY_INT64]),
    OBJ("uint8_t", dtype[TY_BOOL]),
};
#undef OBJ

static ty_status
open_library(void)
{
    const char *env = getenv("TY_MPI_LIBRARY"); /* when set, the only library tried */
    const char *names[] = {"libmpi.so.40", "libmpi.so"};
    int from_env = env && env[0];
    const char *why = "no library name";
    for (size_t i = 0; i < (from_env ? 1 : sizeof names / sizeof names[0]) && !mpi.lib; i++) {
        /* global: Open MPI's own plugins resolve libmpi's symbols */
        mpi.lib = dlopen(from_env ? env : names[i], RTLD_NOW | RTLD_GLOBAL);
        why = mpi.lib ? why : dlerror();
    }
    TY_CHECK(mpi.lib, TY_ERR_UNSUPPORTED,
             "dist init: MPI not available (%s); install Open MPI (openmpi-bin, libopenmpi-dev) "
             "or set TY_MPI_LIBRARY", why);
    return TY_OK;
}

static ty_status
load_symbols(const sym *table, size_t n, int objects_)
{
    for (size_t i = 0; i < n; i++) {
        void *p = dlsym(mpi.lib, table[i].name);
        TY_CHECK(p, TY_ERR_UNSUPPORTED, "dist init: the MPI library lacks %s (%s is read with "
                 "Open MPI's ABI: its handles are pointers)", table[i].name,
                 objects_ ? "an Open MPI object" : "an MPI-3 function");
        memcpy((char *)&mpi + table[i].offset, &p, sizeof p);
    }
    return TY_OK;
}

static ty_status
load_api(void)
{
    if (mpi.Init_thread) {
        return TY_OK;
    }
    TY_TRY(open_library());
    ty_status s = load_symbols(functions, sizeof functions / sizeof functions[0], 0);
    if (s == TY_OK) {
        s = load_symbols(objects, sizeof objects / sizeof objects[0], 1);
    }
    if (s != TY_OK) { /* not an Open MPI library: forget it, a later init looks again */
        dlclose(mpi.lib);
        memset(&mpi, 0, sizeof mpi);
    }
    return s;
}

static ty_status
mpi_error(int code, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING_ + 1] = "unknown MPI error";
    int len = 0;
    if (mpi.Error_string && mpi.Error_string(code, msg, &len) == MPI_SUCCESS_) {
        msg[len < 0 ? 0 : len > MPI_MAX_ERROR_STRING_ ? MPI_MAX_ERROR_STRING_ : len] = '\0';
    }
    return ty_set_error(TY_ERR_IO, "%s: MPI failed (a rank may have died): %s (error %d)", what,
                        msg, code);
}

#define MPI_TRY(call, what)                                                                        \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS_) {                                                                 \
            return mpi_error(rc_, (what));                                                         \
        }                                                                                          \
    } while (0)

static ty_status
mpi_init(double timeout_s, int *rank, int *size, void **world)
{
    (void)timeout_s; /* MPI_Init waits for its launcher, not for a timeout */
    TY_TRY(load_api());
    int finalized = 0, initialized = 0, provided = 0;
    MPI_TRY(mpi.Finalized(&finalized), "dist init");
    TY_CHECK(!finalized, TY_ERR_UNSUPPORTED,
             "dist init: MPI was finalized in this process and cannot start again");
    MPI_TRY(mpi.Initialized(&initialized), "dist init");
    if (!initialized) {
        /* libnbc's ring all_reduce: measured 2-6x faster than its default choice from 1 MB
         * up on 2 ranks (a user's own OMPI_MCA_ setting wins) */
        setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
        MPI_TRY(mpi.Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED_, &provided), "dist init");
        mpi.we_initialized = 1;
    }
    /* errors come back as codes (a dead peer): the frontend raises instead of MPI exiting */
    MPI_TRY(mpi.Comm_set_errhandler(mpi.comm_world, mpi.errors_return), "dist init");
    MPI_TRY(mpi.Comm_rank(mpi.comm_world, rank), "dist init");
    MPI_TRY(mpi.Comm_size(mpi.comm_world, size), "dist init");
    *world = mpi.comm_world;
    return TY_OK;
}

static ty_status
mpi_finalize(int broken)
{
    /* a broken job has requests no peer will complete: MPI_Finalize could wait forever */
    if (mpi.we_initialized && !broken) {
        mpi.we_initialized = 0;
        MPI_TRY(mpi.Finalize(), "dist finalize");
    }
    return TY_OK;
}

static void
mpi_abort(int code)
{
    if (mpi.Abort) {
        mpi.Abort(mpi.comm_world, code);
    }
}

static ty_status
mpi_new_group(void *world, int n, const int *ranks, void **comm)
{
    mpi_handle all = NULL, some = NULL, c = NULL;
    MPI_TRY(mpi.Comm_group(world, &all), "new_group");
    int rc = mpi.Group_incl(all, n, ranks, &some);
    mpi.Group_free(&all);
    MPI_TRY(rc, "new_group");
    rc = mpi.Comm_create_group(world, some, 0, &c);
    mpi.Group_free(&some);
    MPI_TRY(rc, "new_group");
    MPI_TRY(mpi.Comm_set_errhandler(c, mpi.errors_return), "new_group");
    *comm = c;
    return TY_OK;
}

static void
mpi_free_group(void *comm)
{
    mpi_handle c = comm;
    mpi.Comm_free(&c);
}

static int
mpi_can_reduce(ty_dtype dt, ty_dist_mode mode)
{
    (void)mode;
    return dt != TY_FLOAT16 && dt != TY_BFLOAT16 && dt != TY_BOOL;
}

/* The nonblocking MPI call of a described operation. */
static int
mpi_call(mpi_handle comm, int size, const ty_dist_args *a, mpi_handle *req)
{
    mpi_handle dt = mpi.dtype[a->dtype], op = mpi.op[a->mode];
    int n = (int)a->count;
    const void *s = a->send == a->recv ? (const void *)1 /* MPI_IN_PLACE */ : a->send;
    switch (a->coll) {
    case TY_COLL_BARRIER: return mpi.Ibarrier(comm, req);
    case TY_COLL_ALL_REDUCE: return mpi.Iallreduce(s, a->recv, n, dt, op, comm, req);
    case TY_COLL_BROADCAST: return mpi.Ibcast(a->recv, n, dt, a->root, comm, req);
    case TY_COLL_ALL_GATHER: return mpi.Iallgather(a->send, n, dt, a->recv, n, dt, comm, req);
    case TY_COLL_REDUCE_SCATTER:
        return mpi.Ireduce_scatter_block(a->send, a->recv, n, dt, op, comm, req);
    case TY_COLL_REDUCE: return mpi.Ireduce(a->send, a->recv, n, dt, op, a->root, comm, req);
    case TY_COLL_GATHER: return mpi.Igather(a->send, n, dt, a->recv, n, dt, a->root, comm, req);
    case TY_COLL_SCATTER: return mpi.Iscatter(a->send, n, dt, a->recv, n, dt, a->root, comm, req);
    case TY_COLL_ALL_TO_ALL: return mpi.Ialltoall(a->send, n, dt, a->recv, n, dt, comm, req);
    case TY_COLL_SEND: return mpi.Isend(a->send, n, dt, a->root, 0, comm, req);
    case TY_COLL_RECV: return mpi.Irecv(a->recv, n, dt, a->root, 0, comm, req);
    default: (void)size; return -1;
    }
}

static ty_status
mpi_start(void *comm, int size, const ty_dist_args *a, void **req)
{
    /* broadcast moves root's send into every recv: root copies it first */
    if (a->coll == TY_COLL_BROADCAST && a->count > 0 && a->send && a->send != a->recv) {
        memcpy(a->recv, a->send, (size_t)a->count * ty_dtype_size(a->dtype));
    }
    mpi_handle r = NULL;
    MPI_TRY(mpi_call(comm, size, a, &r), ty_dist_coll_name(a->coll));
    *req = r;
    return TY_OK;
}

static ty_status
mpi_test(void *req, int *done)
{
    mpi_handle r = req;
    MPI_TRY(mpi.Test(&r, done, NULL /* MPI_STATUS_IGNORE */), "dist test");
    return TY_OK;
}

const ty_dist_engine ty_dist_mpi_backend = {
    "mpi",          mpi_init,       mpi_finalize, mpi_abort, mpi_new_group,
    mpi_free_group, mpi_can_reduce, mpi_start,    mpi_test,
};

ty_status
ty_dist_mpi_bcast_bytes(void *comm, void *buf, int64_t n, int root, double timeout_s)
{
    TY_CHECK(mpi.Ibcast && n >= 0 && n <= INT32_MAX, TY_ERR_INVALID_ARG,
             "dist: MPI broadcast of %lld bytes unavailable", (long long)n);
    mpi_handle r = NULL;
    MPI_TRY(mpi.Ibcast(buf, (int)n, mpi.dtype[TY_UINT8], root, comm, &r), "broadcast");
    int done = 0;
    double deadline = ty_dist_now() + timeout_s;
    while (!done) {
        TY_TRY(mpi_test(r, &done));
        TY_CHECK(done || ty_dist_now() < deadline, TY_ERR_TIMEOUT,
                 "broadcast: timed out waiting for rank %d", root);
    }
    return TY_OK;
}
