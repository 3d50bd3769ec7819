/* Tracing (DESIGN.md promise 3): a dispatcher hook records the op applications of one call
 * of a function; later calls replay it. During a replay the function body runs again, but
 * every ty_apply is only matched against the recording (operator, params, where each input
 * comes from) and returns a tensor whose data is pending; ty_trace_end_replay then executes
 * the recorded program in one go, with no per-op Python work and no autodiff tape (a
 * backward is replayed as the block of ops it recorded).
 *
 * Values of the program: ARG (the traced function's tensor arguments), EXTERNAL (tensors
 * from outside — parameters, optimizer state, tensors made from host data — bound afresh on
 * every call), CONST (Python literals, and tensors the autodiff seeds: checked or baked) and
 * NODE outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/memplan.h"
#include "graph/ptrmap.h"
#include "graph/trace_impl.h"
#include "graph/trace_passes.h"
#include "imperative/tape.h"
#include "ops/op.h"
#include "ops/strided.h"

static _Thread_local ty_trace *active;
static _Thread_local int paused;

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
    TY_CHECK(!t->storage->pending, TY_ERR_TRACE,
             "trace: an input has no data (it comes from a traced call that failed, or from "
             "another trace)");
    int literal = tr->in_backward || (t->flags & TY_TENSOR_LITERAL);
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
    if (def->flags & TY_F_DYN) {
        set_untraceable(tr, "its output shape depends on input values", def->name);
    }
    TY_TRY(grow((void **)&tr->n, &tr->cap_n, tr->nn + 1, sizeof(gnode)));
    gnode *n = &tr->n[tr->nn];
    memset(n, 0, sizeof *n);
    n->op = c->op;
    n->group = -1;
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

static ty_status
trace_after(void *ud, const ty_call *c, ty_tensor *const *out)
{
    (void)ud;
    if (!active || paused || active->mode != MODE_RECORD) {
        return TY_OK;
    }
    return record_node(active, c, out);
}

__attribute__((constructor)) static void
register_trace_hook(void)
{
    ty_hook h = {trace_after, NULL};
    if (ty_hook_add(&h) != TY_OK) {
        ty_clear_error();
    }
}

static ty_status
record_bw_begin(void *ud, int ny, ty_tensor *const *ys, int nx, ty_tensor *const *xs)
{
    ty_trace *tr = ud;
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
record_bw_end(void *ud, int nx, ty_tensor *const *grads)
{
    ty_trace *tr = ud;
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

static const ty_backward_hooks record_hooks_template = {NULL, record_bw_begin, record_bw_end, NULL};
static _Thread_local ty_backward_hooks bw_hooks;

static void
release_kept(ty_trace *tr)
{
    for (int i = 0; i < tr->nkept; i++) {
        ty_tensor_release(tr->kept[i]);
    }
    tr->nkept = 0;
    ty_ptrmap_clear(&tr->map);
}

static void
detach_thread(ty_trace *tr)
{
    if (active == tr) {
        active = NULL;
        ty_set_intercept(NULL, NULL);
        ty_set_backward_hooks(NULL);
        ty_tape_pause(0);
    }
    tr->mode = MODE_IDLE;
    tr->in_backward = 0;
}

ty_status
ty_trace_begin_record(int nargs, ty_tensor *const *args, ty_trace **out)
{
    TY_CHECK(out && (nargs == 0 || args), TY_ERR_INVALID_ARG, "trace: NULL argument");
    TY_CHECK(!active, TY_ERR_TRACE, "trace: a traced function cannot call another traced "
                                    "function while it is being recorded or replayed");
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
    active = tr;
    bw_hooks = record_hooks_template;
    bw_hooks.ud = tr;
    ty_set_backward_hooks(&bw_hooks);
    *out = tr;
    return TY_OK;
}

/* Symbolic recording: ops make views or pending tensors instead of computing; the hooks
 * (tape, recorder) run as usual, so the program is recorded and end_record computes it. */
static ty_status
record_lazy(void *ud, const ty_call *c, ty_tensor **out)
{
    (void)ud;
    return paused ? ty_run_call(c, out) : ty_run_call_lazy(c, out);
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
            tr->bound[i]->storage->pending = 0;
        }
    }
    return TY_OK;
}

