/* Recording: the dispatcher hook and the backward hooks that record a traced call's op
 * applications into values and nodes, and the end of a recording (roots, the first run of a
 * symbolic recording, compiling). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/ptrmap.h"
#include "graph/trace_impl.h"
#include "ops/fastrun.h"
#include "ops/op.h"

/* ---- growable arrays ---- */
static ty_status
grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) {
        return TY_OK;
    }
    int cap2 = *cap ? *cap * 2 : 16;
    while (cap2 < need) {
        cap2 *= 2;
    }
    void *q = realloc(*p, (size_t)cap2 * elem);
    TY_CHECK(q, TY_ERR_OOM, "trace: out of memory");
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(cap2 - *cap) * elem);
    *p = q;
    *cap = cap2;
    return TY_OK;
}

static ty_status
keep(ty_trace *tr, ty_tensor *t)
{
    TY_TRY(grow((void **)&tr->kept, &tr->cap_kept, tr->nkept + 1, sizeof(ty_tensor *)));
    ty_tensor_retain(t);
    tr->kept[tr->nkept++] = t;
    tr->kept_bytes += t->storage->nbytes;
    return TY_OK;
}

static ty_status
new_value(ty_trace *tr, enum vkind kind, const ty_tensor *t, int *vid)
{
    TY_TRY(grow((void **)&tr->v, &tr->cap_v, tr->nv + 1, sizeof(gvalue)));
    gvalue *v = &tr->v[tr->nv];
    memset(v, 0, sizeof *v);
    v->kind = kind;
    ty_meta_of(t, &v->meta);
    *vid = tr->nv++;
    return TY_OK;
}

/* ---- recording ---- */
static void
set_untraceable(ty_trace *tr, const char *why, const char *op)
{
    if (!tr->why[0]) {
        snprintf(tr->why, sizeof tr->why, "%s: %s", op, why);
    }
}

/* A recorded tensor with t's storage and layout: the autodiff tape hands grad rules views
 * of the tensors it saved, which are new handles of recorded values. */
static int
same_layout_value(ty_trace *tr, const ty_tensor *t, int *vid)
{
    for (int i = tr->nkept - 1; i >= 0; i--) {
        const ty_tensor *k = tr->kept[i];
        if (k->storage == t->storage && k->dtype == t->dtype && k->ndim == t->ndim &&
            k->offset == t->offset &&
            memcmp(k->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) == 0 &&
            memcmp(k->strides, t->strides, sizeof(int64_t) * (size_t)t->ndim) == 0) {
            return ty_ptrmap_get(&tr->map, k, vid);
        }
    }
    return 0;
}

/* The value id of an input tensor, registering tensors seen for the first time. */
static ty_status
input_value(ty_trace *tr, ty_tensor *t, int *vid)
{
    if (ty_ptrmap_get(&tr->map, t, vid)) {
        return TY_OK;
    }
    if (same_layout_value(tr, t, vid)) {
        TY_TRY(keep(tr, t));
        return ty_ptrmap_put(&tr->map, t, *vid);
    }
    TY_CHECK(!t->storage->deferred, TY_ERR_TRACE,
             "trace: an input has no data (it comes from a traced call that failed, or from "
             "another trace)");
    int literal = tr->in_backward || ty_trace_is_literal(t);
    TY_TRY(new_value(tr, literal ? V_CONST : V_EXTERNAL, t, vid));
    ty_tensor_retain(t); /* constants' values; externals for replays without the host */
    tr->v[*vid].ref = t;
    TY_TRY(keep(tr, t));
    return ty_ptrmap_put(&tr->map, t, *vid);
}

