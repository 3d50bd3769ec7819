/* Sessions: a run executes through a plan made for the input shapes of the run and cached
 * per session (a small LRU keyed by the input-shape signature). A plan is the model's ops
 * recorded by the tracer (src/graph) in symbolic mode, through ty_apply, the dispatcher eager
 * code uses: the ops infer their shapes once, and the trace's executor runs the plan with
 * its elementwise fusion groups and one arena placed by its memory plan (memplan.c) -- the
 * same executor and kernels as a traced Python function, so the bits are eager's.
 *
 * A graph the tracer cannot replay (an op whose output shape depends on values) runs op by
 * op instead, allocating each result and releasing dead ones; so does a run profiled op by op
 * (TY_PROFILE_OPS). A run profiled through its plan (TY_PROFILE_PLAN) times the plan's
 * executed nodes, each fused group as one. A shape the graph cannot take fails in the op that
 * refuses it; the error names that op and the inputs whose dimensions vary. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "graph/trace_impl.h"
#include "runtime/tym.h"

enum { PLAN_CACHE = 8, MAX_SESSION_THREADS = 1024 };

/* The plan of one input-shape signature. */
typedef struct plan {
    int64_t *sig;  /* per input: ndim, then its dims (dtypes are fixed by the model) */
    int nsig;
    ty_trace *tr;  /* NULL: this signature runs op by op */
    int *node_op;  /* per node of tr: the model op that recorded it, or -1 */
    int nnode_op;
    uint64_t used; /* the session's tick at its last use: the least recent is evicted */
} plan;

struct ty_session {
    ty_model *m;
    ty_tensor **vals; /* per value: its tensor in this session, or NULL */
    ty_tensor **outs; /* per output: the last run's result, or NULL */
    plan plans[PLAN_CACHE];
    int nplans, last; /* last: the plan of the last run, or -1 */
    uint64_t tick;
    int64_t built, hits;
    int nthreads; /* 0: the library default */
    ty_algo_policy policy;
    int profiling;  /* 0, TY_PROFILE_PLAN or TY_PROFILE_OPS */
    int64_t *op_ns; /* per op: wall time of the last profiled run (-1: not run), or NULL */
    int *op_head;   /* per op: the op whose run computed it (itself, or its fused group's) */
    const int *prof_node_op; /* the profiled plan's node_op, nprof_node_op long */
    int nprof_node_op;
    int prof_group, prof_head; /* the fused group last run, and the op that ran it */
    struct timespec prof_t0;   /* when the node being timed started */
};

/* Plans are recorded by the tracer, which must be registered with the dispatcher: ty_init
 * does it where the training library is linked; the deployment library has no ty_init. */
static pthread_once_t tracer_once = PTHREAD_ONCE_INIT;
static ty_status tracer_status;
static char tracer_error[256];

static void
register_tracer(void)
{
    tracer_status = ty_trace_check_init() == TY_OK ? TY_OK : ty_trace_init();
    if (tracer_status != TY_OK) {
        snprintf(tracer_error, sizeof tracer_error, "%s", ty_last_error());
    }
}

ty_status
ty_session_new(ty_model *model, ty_session **out)
{
    TY_CHECK(model && out, TY_ERR_INVALID_ARG, "session: NULL argument");
    pthread_once(&tracer_once, register_tracer);
    TY_CHECK(tracer_status == TY_OK, tracer_status, "session: %s", tracer_error);
    ty_session *s = calloc(1, sizeof *s);
    ty_tensor **vals = calloc((size_t)model->nvalues + 1, sizeof(ty_tensor *));
    ty_tensor **outs = calloc((size_t)model->noutputs + 1, sizeof(ty_tensor *));
    if (!s || !vals || !outs) {
        free(s);
        free(vals);
        free(outs);
        return ty_set_error(TY_ERR_OOM, "session: out of memory");
    }
    atomic_fetch_add(&model->refs, 1);
    s->m = model;
    s->vals = vals;
    s->outs = outs;
    s->last = -1;
    s->policy = TY_ALGO_HEURISTIC;
    for (int i = 0; i < model->nweights; i++) {
        ty_tensor_retain(model->weights[i]);
        s->vals[model->ninputs + i] = model->weights[i];
    }
    *out = s;
    return TY_OK;
}

/* Drops the tensors of op outputs (a run's intermediates). */
static void
drop_results(ty_session *s)
{
    for (int v = s->m->ninputs + s->m->nweights; v < s->m->nvalues; v++) {
        ty_tensor_release(s->vals[v]);
        s->vals[v] = NULL;
    }
}

