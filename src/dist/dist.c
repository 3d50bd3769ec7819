/* The communicator's frontend (tianyuan/dist.h): state, groups, argument checks, groups of
 * one, rank-order reductions and timeouts. The engines (mpi.c, nccl.c) only start and test
 * nonblocking operations. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist_impl.h"

typedef struct group {
    int used;
    void *comm; /* the engine's communicator; NULL where this rank is not a member */
    int rank;   /* -1: not a member */
    int size;
} group;

/* A message a rank sent to itself, waiting for its recv. */
typedef struct self_msg {
    struct self_msg *next;
    int group;
    size_t nbytes;
    char data[];
} self_msg;

static struct {
    pthread_mutex_t lock;
    const ty_dist_engine *be; /* NULL before init: a world of one */
    double timeout;
    int deterministic;
    group groups[TY_DIST_MAX_GROUPS];
    ty_status broken; /* != TY_OK once a collective failed or timed out */
    char broken_msg[512];
    self_msg *mailbox;
    ty_dist_stats stats;
} st = {.lock = PTHREAD_MUTEX_INITIALIZER, .timeout = 300.0, .groups = {{1, NULL, 0, 1}}};

struct ty_dist_work {
    ty_dist_args a;
    int rank, size;
    void *req;     /* the engine's request while in flight */
    int done;
    /* A rank-order reduction gathers blocks into staging and combines them in a fixed tree;
     * an all_reduce then all-gathers the combined chunks (a second phase). */
    int ordered, phase;
    int64_t chunk; /* elements each rank combines (all_reduce), else count */
    void *staging; /* size blocks of chunk elements (+ the padded input of an all_reduce) */
    void *mid;     /* this rank's combined chunk (all_reduce) */
    void *padded;  /* the all-gathered chunks when size * chunk > count */
    float *acc;    /* 2 * chunk floats: float16/bfloat16 combine through float32 */
};

static const char *const coll_names[TY_COLL_COUNT] = {
    "barrier", "all_reduce", "broadcast", "all_gather", "reduce_scatter", "reduce",
    "gather",  "scatter",    "all_to_all", "send",     "recv",
};

const char *
ty_dist_coll_name(ty_dist_coll c)
{
    return (unsigned)c < TY_COLL_COUNT ? coll_names[c] : "unknown collective";
}

/* ---- state ---- */

int
ty_dist_is_initialized(void)
{
    pthread_mutex_lock(&st.lock);
    int on = st.be != NULL;
    pthread_mutex_unlock(&st.lock);
    return on;
}

const char *
ty_dist_backend(void)
{
    pthread_mutex_lock(&st.lock);
    const char *name = st.be ? st.be->name : "none";
    pthread_mutex_unlock(&st.lock);
    return name;
}

static const ty_dist_engine *
backend_named(const char *name)
{
    if (strcmp(name, "mpi") == 0) {
        return &ty_dist_mpi_backend;
    }
    if (strcmp(name, "nccl") == 0) {
        return &ty_dist_nccl_backend;
    }
    return strcmp(name, "self") == 0 ? &ty_dist_self_backend : NULL;
}

static ty_status
init_locked(const char *name, double timeout_s)
{
    TY_CHECK(name, TY_ERR_INVALID_ARG, "dist init: backend is NULL");
    TY_CHECK(!st.be, TY_ERR_INVALID_ARG, "dist init: already initialized (backend %s)",
             st.be ? st.be->name : "");
    TY_CHECK(timeout_s > 0 && isfinite(timeout_s), TY_ERR_INVALID_ARG,
             "dist init: timeout_s must be positive and finite, got %g", timeout_s);
    const ty_dist_engine *be = backend_named(name);
    TY_CHECK(be, TY_ERR_INVALID_ARG, "dist init: unknown backend '%s' (mpi, nccl or self)", name);
    int rank = 0, size = 1;
    void *world = NULL;
    TY_TRY(be->init(timeout_s, &rank, &size, &world));
    st.groups[0] = (group){1, world, rank, size};
    st.be = be;
    st.timeout = timeout_s;
    st.broken = TY_OK;
    return TY_OK;
}

ty_status
ty_dist_init(const char *backend, double timeout_s)
{
    pthread_mutex_lock(&st.lock);
    ty_status s = init_locked(backend, timeout_s);
    pthread_mutex_unlock(&st.lock);
    return s;
}

