/* Shape family: views (reshape, transpose, broadcast_to, expand_dims, squeeze, slice), copy. */
#include <string.h>

#include "ops/gradkit.h"
#include "ops/strided.h"

static ty_status
list_to_shape(const ty_i64list *l, int *ndim, int64_t *shape)
{
    TY_CHECK(l->n >= 0 && l->n <= TY_MAX_DIMS, TY_ERR_SHAPE, "rank %d is out of range [0, %d]",
             (int)l->n, TY_MAX_DIMS);
    *ndim = l->n;
    memcpy(shape, l->v, sizeof(int64_t) * (size_t)l->n);
    return TY_OK;
}

/* ---- reshape (with one -1 inferred) ---- */
static ty_status
reshape_target(const ty_call *c, int *ndim, int64_t *shape)
{
    const ty_tensor *x = c->in[0];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(list_to_shape(&((const ty_p_shape *)c->params)->shape, ndim, shape));
    int infer_at = -1;
    int64_t known = 1, numel = ty_tensor_numel(x);
    for (int i = 0; i < *ndim; i++) {
        if (shape[i] == -1) {
            TY_CHECK(infer_at < 0, TY_ERR_SHAPE, "only one dimension can be -1, got %s",
                     ty_shape_str(*ndim, shape, b1, sizeof b1));
            infer_at = i;
            continue;
        }
        TY_CHECK(shape[i] >= 0, TY_ERR_SHAPE, "negative dimension in target shape %s",
                 ty_shape_str(*ndim, shape, b1, sizeof b1));
        TY_CHECK(!__builtin_mul_overflow(known, shape[i], &known), TY_ERR_SHAPE,
                 "target shape overflows");
    }
    if (infer_at >= 0) {
        TY_CHECK(known != 0 && numel % known == 0, TY_ERR_SHAPE,
                 "cannot reshape a tensor of shape %s into %s",
                 ty_shape_str(x->ndim, x->shape, b1, sizeof b1),
                 ty_shape_str(*ndim, shape, b2, sizeof b2));
        shape[infer_at] = numel / known;
        known = numel;
    }
    TY_CHECK(known == numel, TY_ERR_SHAPE, "cannot reshape a tensor of shape %s into %s",
             ty_shape_str(x->ndim, x->shape, b1, sizeof b1),
             ty_shape_str(*ndim, shape, b2, sizeof b2));
    return TY_OK;
}

ty_status
ty_reshape_infer(const ty_call *c, ty_meta *out)
{
    out->dtype = c->in[0]->dtype;
    return reshape_target(c, &out->ndim, out->shape);
}

/* Strides for viewing x (numel > 0) with a new shape without copying, if the layout allows
 * it: groups of old dims whose product equals a group of new dims must be contiguous among
 * themselves. */
static int
reshape_strides(const ty_tensor *x, int nd, const int64_t *shape, int64_t *strides)
{
    int64_t od[TY_MAX_DIMS], os[TY_MAX_DIMS];
    int on = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[i] != 1) {
            od[on] = x->shape[i];
            os[on++] = x->strides[i];
        }
    }
    for (int i = 0; i < nd; i++) {
        strides[i] = 0;
    }
    int oi = 0, oj = 1, ni = 0, nj = 1;
    while (ni < nd && oi < on) {
        int64_t np = shape[ni], op = od[oi];
        while (np != op) {
            if (np < op) {
                if (nj >= nd) {
                    return 0;
                }
                np *= shape[nj++];
            } else {
                if (oj >= on) {
                    return 0;
                }
                op *= od[oj++];
            }
        }
        for (int k = oi; k < oj - 1; k++) {
            if (os[k] != od[k + 1] * os[k + 1]) {
                return 0;
            }
        }
        strides[nj - 1] = os[oj - 1];
        for (int k = nj - 1; k > ni; k--) {
            strides[k - 1] = strides[k] * shape[k];
        }
        ni = nj++;
        oi = oj++;
    }
    return 1;
}