ty_status
ty_trace_end_record(ty_trace *tr, int nout, ty_tensor *const *outs)
{
    TY_CHECK(tr && tr->mode == MODE_RECORD && (nout == 0 || outs), TY_ERR_INVALID_ARG,
             "trace: end_record without a recording");
    detach_thread(tr);
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
    release_kept(tr);
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

/* ---- replay: matching ---- */
int
ty_trace_params_equal(ty_op op, const void *a, const void *b)
{
    const ty_params_desc *d = ty_op_defs[op].params;
    for (int i = 0; i < d->nfields; i++) {
        const char *pa = (const char *)a + d->fields[i].offset;
        const char *pb = (const char *)b + d->fields[i].offset;
        if (d->fields[i].kind == TY_FK_LIST) {
            const ty_i64list *la = (const ty_i64list *)pa, *lb = (const ty_i64list *)pb;
            if (la->n != lb->n || memcmp(la->v, lb->v, sizeof(int64_t) * (size_t)la->n) != 0) {
                return 0;
            }
        } else if (memcmp(pa, pb, 8) != 0) {
            return 0;
        }
    }
    return 1;
}

int
ty_trace_meta_equal(const ty_meta *m, const ty_tensor *t)
{
    return m->dtype == t->dtype && m->ndim == t->ndim &&
           memcmp(m->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) == 0;
}

static int
same_values(const ty_tensor *a, const ty_tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim ||
        memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) != 0) {
        return 0;
    }
    int64_t n = ty_tensor_numel(a);
    size_t es = ty_dtype_size(a->dtype);
    if (!ty_tensor_is_contiguous(a) || !ty_tensor_is_contiguous(b)) {
        return 0;
    }
    return memcmp(ty_tensor_ptr(a), ty_tensor_ptr(b), (size_t)n * es) == 0;
}

ty_status
ty_trace_bind(ty_trace *tr, int vid, ty_tensor *t)
{
    ty_tensor_retain(t);
    ty_tensor_release(tr->bound[vid]);
    tr->bound[vid] = t;
    return ty_ptrmap_put(&tr->map, t, vid);
}

/* Checks that tensor t may stand where value vid was recorded, binding externals. */
static ty_status
match_input(ty_trace *tr, int vid, ty_tensor *t, const char *op, int pos)
{
    const gvalue *v = &tr->v[vid];
    int got = -1;
    int internal = ty_ptrmap_get(&tr->map, t, &got);
    switch (v->kind) {
    case V_CONST:
        TY_CHECK(!internal && same_values(t, v->ref), TY_ERR_TRACE,
                 "trace error because tensors not equals: input %d of %s is a constant whose "
                 "value differs from the recorded one",
                 pos, op);
        return TY_OK;
    case V_EXTERNAL:
        if (tr->bound[vid]) {
            TY_CHECK(tr->bound[vid] == t, TY_ERR_TRACE,
                     "trace error because input id mismatch: input %d of %s", pos, op);
            return TY_OK;
        }
        TY_CHECK(!internal || tr->v[got].kind == V_EXTERNAL, TY_ERR_TRACE,
                 "trace error because expect external node, got internal: input %d of %s", pos,
                 op);
        TY_CHECK(ty_trace_meta_equal(&v->meta, t), TY_ERR_TRACE,
                 "trace error because an external input changed its shape or dtype: input %d "
                 "of %s",
                 pos, op);
        return ty_trace_bind(tr, vid, t);
    default:
        TY_CHECK(internal, TY_ERR_TRACE,
                 "trace error because expect internal node, got external: input %d of %s", pos,
                 op);
        TY_CHECK(got == vid, TY_ERR_TRACE, "trace error because input id mismatch: input %d of %s",
                 pos, op);
        return TY_OK;
    }
}

/* A tensor of the recorded meta whose data is computed when the replay executes. */
static ty_status
placeholder(const gvalue *v, ty_tensor **out)
{
    int64_t n;
    TY_TRY(ty_shape_numel(v->meta.ndim, v->meta.shape, &n));
    ty_tensor *t;
    TY_TRY(ty_tensor_view_pending(v->meta.dtype, v->meta.ndim, v->meta.shape,
                                  (size_t)n * ty_dtype_size(v->meta.dtype), &t));
    *out = t;
    return TY_OK;
}

/* A new view with t's layout. */
static ty_status
same_view(const ty_tensor *t, ty_tensor **out)
{
    return ty_tensor_view(t, t->ndim, t->shape, t->strides, t->offset, out);
}

/* Outputs of a node that is not executed: views of its folded constants, or of the outputs
 * of the earlier node it duplicates. */
static ty_status
emit_views(ty_trace *tr, const gnode *n, ty_tensor **out)
{
    for (int i = 0; i < n->nout; i++) {
        out[i] = NULL;
    }
    for (int i = 0; i < n->nout; i++) {
        const ty_tensor *src = n->state == NS_FOLDED ? tr->folded[n->out[i]]
                                                     : tr->bound[tr->n[n->canon].out[i]];
        ty_status st = src ? same_view(src, &out[i])
                           : ty_set_error(TY_ERR_INTERNAL, "trace: a CSE'd node ran first");
        if (st != TY_OK) {
            for (int j = 0; j < i; j++) {
                ty_tensor_release(out[j]);
            }
            return st;
        }
    }
    return TY_OK;
}

