/* Index family: advanced indexing (index, index_set, index_add), gather / scatter /
 * scatter_add, one_hot, cond_take, non_zero (sort / topk are in sort.c, cumsum in scan.c).
 *
 * Index tensors are first materialised as contiguous int64 copies, checked against the dim
 * size (TY_ERR_INDEX) and normalised (negative = from the end) before anything is written, so
 * a bad index never reaches a kernel loop. */
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

static int
is_index_dtype(ty_dtype dt)
{
    return dt == TY_INT8 || dt == TY_UINT8 || dt == TY_INT16 || dt == TY_INT32 ||
           dt == TY_INT64;
}

static ty_status
check_index_dtype(const ty_tensor *t, int pos)
{
    TY_CHECK(is_index_dtype(t->dtype), TY_ERR_DTYPE,
             "index input %d must have an integer dtype, got %s", pos, ty_dtype_name(t->dtype));
    return TY_OK;
}

/* A new contiguous int64 tensor holding idx broadcast to (nd, shape), each value checked to
 * lie in [-limit, limit) ([0, limit) without neg) and made non-negative. */
static ty_status
index_i64_ex(const ty_tensor *idx, int nd, const int64_t *shape, int64_t limit, int dim, int neg,
             ty_tensor **out)
{
    ty_tensor *t;
    TY_TRY(ty_tensor_new_like_meta(TY_INT64, nd, shape, &t));
    ty_status st = ty_strided_copy(t, idx);
    int64_t *v = (int64_t *)ty_tensor_ptr(t), n = ty_tensor_numel(t);
    for (int64_t i = 0; st == TY_OK && i < n; i++) {
        if (v[i] < (neg ? -limit : 0) || v[i] >= limit) {
            st = ty_set_error(TY_ERR_INDEX, "index %lld is out of bounds for dim %d with size %lld",
                              (long long)v[i], dim, (long long)limit);
        } else if (v[i] < 0) {
            v[i] += limit;
        }
    }
    if (st != TY_OK) {
        ty_tensor_release(t);
        return st;
    }
    *out = t;
    return TY_OK;
}

static ty_status
index_i64(const ty_tensor *idx, int nd, const int64_t *shape, int64_t limit, int dim,
          ty_tensor **out)
{
    return index_i64_ex(idx, nd, shape, limit, dim, 1, out);
}

/* ===================== index / index_set / index_add ===================== */
/* Inputs: x, [value,] idx0..idxk-1 with idx at c->in[first..]. The indexed result has shape
 * x.shape[:axis] + broadcast(idx shapes) + x.shape[axis+k:]. */
typedef struct index_plan {
    int axis, k, bn;
    int64_t bshape[TY_MAX_DIMS];
    int64_t outer, nb, inner; /* outer dims, broadcast index count, inner block */
} index_plan;

static ty_status
index_plan_make(const ty_call *c, int first, index_plan *p, ty_meta *res)
{
    const ty_tensor *x = c->in[0];
    char b1[TY_SHAPE_BUF];
    p->k = c->nin - first;
    TY_CHECK(p->k >= 1, TY_ERR_INVALID_ARG, "needs at least one index tensor");
    TY_CHECK(x->ndim >= 1, TY_ERR_SHAPE, "cannot index a 0-d tensor");
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x->ndim, &p->axis));
    TY_CHECK(p->axis + p->k <= x->ndim, TY_ERR_INDEX,
             "%d index tensors from axis %d are too many for a tensor of shape %s", p->k,
             p->axis, ty_shape_str(x->ndim, x->shape, b1, sizeof b1));
    p->bn = 0;
    for (int j = 0; j < p->k; j++) {
        const ty_tensor *t = c->in[first + j];
        TY_TRY(check_index_dtype(t, first + j));
        TY_TRY(ty_broadcast_shapes(p->bn, p->bshape, t->ndim, t->shape, &p->bn, p->bshape));
    }
    int tail = x->ndim - p->axis - p->k;
    TY_CHECK(p->axis + p->bn + tail <= TY_MAX_DIMS, TY_ERR_SHAPE,
             "indexing result would have %d dims (max %d)", p->axis + p->bn + tail, TY_MAX_DIMS);
    res->dtype = x->dtype;
    res->ndim = 0;
    for (int d = 0; d < p->axis; d++) {
        res->shape[res->ndim++] = x->shape[d];
    }
    for (int d = 0; d < p->bn; d++) {
        res->shape[res->ndim++] = p->bshape[d];
    }
    for (int d = p->axis + p->k; d < x->ndim; d++) {
        res->shape[res->ndim++] = x->shape[d];
    }
    p->outer = ty_shape_prod(x->shape, 0, p->axis);
    p->nb = ty_shape_prod(p->bshape, 0, p->bn);
    p->inner = ty_shape_prod(x->shape, p->axis + p->k, x->ndim);
    return TY_OK;
}

