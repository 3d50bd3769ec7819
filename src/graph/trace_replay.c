/* Replay matching: while the traced function runs again, every op application and backward
 * is matched against the recording and answered with views or pending tensors; the end of a
 * replay executes the bound program. */
#include <stdlib.h>
#include <string.h>

#include "graph/ptrmap.h"
#include "graph/trace_impl.h"
#include "ops/op.h"

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
                                  (size_t)n * ty_dtype_size(v->meta.dtype), &ty_trace_pending, &t));
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
        TY_TRY(ty_call_forward(&c, out)); /* pure views: no data is touched */
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
    if (ty_trace_paused()) {
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

/* Emits the outputs of node ni of a replayed backward block from its bound inputs. */
static ty_status
replay_backward_node(ty_trace *tr, int ni)
{
    const gnode *n = &tr->n[ni];
    ty_tensor *small[TY_TRACE_SMALL_ARITY];
    ty_tensor **in = ty_trace_ptrs(small, n->nin + n->nout);
    TY_CHECK(in, TY_ERR_OOM, "trace: out of memory");
    ty_tensor **out = in + n->nin;
    ty_status st = TY_OK;
    for (int i = 0; st == TY_OK && i < n->nin; i++) {
        in[i] = ty_trace_value(tr, n->in[i]);
        if (!in[i]) {
            st = ty_set_error(TY_ERR_INTERNAL, "trace: unbound input in a replayed backward");
        }
    }
    if (st == TY_OK) {
        st = emit_outputs(tr, ni, in, out);
    }
    for (int i = 0; st == TY_OK && i < n->nout; i++) {
        ty_tensor_release(out[i]);
    }
    ty_trace_ptrs_free(small, in);
    return st;
}

static ty_status
replay_backward(ty_trace *tr, int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx,
                ty_tensor *const *xs, ty_tensor **grads)
{
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
        TY_TRY(replay_backward_node(tr, ni));
    }
    for (int j = 0; j < nx; j++) {
        grads[j] = b->grads[j] < 0 ? NULL : ty_trace_value(tr, b->grads[j]);
        ty_tensor_retain(grads[j]);
    }
    tr->cursor++;
    return TY_OK;
}

static const ty_trace_bw_fns replay_bw_fns = {replay_backward, NULL, NULL};

static ty_status
begin_replay(ty_trace *tr, int nargs, ty_tensor *const *args)
{
    TY_CHECK(tr->mode == MODE_IDLE && (nargs == 0 || args), TY_ERR_INVALID_ARG,
             "trace: begin_replay on a busy trace");
    TY_CHECK(!ty_trace_current(), TY_ERR_TRACE,
             "trace: a traced function cannot call another traced function while it is being "
             "recorded or replayed");
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
    ty_trace_attach(tr, &replay_bw_fns);
    ty_set_intercept(intercept, tr);
    ty_hooks_suspend(TY_HOOK_AUTODIFF, 1); /* the backward is replayed as recorded ops */
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

ty_status
ty_trace_end_replay(ty_trace *tr, int nout, ty_tensor *const *outs)
{
    TY_CHECK(tr && tr->mode == MODE_REPLAY, TY_ERR_INVALID_ARG,
             "trace: end_replay without a replay");
    ty_trace_detach(tr);
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
            tr->bound[i]->storage->deferred = NULL;
        }
    }
    ty_trace_release_bound(tr);
    atomic_store(&tr->busy, 0);
    return st;
}