/* Creates the outputs of node ni: views for aliasing view ops, placeholders otherwise. */
ty_status
ty_trace_make_outputs(ty_trace *tr, int ni, ty_tensor *const *in, ty_tensor **out)
{
    const gnode *n = &tr->n[ni];
    const ty_op_def *def = &ty_op_defs[n->op];
    if (n->state != NS_EXEC) {
        TY_TRY(emit_views(tr, n, out));
    } else if (n->alias && (def->flags & TY_F_WRITES)) {
        const ty_tensor *d = in[0];
        TY_TRY(ty_tensor_view(d, d->ndim, d->shape, d->strides, d->offset, &out[0]));
    } else if (n->alias) {
        ty_call c = {n->op, n->params, n->nin, in, n->nout};
        TY_TRY(def->forward(&c, out)); /* pure views: no data is touched */
    } else {
        for (int i = 0; i < n->nout; i++) {
            TY_TRY(placeholder(&tr->v[n->out[i]], &out[i]));
        }
    }
    return TY_OK;
}

static ty_status
emit_outputs(ty_trace *tr, int ni, ty_tensor *const *in, ty_tensor **out)
{
    TY_TRY(ty_trace_make_outputs(tr, ni, in, out));
    for (int i = 0; i < tr->n[ni].nout; i++) {
        TY_TRY(ty_trace_bind(tr, tr->n[ni].out[i], out[i]));
    }
    return TY_OK;
}

static ty_status
intercept(void *ud, const ty_call *c, ty_tensor **out)
{
    ty_trace *tr = ud;
    const char *op = ty_op_name(c->op);
    if (paused) {
        return ty_run_call(c, out);
    }
    TY_CHECK(tr->cursor < tr->nev, TY_ERR_TRACE,
             "trace error because too many instructions: %s was not in the recording", op);
    const gevent *e = &tr->ev[tr->cursor];
    TY_CHECK(!e->is_backward, TY_ERR_TRACE,
             "trace error because operator mismatch: expected a backward, got %s", op);
    const gnode *n = &tr->n[e->index];
    TY_CHECK(n->op == c->op && n->nin == c->nin && n->nout == c->nout, TY_ERR_TRACE,
             "trace error because operator mismatch: expected %s, got %s", ty_op_name(n->op), op);
    TY_CHECK(ty_trace_params_equal(c->op, n->params, c->params), TY_ERR_TRACE,
             "trace error because operator mismatch: %s was called with other params", op);
    for (int i = 0; i < c->nin; i++) {
        TY_TRY(match_input(tr, n->in[i], c->in[i], op, i));
    }
    tr->cursor++;
    return emit_outputs(tr, e->index, c->in, out);
}


static ty_status
replay_backward(void *ud, int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx,
                ty_tensor *const *xs, ty_tensor **grads)
{
    ty_trace *tr = ud;
    (void)dys; /* seeds were recorded as constants of the backward block */
    TY_CHECK(tr->cursor < tr->nev && tr->ev[tr->cursor].is_backward, TY_ERR_TRACE,
             "trace error because operator mismatch: backward was not recorded here");
    const gbackward *b = &tr->bw[tr->ev[tr->cursor].index];
    TY_CHECK(b->ny == ny && b->nx == nx, TY_ERR_TRACE,
             "trace error because the backward has other inputs than recorded");
    for (int i = 0; i < ny; i++) {
        TY_TRY(match_input(tr, b->ys[i], ys[i], "backward", i));
    }
    for (int j = 0; j < nx; j++) {
        TY_TRY(match_input(tr, b->xs[j], xs[j], "backward", j));
    }
    for (int ni = b->start; ni < b->end; ni++) {
        const gnode *n = &tr->n[ni];
        ty_tensor *in[64], *out[64];
        TY_CHECK(n->nin <= 64 && n->nout <= 64, TY_ERR_UNSUPPORTED, "trace: op arity too large");
        for (int i = 0; i < n->nin; i++) {
            in[i] = ty_trace_value(tr, n->in[i]);
            TY_CHECK(in[i], TY_ERR_INTERNAL, "trace: unbound input in a replayed backward");
        }
        TY_TRY(emit_outputs(tr, ni, in, out));
        for (int i = 0; i < n->nout; i++) {
            ty_tensor_release(out[i]);
        }
    }
    for (int j = 0; j < nx; j++) {
        grads[j] = b->grads[j] < 0 ? NULL : ty_trace_value(tr, b->grads[j]);
        ty_tensor_retain(grads[j]);
    }
    tr->cursor++;
    return TY_OK;
}

static const ty_backward_hooks replay_hooks_template = {replay_backward, NULL, NULL, NULL};