/* offs[b] = position (in inner blocks) of index tuple b within the indexed dims. */
static ty_status
index_offsets(const ty_call *c, int first, const index_plan *p, int64_t **offs)
{
    const ty_tensor *x = c->in[0];
    int64_t *o = calloc((size_t)(p->nb ? p->nb : 1), sizeof(int64_t));
    TY_CHECK(o, TY_ERR_OOM, "out of memory for %lld index offsets", (long long)p->nb);
    int64_t stride = 1;
    for (int j = p->k - 1; j >= 0; j--) {
        int d = p->axis + j;
        ty_tensor *t = NULL;
        ty_status st = index_i64(c->in[first + j], p->bn, p->bshape, x->shape[d], d, &t);
        if (st != TY_OK) {
            free(o);
            return st;
        }
        const int64_t *v = (const int64_t *)ty_tensor_ptr(t);
        for (int64_t b = 0; b < p->nb; b++) {
            o[b] += v[b] * stride;
        }
        ty_tensor_release(t);
        stride *= x->shape[d];
    }
    *offs = o;
    return TY_OK;
}

ty_status
ty_index_infer(const ty_call *c, ty_meta *out)
{
    index_plan p;
    return index_plan_make(c, 1, &p, out);
}

typedef struct index_ctx {
    const index_plan *p;
    const int64_t *offs;
    char *big;         /* x (gather source / scatter destination), contiguous */
    char *small;       /* the indexed-shape tensor, contiguous */
    int64_t span;      /* inner blocks per outer index in big */
    size_t es;
    ty_dtype dt;
    int64_t nchunk, chunk; /* index_add: inner split into chunks */
} index_ctx;

static void
index_gather_range(void *vctx, int64_t begin, int64_t end)
{
    const index_ctx *ic = vctx;
    int64_t bytes = ic->p->inner * (int64_t)ic->es;
    for (int64_t r = begin; r < end; r++) {
        int64_t o = r / ic->p->nb, b = r % ic->p->nb;
        const char *src = ic->big + (o * ic->span + ic->offs[b]) * bytes;
        if (ic->p->inner == 1) {
            ty_copy_elem(ic->small + r * bytes, src, ic->es);
        } else {
            memcpy(ic->small + r * bytes, src, (size_t)bytes);
        }
    }
}

ty_status
ty_index_forward(const ty_call *c, ty_tensor **out)
{
    index_plan p;
    ty_meta m;
    int64_t *offs = NULL;
    ty_tensor *x = NULL;
    ty_status status = TY_OK;
    TY_TRY(index_plan_make(c, 1, &p, &m));
    TY_TRY(index_offsets(c, 1, &p, &offs));
    TY_TRY_GOTO(ty_contiguous(c->in[0], &x));
    index_ctx ic = {.p = &p, .offs = offs, .big = ty_tensor_ptr(x), .small = ty_tensor_ptr(out[0]),
                    .span = ty_shape_prod(x->shape, p.axis, p.axis + p.k), .es = ty_dtype_size(x->dtype)};
    if (ty_tensor_numel(out[0]) > 0) {
        ty_parallel_for(p.outer * p.nb, (1 << 14) / (p.inner + 1) + 1, index_gather_range, &ic);
    }
fail:
    free(offs);
    ty_tensor_release(x);
    return status;
}

/* index_set / index_add: rows of v written (or added) at their index, in index order within
 * each (outer, inner chunk) task so duplicates resolve the same way on every run. */
