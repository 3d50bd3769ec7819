/* Which values of a recording scale with the batch size, and how, so that a dumped model
 * takes other batch sizes only where that is provably the same computation per item.
 *
 * Each value is NONE (independent of the batch: weights and what is computed from them
 * alone), LEAD m (dimension 0 is batch x m, items laid out one after another, everything else
 * independent of the batch) or UNKNOWN. An op keeps LEAD only when it is in the table below
 * and works item by item (no mixing along dimension 0); any other op with a batched input is
 * UNKNOWN. A recorded reshape of a LEAD value is rewritten to (-1, rest) when whole items map
 * to whole output rows. The batch may vary only when no value the outputs need is UNKNOWN. */
#include <string.h>

#include "graph/trace_impl.h"
#include "runtime/tym.h"

enum { UNKNOWN = -1, NONE = 0 };

static int
is_axis0(int64_t axis, int ndim)
{
    return axis == 0 || axis + ndim == 0;
}

static int64_t
prod_from(const ty_meta *m, int first)
{
    int64_t p = 1;
    for (int d = first; d < m->ndim; d++) {
        p *= m->shape[d];
    }
    return p;
}

int64_t
ty_tym_reshape_lead(const ty_meta *in, int64_t m, const ty_meta *out)
{
    if (m <= 0 || in->ndim < 1 || out->ndim < 1) {
        return m == NONE ? NONE : UNKNOWN;
    }
    int64_t item = m * prod_from(in, 1), row = prod_from(out, 1);
    return row > 0 && item % row == 0 ? item / row : UNKNOWN;
}

int
ty_tym_slice_keeps_items(const ty_meta *in, const ty_p_slice *p)
{
    return in->ndim >= 1 && p->starts.n == in->ndim && p->starts.v[0] == 0 &&
           p->steps.v[0] == 1 && p->stops.v[0] >= in->shape[0];
}

/* Elementwise (broadcasting): LEAD m when every batched input has the output's rank and the
 * same m; the others are broadcast along the trailing dimensions or fail at run time. */
static int64_t
elemw_lead(const ty_trace *tr, const gnode *n, const int64_t *lead)
{
    int64_t m = NONE;
    const ty_meta *out = &tr->v[n->out[0]].meta;
    for (int k = 0; k < n->nin; k++) {
        int64_t l = lead[n->in[k]];
        const ty_meta *in = &tr->v[n->in[k]].meta;
        if (l == NONE) {
            /* a batch-sized dimension 0 that does not scale: not item by item */
            if (in->ndim == out->ndim && in->shape[0] != 1) {
                return UNKNOWN;
            }
            continue;
        }
        if (l == UNKNOWN || in->ndim != out->ndim || in->shape[0] != out->shape[0] ||
            (m != NONE && l != m)) {
            return UNKNOWN;
        }
        m = l;
    }
    return m;
}

/* Input 0 batched, every other input independent of the batch. */
static int64_t
first_only(const gnode *n, const int64_t *lead)
{
    for (int k = 1; k < n->nin; k++) {
        if (lead[n->in[k]] != NONE) {
            return UNKNOWN;
        }
    }
    return lead[n->in[0]];
}

/* conv_bias: x batched, w and b independent, z (the output's shape) batched like x. */
static int64_t
conv_bias_lead(const gnode *n, const int64_t *lead)
{
    int64_t l = lead[n->in[0]];
    if (lead[n->in[1]] != NONE || lead[n->in[2]] != NONE ||
        (n->nin == 4 && lead[n->in[3]] != l)) {
        return UNKNOWN;
    }
    return l;
}

static int64_t
matmul_lead(const ty_trace *tr, const gnode *n, const int64_t *lead)
{
    const ty_p_matmul *p = n->params;
    int64_t a = lead[n->in[0]], b = lead[n->in[1]];
    int nda = tr->v[n->in[0]].meta.ndim, ndb = tr->v[n->in[1]].meta.ndim;
    if (a == NONE && b == NONE) {
        return NONE;
    }
    if (a > 0 && nda == 2 && !p->transpose_a && b == NONE) {
        return a; /* rows of a: items */
    }
    int b_broadcasts = ndb < nda || tr->v[n->in[1]].meta.shape[0] == 1;
    if (a > 0 && nda >= 3 && ((b == NONE && b_broadcasts) || (b == a && ndb == nda))) {
        return a; /* dimension 0 is a batch dimension of the product */
    }
    return UNKNOWN;
}

static int
list_has_axis0(const ty_i64list *l, int ndim)
{
    for (int i = 0; i < l->n; i++) {
        if (is_axis0(l->v[i], ndim)) {
            return 1;
        }
    }
    return 0;
}

/* Ops with an axis param: item by item unless they work along dimension 0. */
static int64_t
axis_lead(const ty_trace *tr, const gnode *n, const int64_t *lead)
{
    int64_t l = lead[n->in[0]];
    int ndim = tr->v[n->in[0]].meta.ndim;
    const char *params = ty_op_params(n->op)->name;
    if (l <= 0) {
        return l;
    }
    if (strcmp(params, "reduce") == 0) {
        const ty_p_reduce *p = n->params;
        return p->axes.n > 0 && !list_has_axis0(&p->axes, ndim) ? l : UNKNOWN;
    }
    if (strcmp(params, "axis") == 0) {
        return !is_axis0(((const ty_p_axis *)n->params)->axis, ndim) ? l : UNKNOWN;
    }
    return UNKNOWN;
}