static ty_status
begin_replay(ty_trace *tr, int nargs, ty_tensor *const *args)
{
    TY_CHECK(tr->mode == MODE_IDLE && (nargs == 0 || args), TY_ERR_INVALID_ARG,
             "trace: begin_replay on a busy trace");
    TY_CHECK(!active, TY_ERR_TRACE, "trace: a traced function cannot call another traced "
                                    "function while it is being recorded or replayed");
    TY_CHECK(!tr->why[0], TY_ERR_TRACE, "trace: the recording cannot be replayed: %s", tr->why);
    TY_CHECK(nargs == tr->nargs, TY_ERR_TRACE,
             "trace error because input size mismatch: recorded %d tensor arguments, got %d",
             tr->nargs, nargs);
    ty_trace_release_bound(tr); /* a host-less run's prepared state */
    tr->bound = calloc((size_t)(tr->nv ? tr->nv : 1), sizeof(ty_tensor *));
    TY_CHECK(tr->bound, TY_ERR_OOM, "trace: out of memory");
    for (int i = 0; i < nargs; i++) {
        int vid = tr->arg_vid[i];
        TY_CHECK(ty_trace_meta_equal(&tr->v[vid].meta, args[i]), TY_ERR_TRACE,
                 "trace: argument %d has another shape or dtype than recorded", i);
        TY_TRY(ty_trace_bind(tr, vid, args[i]));
    }
    tr->cursor = 0;
    tr->mode = MODE_REPLAY;
    active = tr;
    ty_set_intercept(intercept, tr);
    bw_hooks = replay_hooks_template;
    bw_hooks.ud = tr;
    ty_set_backward_hooks(&bw_hooks);
    ty_tape_pause(1);
    return TY_OK;
}

/* One call at a time per trace: end_replay runs without the GIL, and another thread may
 * call the same traced function meanwhile. */
ty_status
ty_trace_begin_replay(ty_trace *tr, int nargs, ty_tensor *const *args)
{
    TY_CHECK(tr, TY_ERR_INVALID_ARG, "trace: NULL trace");
    TY_CHECK(!atomic_exchange(&tr->busy, 1), TY_ERR_TRACE,
             "trace: a traced function was called from two threads at once");
    ty_status st = begin_replay(tr, nargs, args);
    if (st != TY_OK) {
        atomic_store(&tr->busy, 0);
    }
    return st;
}

void
ty_trace_release_bound(ty_trace *tr)
{
    for (int i = 0; tr->bound && i < tr->nv; i++) {
        ty_tensor_release(tr->bound[i]);
    }
    free(tr->bound);
    tr->bound = NULL;
    tr->prepared = 0;
    ty_fuse_forget(tr);
    ty_ptrmap_clear(&tr->map);
}

/* ---- replay: execution ---- */
ty_status
ty_trace_provide(ty_tensor *t)
{
    ty_storage *s = t->storage;
    if (s->pending && !s->data) {
        TY_TRY(ty_mem_alloc(s->nbytes, &s->data));
    }
    return TY_OK;
}

/* A planned buffer: a compute node's output whose tensors nobody outside holds. */
static int
is_candidate(const ty_trace *tr, int vid)
{
    return tr->root[vid] == vid && tr->v[vid].kind == V_NODE && tr->bound[vid] &&
           tr->bound[vid]->storage->pending && !tr->bound[vid]->storage->data;
}

/* Marks roots whose memory is referenced from outside the trace (returned, stored in Python
 * objects): those get memory of their own; forced[] marks the outputs of a host-less run. */
static ty_status
escaping_roots(ty_trace *tr, const char *forced, char *escapes)
{
    /* internal[r]: tensors of the trace on root r's memory; a tensor referenced by more
     * than the trace, or memory referenced by more tensors, is seen from outside */
    int *internal = calloc((size_t)(tr->nv ? tr->nv : 1), sizeof(int));
    TY_CHECK(internal, TY_ERR_OOM, "trace: out of memory");
    for (int v = 0; v < tr->nv; v++) {
        if (tr->bound[v]) {
            internal[tr->root[v]]++;
            if (atomic_load(&tr->bound[v]->refcnt) > 1) {
                escapes[tr->root[v]] = 1;
            }
        }
    }
    for (int v = 0; v < tr->nv; v++) {
        if (forced && forced[v]) {
            escapes[v] = 1;
        } else if (is_candidate(tr, v)) {
            escapes[v] |= atomic_load(&tr->bound[v]->storage->refcnt) > internal[v];
        }
    }
    free(internal);
    return TY_OK;
}

/* The plan depends on what escapes, what is live and which groups fuse in this call. */
static size_t
key_size(const ty_trace *tr)
{
    return (size_t)tr->nv + 2 * (size_t)tr->nn + (size_t)tr->ngroups + 1;
}

static void
make_key(const ty_trace *tr, const char *esc, char *key)
{
    memcpy(key, esc, (size_t)tr->nv);
    memcpy(key + tr->nv, tr->live, (size_t)tr->nn);
    memcpy(key + tr->nv + tr->nn, tr->gon, (size_t)tr->ngroups);
    memcpy(key + tr->nv + tr->nn + tr->ngroups, tr->fwd_on, (size_t)tr->nn);
    key[tr->nv + 2 * tr->nn + tr->ngroups] = 0;
}

/* Places the planned values of this call in the arena; true when a cached plan applied. */
static int
apply_cached_plan(ty_trace *tr, const char *key)
{
    if (!tr->plan_key || memcmp(tr->plan_key, key, key_size(tr)) != 0) {
        return 0;
    }
    for (int v = 0; v < tr->nv; v++) {
        if (tr->plan_off[v] != SIZE_MAX && is_candidate(tr, v)) {
            ty_storage *sto = tr->bound[v]->storage;
            sto->data = (char *)tr->arena + tr->plan_off[v];
            sto->deleter = ty_noop_deleter;
        }
    }
    return 1;
}