static void
index_put_range(void *vctx, int64_t begin, int64_t end, int add)
{
    const index_ctx *ic = vctx;
    const index_plan *p = ic->p;
    size_t es = ic->es;
    for (int64_t t = begin; t < end; t++) {
        int64_t o = t / ic->nchunk, lo = (t % ic->nchunk) * ic->chunk;
        int64_t n = p->inner - lo < ic->chunk ? p->inner - lo : ic->chunk;
        for (int64_t b = 0; b < p->nb; b++) {
            char *d = ic->big + ((o * ic->span + ic->offs[b]) * p->inner + lo) * (int64_t)es;
            const char *s = ic->small + ((o * p->nb + b) * p->inner + lo) * (int64_t)es;
            if (!add) {
                memcpy(d, s, (size_t)n * es);
            } else if (ic->dt == TY_FLOAT32) {
                for (int64_t i = 0; i < n; i++) {
                    ((float *)d)[i] += ((const float *)s)[i];
                }
            } else if (ic->dt == TY_FLOAT64) {
                for (int64_t i = 0; i < n; i++) {
                    ((double *)d)[i] += ((const double *)s)[i];
                }
            } else {
                for (int64_t i = 0; i < n; i++) {
                    char *di = d + i * (int64_t)es;
                    double v = ty_load_f64(di, ic->dt) + ty_load_f64(s + i * (int64_t)es, ic->dt);
                    ty_store_f64(di, ic->dt, v);
                }
            }
        }
    }
}

static void
index_set_range(void *vctx, int64_t begin, int64_t end)
{
    index_put_range(vctx, begin, end, 0);
}

static void
index_add_range(void *vctx, int64_t begin, int64_t end)
{
    index_put_range(vctx, begin, end, 1);
}