static int64_t
shape_op_lead(const ty_trace *tr, const gnode *n, const int64_t *lead)
{
    int64_t l = lead[n->in[0]];
    const ty_meta *in = &tr->v[n->in[0]].meta, *out = &tr->v[n->out[0]].meta;
    if (l <= 0) {
        return l;
    }
    switch (n->op) {
    case TY_OP_COPY:
        return l;
    case TY_OP_TRANSPOSE: {
        const ty_p_perm *p = n->params;
        return p->perm.n > 0 && is_axis0(p->perm.v[0], in->ndim) ? l : UNKNOWN;
    }
    case TY_OP_EXPAND_DIMS:
        return !list_has_axis0(&((const ty_p_axes *)n->params)->axes, out->ndim) ? l : UNKNOWN;
    case TY_OP_SQUEEZE: {
        /* no axes: every size-1 dimension goes, dimension 0 too at a batch of one item */
        const ty_i64list *axes = &((const ty_p_axes *)n->params)->axes;
        return axes->n > 0 && !list_has_axis0(axes, in->ndim) ? l : UNKNOWN;
    }
    case TY_OP_RESHAPE:
        return ty_tym_reshape_lead(in, l, out);
    case TY_OP_SLICE:
        return ty_tym_slice_keeps_items(in, n->params) ? l : UNKNOWN;
    default:
        return UNKNOWN;
    }
}

static int64_t
arrange_lead(const ty_trace *tr, const gnode *n, const int64_t *lead)
{
    if (n->op == TY_OP_CONCAT) {
        int ndim = tr->v[n->out[0]].meta.ndim;
        /* along dimension 0 items of several tensors mix; across it, like elementwise */
        return is_axis0(((const ty_p_axis *)n->params)->axis, ndim) ? UNKNOWN
                                                                    : elemw_lead(tr, n, lead);
    }
    if (n->op == TY_OP_SPLIT) {
        int64_t l = lead[n->in[0]];
        int ndim = tr->v[n->in[0]].meta.ndim;
        return l <= 0 || !is_axis0(((const ty_p_split *)n->params)->axis, ndim) ? l : UNKNOWN;
    }
    return UNKNOWN;
}

static int
all_none(const gnode *n, const int64_t *lead)
{
    for (int k = 0; k < n->nin; k++) {
        if (lead[n->in[k]] != NONE) {
            return 0;
        }
    }
    return 1;
}

static int64_t
node_lead(const ty_trace *tr, const gnode *n, const int64_t *lead)
{
    const char *family = ty_op_defs[n->op].family;
    if (all_none(n, lead)) {
        return NONE;
    }
    if (strcmp(family, "elemw") == 0) {
        return elemw_lead(tr, n, lead);
    }
    switch (n->op) {
    case TY_OP_CONV2D:
    case TY_OP_CONV_TRANSPOSE2D:
    case TY_OP_MAX_POOL2D:
    case TY_OP_AVG_POOL2D:
    case TY_OP_ADAPTIVE_MAX_POOL2D:
    case TY_OP_ADAPTIVE_AVG_POOL2D:
        return first_only(n, lead);
    case TY_OP_MATMUL:
        return matmul_lead(tr, n, lead);
    case TY_OP_CONV_BIAS:
        return conv_bias_lead(n, lead);
    case TY_OP_SOFTMAX:
    case TY_OP_LOG_SOFTMAX:
    case TY_OP_CUMSUM:
        return axis_lead(tr, n, lead);
    default:
        break;
    }
    if (strcmp(family, "reduce") == 0) {
        return axis_lead(tr, n, lead);
    }
    if (strcmp(family, "shape") == 0) {
        return shape_op_lead(tr, n, lead);
    }
    if (strcmp(family, "arrange") == 0) {
        return arrange_lead(tr, n, lead);
    }
    return UNKNOWN;
}

int
ty_tym_batch_lead(const ty_trace *tr, const char *need_n, int64_t *lead)
{
    int64_t batch = -1;
    for (int i = 0; i < tr->nv; i++) {
        lead[i] = NONE;
    }
    for (int i = 0; i < tr->nargs; i++) {
        const ty_meta *m = &tr->v[tr->arg_vid[i]].meta;
        if (m->ndim > 0 && batch < 0) {
            batch = m->shape[0];
        }
        /* arguments of the same leading size are batched together */
        lead[tr->arg_vid[i]] = m->ndim > 0 && m->shape[0] == batch ? 1 : NONE;
    }
    int polymorphic = batch > 0;
    for (int ni = 0; ni < tr->nn && polymorphic; ni++) {
        const gnode *n = &tr->n[ni];
        if (!need_n[ni]) {
            continue;
        }
        int64_t l = ty_op_flags(n->op) & (TY_F_DYN | TY_F_RANDOM) ? UNKNOWN
                                                                   : node_lead(tr, n, lead);
        for (int k = 0; k < n->nout; k++) {
            lead[n->out[k]] = l;
        }
        polymorphic = l != UNKNOWN;
    }
    return polymorphic;
}