static void
cache_plan(ty_trace *tr, const char *key, int nitems, const int *vid_of, const size_t *off)
{
    free(tr->plan_key);
    free(tr->plan_off);
    tr->plan_key = malloc(key_size(tr));
    tr->plan_off = malloc(sizeof(size_t) * (size_t)(tr->nv ? tr->nv : 1));
    if (!tr->plan_key || !tr->plan_off) {
        free(tr->plan_key);
        free(tr->plan_off);
        tr->plan_key = NULL;
        tr->plan_off = NULL;
        return; /* no cache: the next call plans again */
    }
    memcpy(tr->plan_key, key, key_size(tr));
    for (int v = 0; v < tr->nv; v++) {
        tr->plan_off[v] = SIZE_MAX;
    }
    for (int i = 0; i < nitems; i++) {
        tr->plan_off[vid_of[i]] = off[i];
    }
}

/* Whether candidate v needs no memory this call: its node is dead, or it stays in a fused
 * group's scratch block. */
static int
unplanned(const ty_trace *tr, int v)
{
    return tr->scratch[v] || !tr->live[tr->v[v].index];
}

/* Whether outside value x may be overwritten by member `self`'s output: read as itself
 * only, and only by members up to self (each block reads it before self writes that block). */
static int
group_inplace_ok(const ty_trace *tr, const gnode *n, int x)
{
    const gfuse *g = &tr->groups[n->group];
    int self = (int)(n - tr->n);
    int64_t k = 1;
    if (tr->root[x] != x || tr->v[x].kind != V_NODE || tr->n[tr->v[x].index].group == n->group ||
        tr->v[x].meta.dtype != tr->v[n->out[0]].meta.dtype) {
        return 0;
    }
    for (int d = 0; d < tr->v[x].meta.ndim; d++) {
        k *= tr->v[x].meta.shape[d];
    }
    for (int mi = g->first; k == g->numel && mi <= g->last; mi++) {
        const gnode *m = &tr->n[mi];
        for (int j = 0; tr->live[mi] && m->group == n->group && j < m->nin; j++) {
            if (tr->root[m->in[j]] == x && (m->in[j] != x || mi > self)) {
                return 0;
            }
        }
    }
    return k == g->numel;
}

static int
group_inplace_src(const ty_trace *tr, const gnode *n)
{
    const gfuse *g = &tr->groups[n->group];
    for (int mi = g->first; mi <= (int)(n - tr->n); mi++) {
        const gnode *m = &tr->n[mi];
        for (int j = 0; tr->live[mi] && m->group == n->group && j < m->nin; j++) {
            if (group_inplace_ok(tr, n, m->in[j])) {
                return m->in[j];
            }
        }
    }
    return -1;
}

/* A fused group runs block by block: what it reads or writes stays alive over the whole
 * group, so no buffer of the group shares memory with another at a different offset. */
static void
group_lifetimes(const ty_trace *tr, const gnode *n, const int *item_of, ty_mp_item *items)
{
    const gfuse *g = &tr->groups[n->group];
    for (int i = 0; i < n->nin; i++) {
        int it = item_of[tr->root[n->in[i]]];
        if (it >= 0 && items[it].last < g->last) {
            items[it].last = g->last;
        }
    }
    int it = item_of[n->out[0]];
    if (it >= 0) {
        items[it].def = g->first;
        items[it].last = items[it].last < g->last ? g->last : items[it].last;
        int x = group_inplace_src(tr, n);
        if (x >= 0 && item_of[x] >= 0 && items[item_of[x]].size == items[it].size) {
            items[it].def = g->last; /* takes x's block when x dies at the group */
            items[it].inplace_of = item_of[x];
        }
    }
}

/* In place over input 0 only when no other input reads that memory through another view
 * (x * x[::-1] would read elements already overwritten). */
static int
inplace_safe(const ty_trace *tr, const gnode *n)
{
    if (!(ty_op_defs[n->op].flags & TY_F_INPLACE) || n->nin < 1 ||
        tr->root[n->in[0]] != n->in[0]) {
        return 0;
    }
    for (int i = 1; i < n->nin; i++) {
        if (tr->root[n->in[i]] == n->in[0] && n->in[i] != n->in[0]) {
            return 0;
        }
    }
    return 1;
}