int
ty_view_copies(const ty_call *c)
{
    if (c->op != TY_OP_RESHAPE) {
        return 0; /* the other view ops always view */
    }
    const ty_tensor *x = c->in[0];
    int nd = 0;
    int64_t shape[TY_MAX_DIMS], strides[TY_MAX_DIMS];
    if (reshape_target(c, &nd, shape) != TY_OK) {
        ty_clear_error();
        return 0; /* the forward reports the error */
    }
    return ty_tensor_numel(x) != 0 && !reshape_strides(x, nd, shape, strides);
}

ty_status
ty_reshape_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *x = c->in[0];
    int nd = 0;
    int64_t shape[TY_MAX_DIMS], strides[TY_MAX_DIMS];
    TY_TRY(reshape_target(c, &nd, shape));
    if (ty_tensor_numel(x) == 0) {
        ty_contiguous_strides(nd, shape, strides);
        return ty_tensor_view(x, nd, shape, strides, x->offset, out);
    }
    if (reshape_strides(x, nd, shape, strides)) {
        return ty_tensor_view(x, nd, shape, strides, x->offset, out);
    }
    ty_tensor *cont;
    TY_TRY(ty_contiguous(x, &cont));
    ty_contiguous_strides(nd, shape, strides);
    ty_status st = ty_tensor_view(cont, nd, shape, strides, cont->offset, out);
    ty_tensor_release(cont);
    return st;
}

ty_status
ty_grad_reshape(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_p_shape p = {0};
    p.shape.n = c->in[0]->ndim;
    memcpy(p.shape.v, c->in[0]->shape, sizeof(int64_t) * (size_t)c->in[0]->ndim);
    return ty_op1(TY_OP_RESHAPE, &p, gout[0], &gin[0]);
}

/* ---- transpose ---- */
static ty_status
check_perm(const ty_call *c, const ty_i64list *perm)
{
    int nd = c->in[0]->ndim, seen[TY_MAX_DIMS] = {0};
    TY_CHECK(perm->n == nd, TY_ERR_SHAPE, "permutation has %d entries for a %d-d tensor",
             (int)perm->n, nd);
    for (int i = 0; i < nd; i++) {
        int64_t p = perm->v[i];
        TY_CHECK(p >= 0 && p < nd && !seen[p], TY_ERR_INVALID_ARG,
                 "invalid permutation entry %lld at position %d", (long long)p, i);
        seen[p] = 1;
    }
    return TY_OK;
}

ty_status
ty_transpose_infer(const ty_call *c, ty_meta *out)
{
    const ty_i64list *perm = &((const ty_p_perm *)c->params)->perm;
    TY_TRY(check_perm(c, perm));
    out->dtype = c->in[0]->dtype;
    out->ndim = c->in[0]->ndim;
    for (int i = 0; i < out->ndim; i++) {
        out->shape[i] = c->in[0]->shape[perm->v[i]];
    }
    return TY_OK;
}

ty_status
ty_transpose_forward(const ty_call *c, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    const ty_i64list *perm = &((const ty_p_perm *)c->params)->perm;
    int64_t shape[TY_MAX_DIMS], strides[TY_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        shape[i] = x->shape[perm->v[i]];
        strides[i] = x->strides[perm->v[i]];
    }
    return ty_tensor_view(x, x->ndim, shape, strides, x->offset, out);
}

ty_status
ty_grad_transpose(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                  ty_tensor **gin)
{
    (void)out;
    const ty_i64list *perm = &((const ty_p_perm *)c->params)->perm;
    ty_p_perm inv = {0};
    inv.perm.n = perm->n;
    for (int i = 0; i < perm->n; i++) {
        inv.perm.v[perm->v[i]] = i;
    }
    return ty_op1(TY_OP_TRANSPOSE, &inv, gout[0], &gin[0]);
}