static void
drop_outputs(ty_session *s)
{
    for (int i = 0; i < s->m->noutputs; i++) {
        ty_tensor_release(s->outs[i]);
        s->outs[i] = NULL;
    }
}

static void
plan_clear(plan *p)
{
    ty_trace_release(p->tr);
    free(p->sig);
    free(p->node_op);
    memset(p, 0, sizeof *p);
}

void
ty_session_free(ty_session *s)
{
    if (!s) {
        return;
    }
    drop_outputs(s);
    for (int v = 0; v < s->m->nvalues; v++) {
        ty_tensor_release(s->vals[v]);
    }
    for (int i = 0; i < s->nplans; i++) {
        plan_clear(&s->plans[i]);
    }
    free(s->vals);
    free(s->outs);
    free(s->op_ns);
    free(s->op_head);
    ty_model_unref(s->m);
    free(s);
}

static int
find_input(const ty_model *m, const char *name)
{
    for (int i = 0; name && i < m->ninputs; i++) {
        if (strcmp(m->inputs[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static ty_status
check_input_shape(const tym_io *in, ty_dtype dt, int ndim, const int64_t *shape, size_t nbytes)
{
    char a[TY_SHAPE_BUF], b[TY_SHAPE_BUF];
    TY_CHECK(dt == in->dtype, TY_ERR_DTYPE, "session: input '%s' is %s, got %s", in->name,
             ty_dtype_name(in->dtype), ty_dtype_name(dt));
    int ok = ndim == in->ndim && (ndim == 0 || shape);
    for (int d = 0; ok && d < ndim; d++) {
        ok = shape[d] >= 0 && (in->shape[d] < 0 || shape[d] == in->shape[d]);
    }
    int varies = 0;
    for (int d = 0; d < in->ndim; d++) {
        varies |= in->shape[d] < 0;
    }
    TY_CHECK(ok, TY_ERR_SHAPE, "session: input '%s' has shape %s%s, got %s", in->name,
             ty_shape_str(in->ndim, in->shape, a, sizeof a),
             varies ? " (-1: any size)" : " (fixed: dumped for this shape only)",
             shape ? ty_shape_str(ndim, shape, b, sizeof b) : "NULL");
    uint64_t want = ty_dtype_size(dt);
    for (int d = 0; d < ndim; d++) {
        TY_CHECK(!__builtin_mul_overflow(want, (uint64_t)shape[d], &want), TY_ERR_SHAPE,
                 "session: input '%s' is too large", in->name);
    }
    TY_CHECK(want == nbytes, TY_ERR_INVALID_ARG,
             "session: input '%s' of shape %s needs %llu bytes, got %zu", in->name,
             ty_shape_str(ndim, shape, b, sizeof b), (unsigned long long)want, nbytes);
    return TY_OK;
}

static ty_status
bind_input(ty_session *s, const char *name, ty_dtype dt, int ndim, const int64_t *shape,
           const void *data, size_t nbytes, int borrow)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    int i = find_input(s->m, name);
    TY_CHECK(i >= 0, TY_ERR_INVALID_ARG, "session: the model has no input named '%s'",
             name ? name : "(null)");
    TY_TRY(check_input_shape(&s->m->inputs[i], dt, ndim, shape, nbytes));
    TY_CHECK(data || nbytes == 0, TY_ERR_INVALID_ARG, "session: input '%s' has no data", name);
    ty_tensor *t;
    if (borrow) {
        int64_t strides[TY_MAX_DIMS], step = 1;
        TY_CHECK((uintptr_t)data % ty_dtype_size(dt) == 0, TY_ERR_INVALID_ARG,
                 "session: input '%s': a borrowed buffer must be aligned to %zu bytes", name,
                 ty_dtype_size(dt));
        for (int d = ndim - 1; d >= 0; d--) {
            strides[d] = step;
            step *= shape[d] > 0 ? shape[d] : 1;
        }
        TY_TRY(ty_tensor_wrap(dt, ndim, shape, strides, (void *)data, nbytes, ty_noop_deleter,
                              NULL, &t));
    } else {
        TY_TRY(ty_tensor_from_data(dt, ndim, shape, data, nbytes, &t));
    }
    ty_tensor_release(s->vals[i]);
    s->vals[i] = t;
    return TY_OK;
}

ty_status
ty_session_set_input(ty_session *s, const char *name, ty_dtype dt, int ndim,
                     const int64_t *shape, const void *data, size_t nbytes)
{
    return bind_input(s, name, dt, ndim, shape, data, nbytes, 0);
}

ty_status
ty_session_set_input_borrowed(ty_session *s, const char *name, ty_dtype dt, int ndim,
                              const int64_t *shape, void *data, size_t nbytes)
{
    return bind_input(s, name, dt, ndim, shape, data, nbytes, 1);
}

/* After a failed op: the shapes of the inputs whose dimensions may vary (a shape the graph
 * cannot take is the usual cause). */
static ty_status
explain_failure(const ty_session *s, int op_index, ty_status st)
{
    char why[1024], shapes[512] = "", a[TY_SHAPE_BUF], b[TY_SHAPE_BUF];
    size_t used = 0;
    snprintf(why, sizeof why, "%s", ty_last_error());
    for (int i = 0; i < s->m->ninputs && used < sizeof shapes - 1; i++) {
        const tym_io *in = &s->m->inputs[i];
        const ty_tensor *t = s->vals[i];
        int varies = 0;
        for (int d = 0; d < in->ndim; d++) {
            varies |= in->shape[d] < 0;
        }
        if (varies) {
            int n = snprintf(shapes + used, sizeof shapes - used,
                             "; input '%s' has shape %s (the model takes %s)",
                             in->name, ty_shape_str(t->ndim, t->shape, a, sizeof a),
                             ty_shape_str(in->ndim, in->shape, b, sizeof b));
            used += n > 0 ? (size_t)n : 0;
        }
    }
    const tym_op *o = &s->m->ops[op_index];
    return ty_set_error(st, "model op %d (%s%s%s): %s%s", op_index, ty_op_name(o->op),
                        o->name[0] ? " " : "", o->name, why, shapes);
}

static ty_status
run_op(ty_session *s, int i)
{
    const tym_op *o = &s->m->ops[i];
    ty_tensor *small[16] = {0};
    ty_tensor **in = o->nin <= 16 ? small : malloc(sizeof(ty_tensor *) * (size_t)o->nin);
    TY_CHECK(in, TY_ERR_OOM, "session: out of memory");
    for (int k = 0; k < o->nin; k++) {
        in[k] = s->vals[o->in[k]];
    }
    /* the algorithm the model recorded, else the session's policy chooses */
    ty_fastrun_scope saved = ty_fastrun_scope_begin(o->algo1 - 1);
    ty_status st = ty_apply(o->op, o->params, o->nin, in, o->nout, s->vals + o->first_out);
    ty_fastrun_scope_end(saved);
    if (in != small) {
        free(in);
    }
    return st;
}

/* Releases the values op i read for the last time (intermediates only). */
static void
release_dead(ty_session *s, int i)
{
    const tym_op *o = &s->m->ops[i];
    int first_node_value = s->m->ninputs + s->m->nweights;
    for (int k = 0; k < o->nin; k++) {
        int v = o->in[k];
        if (v >= first_node_value && s->m->last_use[v] == i) {
            ty_tensor_release(s->vals[v]);
            s->vals[v] = NULL;
        }
    }
    for (int k = 0; k < o->nout; k++) { /* outputs nobody reads */
        int v = o->first_out + k;
        if (s->m->last_use[v] < 0) {
            ty_tensor_release(s->vals[v]);
            s->vals[v] = NULL;
        }
    }
}

static int64_t
ns_between(const struct timespec *t0, const struct timespec *t1)
{
    return (int64_t)(t1->tv_sec - t0->tv_sec) * 1000000000 + (t1->tv_nsec - t0->tv_nsec);
}

/* Runs every op in order (timing each when profiling); on failure names the op. */
static ty_status
run_ops(ty_session *s)
{
    for (int i = 0; i < s->m->nops; i++) {
        struct timespec t0, t1;
        if (s->op_ns) {
            clock_gettime(CLOCK_MONOTONIC, &t0);
        }
        ty_status st = run_op(s, i);
        if (s->op_ns) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            s->op_ns[i] = ns_between(&t0, &t1);
            s->op_head[i] = i;
        }
        if (st != TY_OK) {
            return explain_failure(s, i, st);
        }
        release_dead(s, i);
    }
    return TY_OK;
}

/* Keeps the outputs of the ops just run, and drops the rest. */
static void
take_outputs(ty_session *s)
{
    for (int i = 0; i < s->m->noutputs; i++) {
        s->outs[i] = s->vals[s->m->outputs[i].vid];
        ty_tensor_retain(s->outs[i]);
    }
    drop_results(s);
}

/* Op by op: each result allocated, dead ones released. */
static ty_status
run_eager(ty_session *s)
{
    ty_status st = run_ops(s);
    if (st == TY_OK) {
        take_outputs(s);
    }
    drop_results(s);
    return st;
}

/* ---- plans ---- */

static int
sig_len(const ty_session *s)
{
    int n = 0;
    for (int i = 0; i < s->m->ninputs; i++) {
        n += 1 + s->vals[i]->ndim;
    }
    return n;
}

static void
sig_fill(const ty_session *s, int64_t *sig)
{
    for (int i = 0, k = 0; i < s->m->ninputs; i++) {
        sig[k++] = s->vals[i]->ndim;
        for (int d = 0; d < s->vals[i]->ndim; d++) {
            sig[k++] = s->vals[i]->shape[d];
        }
    }
}

static int
find_plan(const ty_session *s, const int64_t *sig, int n)
{
    for (int i = 0; i < s->nplans; i++) {
        if (s->plans[i].nsig == n && memcmp(s->plans[i].sig, sig, sizeof(int64_t) * (size_t)n) == 0) {
            return i;
        }
    }
    return -1;
}

/* A slot for a new plan: a free one, or the least recently used one, cleared. */
static int
plan_slot(ty_session *s)
{
    if (s->nplans < PLAN_CACHE) {
        return s->nplans++;
    }
    int lru = 0;
    for (int i = 1; i < s->nplans; i++) {
        lru = s->plans[i].used < s->plans[lru].used ? i : lru;
    }
    plan_clear(&s->plans[lru]);
    return lru;
}

/* Notes that model op `op` recorded the plan's nodes [first, end). */
static ty_status
note_node_ops(plan *p, int first, int end, int op)
{
    if (end > p->nnode_op) {
        int *grown = realloc(p->node_op, sizeof(int) * (size_t)end);
        TY_CHECK(grown, TY_ERR_OOM, "session: out of memory");
        for (int ni = p->nnode_op; ni < end; ni++) {
            grown[ni] = -1;
        }
        p->node_op = grown;
        p->nnode_op = end;
    }
    for (int ni = first; ni < end; ni++) {
        p->node_op[ni] = op;
    }
    return TY_OK;
}

/* ---- profiling through the plan: the executor's hook times each executed node ---- */

static void
profile_before(void *ud, ty_trace *tr, int node)
{
    (void)tr;
    (void)node;
    clock_gettime(CLOCK_MONOTONIC, &((ty_session *)ud)->prof_t0);
}

/* The node's time goes to its model op; a fused group's to the op whose node ran it (the
 * group's later members run with it: their calls come right after, with nothing run). */
static ty_status
profile_after(void *ud, ty_trace *tr, int node)
{
    ty_session *s = ud;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int op = node < s->nprof_node_op ? s->prof_node_op[node] : -1;
    if (op < 0) {
        return TY_OK;
    }
    int g = tr->n[node].group, head = op;
    if (g >= 0 && tr->gon[g]) {
        if (g != s->prof_group) {
            s->prof_group = g;
            s->prof_head = op;
        }
        head = s->prof_head;
    }
    s->op_ns[op] = s->op_ns[op] < 0 ? 0 : s->op_ns[op];
    s->op_ns[head] = (s->op_ns[head] < 0 ? 0 : s->op_ns[head]) + ns_between(&s->prof_t0, &t1);
    s->op_head[op] = head;
    return TY_OK;
}

static void
profile_start(ty_session *s, const plan *p, ty_trace *tr)
{
    s->prof_node_op = p->node_op;
    s->nprof_node_op = p->nnode_op;
    s->prof_group = s->prof_head = -1;
    tr->exec_hook = (ty_trace_exec_hook){.before = profile_before, .after = profile_after, .ud = s};
}

/* Records the ops on the inputs (the tracer's symbolic mode: shapes inferred, nothing
 * computed) into p; ending the recording runs it once, which plans the arena. An op that
 * refuses the shapes fails here, named. p->tr stays NULL when the tracer cannot take the
 * graph (an op whose output shape depends on values): the run then goes op by op. */
static ty_status
record_plan(ty_session *s, plan *p)
{
    ty_trace *tr = NULL;
    if (ty_trace_begin_record_symbolic(s->m->ninputs, s->vals, &tr) != TY_OK) {
        return TY_OK;
    }
    ty_status st = TY_OK;
    int i = 0;
    for (; st == TY_OK && i < s->m->nops; i++) {
        int first = tr->nn;
        st = run_op(s, i);
        if (st == TY_OK) {
            release_dead(s, i);
            st = note_node_ops(p, first, tr->nn, i);
        }
    }
    if (st != TY_OK) {
        ty_trace_abort(tr);
        ty_trace_release(tr);
        st = st == TY_ERR_TRACE ? TY_OK : explain_failure(s, i - 1, st);
        drop_results(s);
        return st;
    }
    ty_tensor *small[16] = {0};
    int nout = s->m->noutputs;
    ty_tensor **outs = nout <= 16 ? small : malloc(sizeof(ty_tensor *) * (size_t)nout);
    st = outs ? TY_OK : TY_ERR_OOM;
    for (int k = 0; outs && k < nout; k++) {
        outs[k] = s->vals[s->m->outputs[k].vid];
    }
    if (st == TY_OK && s->profiling == TY_PROFILE_PLAN) { /* the recording's run is timed too */
        profile_start(s, p, tr);
    }
    st = st == TY_OK ? ty_trace_end_record(tr, nout, outs) : st;
    tr->exec_hook = (ty_trace_exec_hook){0};
    if (outs != small) {
        free(outs);
    }
    if (st == TY_OK) {
        take_outputs(s); /* the recording's run computed them */
        p->tr = tr;
    } else {
        drop_results(s);
        ty_trace_release(tr);
    }
    return TY_OK;
}

static ty_status
run_plan(ty_session *s, plan *p)
{
    if (!p->tr) {
        return run_eager(s);
    }
    if (s->profiling == TY_PROFILE_PLAN) {
        profile_start(s, p, p->tr);
    }
    ty_status st = ty_trace_run(p->tr, s->m->ninputs, s->vals, s->m->noutputs, s->outs);
    p->tr->exec_hook = (ty_trace_exec_hook){0};
    if (st != TY_OK) {
        drop_outputs(s);
        return ty_set_error(st, "session: running the plan: %s", ty_last_error());
    }
    return TY_OK;
}

/* Runs through the plan of the inputs' shapes, making it on the first run of a shape. */
static ty_status
run_planned(ty_session *s)
{
    int n = sig_len(s);
    int64_t small[64];
    int64_t *sig = n <= 64 ? small : malloc(sizeof(int64_t) * (size_t)n);
    TY_CHECK(sig, TY_ERR_OOM, "session: out of memory");
    sig_fill(s, sig);
    int k = find_plan(s, sig, n);
    if (k >= 0) {
        if (sig != small) {
            free(sig);
        }
        s->hits++;
        s->plans[k].used = ++s->tick;
        s->last = k;
        return run_plan(s, &s->plans[k]);
    }
    int64_t *kept = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (kept) {
        memcpy(kept, sig, sizeof(int64_t) * (size_t)n);
    }
    if (sig != small) {
        free(sig);
    }
    TY_CHECK(kept, TY_ERR_OOM, "session: out of memory");
    plan made = {.sig = kept, .nsig = n};
    ty_status st = record_plan(s, &made);
    if (st == TY_OK && !made.tr) { /* op by op: no nodes to time */
        free(made.node_op);
        made.node_op = NULL;
        made.nnode_op = 0;
        st = run_eager(s);
    }
    if (st != TY_OK) { /* a shape the graph cannot take: nothing to keep */
        plan_clear(&made);
        return st;
    }
    k = plan_slot(s);
    made.used = ++s->tick;
    s->plans[k] = made;
    s->built++;
    s->last = k;
    return TY_OK;
}

ty_status
ty_session_run(ty_session *s)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    for (int i = 0; i < s->m->ninputs; i++) {
        TY_CHECK(s->vals[i], TY_ERR_INVALID_ARG, "session: input '%s' is not set",
                 s->m->inputs[i].name);
    }
    drop_outputs(s);
    drop_results(s);
    s->last = -1;
    int threads = ty_thread_override_swap(s->nthreads);
    ty_algo_policy policy = ty_algo_policy_swap(s->policy);
    for (int i = 0; s->op_ns && i < s->m->nops; i++) {
        s->op_ns[i] = -1;
        s->op_head[i] = -1;
    }
    ty_status st = s->profiling == TY_PROFILE_OPS ? run_eager(s) : run_planned(s);
    ty_algo_policy_swap(policy);
    ty_thread_override_swap(threads);
    return st;
}

ty_status
ty_session_output(ty_session *s, int i, const ty_tensor **out)
{
    TY_CHECK(s && out, TY_ERR_INVALID_ARG, "session: NULL argument");
    TY_CHECK(i >= 0 && i < s->m->noutputs, TY_ERR_INDEX,
             "session: output %d does not exist (the model has %d)", i, s->m->noutputs);
    const ty_tensor *t = s->outs[i];
    TY_CHECK(t, TY_ERR_INVALID_ARG, "session: output '%s' has not been computed (run first)",
             s->m->outputs[i].name);
    *out = t;
    return TY_OK;
}

ty_status
ty_session_set_threads(ty_session *s, int nthreads)
{
    TY_CHECK(s && nthreads >= 0 && nthreads <= MAX_SESSION_THREADS, TY_ERR_INVALID_ARG,
             "session: invalid thread count %d (expected 0 for the library default, or 1 to "
             "%d)", nthreads, MAX_SESSION_THREADS);
    s->nthreads = nthreads;
    return TY_OK;
}

int
ty_session_threads(const ty_session *s)
{
    return s && s->nthreads > 0 ? s->nthreads : ty_get_num_threads();
}

ty_status
ty_session_set_algo_policy(ty_session *s, ty_algo_policy policy)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    TY_CHECK(ty_algo_policy_valid((int)policy), TY_ERR_INVALID_ARG,
             "session: unknown algorithm policy %d (expected HEURISTIC 1, PROFILE 2, "
             "REPRODUCIBLE 4 or PROFILE_REPRODUCIBLE 6)", (int)policy);
    s->policy = policy;
    return TY_OK;
}

ty_algo_policy
ty_session_algo_policy(const ty_session *s)
{
    return s ? s->policy : TY_ALGO_HEURISTIC;
}

int64_t
ty_session_arena_bytes(const ty_session *s)
{
    return s && s->last >= 0 && s->plans[s->last].tr ? ty_trace_arena_bytes(s->plans[s->last].tr)
                                                      : 0;
}

ty_status
ty_session_get_stats(const ty_session *s, ty_session_stats *out)
{
    TY_CHECK(s && out, TY_ERR_INVALID_ARG, "session: NULL argument");
    memset(out, 0, sizeof *out);
    out->plans_built = s->built;
    out->plan_hits = s->hits;
    out->cached_plans = s->nplans;
    out->arena_bytes = ty_session_arena_bytes(s);
    const plan *p = s->last >= 0 ? &s->plans[s->last] : NULL;
    out->planned = p && p->tr;
    ty_trace_stats ts;
    if (out->planned && ty_trace_get_stats(p->tr, &ts) == TY_OK) {
        out->fused_groups = ts.fused_groups;
        out->fused_ops = ts.fused_nodes;
    }
    return TY_OK;
}

ty_status
ty_session_set_profiling(ty_session *s, int mode)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    TY_CHECK(mode == 0 || mode == TY_PROFILE_PLAN || mode == TY_PROFILE_OPS, TY_ERR_INVALID_ARG,
             "session: profiling mode %d is not 0, TY_PROFILE_PLAN (1) or TY_PROFILE_OPS (2)",
             mode);
    free(s->op_ns);
    free(s->op_head);
    s->op_ns = NULL;
    s->op_head = NULL;
    s->profiling = 0;
    if (mode) {
        size_t n = (size_t)(s->m->nops ? s->m->nops : 1);
        s->op_ns = malloc(sizeof(int64_t) * n);
        s->op_head = malloc(sizeof(int) * n);
        if (!s->op_ns || !s->op_head) {
            free(s->op_ns);
            free(s->op_head);
            s->op_ns = NULL;
            s->op_head = NULL;
            return ty_set_error(TY_ERR_OOM, "session: out of memory");
        }
        for (int i = 0; i < s->m->nops; i++) {
            s->op_ns[i] = -1;
            s->op_head[i] = -1;
        }
        s->profiling = mode;
    }
    return TY_OK;
}

int64_t
ty_session_op_time_ns(const ty_session *s, int i)
{
    return s && s->op_ns && i >= 0 && i < s->m->nops ? s->op_ns[i] : -1;
}

int
ty_session_op_fused_into(const ty_session *s, int i)
{
    return s && s->op_head && i >= 0 && i < s->m->nops ? s->op_head[i] : -1;
}