ty_status
ty_index_put_infer(const ty_call *c, ty_meta *out)
{
    index_plan p;
    ty_meta m;
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(c->nin >= 3, TY_ERR_INVALID_ARG, "needs x, value and at least one index");
    TY_TRY(index_plan_make(c, 2, &p, &m));
    const ty_tensor *v = c->in[1];
    int nd;
    int64_t bs[TY_MAX_DIMS];
    ty_status st = ty_broadcast_shapes(m.ndim, m.shape, v->ndim, v->shape, &nd, bs);
    TY_CHECK(st == TY_OK && nd == m.ndim &&
                 memcmp(bs, m.shape, sizeof(int64_t) * (size_t)nd) == 0,
             TY_ERR_SHAPE, "cannot put a value of shape %s into indexed positions of shape %s",
             ty_shape_str(v->ndim, v->shape, b1, sizeof b1),
             ty_shape_str(m.ndim, m.shape, b2, sizeof b2));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

static ty_status
index_put_forward(const ty_call *c, ty_tensor **out, int add)
{
    index_plan p;
    ty_meta m;
    int64_t *offs = NULL;
    ty_tensor *y = out[0], *v = NULL;
    ty_status status = TY_OK;
    TY_TRY(index_plan_make(c, 2, &p, &m));
    TY_TRY(index_offsets(c, 2, &p, &offs));
    TY_TRY_GOTO(ty_strided_copy(y, c->in[0]));
    TY_TRY_GOTO(ty_tensor_new_like_meta(y->dtype, m.ndim, m.shape, &v));
    TY_TRY_GOTO(ty_strided_copy(v, c->in[1]));
    index_ctx ic = {.p = &p, .offs = offs, .big = ty_tensor_ptr(y), .small = ty_tensor_ptr(v),
                    .span = ty_shape_prod(y->shape, p.axis, p.axis + p.k), .es = ty_dtype_size(y->dtype),
                    .dt = y->dtype};
    ic.chunk = p.outer > 16 || p.inner < 1024 ? (p.inner ? p.inner : 1) : 1024;
    ic.nchunk = (p.inner + ic.chunk - 1) / ic.chunk;
    if (ty_tensor_numel(v) > 0) {
        ty_parallel_for(p.outer * ic.nchunk, 1, add ? index_add_range : index_set_range, &ic);
    }
fail:
    free(offs);
    ty_tensor_release(v);
    return status;
}

ty_status
ty_index_set_forward(const ty_call *c, ty_tensor **out)
{
    return index_put_forward(c, out, 0);
}

ty_status
ty_index_add_forward(const ty_call *c, ty_tensor **out)
{
    return index_put_forward(c, out, 1);
}

/* Applies op to (a, b, the index inputs of c from `first`). */
static ty_status
apply_with_indices(ty_op op, const ty_call *c, int first, ty_tensor *a, ty_tensor *b,
                   ty_tensor **out)
{
    ty_tensor *in[TY_MAX_DIMS + 2];
    int n = 0;
    in[n++] = a;
    if (b) {
        in[n++] = b;
    }
    for (int i = first; i < c->nin && n < TY_MAX_DIMS + 2; i++) {
        in[n++] = c->in[i];
    }
    TY_CHECK(n - (b ? 2 : 1) == c->nin - first, TY_ERR_INVALID_ARG, "too many index tensors");
    return ty_apply(op, c->params, n, in, 1, out);
}

ty_status
ty_grad_index(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const ty_tensor *x = c->in[0];
    ty_tensor *z;
    TY_TRY(ty_zeros_shaped(gout[0]->dtype, x->ndim, x->shape, &z));
    ty_status st = apply_with_indices(TY_OP_INDEX_ADD, c, 1, z, gout[0], &gin[0]);
    ty_tensor_release(z);
    return st;
}

/* d value = the indexed part of g summed down to value's shape. */
static ty_status
grad_value(const ty_call *c, ty_tensor *g, ty_tensor **gv)
{
    ty_tensor *t;
    TY_TRY(apply_with_indices(TY_OP_INDEX, c, 2, g, NULL, &t));
    ty_status st = ty_sum_to_shape(t, c->in[1]->ndim, c->in[1]->shape, gv);
    ty_tensor_release(t);
    return st;
}

ty_status
ty_grad_index_add(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                  ty_tensor **gin)
{
    (void)out;
    ty_tensor_retain(gout[0]);
    gin[0] = gout[0];
    return ty_dtype_is_float(c->in[1]->dtype) ? grad_value(c, gout[0], &gin[1]) : TY_OK;
}

ty_status
ty_grad_index_set(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                  ty_tensor **gin)
{
    (void)out;
    ty_tensor *z;
    TY_TRY(ty_scalar(gout[0]->dtype, 0.0, &z));
    ty_status st = apply_with_indices(TY_OP_INDEX_SET, c, 2, gout[0], z, &gin[0]);
    ty_tensor_release(z);
    TY_TRY(st);
    return ty_dtype_is_float(c->in[1]->dtype) ? grad_value(c, gout[0], &gin[1]) : TY_OK;
}

/* ===================== gather / scatter / scatter_add ===================== */
/* Work goes by "columns": positions of the index tensor that differ only along axis. Within a
 * column the axis runs in order, so scatter with duplicates is deterministic. */
typedef struct along_ctx {
    int nd, axis;
    const int64_t *ishape;     /* index shape */
    const int64_t *idx;        /* contiguous, validated */
    char *big;                 /* x (gather) or y (scatter) */
    const int64_t *bstrides;   /* strides of big, elements */
    char *small;               /* out (gather) or src (scatter), contiguous, index-shaped */
    size_t es;
    ty_dtype dt;
    int mode;                  /* 0 gather, 1 scatter, 2 scatter_add */
} along_ctx;

static void
along_put(const along_ctx *a, char *d, const char *s)
{
    if (a->mode == 1) {
        ty_copy_elem(d, s, a->es);
    } else if (a->dt == TY_FLOAT32) {
        *(float *)d += *(const float *)s;
    } else if (a->dt == TY_FLOAT64) {
        *(double *)d += *(const double *)s;
    } else {
        ty_store_f64(d, a->dt, ty_load_f64(d, a->dt) + ty_load_f64(s, a->dt));
    }
}

static void
along_range(void *vctx, int64_t begin, int64_t end)
{
    const along_ctx *a = vctx;
    int64_t istr[TY_MAX_DIMS];
    ty_contiguous_strides(a->nd, a->ishape, istr);
    int64_t len = a->ishape[a->axis];
    for (int64_t col = begin; col < end; col++) {
        int64_t r = col, ibase = 0, bbase = 0;
        for (int d = a->nd - 1; d >= 0; d--) {
            if (d == a->axis) {
                continue;
            }
            int64_t cd = r % a->ishape[d];
            r /= a->ishape[d];
            ibase += cd * istr[d];
            bbase += cd * a->bstrides[d];
        }
        for (int64_t t = 0; t < len; t++) {
            int64_t ii = ibase + t * istr[a->axis];
            char *bp = a->big + (bbase + a->idx[ii] * a->bstrides[a->axis]) * (int64_t)a->es;
            char *sp = a->small + ii * (int64_t)a->es;
            if (a->mode == 0) {
                ty_copy_elem(sp, bp, a->es);
            } else {
                along_put(a, bp, sp);
            }
        }
    }
}

/* Checks x / index (/ src) shapes: same rank, index no larger than x off the axis. */
static ty_status
along_check(const ty_call *c, const ty_tensor *idx, const ty_tensor *src, int *axis)
{
    const ty_tensor *x = c->in[0];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(check_index_dtype(idx, 1));
    TY_CHECK(x->ndim >= 1, TY_ERR_SHAPE, "needs an input with at least 1 dim");
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x->ndim, axis));
    int ok = idx->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++) {
        ok = d == *axis || idx->shape[d] <= x->shape[d];
    }
    TY_CHECK(ok, TY_ERR_SHAPE, "index of shape %s does not fit input of shape %s (axis %d)",
             ty_shape_str(idx->ndim, idx->shape, b1, sizeof b1),
             ty_shape_str(x->ndim, x->shape, b2, sizeof b2), *axis);
    TY_CHECK(!src || (src->ndim == idx->ndim &&
                      memcmp(src->shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim) == 0),
             TY_ERR_SHAPE, "source of shape %s must have the index shape %s",
             src ? ty_shape_str(src->ndim, src->shape, b1, sizeof b1) : "",
             ty_shape_str(idx->ndim, idx->shape, b2, sizeof b2));
    return TY_OK;
}