/* ---- broadcast_to ---- */
ty_status
ty_broadcast_to_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(list_to_shape(&((const ty_p_shape *)c->params)->shape, &out->ndim, out->shape));
    int lead = out->ndim - x->ndim;
    int ok = lead >= 0;
    for (int i = 0; ok && i < x->ndim; i++) {
        int64_t t = out->shape[lead + i];
        ok = t >= 0 && (x->shape[i] == t || x->shape[i] == 1);
    }
    for (int i = 0; ok && i < out->ndim; i++) {
        ok = out->shape[i] >= 0;
    }
    TY_CHECK(ok, TY_ERR_SHAPE, "cannot broadcast a tensor of shape %s to %s",
             ty_shape_str(x->ndim, x->shape, b1, sizeof b1),
             ty_shape_str(out->ndim, out->shape, b2, sizeof b2));
    int64_t n;
    TY_TRY(ty_shape_numel(out->ndim, out->shape, &n));
    out->dtype = x->dtype;
    return TY_OK;
}

ty_status
ty_broadcast_to_forward(const ty_call *c, ty_tensor **out)
{
    ty_meta m;
    TY_TRY(ty_broadcast_to_infer(c, &m));
    int64_t strides[TY_MAX_DIMS];
    ty_broadcast_strides(c->in[0], m.ndim, m.shape, strides);
    return ty_tensor_view(c->in[0], m.ndim, m.shape, strides, c->in[0]->offset, out);
}

ty_status
ty_grad_broadcast_to(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                     ty_tensor **gin)
{
    (void)out;
    return ty_sum_to_shape(gout[0], c->in[0]->ndim, c->in[0]->shape, &gin[0]);
}

/* ---- expand_dims / squeeze ---- */
ty_status
ty_expand_dims_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    const ty_i64list *axes = &((const ty_p_axes *)c->params)->axes;
    int nd = x->ndim + axes->n, mark[TY_MAX_DIMS] = {0};
    TY_CHECK(axes->n >= 1 && nd <= TY_MAX_DIMS, TY_ERR_SHAPE,
             "cannot add %d dims to a %d-d tensor", (int)axes->n, x->ndim);
    for (int i = 0; i < axes->n; i++) {
        int a;
        TY_TRY(ty_norm_axis(axes->v[i], nd, &a));
        TY_CHECK(!mark[a], TY_ERR_INVALID_ARG, "repeated axis %lld", (long long)axes->v[i]);
        mark[a] = 1;
    }
    out->dtype = x->dtype;
    out->ndim = nd;
    for (int i = 0, j = 0; i < nd; i++) {
        out->shape[i] = mark[i] ? 1 : x->shape[j++];
    }
    return TY_OK;
}

ty_status
ty_squeeze_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    const ty_i64list *axes = &((const ty_p_axes *)c->params)->axes;
    int mark[TY_MAX_DIMS] = {0};
    for (int i = 0; i < axes->n; i++) {
        int a;
        TY_TRY(ty_norm_axis(axes->v[i], x->ndim, &a));
        TY_CHECK(x->ndim > 0 && x->shape[a] == 1, TY_ERR_SHAPE,
                 "cannot squeeze axis %lld of size %lld", (long long)axes->v[i],
                 (long long)(x->ndim ? x->shape[a] : 0));
        mark[a] = 1;
    }
    out->dtype = x->dtype;
    out->ndim = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (axes->n == 0 ? x->shape[i] != 1 : !mark[i]) {
            out->shape[out->ndim++] = x->shape[i];
        }
    }
    return TY_OK;
}

/* expand_dims and squeeze keep the element order: a view with contiguous-compatible strides. */
static ty_status
regroup_forward(const ty_call *c, ty_meta *m, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    int64_t strides[TY_MAX_DIMS];
    int j = 0;
    for (int i = 0; i < m->ndim; i++) {
        while (j < x->ndim && x->shape[j] == 1 && m->shape[i] != 1) {
            j++;
        }
        if (j < x->ndim && x->shape[j] == m->shape[i] && m->shape[i] != 1) {
            strides[i] = x->strides[j++];
        } else {
            strides[i] = 0; /* a size-1 dim: any stride */
        }
    }
    return ty_tensor_view(x, m->ndim, m->shape, strides, x->offset, out);
}

ty_status
ty_expand_dims_forward(const ty_call *c, ty_tensor **out)
{
    ty_meta m;
    TY_TRY(ty_expand_dims_infer(c, &m));
    return regroup_forward(c, &m, out);
}