static void
drop_mailbox(void)
{
    while (st.mailbox) {
        self_msg *m = st.mailbox;
        st.mailbox = m->next;
        free(m);
    }
}

ty_status
ty_dist_finalize(void)
{
    pthread_mutex_lock(&st.lock);
    ty_status s = TY_OK;
    if (st.broken == TY_OK && st.stats.in_flight > 0) { /* MPI_Finalize would wait for them */
        s = ty_set_error(TY_ERR_INVALID_ARG, "dist finalize: %lld collectives still in flight: "
                         "wait for them first", (long long)st.stats.in_flight);
        pthread_mutex_unlock(&st.lock);
        return s;
    }
    for (int i = 1; i < TY_DIST_MAX_GROUPS; i++) {
        if (st.be && st.groups[i].comm && st.broken == TY_OK) {
            st.be->free_group(st.groups[i].comm);
        }
        st.groups[i] = (group){0};
    }
    if (st.be) {
        s = st.be->finalize(st.broken != TY_OK);
        st.be = NULL;
    }
    st.groups[0] = (group){1, NULL, 0, 1};
    st.broken = TY_OK;
    drop_mailbox();
    pthread_mutex_unlock(&st.lock);
    return s;
}

ty_status
ty_dist_abort(int code)
{
    pthread_mutex_lock(&st.lock);
    const ty_dist_engine *be = st.be;
    pthread_mutex_unlock(&st.lock);
    TY_CHECK(be, TY_ERR_INVALID_ARG, "dist abort: not initialized (no job to end)");
    be->end_job(code);
    return ty_set_error(TY_ERR_INTERNAL, "dist abort: the %s backend did not end the job",
                        be->name);
}

ty_status
ty_dist_set_timeout(double seconds)
{
    TY_CHECK(seconds > 0 && isfinite(seconds), TY_ERR_INVALID_ARG,
             "dist: timeout must be positive and finite, got %g", seconds);
    pthread_mutex_lock(&st.lock);
    st.timeout = seconds;
    pthread_mutex_unlock(&st.lock);
    return TY_OK;
}

double
ty_dist_timeout(void)
{
    pthread_mutex_lock(&st.lock);
    double t = st.timeout;
    pthread_mutex_unlock(&st.lock);
    return t;
}

void
ty_dist_set_deterministic(int on)
{
    pthread_mutex_lock(&st.lock);
    st.deterministic = on != 0;
    pthread_mutex_unlock(&st.lock);
}

int
ty_dist_deterministic(void)
{
    pthread_mutex_lock(&st.lock);
    int on = st.deterministic;
    pthread_mutex_unlock(&st.lock);
    return on;
}

/* ---- groups ---- */

static ty_status
group_locked(int id, const char *what, group **out)
{
    TY_CHECK(id >= 0 && id < TY_DIST_MAX_GROUPS && st.groups[id].used, TY_ERR_INVALID_ARG,
             "%s: unknown group %d", what, id);
    *out = &st.groups[id];
    return TY_OK;
}

static ty_status
group_info(int id, int *rank, int *size)
{
    pthread_mutex_lock(&st.lock);
    group *g = NULL;
    ty_status s = group_locked(id, "dist", &g);
    if (s == TY_OK) {
        *rank = g->rank;
        *size = g->size;
    }
    pthread_mutex_unlock(&st.lock);
    return s;
}

ty_status
ty_dist_rank(int group_id, int *out)
{
    TY_CHECK(out, TY_ERR_INVALID_ARG, "dist rank: out is NULL");
    int size;
    return group_info(group_id, out, &size);
}

ty_status
ty_dist_size(int group_id, int *out)
{
    TY_CHECK(out, TY_ERR_INVALID_ARG, "dist size: out is NULL");
    int rank;
    return group_info(group_id, &rank, out);
}

static ty_status
check_ranks(int n, const int *ranks, int world, int *my_rank)
{
    TY_CHECK(n >= 1 && ranks, TY_ERR_INVALID_ARG, "new_group: needs at least one rank");
    TY_CHECK(n <= world, TY_ERR_INVALID_ARG, "new_group: %d ranks in a world of %d", n, world);
    *my_rank = -1;
    for (int i = 0; i < n; i++) {
        TY_CHECK(ranks[i] >= 0 && ranks[i] < world, TY_ERR_INDEX,
                 "new_group: rank %d outside the world of %d", ranks[i], world);
        for (int j = 0; j < i; j++) {
            TY_CHECK(ranks[j] != ranks[i], TY_ERR_INVALID_ARG, "new_group: rank %d listed twice",
                     ranks[i]);
        }
        if (ranks[i] == st.groups[0].rank) {
            *my_rank = i;
        }
    }
    return TY_OK;
}