static void
item_lifetimes(const ty_trace *tr, const int *item_of, ty_mp_item *items)
{
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->state != NS_EXEC || !tr->live[ni]) {
            continue; /* runs nothing, reads nothing */
        }
        if (n->group >= 0 && tr->gon[n->group]) {
            group_lifetimes(tr, n, item_of, items);
            continue;
        }
        for (int i = 0; i < n->nin; i++) {
            int it = item_of[tr->root[n->in[i]]];
            if (it >= 0 && items[it].last < ni) {
                items[it].last = ni;
            }
        }
        /* an elementwise op may overwrite its input when that input dies here */
        int it_out = n->nout == 1 && !n->alias ? item_of[n->out[0]] : -1;
        int it_in = n->nin >= 1 ? item_of[tr->root[n->in[0]]] : -1;
        if (it_out >= 0 && it_in >= 0 && items[it_in].size == items[it_out].size &&
            inplace_safe(tr, n)) {
            items[it_out].inplace_of = it_in; /* same bytes: no broadcast into a larger out */
        }
    }
}

static ty_status
grow_arena(ty_trace *tr, size_t size)
{
    if (size <= tr->arena_size) {
        return TY_OK;
    }
    ty_mem_free(tr->arena, tr->arena_size);
    tr->arena = NULL;
    tr->arena_size = 0;
    TY_TRY(ty_mem_alloc(size, &tr->arena));
    tr->arena_size = size;
    tr->arena_allocs++;
    return TY_OK;
}

static ty_status
plan_memory(ty_trace *tr, const char *esc)
{
    int nv = tr->nv, nitems = 0;
    char *key = malloc(key_size(tr));
    int *item_of = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    ty_mp_item *items = malloc(sizeof(ty_mp_item) * (size_t)(nv ? nv : 1));
    int *vid_of = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    size_t *off = malloc(sizeof(size_t) * (size_t)(nv ? nv : 1));
    ty_status st = (key && item_of && items && vid_of && off)
                       ? TY_OK
                       : ty_set_error(TY_ERR_OOM, "trace: out of memory");
    if (st == TY_OK) {
        make_key(tr, esc, key);
    }
    int cached = st == TY_OK && apply_cached_plan(tr, key);
    for (int v = 0; st == TY_OK && !cached && v < nv; v++) {
        item_of[v] = -1;
        if (is_candidate(tr, v) && !esc[v] && !unplanned(tr, v) && !tr->fwd_val[v]) {
            int def = tr->v[v].index;
            items[nitems] = (ty_mp_item){def, def, tr->bound[v]->storage->nbytes, -1};
            vid_of[nitems] = v;
            item_of[v] = nitems++;
        }
    }
    size_t size = 0;
    if (st == TY_OK && !cached) {
        item_lifetimes(tr, item_of, items);
        st = ty_memplan(nitems, items, off, &size);
    }
    if (st == TY_OK) {
        st = grow_arena(tr, size);
    }
    for (int i = 0; st == TY_OK && !cached && i < nitems; i++) {
        ty_storage *sto = tr->bound[vid_of[i]]->storage;
        sto->data = (char *)tr->arena + off[i];
        sto->deleter = ty_noop_deleter; /* the trace owns the arena */
    }
    if (st == TY_OK && !cached) {
        cache_plan(tr, key, nitems, vid_of, off);
    }
    free(key);
    free(item_of);
    free(items);
    free(vid_of);
    free(off);
    return st;
}

static ty_status
exec_node(ty_trace *tr, const gnode *n)
{
    const ty_op_def *def = &ty_op_defs[n->op];
    ty_tensor *in[64], *out[64];
    for (int i = 0; i < n->nin; i++) {
        in[i] = ty_trace_value(tr, n->in[i]);
        TY_TRY(ty_trace_provide(in[i]));
    }
    for (int i = 0; i < n->nout; i++) {
        out[i] = tr->bound[n->out[i]];
        TY_TRY(ty_trace_provide(out[i]));
    }
    if (n->alias && !(def->flags & TY_F_WRITES)) {
        return TY_OK; /* a view: its base's memory is its memory */
    }
    if (n->alias) { /* assign, unless its source was computed in place */
        return tr->fwd_on[n - tr->n] ? TY_OK : ty_strided_copy(in[0], in[1]);
    }
    if (n->materialize) { /* a reshape that copied: same elements, C order */
        ty_tensor *flat;
        TY_TRY(ty_contiguous(in[0], &flat));
        memcpy(ty_tensor_ptr(out[0]), ty_tensor_ptr(flat),
               (size_t)ty_tensor_numel(flat) * ty_dtype_size(flat->dtype));
        ty_tensor_release(flat);
        return TY_OK;
    }
    ty_call c = {n->op, n->params, n->nin, in, n->nout};
    return def->forward(&c, out);
}

/* Runs the live nodes in order; a fused group runs where its first live member is. */
ty_status
ty_trace_exec_all(ty_trace *tr)
{
    int ran = -1;
    tr->nexecuted = tr->ndead = 0;
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->state != NS_EXEC) {
            continue;
        }
        if (!tr->live[ni]) {
            tr->ndead++;
            continue;
        }
        tr->nexecuted++;
        ty_status st = TY_OK;
        if (n->group >= 0 && tr->gon[n->group]) {
            st = n->group != ran ? ty_fuse_run(tr, n->group) : TY_OK;
            ran = n->group;
        } else {
            st = exec_node(tr, n);
        }
        if (st == TY_OK && tr->exec_hook.after) {
            st = tr->exec_hook.after(tr->exec_hook.ud, tr, ni);
        }
        if (st != TY_OK) {
            ty_error_prefix(ty_op_name(n->op));
            return st;
        }
    }
    return TY_OK;
}