static ty_status
record_node(ty_trace *tr, const ty_call *c, ty_tensor *const *out)
{
    const ty_op_def *def = &ty_op_defs[c->op];
    if (c->nin > 0) {
        tr->device = c->in[0]->storage->device; /* the dispatcher keeps a call on one device */
    }
    if (def->flags & TY_F_DYN) {
        set_untraceable(tr, "its output shape depends on input values", def->name);
    }
    TY_TRY(grow((void **)&tr->n, &tr->cap_n, tr->nn + 1, sizeof(gnode)));
    gnode *n = &tr->n[tr->nn];
    memset(n, 0, sizeof *n);
    n->op = c->op;
    n->group = -1;
    /* the choice of the call that just ran (eager recording); a symbolic node, not run yet,
     * keeps the one its caller forces (a model's op), else takes its own when first run */
    int last = ty_fastrun_take_last();
    int ran = c->nout > 0 && out[0] && !out[0]->storage->deferred;
    int chosen = ran ? last : ty_fastrun_forced();
    n->algo1 = chosen >= 0 && ty_fastrun_algo_count(c->op) > 0 ? chosen + 1 : 0;
    n->nin = c->nin;
    n->nout = c->nout;
    n->params = malloc(def->params->size);
    n->in = malloc(sizeof(int) * (size_t)(c->nin ? c->nin : 1));
    n->out = malloc(sizeof(int) * (size_t)c->nout);
    TY_CHECK(n->params && n->in && n->out, TY_ERR_OOM, "trace: out of memory");
    memcpy(n->params, c->params, def->params->size);
    int idx = tr->nn++;
    for (int i = 0; i < c->nin; i++) {
        TY_TRY(input_value(tr, c->in[i], &tr->n[idx].in[i]));
    }
    n = &tr->n[idx];
    if (def->flags & TY_F_VIEW) {
        n->alias = c->nin > 0 && ty_tensor_same_storage(out[0], c->in[0]);
        n->materialize = !n->alias;
    }
    for (int i = 0; i < c->nout; i++) {
        int vid;
        TY_TRY(new_value(tr, V_NODE, out[i], &vid));
        tr->v[vid].index = idx;
        tr->v[vid].out_index = i;
        tr->n[idx].out[i] = vid;
        TY_TRY(keep(tr, out[i]));
        TY_TRY(ty_ptrmap_put(&tr->map, out[i], vid));
    }
    if (!tr->in_backward) {
        TY_TRY(grow((void **)&tr->ev, &tr->cap_ev, tr->nev + 1, sizeof(gevent)));
        tr->ev[tr->nev++] = (gevent){0, idx};
    }
    return TY_OK;
}

/* What reading a value that the recording freed says (nothing can: see drop_unheld). */
static const ty_deferral dropped = {
    TY_ERR_TRACE, "trace: this value's data was freed while recording (nothing held it)", NULL};

/* Whether storage s may be dropped: ordinary data, computed, not a model's constant. */
static int
droppable(const ty_storage *s)
{
    return s->data && !s->deferred && !s->deleter && !s->constant;
}

/* Whether kept tensor t holds its storage alone among everything outside the recording. */
static int
only_we_hold(const ty_tensor *t)
{
    return atomic_load_explicit(&t->refcnt, memory_order_acquire) == 1 && droppable(t->storage);
}

/* Counts, per storage, the kept tensors in kept[ndropped, nkept) that only the recording holds;
 * returns how many there were (0: nothing to drop, the usual case in a forward pass). */
static int
count_unheld(ty_trace *tr, ty_ptrmap *unheld, int *ok)
{
    int found = 0;
    for (int i = tr->ndropped; i < tr->nkept && *ok; i++) {
        const ty_tensor *t = tr->kept[i];
        int n = 0;
        if (only_we_hold(t)) {
            (void)ty_ptrmap_get(unheld, t->storage, &n);
            *ok = ty_ptrmap_put(unheld, t->storage, n + 1) == TY_OK;
            found++;
        }
    }
    return found;
}

/* Frees the storages every reference to which is a kept tensor only we hold, and moves their
 * tensors to the front of kept, in order, so a sweep reads only those still holding data. */
static void
drop_counted(ty_trace *tr, const ty_ptrmap *unheld, ty_tensor **rest)
{
    int nrest = 0;
    for (int i = tr->ndropped; i < tr->nkept; i++) {
        ty_tensor *t = tr->kept[i];
        ty_storage *s = t->storage;
        int n = 0;
        if (only_we_hold(t) && ty_ptrmap_get(unheld, s, &n) &&
            atomic_load_explicit(&s->refcnt, memory_order_acquire) == n) {
            ty_storage_drop_data(s, &dropped);
        }
        if (s->deferred == &dropped) {
            tr->kept[tr->ndropped++] = t; /* at or before i: already read */
        } else {
            rest[nrest++] = t;
        }
    }
    memcpy(tr->kept + tr->ndropped, rest, sizeof(ty_tensor *) * (size_t)nrest);
}

/* Frees the data of recorded values that only the recording holds: every reference to their
 * storage is a kept tensor that nothing else references (views share a storage). Nothing can
 * read them again; eager code would have freed them when their last holder let go. The
 * tensors stay, since their addresses key the map, and so do the storages, so no later tensor
 * can share one (same_layout_value). Without this the recording held every value it made:
 * CIFAR ResNet-18 training at batch 32 peaked at 898 MB resident while recording, now 483
 * (eager 428). A computing recording only: a symbolic one's tensors have no data. Memory
 * short for the sweep: nothing is dropped (only memory is at stake). */