static ty_status
new_group_locked(int n, const int *ranks, int *out)
{
    int my_rank = -1, id = 1;
    TY_TRY(check_ranks(n, ranks, st.groups[0].size, &my_rank));
    TY_CHECK(st.broken == TY_OK, st.broken, "new_group: %s", st.broken_msg);
    while (id < TY_DIST_MAX_GROUPS && st.groups[id].used) {
        id++;
    }
    TY_CHECK(id < TY_DIST_MAX_GROUPS, TY_ERR_UNSUPPORTED, "new_group: at most %d groups at once",
             TY_DIST_MAX_GROUPS);
    void *comm = NULL;
    if (st.be && my_rank >= 0 && n > 1) {
        TY_TRY(st.be->new_group(st.groups[0].comm, n, ranks, &comm));
    }
    st.groups[id] = (group){1, comm, my_rank, n};
    *out = id;
    return TY_OK;
}

/* FNV-1a of the list: what the ranks compare before they build a group. */
static int64_t
ranks_hash(int n, const int *ranks)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = -1; i < n; i++) {
        uint32_t v = (uint32_t)(i < 0 ? n : ranks[i]);
        for (int b = 0; b < 4; b++) {
            h = (h ^ ((v >> (8 * b)) & 0xff)) * 1099511628211ull;
        }
    }
    return (int64_t)h;
}

/* Every world rank gives its list's hash (within the timeout: a rank that never calls
 * new_group cannot hang the others), and a rank whose list differs is named. */
static ty_status
agree_on_ranks(int n, const int *ranks)
{
    int world = 1;
    TY_TRY(ty_dist_size(TY_DIST_WORLD, &world));
    int64_t mine = ranks_hash(n, ranks), *all = malloc(sizeof(int64_t) * (size_t)world);
    TY_CHECK(all, TY_ERR_OOM, "new_group: no memory for %d hashes", world);
    ty_dist_args a = {TY_COLL_ALL_GATHER, TY_DIST_WORLD, &mine, all, 1, TY_INT64, TY_DIST_SUM, 0};
    ty_status s = ty_dist_run(&a);
    if (s != TY_OK) {
        ty_error_prefix("new_group");
    }
    for (int r = 0; s == TY_OK && r < world; r++) {
        if (all[r] != mine) {
            s = ty_set_error(TY_ERR_INVALID_ARG, "new_group: world rank %d asked for a group of "
                             "other ranks (every rank calls new_group with the same list)", r);
        }
    }
    free(all);
    return s;
}

ty_status
ty_dist_new_group(int n, const int *ranks, int *out)
{
    TY_CHECK(out, TY_ERR_INVALID_ARG, "new_group: out is NULL");
    TY_CHECK(n >= 1 && ranks, TY_ERR_INVALID_ARG, "new_group: needs at least one rank");
    TY_TRY(agree_on_ranks(n, ranks));
    pthread_mutex_lock(&st.lock);
    ty_status s = new_group_locked(n, ranks, out);
    pthread_mutex_unlock(&st.lock);
    return s;
}

/* ---- starting a collective ---- */

/* Elements of recv and send for a block of count (0 where the buffer is not used). */
static void
buffer_counts(const ty_dist_args *a, int rank, int size, int64_t *nsend, int64_t *nrecv)
{
    int64_t c = a->count, all = c * size;
    int root = rank == a->root;
    switch (a->coll) {
    case TY_COLL_BARRIER: *nsend = 0; *nrecv = 0; break;
    case TY_COLL_ALL_REDUCE: *nsend = c; *nrecv = c; break;
    case TY_COLL_BROADCAST: *nsend = root ? c : 0; *nrecv = c; break;
    case TY_COLL_ALL_GATHER: *nsend = c; *nrecv = all; break;
    case TY_COLL_REDUCE_SCATTER: *nsend = all; *nrecv = c; break;
    case TY_COLL_REDUCE: *nsend = c; *nrecv = root ? c : 0; break;
    case TY_COLL_GATHER: *nsend = c; *nrecv = root ? all : 0; break;
    case TY_COLL_SCATTER: *nsend = root ? all : 0; *nrecv = c; break;
    case TY_COLL_ALL_TO_ALL: *nsend = all; *nrecv = all; break;
    case TY_COLL_SEND: *nsend = c; *nrecv = 0; break;
    default: *nsend = 0; *nrecv = c; break; /* recv */
    }
}

