/* Constant folding: a node whose inputs are all constants (literals, autodiff seeds, earlier
 * folded values) runs once when the recording is compiled, with the same forward function
 * eager execution uses; replays hand out views of the result and skip the node. Random,
 * in-place and data-dependent ops are never folded, nor values an in-place op writes or that
 * the function returns (Python could modify them afterwards). */
#include <stdlib.h>

#include "graph/trace_impl.h"

enum { FOLD_BAD = TY_F_RANDOM | TY_F_WRITES | TY_F_DYN };

static ty_tensor *
const_tensor(const ty_trace *tr, int vid)
{
    return tr->v[vid].kind == V_CONST ? tr->v[vid].ref : tr->folded[vid];
}

static int
foldable(const ty_trace *tr, const gnode *n, const char *pinned)
{
    if (n->state != NS_EXEC || (ty_op_defs[n->op].flags & FOLD_BAD)) {
        return 0;
    }
    for (int i = 0; i < n->nin; i++) {
        if (!const_tensor(tr, n->in[i]) || pinned[tr->root[n->in[i]]]) {
            return 0;
        }
    }
    for (int i = 0; i < n->nout; i++) {
        if (pinned[tr->root[n->out[i]]]) {
            return 0;
        }
    }
    return 1;
}

/* Computes node n's outputs (new tensors, or views for a view op) into out. */
static ty_status
fold_compute(const ty_trace *tr, const gnode *n, ty_tensor **in, ty_tensor **out)
{
    const ty_op_def *def = &ty_op_defs[n->op];
    for (int i = 0; i < n->nin; i++) {
        in[i] = const_tensor(tr, n->in[i]);
    }
    ty_status st = TY_OK;
    for (int i = 0; st == TY_OK && !(def->flags & TY_F_VIEW) && i < n->nout; i++) {
        const ty_meta *m = &tr->v[n->out[i]].meta;
        st = ty_tensor_new_on(tr->device, m->dtype, m->ndim, m->shape, &out[i]);
    }
    ty_call c = {n->op, n->params, n->nin, in, n->nout};
    if (st == TY_OK) {
        st = ty_call_forward(&c, out);
    }
    if (st != TY_OK) {
        for (int i = 0; i < n->nout; i++) {
            ty_tensor_release(out[i]);
        }
    }
    return st;
}

static ty_status
fold_node(ty_trace *tr, gnode *n)
{
    ty_tensor *small[TY_TRACE_SMALL_ARITY];
    ty_tensor **in = ty_trace_ptrs(small, n->nin + n->nout);
    TY_CHECK(in, TY_ERR_OOM, "trace: out of memory");
    ty_tensor **out = in + n->nin;
    ty_status st = fold_compute(tr, n, in, out);
    for (int i = 0; st == TY_OK && i < n->nout; i++) {
        tr->folded[n->out[i]] = out[i];
    }
    if (st == TY_OK) {
        n->state = NS_FOLDED;
        tr->nfolded++;
    }
    ty_trace_ptrs_free(small, in);
    return st;
}

ty_status
ty_pass_fold(ty_trace *tr)
{
    char *pinned;
    TY_TRY(ty_pass_pinned(tr, &pinned));
    for (int ni = 0; ni < tr->nn; ni++) {
        if (foldable(tr, &tr->n[ni], pinned) && fold_node(tr, &tr->n[ni]) != TY_OK) {
            ty_clear_error(); /* not folded: the node runs on every replay as recorded */
        }
    }
    free(pinned);
    return TY_OK;
}