static ty_status
along_run(const ty_call *c, ty_tensor *big, ty_tensor *small, int axis, int mode)
{
    const ty_tensor *idx = c->in[1];
    ty_tensor *iv = NULL;
    int64_t n = ty_tensor_numel(idx);
    if (n == 0) {
        return TY_OK;
    }
    /* no negative indices along an axis (MegEngine's gather/scatter): a label of -1 must not
     * pick the last class */
    TY_TRY(index_i64_ex(idx, idx->ndim, idx->shape, big->shape[axis], axis, 0, &iv));
    along_ctx a = {.nd = idx->ndim, .axis = axis, .ishape = idx->shape,
                   .idx = (const int64_t *)ty_tensor_ptr(iv), .big = ty_tensor_ptr(big),
                   .bstrides = big->strides, .small = ty_tensor_ptr(small),
                   .es = ty_dtype_size(big->dtype), .dt = big->dtype, .mode = mode};
    int64_t len = idx->shape[axis];
    ty_parallel_for(n / len, (1 << 14) / len + 1, along_range, &a);
    ty_tensor_release(iv);
    return TY_OK;
}

ty_status
ty_gather_infer(const ty_call *c, ty_meta *out)
{
    int axis;
    TY_TRY(along_check(c, c->in[1], NULL, &axis));
    ty_meta_of(c->in[1], out);
    out->dtype = c->in[0]->dtype;
    return TY_OK;
}

ty_status
ty_gather_forward(const ty_call *c, ty_tensor **out)
{
    int axis;
    TY_TRY(along_check(c, c->in[1], NULL, &axis));
    return along_run(c, c->in[0], out[0], axis, 0);
}

ty_status
ty_grad_gather(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const ty_tensor *x = c->in[0];
    ty_tensor *z;
    TY_TRY(ty_zeros_shaped(gout[0]->dtype, x->ndim, x->shape, &z));
    ty_status st = ty_op3(TY_OP_SCATTER_ADD, c->params, z, c->in[1], gout[0], &gin[0]);
    ty_tensor_release(z);
    return st;
}