static ty_status
check_args(const ty_dist_args *a, int rank, int size)
{
    const char *what = ty_dist_coll_name(a->coll);
    TY_CHECK(rank >= 0, TY_ERR_INVALID_ARG, "%s: this rank is not a member of group %d", what,
             a->group);
    TY_CHECK((unsigned)a->dtype < TY_DTYPE_COUNT, TY_ERR_DTYPE, "%s: unknown dtype %d", what,
             (int)a->dtype);
    TY_CHECK((unsigned)a->mode <= TY_DIST_MIN, TY_ERR_INVALID_ARG, "%s: unknown mode %d", what,
             (int)a->mode);
    TY_CHECK(a->count >= 0 && a->count <= INT32_MAX / size, TY_ERR_UNSUPPORTED,
             "%s: %lld elements per rank (0 to %d in a group of %d)", what,
             (long long)a->count, INT32_MAX / size, size);
    int rooted = a->coll == TY_COLL_BROADCAST || a->coll == TY_COLL_REDUCE ||
                 a->coll == TY_COLL_GATHER || a->coll == TY_COLL_SCATTER ||
                 a->coll == TY_COLL_SEND || a->coll == TY_COLL_RECV;
    TY_CHECK(!rooted || (a->root >= 0 && a->root < size), TY_ERR_INDEX,
             "%s: %s %d outside group %d of %d ranks", what,
             a->coll >= TY_COLL_SEND ? "peer" : "root", a->root, a->group, size);
    int64_t nsend, nrecv;
    buffer_counts(a, rank, size, &nsend, &nrecv);
    TY_CHECK((nsend == 0 || a->send) && (nrecv == 0 || a->recv), TY_ERR_INVALID_ARG,
             "%s: a NULL buffer for %lld elements", what, (long long)(nsend ? nsend : nrecv));
    return TY_OK;
}

/* A message to this rank itself: sends wait in the mailbox for their recv. */
static ty_status
self_p2p(ty_dist_work *w)
{
    size_t nbytes = (size_t)w->a.count * ty_dtype_size(w->a.dtype);
    if (w->a.coll == TY_COLL_SEND) {
        self_msg *m = malloc(sizeof *m + nbytes);
        TY_CHECK(m, TY_ERR_OOM, "send: no memory for %zu bytes to itself", nbytes);
        *m = (self_msg){NULL, w->a.group, nbytes};
        if (nbytes > 0) {
            memcpy(m->data, w->a.send, nbytes);
        }
        self_msg **tail = &st.mailbox;
        while (*tail) {
            tail = &(*tail)->next;
        }
        *tail = m;
        return TY_OK;
    }
    self_msg **p = &st.mailbox;
    while (*p && (*p)->group != w->a.group) {
        p = &(*p)->next;
    }
    TY_CHECK(*p, TY_ERR_INVALID_ARG, "recv: rank %d of group %d receives from itself with no "
             "message sent to itself", w->rank, w->a.group);
    self_msg *m = *p;
    TY_CHECK(m->nbytes == nbytes, TY_ERR_SHAPE, "recv: %zu bytes expected, %zu sent to itself",
             nbytes, m->nbytes);
    if (nbytes > 0) {
        memcpy(w->a.recv, m->data, nbytes);
    }
    *p = m->next;
    free(m);
    return TY_OK;
}

/* A group of one: every collective copies send to recv. */
static ty_status
run_local(ty_dist_work *w)
{
    int64_t nsend, nrecv;
    buffer_counts(&w->a, 0, 1, &nsend, &nrecv);
    if (w->a.coll == TY_COLL_SEND || w->a.coll == TY_COLL_RECV) {
        return self_p2p(w);
    }
    if (nrecv > 0 && w->a.send != w->a.recv) {
        memmove(w->a.recv, w->a.send, (size_t)nrecv * ty_dtype_size(w->a.dtype));
    }
    return TY_OK;
}