static void
drop_unheld(ty_trace *tr)
{
    ty_ptrmap unheld = {0}; /* storage -> kept tensors referencing it that only we hold */
    int ok = 1;
    if (count_unheld(tr, &unheld, &ok) && ok) {
        ty_tensor **rest = malloc(sizeof(ty_tensor *) * (size_t)(tr->nkept - tr->ndropped));
        if (rest) {
            drop_counted(tr, &unheld, rest);
        }
        free(rest);
    }
    if (!ok) {
        ty_clear_error();
    }
    ty_ptrmap_free(&unheld);
    /* A sweep reads every tensor still holding data, and in a forward pass most are held (the
     * backward needs them): sweeping after every node made recording quadratic (a 400-layer
     * MLP of width 16: 25 -> 105 ms). The next sweep waits for a quarter as many new tensors
     * as stayed, which bounds the reads to five per tensor, or for 1 MiB of new data, which
     * bounds what waits unfreed (sweeping by count alone: 775 MB for the ResNet above). */
    int stayed = tr->nkept - tr->ndropped;
    tr->sweep_at = tr->nkept + (stayed / 4 > 16 ? stayed / 4 : 16);
    tr->kept_bytes = 0;
}

ty_status
ty_trace_record_call(ty_trace *tr, const ty_call *c, ty_tensor *const *out)
{
    TY_TRY(record_node(tr, c, out));
    if (!tr->symbolic && (tr->nkept >= tr->sweep_at || tr->kept_bytes >= ((size_t)1 << 20))) {
        drop_unheld(tr);
    }
    return TY_OK;
}

static ty_status
record_bw_begin(ty_trace *tr, int ny, ty_tensor *const *ys, int nx, ty_tensor *const *xs)
{
    TY_TRY(grow((void **)&tr->bw, &tr->cap_bw, tr->nbw + 1, sizeof(gbackward)));
    gbackward *b = &tr->bw[tr->nbw];
    memset(b, 0, sizeof *b);
    b->ny = ny;
    b->nx = nx;
    b->ys = malloc(sizeof(int) * (size_t)ny);
    b->xs = malloc(sizeof(int) * (size_t)(nx ? nx : 1));
    b->grads = malloc(sizeof(int) * (size_t)(nx ? nx : 1));
    TY_CHECK(b->ys && b->xs && b->grads, TY_ERR_OOM, "trace: out of memory");
    int idx = tr->nbw++;
    for (int i = 0; i < ny; i++) {
        TY_TRY(input_value(tr, ys[i], &tr->bw[idx].ys[i]));
    }
    for (int j = 0; j < nx; j++) {
        TY_TRY(input_value(tr, xs[j], &tr->bw[idx].xs[j]));
    }
    tr->bw[idx].start = tr->nn;
    tr->in_backward = 1;
    return TY_OK;
}

static ty_status
record_bw_end(ty_trace *tr, int nx, ty_tensor *const *grads)
{
    gbackward *b = &tr->bw[tr->nbw - 1];
    for (int j = 0; j < nx; j++) {
        b->grads[j] = -1;
        if (grads[j]) {
            TY_TRY(input_value(tr, grads[j], &b->grads[j]));
        }
    }
    tr->in_backward = 0;
    b->end = tr->nn;
    TY_TRY(grow((void **)&tr->ev, &tr->cap_ev, tr->nev + 1, sizeof(gevent)));
    tr->ev[tr->nev++] = (gevent){1, tr->nbw - 1};
    return TY_OK;
}

static const ty_trace_bw_fns record_bw_fns = {NULL, record_bw_begin, record_bw_end};

ty_status
ty_trace_begin_record(int nargs, ty_tensor *const *args, ty_trace **out)
{
    TY_CHECK(out && (nargs == 0 || args), TY_ERR_INVALID_ARG, "trace: NULL argument");
    TY_TRY(ty_trace_check_init());
    TY_CHECK(!ty_trace_current(), TY_ERR_TRACE,
             "trace: a traced function cannot call another traced function while it is being "
             "recorded or replayed");
    ty_trace *tr = calloc(1, sizeof *tr);
    TY_CHECK(tr, TY_ERR_OOM, "trace: out of memory");
    tr->nargs = nargs;
    tr->arg_vid = malloc(sizeof(int) * (size_t)(nargs ? nargs : 1));
    ty_status st = tr->arg_vid ? TY_OK : ty_set_error(TY_ERR_OOM, "trace: out of memory");
    for (int i = 0; st == TY_OK && i < nargs; i++) {
        int vid = -1;
        if (ty_ptrmap_get(&tr->map, args[i], &vid)) {
            st = ty_set_error(TY_ERR_TRACE, "trace: argument %d is passed twice", i);
            break;
        }
        st = new_value(tr, V_ARG, args[i], &vid);
        if (st == TY_OK) {
            tr->v[vid].index = i;
            tr->arg_vid[i] = vid;
            st = keep(tr, args[i]);
        }
        if (st == TY_OK) {
            st = ty_ptrmap_put(&tr->map, args[i], vid);
        }
    }
    if (st != TY_OK) {
        ty_trace_release(tr);
        return st;
    }
    tr->mode = MODE_RECORD;
    ty_trace_attach(tr, &record_bw_fns);
    *out = tr;
    return TY_OK;
}