ty_status
ty_scatter_infer(const ty_call *c, ty_meta *out)
{
    int axis;
    TY_TRY(along_check(c, c->in[1], c->in[2], &axis));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

ty_status
ty_scatter_forward(const ty_call *c, ty_tensor **out)
{
    int axis;
    ty_tensor *src = NULL, *srcc = NULL;
    TY_TRY(along_check(c, c->in[1], c->in[2], &axis));
    TY_TRY(ty_strided_copy(out[0], c->in[0]));
    TY_TRY(ty_strided_cast(c->in[2], out[0]->dtype, &src));
    ty_status st = ty_contiguous(src, &srcc);
    if (st == TY_OK) {
        st = along_run(c, out[0], srcc, axis, c->op == TY_OP_SCATTER_ADD ? 2 : 1);
    }
    ty_tensor_release(src);
    ty_tensor_release(srcc);
    return st;
}

ty_status
ty_grad_scatter(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                ty_tensor **gin)
{
    (void)out;
    ty_tensor *g = gout[0];
    if (c->op == TY_OP_SCATTER) { /* overwritten positions get no gradient from x */
        ty_tensor *z;
        const ty_tensor *s = c->in[2];
        TY_TRY(ty_zeros_shaped(g->dtype, s->ndim, s->shape, &z));
        ty_status st = ty_op3(TY_OP_SCATTER, c->params, g, c->in[1], z, &gin[0]);
        ty_tensor_release(z);
        TY_TRY(st);
    } else {
        ty_tensor_retain(g);
        gin[0] = g;
    }
    gin[1] = NULL;
    if (!ty_dtype_is_float(c->in[2]->dtype)) {
        return TY_OK;
    }
    return ty_op2(TY_OP_GATHER, c->params, g, c->in[1], &gin[2]);
}

/* ===================== one_hot ===================== */
ty_status
ty_one_hot_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    int64_t n = ((const ty_p_one_hot *)c->params)->num_classes;
    TY_TRY(check_index_dtype(x, 0));
    TY_CHECK(n >= 1, TY_ERR_INVALID_ARG, "num_classes must be >= 1, got %lld", (long long)n);
    TY_CHECK(x->ndim < TY_MAX_DIMS, TY_ERR_SHAPE, "one_hot of a %d-d tensor exceeds %d dims",
             x->ndim, TY_MAX_DIMS);
    ty_meta_of(x, out);
    out->shape[out->ndim++] = n;
    int64_t numel;
    return ty_shape_numel(out->ndim, out->shape, &numel);
}

ty_status
ty_one_hot_forward(const ty_call *c, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    ty_tensor *y = out[0], *iv;
    int64_t n = ((const ty_p_one_hot *)c->params)->num_classes;
    size_t es = ty_dtype_size(y->dtype);
    char one[16];
    TY_TRY(index_i64_ex(x, x->ndim, x->shape, n, x->ndim, 0, &iv));
    const int64_t *v = (const int64_t *)ty_tensor_ptr(iv);
    int64_t m = ty_tensor_numel(iv);
    char *dst = ty_tensor_ptr(y);
    ty_store_f64(one, y->dtype, 1.0);
    memset(dst, 0, (size_t)ty_tensor_numel(y) * es);
    for (int64_t i = 0; i < m; i++) {
        ty_copy_elem(dst + (i * n + v[i]) * (int64_t)es, one, es);
    }
    ty_tensor_release(iv);
    return TY_OK;
}