/* Whether a reduction gathers the blocks and combines them in a fixed tree: deterministic
 * float sums, and what the engine cannot reduce itself. */
static int
needs_rank_order(const ty_dist_args *a)
{
    int reduction = a->coll == TY_COLL_ALL_REDUCE || a->coll == TY_COLL_REDUCE_SCATTER ||
                    a->coll == TY_COLL_REDUCE;
    if (!reduction) {
        return 0;
    }
    if (st.deterministic && a->mode == TY_DIST_SUM && ty_dtype_is_float(a->dtype)) {
        return 1;
    }
    return !st.be->can_reduce(a->dtype, a->mode);
}

static void
free_buffers(ty_dist_work *w)
{
    free(w->staging);
    free(w->mid);
    free(w->padded);
    free(w->acc);
}

static void *
alloc_bytes(int64_t n, size_t es, int *ok)
{
    void *p = malloc((size_t)n * es + 1);
    *ok = *ok && p;
    return p;
}

/* Buffers of a rank-order reduction. An all_reduce splits count into size chunks: rank r
 * combines chunk r of every rank (an all_to_all), then every rank gathers the combined
 * chunks (an all_gather): each element is summed once, in a fixed tree, moving what a ring
 * moves. reduce_scatter is the first phase alone; reduce gathers whole blocks on root. */
static ty_status
alloc_rank_order(ty_dist_work *w)
{
    size_t es = ty_dtype_size(w->a.dtype);
    int64_t n = w->a.count, size = w->size;
    int all_reduce = w->a.coll == TY_COLL_ALL_REDUCE, ok = 1;
    w->chunk = all_reduce ? (n + size - 1) / size : n;
    int64_t padded_n = w->chunk * size;
    w->staging = alloc_bytes(padded_n * (all_reduce ? 2 : 1), es, &ok);
    if (all_reduce) {
        w->mid = alloc_bytes(w->chunk, es, &ok);
        w->padded = padded_n > n ? alloc_bytes(padded_n, es, &ok) : NULL;
    }
    if (ty_dist_acc_dtype(w->a.dtype) != w->a.dtype) {
        w->acc = alloc_bytes(w->chunk * size, sizeof(float), &ok);
    }
    TY_CHECK(ok, TY_ERR_OOM, "%s: no memory for %lld blocks of %lld elements",
             ty_dist_coll_name(w->a.coll), (long long)size, (long long)w->chunk);
    return TY_OK;
}

/* The first phase of a rank-order reduction: its blocks into w->staging. */
static ty_status
start_rank_order(ty_dist_work *w, void *comm)
{
    TY_TRY(alloc_rank_order(w));
    ty_dist_args g = w->a;
    g.recv = w->staging; /* block r of every rank comes to rank r */
    g.coll = w->a.coll == TY_COLL_REDUCE ? TY_COLL_GATHER : TY_COLL_ALL_TO_ALL;
    if (w->a.coll == TY_COLL_ALL_REDUCE) {
        size_t es = ty_dtype_size(w->a.dtype);
        char *in = (char *)w->staging + (size_t)(w->chunk * w->size) * es;
        if (w->a.count > 0) {
            memcpy(in, w->a.send, (size_t)w->a.count * es); /* padded to size whole chunks */
        }
        memset(in + (size_t)w->a.count * es, 0, (size_t)(w->chunk * w->size - w->a.count) * es);
        g.send = in;
        g.count = w->chunk;
    }
    w->ordered = 1;
    w->phase = 1;
    return st.be->start(comm, w->size, &g, &w->req);
}

static void
broken_locked(ty_status s, const char *msg)
{
    if (st.broken == TY_OK) {
        st.broken = s;
        snprintf(st.broken_msg, sizeof st.broken_msg, "%s", msg);
    }
}