/* Symbolic recording: ops make views or pending tensors instead of computing; the hooks
 * (tape, recorder) run as usual, so the program is recorded and end_record computes it. */
static ty_status
record_lazy(void *ud, const ty_call *c, ty_tensor **out)
{
    (void)ud;
    return ty_trace_paused() ? ty_run_call(c, out) : ty_run_call_lazy(c, &ty_trace_pending, out);
}

ty_status
ty_trace_begin_record_symbolic(int nargs, ty_tensor *const *args, ty_trace **out)
{
    TY_TRY(ty_trace_begin_record(nargs, args, out));
    (*out)->symbolic = 1;
    ty_set_intercept(record_lazy, *out);
    return TY_OK;
}

/* Views share their base's memory, and a CSE'd node's outputs are views of the node it
 * duplicates: each value's root is the value that owns its memory. */
void
ty_trace_roots(ty_trace *tr)
{
    for (int i = 0; i < tr->nv; i++) {
        tr->root[i] = i;
    }
    for (int ni = 0; ni < tr->nn; ni++) { /* nodes are in order: inputs' roots are known */
        const gnode *n = &tr->n[ni];
        for (int i = 0; i < n->nout && (n->alias || n->state == NS_CSE); i++) {
            int src = n->state == NS_CSE ? tr->n[n->canon].out[i] : n->in[0];
            tr->root[n->out[i]] = tr->root[src];
        }
    }
}

static ty_status
compute_roots(ty_trace *tr)
{
    tr->root = malloc(sizeof(int) * (size_t)(tr->nv ? tr->nv : 1));
    TY_CHECK(tr->root, TY_ERR_OOM, "trace: out of memory");
    ty_trace_roots(tr);
    return TY_OK;
}

/* Symbolic recording: every value's tensor as recorded (the pending ones are what the caller,
 * the tape and Python objects hold), so the first execution fills exactly those. */
static ty_status
bind_recorded(ty_trace *tr)
{
    tr->bound = calloc((size_t)(tr->nv ? tr->nv : 1), sizeof(ty_tensor *));
    TY_CHECK(tr->bound, TY_ERR_OOM, "trace: out of memory");
    for (int i = 0; i < tr->nkept; i++) {
        int vid;
        if (ty_ptrmap_get(&tr->map, tr->kept[i], &vid) && !tr->bound[vid] &&
            tr->v[vid].kind != V_CONST) {
            ty_tensor_retain(tr->kept[i]);
            tr->bound[vid] = tr->kept[i];
        }
    }
    return TY_OK;
}

/* Computes a symbolic recording once, on the recorded tensors. Folding and CSE would leave
 * recorded tensors without data (their nodes do not run), so only DCE and fusion apply. */
static ty_status
first_run(ty_trace *tr)
{
    if (tr->why[0]) {
        return ty_set_error(TY_ERR_TRACE, "trace: %s", tr->why);
    }
    TY_TRY(ty_trace_compile(tr, TY_PASS_DCE | TY_PASS_FUSE));
    TY_TRY(ty_trace_execute(tr, NULL));
    for (int i = 0; i < tr->nv; i++) {
        if (tr->bound[i]) {
            tr->bound[i]->storage->deferred = NULL;
        }
    }
    return TY_OK;
}

ty_status
ty_trace_end_record(ty_trace *tr, int nout, ty_tensor *const *outs)
{
    TY_CHECK(tr && tr->mode == MODE_RECORD && (nout == 0 || outs), TY_ERR_INVALID_ARG,
             "trace: end_record without a recording");
    ty_trace_detach(tr);
    ty_status st = TY_OK;
    tr->nout = nout;
    tr->out_vid = malloc(sizeof(int) * (size_t)(nout ? nout : 1));
    if (!tr->out_vid) {
        st = ty_set_error(TY_ERR_OOM, "trace: out of memory");
    }
    for (int i = 0; st == TY_OK && i < nout; i++) {
        if (!ty_ptrmap_get(&tr->map, outs[i], &tr->out_vid[i])) {
            st = ty_set_error(TY_ERR_TRACE, "trace: output %d was not computed by the traced "
                                            "function (return tensors made by tensor ops)",
                              i);
        }
    }
    if (st == TY_OK && tr->symbolic) {
        st = bind_recorded(tr);
    }
    ty_trace_release_kept(tr);
    if (st == TY_OK) {
        st = compute_roots(tr);
    }
    if (st == TY_OK && tr->symbolic) {
        st = first_run(tr);
    }
    if (st == TY_OK && !tr->why[0]) {
        st = ty_trace_compile(tr, TY_PASS_ALL);
    }
    ty_trace_release_bound(tr);
    return st;
}