/* ===================== cond_take / non_zero (output shape depends on values) ===================== */
/* A new contiguous bool copy of t. */
static ty_status
as_bool(ty_tensor *t, ty_tensor **out)
{
    TY_TRY(ty_tensor_new_like_meta(TY_BOOL, t->ndim, t->shape, out));
    ty_status st = ty_strided_copy(*out, t);
    if (st != TY_OK) {
        ty_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

static int64_t
count_true(const ty_tensor *m)
{
    const uint8_t *b = (const uint8_t *)ty_tensor_ptr(m);
    int64_t n = ty_tensor_numel(m), cnt = 0;
    for (int64_t i = 0; i < n; i++) {
        cnt += b[i] != 0;
    }
    return cnt;
}

ty_status
ty_cond_take_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *m = c->in[0], *x = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(m->ndim == x->ndim &&
                 memcmp(m->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) == 0,
             TY_ERR_SHAPE, "mask of shape %s does not match x of shape %s",
             ty_shape_str(m->ndim, m->shape, b1, sizeof b1),
             ty_shape_str(x->ndim, x->shape, b2, sizeof b2));
    TY_CHECK(ty_tensor_numel(x) <= INT32_MAX, TY_ERR_SHAPE, "too many elements for int32 indices");
    out[0].dtype = x->dtype;
    out[0].ndim = 1;
    out[0].shape[0] = 0; /* known only after the forward */
    out[1] = out[0];
    out[1].dtype = TY_INT32;
    return TY_OK;
}

ty_status
ty_cond_take_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *m = NULL, *x = NULL;
    ty_status status = TY_OK;
    TY_TRY(ty_cond_take_infer(c, (ty_meta[2]){0}));
    TY_TRY_GOTO(as_bool(c->in[0], &m));
    TY_TRY_GOTO(ty_contiguous(c->in[1], &x));
    int64_t cnt = count_true(m), n = ty_tensor_numel(x);
    TY_TRY_GOTO(ty_tensor_new_like_meta(x->dtype, 1, &cnt, &out[0]));
    TY_TRY_GOTO(ty_tensor_new_like_meta(TY_INT32, 1, &cnt, &out[1]));
    const uint8_t *b = (const uint8_t *)ty_tensor_ptr(m);
    size_t es = ty_dtype_size(x->dtype);
    char *vals = ty_tensor_ptr(out[0]), *src = ty_tensor_ptr(x);
    int32_t *idx = (int32_t *)ty_tensor_ptr(out[1]);
    for (int64_t i = 0, j = 0; i < n; i++) {
        if (b[i]) {
            ty_copy_elem(vals + j * (int64_t)es, src + i * (int64_t)es, es);
            idx[j++] = (int32_t)i;
        }
    }
fail:
    if (status != TY_OK) {
        ty_tensor_release(out[0]);
        ty_tensor_release(out[1]);
        out[0] = out[1] = NULL;
    }
    ty_tensor_release(m);
    ty_tensor_release(x);
    return status;
}

ty_status
ty_grad_cond_take(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                  ty_tensor **gin)
{
    const ty_tensor *x = c->in[1];
    gin[0] = NULL;
    if (!gout[0]) {
        gin[1] = NULL;
        return TY_OK;
    }
    int64_t n = ty_tensor_numel(x);
    ty_tensor *z = NULL, *flat = NULL;
    TY_TRY(ty_zeros_shaped(gout[0]->dtype, 1, &n, &z));
    ty_p_axis ap = {.axis = 0};
    ty_tensor *in[3] = {z, gout[0], out[1]};
    ty_status st = ty_apply(TY_OP_INDEX_ADD, &ap, 3, in, 1, &flat);
    ty_tensor_release(z);
    TY_TRY(st);
    ty_p_shape sp = {0};
    sp.shape.n = x->ndim;
    memcpy(sp.shape.v, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    st = ty_op1(TY_OP_RESHAPE, &sp, flat, &gin[1]);
    ty_tensor_release(flat);
    return st;
}

ty_status
ty_non_zero_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    TY_CHECK(ty_tensor_numel(x) <= INT32_MAX, TY_ERR_SHAPE, "too many elements for int32 indices");
    out->dtype = TY_INT32;
    out->ndim = 2;
    out->shape[0] = 0; /* known only after the forward */
    out->shape[1] = x->ndim;
    return TY_OK;
}

ty_status
ty_non_zero_forward(const ty_call *c, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    ty_tensor *m;
    TY_TRY(as_bool(c->in[0], &m));
    int64_t shape[2] = {count_true(m), x->ndim}, n = ty_tensor_numel(m);
    ty_status st = ty_tensor_new_like_meta(TY_INT32, 2, shape, &out[0]);
    if (st == TY_OK) {
        const uint8_t *b = (const uint8_t *)ty_tensor_ptr(m);
        int32_t *dst = (int32_t *)ty_tensor_ptr(out[0]);
        for (int64_t i = 0; i < n; i++) {
            if (!b[i]) {
                continue;
            }
            int64_t r = i;
            for (int d = x->ndim - 1; d >= 0; d--) {
                dst[d] = (int32_t)(r % x->shape[d]);
                r /= x->shape[d];
            }
            dst += x->ndim;
        }
    }
    ty_tensor_release(m);
    return st;
}