/* Executes the bound program: escape analysis, dead code, fusion, memory plan, run. */
ty_status
ty_trace_execute(ty_trace *tr, const char *forced)
{
    char *esc = calloc((size_t)(tr->nv ? tr->nv : 1), 1);
    TY_CHECK(esc, TY_ERR_OOM, "trace: out of memory");
    ty_status st = escaping_roots(tr, forced, esc);
    if (st == TY_OK) {
        st = ty_pass_live(tr, esc);
    }
    if (st == TY_OK) {
        st = ty_fuse_prepare(tr, esc);
    }
    if (st == TY_OK) {
        st = ty_forward_prepare(tr, esc);
    }
    if (st == TY_OK) {
        st = plan_memory(tr, esc);
    }
    if (st == TY_OK) {
        ty_forward_apply(tr);
    }
    free(esc);
    return st == TY_OK ? ty_trace_exec_all(tr) : st;
}

ty_status
ty_trace_end_replay(ty_trace *tr, int nout, ty_tensor *const *outs)
{
    TY_CHECK(tr && tr->mode == MODE_REPLAY, TY_ERR_INVALID_ARG,
             "trace: end_replay without a replay");
    detach_thread(tr);
    ty_status st = TY_OK;
    if (tr->cursor != tr->nev) {
        st = ty_set_error(TY_ERR_TRACE,
                          "trace error because mismature end: %d of %d recorded instructions "
                          "were not called",
                          tr->nev - tr->cursor, tr->nev);
    } else if (nout != tr->nout) {
        st = ty_set_error(TY_ERR_TRACE, "trace: the function returned %d tensors, recorded %d",
                          nout, tr->nout);
    }
    for (int i = 0; st == TY_OK && i < nout; i++) {
        if (outs[i] != ty_trace_value(tr, tr->out_vid[i])) {
            st = ty_set_error(TY_ERR_TRACE, "trace: output %d is not the recorded value", i);
        }
    }
    if (st == TY_OK) {
        st = ty_trace_execute(tr, NULL);
    }
    for (int i = 0; i < tr->nv && tr->bound; i++) {
        if (st == TY_OK && tr->bound[i]) {
            tr->bound[i]->storage->pending = 0;
        }
    }
    ty_trace_release_bound(tr);
    atomic_store(&tr->busy, 0);
    return st;
}

void
ty_trace_abort(ty_trace *tr)
{
    if (!tr) {
        return;
    }
    detach_thread(tr);
    release_kept(tr);
    ty_trace_release_bound(tr);
    atomic_store(&tr->busy, 0);
}

void
ty_trace_release(ty_trace *tr)
{
    if (!tr) {
        return;
    }
    ty_trace_abort(tr);
    for (int i = 0; i < tr->nv; i++) {
        ty_tensor_release(tr->v[i].ref);
    }
    for (int i = 0; i < tr->nn; i++) {
        free(tr->n[i].params);
        free(tr->n[i].in);
        free(tr->n[i].out);
    }
    for (int i = 0; i < tr->nbw; i++) {
        free(tr->bw[i].ys);
        free(tr->bw[i].xs);
        free(tr->bw[i].grads);
    }
    ty_ptrmap_free(&tr->map);
    ty_mem_free(tr->arena, tr->arena_size);
    ty_trace_free_compiled(tr);
    free(tr->root);
    free(tr->percall);
    free(tr->percall_nodes);
    free(tr->layout);
    free(tr->v);
    free(tr->n);
    free(tr->ev);
    free(tr->bw);
    free(tr->arg_vid);
    free(tr->out_vid);
    free(tr->kept);
    free(tr);
}

int
ty_trace_num_nodes(const ty_trace *tr)
{
    return tr ? tr->nn : 0;
}

int64_t
ty_trace_arena_bytes(const ty_trace *tr)
{
    return tr ? (int64_t)tr->arena_size : 0;
}

void
ty_trace_pause(int on)
{
    paused += on ? 1 : (paused > 0 ? -1 : 0);
}

/* ---- printing ---- */
static const char *kind_names[] = {"arg", "external", "const", "node"};

static void
append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#include <stdarg.h>
static void
append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            return;
        }
        if (*buf && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        size_t cap2 = (*cap ? *cap * 2 : 4096) + (size_t)n;
        char *b = realloc(*buf, cap2);
        if (!b) {
            return;
        }
        *buf = b;
        *cap = cap2;
    }
}

typedef struct sbuf {
    char *buf;
    size_t len, cap;
} sbuf;

#define OUT(sb, ...) append(&(sb)->buf, &(sb)->len, &(sb)->cap, __VA_ARGS__)