ty_status
ty_squeeze_forward(const ty_call *c, ty_tensor **out)
{
    ty_meta m;
    TY_TRY(ty_squeeze_infer(c, &m));
    return regroup_forward(c, &m, out);
}

/* ---- slice: per-dim (start, stop, step) as Python's slice.indices() returns them ---- */
static ty_status
slice_dims(const ty_call *c, int64_t *len)
{
    const ty_tensor *x = c->in[0];
    const ty_p_slice *p = c->params;
    TY_CHECK(p->starts.n == x->ndim && p->stops.n == x->ndim && p->steps.n == x->ndim,
             TY_ERR_INVALID_ARG, "slice needs one (start, stop, step) per dim of a %d-d tensor",
             x->ndim);
    for (int d = 0; d < x->ndim; d++) {
        int64_t st = p->starts.v[d], sp = p->stops.v[d], step = p->steps.v[d], n = x->shape[d];
        TY_CHECK(step != 0, TY_ERR_INVALID_ARG, "slice step cannot be zero");
        /* a forward stop past the end means "to the end", as in Python (a dumped model's
         * batch dimension is sliced to INT64_MAX so it takes any batch size) */
        if (step > 0 && sp > n && st >= 0 && st < n) {
            sp = n;
        }
        /* in uint64: any int64 start, stop and step (params from a file) without overflow */
        uint64_t dist = step > 0 ? (uint64_t)sp - (uint64_t)st : (uint64_t)st - (uint64_t)sp;
        uint64_t mag = step > 0 ? (uint64_t)step : 0 - (uint64_t)step;
        int empty = step > 0 ? sp <= st : sp >= st;
        uint64_t l = empty ? 0 : (dist - 1) / mag + 1;
        int64_t last = 0;
        TY_CHECK(l == 0 || (st >= 0 && st < n && l <= (uint64_t)n &&
                            !__builtin_mul_overflow((int64_t)l - 1, step, &last) &&
                            !__builtin_add_overflow(st, last, &last) && last >= 0 && last < n),
                 TY_ERR_INDEX, "slice [%lld:%lld:%lld] is out of bounds for dim %d of size %lld",
                 (long long)st, (long long)sp, (long long)step, d, (long long)n);
        len[d] = (int64_t)l;
    }
    return TY_OK;
}

ty_status
ty_slice_infer(const ty_call *c, ty_meta *out)
{
    out->dtype = c->in[0]->dtype;
    out->ndim = c->in[0]->ndim;
    return slice_dims(c, out->shape);
}

ty_status
ty_slice_forward(const ty_call *c, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    const ty_p_slice *p = c->params;
    int64_t len[TY_MAX_DIMS], strides[TY_MAX_DIMS], off = x->offset;
    TY_TRY(slice_dims(c, len));
    for (int d = 0; d < x->ndim; d++) {
        /* a step only matters between two elements (a lone one may have any step) */
        strides[d] = len[d] > 1 ? x->strides[d] * p->steps.v[d] : x->strides[d];
        if (len[d] > 0) {
            off += p->starts.v[d] * x->strides[d];
        }
    }
    return ty_tensor_view(x, x->ndim, len, strides, off, out);
}

ty_status
ty_grad_slice(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    return ty_op2(TY_OP_SLICE_GRAD, c->params, c->in[0], gout[0], &gin[0]);
}

/* slice_grad(x, dy): zeros shaped like x with dy written at the slice (the adjoint of slice). */
ty_status
ty_slice_grad_infer(const ty_call *c, ty_meta *out)
{
    ty_call sc = {TY_OP_SLICE, c->params, 1, c->in, 1};
    int64_t len[TY_MAX_DIMS];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(slice_dims(&sc, len));
    const ty_tensor *dy = c->in[1];
    TY_CHECK(dy->ndim == c->in[0]->ndim &&
                 memcmp(dy->shape, len, sizeof(int64_t) * (size_t)dy->ndim) == 0,
             TY_ERR_SHAPE, "gradient of shape %s does not match the slice shape %s",
             ty_shape_str(dy->ndim, dy->shape, b1, sizeof b1),
             ty_shape_str(dy->ndim, len, b2, sizeof b2));
    ty_meta_of(c->in[0], out);
    out->dtype = dy->dtype;
    return TY_OK;
}