static ty_status
start_locked(const ty_dist_args *a, ty_dist_work *w)
{
    group *g = NULL;
    TY_TRY(group_locked(a->group, ty_dist_coll_name(a->coll), &g));
    w->a = *a;
    w->rank = g->rank;
    w->size = g->size;
    TY_TRY(check_args(a, g->rank, g->size));
    TY_CHECK(st.broken == TY_OK, st.broken, "%s: the communicator is broken by an earlier "
             "failure: %s", ty_dist_coll_name(a->coll), st.broken_msg);
    int self_p2p_call = (a->coll == TY_COLL_SEND || a->coll == TY_COLL_RECV) && a->root == g->rank;
    st.stats.started++;
    if (g->size == 1 || self_p2p_call) {
        w->done = 1;
        return run_local(w);
    }
    ty_status s = needs_rank_order(a) ? start_rank_order(w, g->comm)
                                      : st.be->start(g->comm, g->size, a, &w->req);
    if (s != TY_OK) {
        broken_locked(s, ty_last_error());
        return s;
    }
    if (++st.stats.in_flight > st.stats.peak_in_flight) {
        st.stats.peak_in_flight = st.stats.in_flight;
    }
    return TY_OK;
}

ty_status
ty_dist_start(const ty_dist_args *a, ty_dist_work **out)
{
    TY_CHECK(a && out, TY_ERR_INVALID_ARG, "dist start: NULL argument");
    *out = NULL;
    TY_CHECK((unsigned)a->coll < TY_COLL_COUNT, TY_ERR_INVALID_ARG,
             "dist start: unknown collective %d", (int)a->coll);
    ty_dist_work *w = calloc(1, sizeof *w);
    TY_CHECK(w, TY_ERR_OOM, "%s: no memory for a work handle", ty_dist_coll_name(a->coll));
    pthread_mutex_lock(&st.lock);
    ty_status s = start_locked(a, w);
    pthread_mutex_unlock(&st.lock);
    if (s != TY_OK) {
        if (!w->req) {
            free_buffers(w);
            free(w);
        } /* else an engine request may still use them: leak, the communicator is broken */
        return s;
    }
    *out = w;
    return TY_OK;
}

void
ty_dist_get_stats(ty_dist_stats *out)
{
    if (!out) {
        return;
    }
    pthread_mutex_lock(&st.lock);
    *out = st.stats;
    pthread_mutex_unlock(&st.lock);
}

void
ty_dist_reset_peak(void)
{
    pthread_mutex_lock(&st.lock);
    st.stats.peak_in_flight = st.stats.in_flight;
    pthread_mutex_unlock(&st.lock);
}

/* ---- finishing ---- */

/* dst = the blocks of w->staging (one per rank) combined in a pairwise tree over the rank
 * index, ((b0 + b1) + (b2 + b3)) + ..., the same tree on every rank: deterministic mode's
 * batch sums use this tree over the batch index (ops/batch_tree.h), so a power-of-two world
 * sums a batch exactly as one process does. */
static void
combine_blocks(ty_dist_work *w, void *dst)
{
    int64_t n = w->chunk;
    size_t es = ty_dtype_size(w->a.dtype), bytes = (size_t)n * es;
    char *blocks = w->staging;
    if (n == 0) {
        return;
    }
    if (w->acc) { /* float16/bfloat16: through float32, rounded once */
        for (int r = 0; r < w->size; r++) {
            ty_dist_widen(w->acc + (size_t)r * n, blocks + (size_t)r * bytes, n, w->a.dtype);
        }
        ty_dist_combine_tree(w->acc, w->size, n, TY_FLOAT32, w->a.mode);
        ty_dist_narrow(dst, w->acc, n, w->a.dtype);
        return;
    }
    ty_dist_combine_tree(blocks, w->size, n, w->a.dtype, w->a.mode);
    memcpy(dst, blocks, bytes);
}

/* After the first phase: combine; an all_reduce then starts gathering the chunks. */
static ty_status
finish_phase(ty_dist_work *w, int *done)
{
    if (w->a.coll == TY_COLL_REDUCE) {
        if (w->rank == w->a.root) {
            combine_blocks(w, w->a.recv);
        }
        return TY_OK;
    }
    if (w->a.coll == TY_COLL_REDUCE_SCATTER) {
        combine_blocks(w, w->a.recv);
        return TY_OK;
    }
    if (w->phase == 2) { /* all_reduce, gathered */
        if (w->padded) {
            memcpy(w->a.recv, w->padded, (size_t)w->a.count * ty_dtype_size(w->a.dtype));
        }
        return TY_OK;
    }
    combine_blocks(w, w->mid);
    ty_dist_args g = w->a;
    g.coll = TY_COLL_ALL_GATHER;
    g.send = w->mid;
    g.recv = w->padded ? w->padded : w->a.recv;
    g.count = w->chunk;
    w->phase = 2;
    *done = 0;
    TY_TRY(st.be->start(st.groups[w->a.group].comm, w->size, &g, &w->req));
    return TY_OK;
}