static void
dump_inputs(const ty_trace *tr, sbuf *sb)
{
    char sh[TY_SHAPE_BUF];
    for (int i = 0; i < tr->nv; i++) {
        const gvalue *v = &tr->v[i];
        if (v->kind != V_NODE) {
            OUT(sb, "  %%%d = %s %s %s\n", i, kind_names[v->kind], ty_dtype_name(v->meta.dtype),
                ty_shape_str(v->meta.ndim, v->meta.shape, sh, sizeof sh));
        }
    }
}

/* What the passes did to node ni (the dead mark is from the last call, or, before any
 * call, from the outputs alone). */
static void
dump_marks(const ty_trace *tr, const gnode *n, int ni, sbuf *sb)
{
    if (n->state == NS_CSE) {
        OUT(sb, "  # cse of %%%d", tr->n[n->canon].out[0]);
    } else if (n->state == NS_FOLDED) {
        OUT(sb, "  # folded");
    } else if (tr->live && !tr->live[ni]) {
        OUT(sb, "  # dead");
    }
    if (n->group >= 0) {
        OUT(sb, "  # fused g%d", n->group);
    }
    if (tr->fwd_on && tr->fwd_on[ni]) {
        OUT(sb, "  # forwarded: %%%d computed in place", n->in[1]);
    }
}

static void
dump_node(const ty_trace *tr, int ni, int after, sbuf *sb)
{
    const gnode *n = &tr->n[ni];
    char sh[TY_SHAPE_BUF];
    OUT(sb, "  ");
    for (int i = 0; i < n->nout; i++) {
        const gvalue *v = &tr->v[n->out[i]];
        OUT(sb, "%s%%%d:%s%s", i ? ", " : "", n->out[i], ty_dtype_name(v->meta.dtype),
            ty_shape_str(v->meta.ndim, v->meta.shape, sh, sizeof sh));
    }
    OUT(sb, " = %s(", ty_op_name(n->op));
    for (int i = 0; i < n->nin; i++) {
        OUT(sb, "%s%%%d", i ? ", " : "", n->in[i]);
    }
    OUT(sb, ")%s", n->alias ? "  # view" : "");
    if (after) {
        dump_marks(tr, n, ni, sb);
    }
    OUT(sb, "\n");
}

static void
dump_summary(const ty_trace *tr, sbuf *sb)
{
    ty_trace_stats s;
    if (ty_trace_get_stats(tr, &s) == TY_OK) {
        OUT(sb, "after passes: %d cse, %d folded, %d dead, %d fused groups (%d nodes)\n",
            s.cse, s.folded, s.dead, s.fused_groups, s.fused_nodes);
    }
}

ty_status
ty_trace_dump_ex(const ty_trace *tr, int after, char **out)
{
    TY_CHECK(tr && out, TY_ERR_INVALID_ARG, "trace: NULL argument");
    sbuf sb = {NULL, 0, 0};
    OUT(&sb, "trace: %d values, %d nodes, %d backward blocks\n", tr->nv, tr->nn, tr->nbw);
    if (after) {
        dump_summary(tr, &sb);
    }
    dump_inputs(tr, &sb);
    for (int b = 0, ni = 0; ni < tr->nn; ni++) {
        while (b < tr->nbw && tr->bw[b].start == ni && tr->bw[b].end > ni) {
            OUT(&sb, "  backward {\n");
            b++;
        }
        dump_node(tr, ni, after, &sb);
        for (int k = 0; k < tr->nbw; k++) {
            if (tr->bw[k].end == ni + 1) {
                OUT(&sb, "  }\n");
            }
        }
    }
    for (int i = 0; i < tr->nout; i++) {
        OUT(&sb, "  return %%%d\n", tr->out_vid[i]);
    }
    TY_CHECK(sb.buf, TY_ERR_OOM, "trace: out of memory");
    *out = sb.buf;
    return TY_OK;
}

ty_status
ty_trace_dump(const ty_trace *tr, char **out)
{
    return ty_trace_dump_ex(tr, 0, out);
}

const char *
ty_trace_pass_log(const ty_trace *tr)
{
    return tr && tr->pass_log ? tr->pass_log : "";
}

ty_status
ty_trace_get_stats(const ty_trace *tr, ty_trace_stats *out)
{
    TY_CHECK(tr && out, TY_ERR_INVALID_ARG, "trace: NULL argument");
    memset(out, 0, sizeof *out);
    out->nodes = tr->nn;
    out->executed = tr->nexecuted;
    out->dead = tr->ndead;
    out->cse = tr->ncse;
    out->folded = tr->nfolded;
    out->fused_groups = tr->ngroups;
    for (int g = 0; g < tr->ngroups; g++) {
        out->fused_nodes += tr->groups[g].nnodes;
    }
    for (int ni = 0; tr->fwd_on && ni < tr->nn; ni++) {
        out->forwarded += tr->fwd_on[ni];
    }
    out->arena_bytes = (int64_t)tr->arena_size;
    return TY_OK;
}
