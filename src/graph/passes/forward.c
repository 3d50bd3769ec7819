/* Assign forwarding: in `dst.assign(src)` where src is computed only to be assigned (an
 * optimizer's `p._assign(p - lr * g)`), the op computing src writes straight into dst's
 * memory and the copy disappears. The producer computes the same bits either way; what must
 * hold is that nothing reads dst's old values after the producer has overwritten them:
 *
 *  - dst is an external, not a view (its memory exists for the whole call and stays the same
 *    over host-less calls, which keep src's tensor);
 *  - src is the only output of a compute node P, read by the assign alone;
 *  - from P (or the start of P's fused group, where P runs) up to the assign, no other node
 *    reads dst; P and its group members before it may, as the very same tensor, only when
 *    they are elementwise (each element read before the same element is written).
 *
 * Those facts are fixed when compiling; each call checks the rest (src does not escape,
 * both run, dst is contiguous with src's dtype and shape). */
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"

/* Whether node x reads dst's memory other than as dst itself through an elementwise op. */
static int
bad_reader(const ty_trace *tr, const gnode *x, int dst)
{
    int elementwise = (ty_op_defs[x->op].flags & TY_F_INPLACE) != 0;
    for (int i = 0; i < x->nin; i++) {
        if (tr->root[x->in[i]] == dst && (x->in[i] != dst || !elementwise)) {
            return 1;
        }
    }
    return 0;
}

static int
reads(const ty_trace *tr, const gnode *x, int vid)
{
    for (int i = 0; i < x->nin; i++) {
        if (tr->root[x->in[i]] == vid) {
            return 1;
        }
    }
    return 0;
}

/* The assign node a can be forwarded as far as the recording shows. */
static int
static_ok(const ty_trace *tr, int a)
{
    const gnode *an = &tr->n[a];
    int dst = an->in[0], src = an->in[1];
    if (tr->v[dst].kind != V_EXTERNAL || tr->v[src].kind != V_NODE || tr->root[src] != src) {
        return 0;
    }
    int p = tr->v[src].index;
    const gnode *pn = &tr->n[p];
    if (pn->state != NS_EXEC || pn->alias || pn->materialize || pn->nout != 1 ||
        (ty_op_defs[pn->op].flags & TY_F_WRITES)) {
        return 0;
    }
    int start = pn->group >= 0 ? tr->groups[pn->group].first : p;
    for (int ni = start; ni < tr->nn; ni++) {
        const gnode *x = &tr->n[ni];
        if (ni != a && reads(tr, x, src)) {
            return 0; /* src is read by something other than the assign */
        }
        if (ni >= a || ni == p) {
            continue;
        }
        int member_before = pn->group >= 0 && x->group == pn->group && ni < p;
        if (member_before ? bad_reader(tr, x, dst) : reads(tr, x, dst)) {
            return 0;
        }
    }
    return !bad_reader(tr, pn, dst);
}

ty_status
ty_pass_forward(ty_trace *tr)
{
    free(tr->fwd_src);
    tr->fwd_src = malloc(sizeof(int) * (size_t)(tr->nn ? tr->nn : 1));
    TY_CHECK(tr->fwd_src, TY_ERR_OOM, "trace: out of memory");
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        int is_assign = (ty_op_defs[n->op].flags & TY_F_WRITES) && n->alias && n->nin == 2;
        tr->fwd_src[ni] = is_assign && n->state == NS_EXEC && static_ok(tr, ni) ? n->in[1] : -1;
    }
    return TY_OK;
}

static int
call_ok(ty_trace *tr, int a, int src, const char *esc)
{
    const ty_tensor *d = ty_trace_value(tr, tr->n[a].in[0]);
    const gvalue *s = &tr->v[src];
    return tr->live[a] && tr->live[s->index] && !esc[src] && !tr->scratch[src] && d &&
           d->dtype == s->meta.dtype && ty_tensor_is_contiguous(d) &&
           d->ndim == s->meta.ndim &&
           memcmp(d->shape, s->meta.shape, sizeof(int64_t) * (size_t)d->ndim) == 0;
}

ty_status
ty_forward_prepare(ty_trace *tr, const char *esc)
{
    if (!tr->fwd_on) {
        tr->fwd_on = calloc((size_t)(tr->nn ? tr->nn : 1), 1);
        tr->fwd_val = calloc((size_t)(tr->nv ? tr->nv : 1), 1);
        TY_CHECK(tr->fwd_on && tr->fwd_val, TY_ERR_OOM, "trace: out of memory");
    }
    memset(tr->fwd_val, 0, (size_t)tr->nv);
    for (int ni = 0; ni < tr->nn; ni++) {
        int src = tr->fwd_src ? tr->fwd_src[ni] : -1;
        tr->fwd_on[ni] = (char)(src >= 0 && call_ok(tr, ni, src, esc));
        if (tr->fwd_on[ni]) {
            tr->fwd_val[src] = 1;
        }
    }
    return TY_OK;
}

void
ty_forward_apply(ty_trace *tr)
{
    for (int ni = 0; ni < tr->nn; ni++) {
        if (tr->fwd_on[ni]) {
            ty_storage *s = tr->bound[tr->n[ni].in[1]]->storage;
            s->data = ty_tensor_ptr(ty_trace_value(tr, tr->n[ni].in[0]));
            s->deleter = ty_noop_deleter; /* dst's memory: its owner frees it */
        }
    }
}