static ty_status
test_locked(ty_dist_work *w, int *done)
{
    *done = w->done;
    if (w->done) {
        return TY_OK;
    }
    TY_CHECK(st.broken == TY_OK, st.broken, "%s: the communicator is broken by an earlier "
             "failure: %s", ty_dist_coll_name(w->a.coll), st.broken_msg);
    ty_status s = st.be->test(w->req, done);
    if (s != TY_OK) {
        broken_locked(s, ty_last_error());
        return s;
    }
    if (*done) {
        w->req = NULL;
        if (w->ordered) {
            s = finish_phase(w, done);
            if (s != TY_OK) {
                broken_locked(s, ty_last_error());
                return s;
            }
        }
    }
    if (*done) {
        w->done = 1;
        st.stats.in_flight--;
    }
    return TY_OK;
}

ty_status
ty_dist_test(ty_dist_work *w, int *done)
{
    TY_CHECK(w && done, TY_ERR_INVALID_ARG, "dist test: NULL argument");
    pthread_mutex_lock(&st.lock);
    ty_status s = test_locked(w, done);
    pthread_mutex_unlock(&st.lock);
    return s;
}

static ty_status
timed_out(ty_dist_work *w, double seconds)
{
    const char *what = ty_dist_coll_name(w->a.coll);
    ty_status s;
    if (w->a.coll == TY_COLL_SEND || w->a.coll == TY_COLL_RECV) {
        s = ty_set_error(TY_ERR_TIMEOUT, "%s: timed out after %g s waiting for rank %d of group "
                         "%d (%d ranks)", what, seconds, w->a.root, w->a.group, w->size);
    } else {
        s = ty_set_error(TY_ERR_TIMEOUT, "%s: timed out after %g s waiting for the other ranks "
                         "of group %d (%d ranks; this is rank %d)", what, seconds, w->a.group,
                         w->size, w->rank);
    }
    pthread_mutex_lock(&st.lock);
    broken_locked(s, ty_last_error());
    pthread_mutex_unlock(&st.lock);
    return s;
}

/* Polls: MPI progresses a nonblocking collective only inside its calls, so the wait keeps
 * testing (yielding the core to a rank that shares it); a wait past a second is a straggler,
 * not a transfer, and sleeps a millisecond between tests so it does not hold a core. */
static void
pause_round(int round, double waited)
{
    if (waited > 1.0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    } else if (round >= 64) {
        sched_yield();
    }
}

ty_status
ty_dist_wait(ty_dist_work *w, double timeout_s)
{
    TY_CHECK(w, TY_ERR_INVALID_ARG, "dist wait: NULL work");
    double limit = timeout_s > 0 ? timeout_s : ty_dist_timeout();
    double start = ty_dist_now();
    for (int round = 0;; round++) {
        int done = 0;
        TY_TRY(ty_dist_test(w, &done));
        if (done) {
            return TY_OK;
        }
        double waited = ty_dist_now() - start;
        if (waited > limit) {
            return timed_out(w, limit);
        }
        pause_round(round, waited);
    }
}

void
ty_dist_work_free(ty_dist_work *w)
{
    if (!w) {
        return;
    }
    if (!w->done) {
        /* the engine may still write its buffers: keep them, and no later call may pretend
         * the ranks are in step */
        pthread_mutex_lock(&st.lock);
        broken_locked(TY_ERR_INVALID_ARG, "a collective was abandoned before it finished");
        pthread_mutex_unlock(&st.lock);
        return;
    }
    free_buffers(w);
    free(w);
}

ty_status
ty_dist_run(const ty_dist_args *a)
{
    ty_dist_work *w = NULL;
    TY_TRY(ty_dist_start(a, &w));
    ty_status s = ty_dist_wait(w, 0);
    ty_dist_work_free(w);
    return s;
}

ty_status
ty_dist_barrier(int group_id)
{
    ty_dist_args a = {TY_COLL_BARRIER, group_id, NULL, NULL, 0, TY_UINT8, TY_DIST_SUM, 0};
    return ty_dist_run(&a);
}