ty_status
ty_slice_grad_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *y = out[0], *view = NULL;
    memset(ty_tensor_ptr(y), 0, (size_t)ty_tensor_numel(y) * ty_dtype_size(y->dtype));
    ty_call sc = {TY_OP_SLICE, c->params, 1, &y, 1};
    TY_TRY(ty_slice_forward(&sc, &view));
    ty_status st = ty_strided_copy(view, c->in[1]);
    ty_tensor_release(view);
    return st;
}

ty_status
ty_grad_slice_grad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                   ty_tensor **gin)
{
    (void)out;
    gin[0] = NULL;
    return ty_op1(TY_OP_SLICE, c->params, gout[0], &gin[1]);
}

/* ---- copy: a contiguous materialisation ---- */
ty_status
ty_copy_infer(const ty_call *c, ty_meta *out)
{
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

ty_status
ty_copy_forward(const ty_call *c, ty_tensor **out)
{
    return ty_strided_copy(out[0], c->in[0]);
}

ty_status
ty_grad_copy(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)c;
    (void)out;
    ty_tensor_retain(gout[0]);
    gin[0] = gout[0];
    return TY_OK;
}

/* slice_set(x, v): a copy of x with v (broadcast to the slice shape) written at the slice. */
ty_status
ty_slice_set_infer(const ty_call *c, ty_meta *out)
{
    ty_call sc = {TY_OP_SLICE, c->params, 1, c->in, 1};
    int64_t len[TY_MAX_DIMS];
    TY_TRY(slice_dims(&sc, len));
    const ty_tensor *v = c->in[1];
    int nd;
    int64_t bs[TY_MAX_DIMS];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(ty_broadcast_shapes(c->in[0]->ndim, len, v->ndim, v->shape, &nd, bs));
    TY_CHECK(nd == c->in[0]->ndim && memcmp(bs, len, sizeof(int64_t) * (size_t)nd) == 0,
             TY_ERR_SHAPE, "cannot assign a value of shape %s to a slice of shape %s",
             ty_shape_str(v->ndim, v->shape, b1, sizeof b1), ty_shape_str(nd, len, b2, sizeof b2));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

ty_status
ty_slice_set_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *y = out[0], *view = NULL;
    TY_TRY(ty_strided_copy(y, c->in[0]));
    ty_call sc = {TY_OP_SLICE, c->params, 1, &y, 1};
    TY_TRY(ty_slice_forward(&sc, &view));
    ty_status st = ty_strided_copy(view, c->in[1]);
    ty_tensor_release(view);
    return st;
}

ty_status
ty_grad_slice_set(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                  ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *g = gout[0];
    ty_tensor *gx = gk_apply(&k, TY_OP_SLICE_SET, c->params, 2, g, C(g, 0), NULL);
    ty_tensor *gv = gk_sum_to(&k, gk_apply(&k, TY_OP_SLICE, c->params, 1, g, NULL, NULL), c->in[1]);
    return gk_finish2(&k, gx, &gin[0], gv, &gin[1]);
}

/* ---- assign: the in-place update as an op, so traced steps record it ---- */
ty_status
ty_assign_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *dst = c->in[0], *src = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    int nd;
    int64_t shape[TY_MAX_DIMS];
    TY_TRY(ty_broadcast_shapes(dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape));
    TY_CHECK(nd == dst->ndim && memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd) == 0,
             TY_ERR_SHAPE, "cannot assign a value of shape %s to a tensor of shape %s",
             ty_shape_str(src->ndim, src->shape, b1, sizeof b1),
             ty_shape_str(dst->ndim, dst->shape, b2, sizeof b2));
    ty_meta_of(dst, out);
    return TY_OK;
}

ty_status
ty_assign_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *dst = c->in[0];
    ty_storage_written(dst);
    TY_TRY(ty_strided_copy(dst, c->in[1]));
    return ty_tensor_view(dst, dst->ndim, dst->shape, dst->strides, dst->offset, out);
}
