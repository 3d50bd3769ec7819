/* Constant folding: a node whose inputs are all constants (literals, autodiff seeds, earlier
 * folded values) runs once when the recording is compiled, with the same forward function
 * eager execution uses; replays hand out views of the result and skip the node. Random,
 * in-place and data-dependent ops are never folded, nor values an in-place op writes or that
 * the function returns (Python could modify them afterwards). */
#include <stdlib.h>

#include "graph/trace_impl.h"

enum { FOLD_BAD = TY_F_RANDOM | TY_F_WRITES | TY_F_DYN, FOLD_MAX_ARITY = 64 };

static ty_tensor *
const_tensor(const ty_trace *tr, int vid)
{
    return tr->v[vid].kind == V_CONST ? tr->v[vid].ref : tr->folded[vid];
}

static int
foldable(const ty_trace *tr, const gnode *n, const char *pinned)
{
    if (n->state != NS_EXEC || (ty_op_defs[n->op].flags & FOLD_BAD) ||
        n->nin > FOLD_MAX_ARITY || n->nout > FOLD_MAX_ARITY) {
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

static ty_status
fold_node(ty_trace *tr, gnode *n)
{
    const ty_op_def *def = &ty_op_defs[n->op];
    ty_tensor *in[FOLD_MAX_ARITY], *out[FOLD_MAX_ARITY] = {0};
    for (int i = 0; i < n->nin; i++) {
        in[i] = const_tensor(tr, n->in[i]);
    }
    ty_status st = TY_OK;
    for (int i = 0; st == TY_OK && !(def->flags & TY_F_VIEW) && i < n->nout; i++) {
        const ty_meta *m = &tr->v[n->out[i]].meta;
        st = ty_tensor_new_like_meta(m->dtype, m->ndim, m->shape, &out[i]);
    }
    ty_call c = {n->op, n->params, n->nin, in, n->nout};
    if (st == TY_OK) {
        st = def->forward(&c, out);
    }
    if (st != TY_OK) {
        for (int i = 0; i < n->nout; i++) {
            ty_tensor_release(out[i]);
        }
        return st;
    }
    for (int i = 0; i < n->nout; i++) {
        tr->folded[n->out[i]] = out[i];
    }
    n->state = NS_FOLDED;
    tr->nfolded++;
    return TY_OK;
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
