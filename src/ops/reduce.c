/* Reductions over axes (sum, mean, prod, max, min) and argmax/argmin. */
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/reduce_cpu.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

typedef struct reduce_plan {
    int ndim;
    int mark[TY_MAX_DIMS]; /* 1 = reduced */
    int64_t count;         /* elements per output */
} reduce_plan;

static ty_status
plan_axes(const ty_tensor *x, const ty_i64list *axes, reduce_plan *p)
{
    memset(p, 0, sizeof *p);
    p->ndim = x->ndim;
    p->count = 1;
    for (int i = 0; i < axes->n; i++) {
        int a;
        TY_TRY(ty_norm_axis(axes->v[i], x->ndim, &a));
        TY_CHECK(x->ndim == 0 || !p->mark[a], TY_ERR_INVALID_ARG, "repeated axis %lld",
                 (long long)axes->v[i]);
        if (x->ndim > 0) {
            p->mark[a] = 1;
        }
    }
    for (int d = 0; d < x->ndim; d++) {
        if (axes->n == 0) {
            p->mark[d] = 1;
        }
        if (p->mark[d]) {
            p->count *= x->shape[d];
        }
    }
    return TY_OK;
}

static void
reduced_shape(const ty_tensor *x, const reduce_plan *p, int keepdims, ty_meta *out)
{
    out->ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!p->mark[d]) {
            out->shape[out->ndim++] = x->shape[d];
        } else if (keepdims) {
            out->shape[out->ndim++] = 1;
        }
    }
}

/* ---- what distinguishes one reduction from another: a row per op ---- */
static double
fold_add(double acc, double v)
{
    return acc + v;
}
static double
fold_mul(double acc, double v)
{
    return acc * v;
}
/* NaN wins: once acc is NaN it stays; a NaN v replaces a number. */
static double
fold_max(double acc, double v)
{
    return (acc != acc || v > acc || v != v) ? (acc != acc ? acc : v) : acc;
}
static double
fold_min(double acc, double v)
{
    return (acc != acc || v < acc || v != v) ? (acc != acc ? acc : v) : acc;
}
/* Integer folds wrap (two's complement) instead of overflowing. */
static int64_t
ifold_add(int64_t acc, int64_t v)
{
    return (int64_t)((uint64_t)acc + (uint64_t)v);
}
static int64_t
ifold_mul(int64_t acc, int64_t v)
{
    return (int64_t)((uint64_t)acc * (uint64_t)v);
}
static int64_t
ifold_max(int64_t acc, int64_t v)
{
    return v > acc ? v : acc;
}
static int64_t
ifold_min(int64_t acc, int64_t v)
{
    return v < acc ? v : acc;
}

typedef struct reduce_kind {
    double (*fold)(double acc, double v);      /* float inputs (computed in double) */
    int64_t (*ifold)(int64_t acc, int64_t v); /* integer and bool inputs */
    double identity;   /* the fold's start, which is also the result over no elements */
    int first_seeds;   /* no identity: the first element starts the fold; empty is an error */
    int mean;          /* divide by the element count; integer inputs give float32 */
    int bool_to_int32; /* a bool input counts (sum) or multiplies (prod) in int32 */
    int fast;          /* the contiguous float kernel's kind (reduce_cpu.h), or NO_FAST */
} reduce_kind;

enum { NO_FAST = -1 };

#define ROW(f, ...) {.fold = fold_##f, .ifold = ifold_##f, __VA_ARGS__}
static const reduce_kind reduce_kinds[TY_OP_COUNT] = {
    [TY_OP_SUM] = ROW(add, .identity = 0.0, .bool_to_int32 = 1, .fast = TY_RED_SUM),
    [TY_OP_MEAN] = ROW(add, .identity = 0.0, .mean = 1, .fast = TY_RED_SUM),
    [TY_OP_PROD] = ROW(mul, .identity = 1.0, .bool_to_int32 = 1, .fast = NO_FAST),
    [TY_OP_MAX] = ROW(max, .first_seeds = 1, .fast = TY_RED_MAX),
    [TY_OP_MIN] = ROW(min, .first_seeds = 1, .fast = TY_RED_MIN),
};
#undef ROW

static ty_status
kind_of(ty_op op, const reduce_kind **out)
{
    TY_CHECK((unsigned)op < TY_OP_COUNT && reduce_kinds[op].fold, TY_ERR_INTERNAL,
             "%s is not a reduction", ty_op_name(op));
    *out = &reduce_kinds[op];
    return TY_OK;
}

static ty_dtype
reduce_dtype(const reduce_kind *k, ty_dtype in)
{
    if (k->mean) {
        return ty_dtype_is_float(in) ? in : TY_FLOAT32;
    }
    return k->bool_to_int32 && in == TY_BOOL ? TY_INT32 : in;
}

ty_status
ty_reduce_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_reduce *rp = c->params;
    const ty_tensor *x = c->in[0];
    const reduce_kind *kind = NULL;
    reduce_plan p;
    TY_TRY(kind_of(c->op, &kind));
    TY_TRY(plan_axes(x, &rp->axes, &p));
    TY_CHECK(p.count > 0 || !kind->first_seeds, TY_ERR_SHAPE,
             "cannot take %s over an empty axis (no identity)", ty_op_name(c->op));
    reduced_shape(x, &p, rp->keepdims != 0, out);
    out->dtype = reduce_dtype(kind, x->dtype);
    return TY_OK;
}

/* ---- the kernel: one output element per index, sequential over the reduced space ---- */
typedef struct reduce_ctx {
    const reduce_kind *kind; /* NULL for argmax / argmin */
    const ty_tensor *x;
    ty_tensor *y;
    int nk, nr;                            /* kept / reduced dim counts */
    int64_t kshape[TY_MAX_DIMS], kstr[TY_MAX_DIMS];
    int64_t rshape[TY_MAX_DIMS], rstr[TY_MAX_DIMS];
    int64_t count;
} reduce_ctx;

static int
is_int_kind(ty_dtype dt)
{
    return !ty_dtype_is_float(dt);
}

static int64_t
load_i64(const char *p, ty_dtype dt)
{
    switch (dt) {
    case TY_INT8: return *(const int8_t *)p;
    case TY_UINT8: return *(const uint8_t *)p;
    case TY_INT16: return *(const int16_t *)p;
    case TY_INT32: return *(const int32_t *)p;
    case TY_INT64: return *(const int64_t *)p;
    case TY_BOOL: return *(const uint8_t *)p != 0;
    default: return 0;
    }
}

/* Steps p to the next element of the reduced space (an odometer over the reduced dims). */
static const char *
next_elem(const reduce_ctx *c, int64_t *idx, const char *p, int64_t es)
{
    for (int d = c->nr - 1; d >= 0; d--) {
        p += c->rstr[d] * es;
        if (++idx[d] < c->rshape[d]) {
            break;
        }
        p -= c->rstr[d] * c->rshape[d] * es;
        idx[d] = 0;
    }
    return p;
}

static double
fold_float(const reduce_ctx *c, const char *p)
{
    const reduce_kind *k = c->kind;
    int64_t idx[TY_MAX_DIMS] = {0}, es = (int64_t)ty_dtype_size(c->x->dtype), n = 0;
    double acc = k->identity;
    if (k->first_seeds && c->count > 0) {
        acc = ty_load_f64(p, c->x->dtype);
        p = next_elem(c, idx, p, es);
        n = 1;
    }
    for (; n < c->count; n++) {
        acc = k->fold(acc, ty_load_f64(p, c->x->dtype));
        p = next_elem(c, idx, p, es);
    }
    return acc;
}

static int64_t
fold_int(const reduce_ctx *c, const char *p)
{
    const reduce_kind *k = c->kind;
    int64_t idx[TY_MAX_DIMS] = {0}, es = (int64_t)ty_dtype_size(c->x->dtype), n = 0;
    int64_t acc = (int64_t)k->identity;
    if (k->first_seeds && c->count > 0) {
        acc = load_i64(p, c->x->dtype);
        p = next_elem(c, idx, p, es);
        n = 1;
    }
    for (; n < c->count; n++) {
        acc = k->ifold(acc, load_i64(p, c->x->dtype));
        p = next_elem(c, idx, p, es);
    }
    return acc;
}

static void
store_i64(char *dst, ty_dtype dt, int64_t v)
{
    switch (dt) {
    case TY_INT8: *(int8_t *)dst = (int8_t)v; break;
    case TY_UINT8: *(uint8_t *)dst = (uint8_t)v; break;
    case TY_INT16: *(int16_t *)dst = (int16_t)v; break;
    case TY_INT32: *(int32_t *)dst = (int32_t)v; break;
    case TY_INT64: *(int64_t *)dst = v; break;
    case TY_BOOL: *(uint8_t *)dst = v != 0; break;
    default: break;
    }
}

static void
reduce_one(const reduce_ctx *c, const char *base, char *dst)
{
    int isint = is_int_kind(c->x->dtype) && !c->kind->mean; /* numpy: a float64 mean */
    double acc = 0.0;
    int64_t iacc = 0;
    if (isint) {
        iacc = fold_int(c, base);
    } else {
        acc = fold_float(c, base);
    }
    if (c->kind->mean) {
        acc = (isint ? (double)iacc : acc) / (double)c->count;
        isint = 0;
    }
    if (isint && !ty_dtype_is_float(c->y->dtype)) {
        store_i64(dst, c->y->dtype, iacc);
    } else {
        ty_store_f64(dst, c->y->dtype, isint ? (double)iacc : acc);
    }
}

static void
reduce_range(void *vctx, int64_t begin, int64_t end)
{
    const reduce_ctx *c = vctx;
    size_t es = ty_dtype_size(c->x->dtype), ys = ty_dtype_size(c->y->dtype);
    for (int64_t o = begin; o < end; o++) {
        int64_t r = o, off = 0;
        for (int d = c->nk - 1; d >= 0; d--) {
            off += (r % c->kshape[d]) * c->kstr[d];
            r /= c->kshape[d];
        }
        reduce_one(c, ty_tensor_ptr(c->x) + off * (int64_t)es, ty_tensor_ptr(c->y) + o * (int64_t)ys);
    }
}

static void
split_dims(reduce_ctx *rc, const ty_tensor *x, const reduce_plan *p)
{
    rc->nk = rc->nr = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (p->mark[d]) {
            rc->rshape[rc->nr] = x->shape[d];
            rc->rstr[rc->nr++] = x->strides[d];
        } else {
            rc->kshape[rc->nk] = x->shape[d];
            rc->kstr[rc->nk++] = x->strides[d];
        }
    }
}

/* Contiguous float32/float64 sum/mean/max/min: coalesce x into alternating kept/reduced
 * blocks and reduce one reduced block per (A, R, B) pass, innermost first. */
typedef struct fast_pass {
    int64_t A, R, B;
} fast_pass;

static int
fast_plan(const ty_tensor *x, const reduce_plan *p, fast_pass *passes, int *npass)
{
    int64_t blk[TY_MAX_DIMS];
    int red[TY_MAX_DIMS], nb = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] == 1) {
            continue;
        }
        if (nb > 0 && red[nb - 1] == p->mark[d]) {
            blk[nb - 1] *= x->shape[d];
        } else {
            blk[nb] = x->shape[d];
            red[nb++] = p->mark[d];
        }
    }
    *npass = 0;
    for (int i = nb - 1; i >= 0; i--) { /* innermost reduced block first */
        if (!red[i]) {
            continue;
        }
        int64_t A = 1, B = 1;
        for (int j = 0; j < i; j++) {
            A *= blk[j];
        }
        for (int j = i + 1; j < nb; j++) {
            B *= red[j] ? 1 : blk[j]; /* inner reduced blocks are already gone */
        }
        passes[(*npass)++] = (fast_pass){A, blk[i], B};
    }
    return 1;
}

static ty_status
reduce_fast(const reduce_kind *k, const ty_tensor *x, const reduce_plan *p, ty_tensor *y)
{
    fast_pass passes[TY_MAX_DIMS];
    int np;
    fast_plan(x, p, passes, &np);
    int kind = k->fast, f64 = x->dtype == TY_FLOAT64;
    size_t es = f64 ? 8 : 4;
    const char *src = ty_tensor_ptr(x);
    void *bufs[2] = {NULL, NULL};
    ty_status st = TY_OK;
    if (np == 0) { /* nothing to reduce (all reduced dims have size 1) */
        memcpy(ty_tensor_ptr(y), src, (size_t)ty_tensor_numel(y) * es);
        return TY_OK;
    }
    for (int i = 0; i < np && st == TY_OK; i++) {
        char *dst = ty_tensor_ptr(y);
        if (i < np - 1) {
            st = ty_mem_alloc((size_t)(passes[i].A * passes[i].B) * es, &bufs[i % 2]);
            dst = bufs[i % 2];
        }
        if (st == TY_OK) {
            if (f64) {
                ty_cpu_reduce_arb_f64(kind, passes[i].A, passes[i].R, passes[i].B,
                                      (const double *)src, (double *)dst);
            } else {
                ty_cpu_reduce_arb_f32(kind, passes[i].A, passes[i].R, passes[i].B,
                                      (const float *)src, (float *)dst);
            }
        }
        if (i > 0) {
            ty_mem_free(bufs[(i - 1) % 2], (size_t)(passes[i - 1].A * passes[i - 1].B) * es);
            bufs[(i - 1) % 2] = NULL;
        }
        src = dst;
    }
    if (k->mean && st == TY_OK) {
        int64_t n = ty_tensor_numel(y);
        for (int64_t i = 0; i < n; i++) {
            if (f64) {
                ((double *)ty_tensor_ptr(y))[i] /= (double)p->count;
            } else {
                ((float *)ty_tensor_ptr(y))[i] =
                    (float)((double)((float *)ty_tensor_ptr(y))[i] / (double)p->count);
            }
        }
    }
    return st;
}

static int
can_reduce_fast(const reduce_kind *k, const ty_tensor *x, const reduce_plan *p)
{
    return (x->dtype == TY_FLOAT32 || x->dtype == TY_FLOAT64) && k->fast != NO_FAST &&
           p->count > 0 && ty_tensor_numel(x) > 0;
}

ty_status
ty_reduce_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_reduce *rp = c->params;
    const reduce_kind *kind = NULL;
    reduce_plan p;
    TY_TRY(kind_of(c->op, &kind));
    TY_TRY(plan_axes(c->in[0], &rp->axes, &p));
    if (can_reduce_fast(kind, c->in[0], &p)) {
        /* views are copied first: one summation order for every layout, so results are
         * bitwise independent of strides */
        ty_tensor *x;
        TY_TRY(ty_contiguous(c->in[0], &x));
        ty_status st = reduce_fast(kind, x, &p, out[0]);
        ty_tensor_release(x);
        return st;
    }
    reduce_ctx rc = {.kind = kind, .x = c->in[0], .y = out[0], .count = p.count};
    split_dims(&rc, c->in[0], &p);
    int64_t nout = ty_tensor_numel(out[0]);
    int64_t grain = p.count > 0 ? (1 << 14) / p.count + 1 : 1 << 14;
    ty_parallel_for(nout, grain, reduce_range, &rc);
    return TY_OK;
}

/* g (reduced shape) broadcast back to x's shape. */
static ty_tensor *
expand_back(ty_gk *kk, const ty_call *c, ty_tensor *g)
{
    ty_gk k = *kk;
    const ty_tensor *x = c->in[0];
    reduce_plan p;
    if (k.st == TY_OK && (k.st = plan_axes(x, &((const ty_p_reduce *)c->params)->axes, &p)) != TY_OK) {
        *kk = k;
        return NULL;
    }
    ty_p_shape kp = {0}, bp = {0};
    ty_meta m;
    reduced_shape(x, &p, 1, &m);
    kp.shape.n = m.ndim;
    memcpy(kp.shape.v, m.shape, sizeof(int64_t) * (size_t)m.ndim);
    bp.shape.n = x->ndim;
    memcpy(bp.shape.v, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    ty_tensor *r = gk_apply(&k, TY_OP_RESHAPE, &kp, 1, g, NULL, NULL);
    r = gk_apply(&k, TY_OP_BROADCAST_TO, &bp, 1, r, NULL, NULL);
    *kk = k;
    return r;
}

ty_status
ty_grad_sum(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    return gk_finish(&k, expand_back(&k, c, gout[0]), &gin[0]);
}

ty_status
ty_grad_mean(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    reduce_plan p;
    TY_TRY(plan_axes(c->in[0], &((const ty_p_reduce *)c->params)->axes, &p));
    ty_tensor *g = gout[0];
    ty_tensor *r = DIV(expand_back(&k, c, g), C(g, (double)(p.count ? p.count : 1)));
    return gk_finish(&k, r, &gin[0]);
}

/* d prod / dx_i = prod / x_i (inputs with zeros get a non-finite gradient, as in numpy-based
 * references; a zero-safe rule needs a cumulative product and is left for later). */
ty_status
ty_grad_prod(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    ty_gk k = {0};
    ty_tensor *g = gout[0];
    ty_tensor *r = DIV(MUL(expand_back(&k, c, g), expand_back(&k, c, out[0])), c->in[0]);
    return gk_finish(&k, r, &gin[0]);
}

/* max/min: the gradient is shared evenly among the positions that attain the extremum. */
ty_status
ty_grad_maxmin(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    ty_gk k = {0};
    ty_tensor *g = gout[0], *x = c->in[0];
    ty_p_astype ap = {.dtype = g->dtype};
    ty_tensor *mask = gk_apply(&k, TY_OP_ASTYPE, &ap, 1, GK2(EQ, x, expand_back(&k, c, out[0])),
                               NULL, NULL);
    ty_tensor *cnt = gk_apply(&k, TY_OP_SUM, c->params, 1, mask, NULL, NULL);
    ty_tensor *r = MUL(mask, expand_back(&k, c, DIV(g, cnt)));
    return gk_finish(&k, r, &gin[0]);
}

/* ---- argmax / argmin over one axis ---- */
ty_status
ty_argreduce_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_axis *ap = c->params;
    const ty_tensor *x = c->in[0];
    int a;
    TY_TRY(ty_norm_axis(ap->axis, x->ndim, &a));
    TY_CHECK(x->ndim == 0 || x->shape[a] > 0, TY_ERR_SHAPE,
             "cannot take %s over an empty axis", ty_op_name(c->op));
    out->dtype = TY_INT32;
    out->ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d != a) {
            out->shape[out->ndim++] = x->shape[d];
        } else if (ap->keepdims) {
            out->shape[out->ndim++] = 1;
        }
    }
    return TY_OK;
}

/* argmax / argmin: whether v replaces the best so far (a NaN always does, in arg_range). */
static int
beats_max(double v, double best)
{
    return v > best;
}
static int
beats_min(double v, double best)
{
    return v < best;
}
static int (*const arg_beats[TY_OP_COUNT])(double v, double best) = {
    [TY_OP_ARGMAX] = beats_max,
    [TY_OP_ARGMIN] = beats_min,
};

typedef struct arg_ctx {
    reduce_ctx rc;
    int (*beats)(double v, double best);
} arg_ctx;

/* Integers that are equal as doubles may differ (int64 near 2**63): the row's rule decides on
 * their exact order (-1, 0 or 1 against 0). */
static int
int_beats(const arg_ctx *a, const char *v, const char *best)
{
    ty_dtype dt = a->rc.x->dtype;
    if (ty_dtype_is_float(dt)) {
        return 0;
    }
    int64_t x = load_i64(v, dt), y = load_i64(best, dt);
    return a->beats((double)((x > y) - (x < y)), 0.0);
}

static void
arg_range(void *vctx, int64_t begin, int64_t end)
{
    const arg_ctx *a = vctx;
    const reduce_ctx *c = &a->rc;
    size_t es = ty_dtype_size(c->x->dtype);
    int64_t n = c->nr ? c->rshape[0] : 1, st = c->nr ? c->rstr[0] : 0;
    for (int64_t o = begin; o < end; o++) {
        int64_t r = o, off = 0;
        for (int d = c->nk - 1; d >= 0; d--) {
            off += (r % c->kshape[d]) * c->kstr[d];
            r /= c->kshape[d];
        }
        const char *p = ty_tensor_ptr(c->x) + off * (int64_t)es;
        double best = ty_load_f64(p, c->x->dtype);
        int64_t bi = 0;
        for (int64_t i = 1; i < n && best == best; i++) {
            double v = ty_load_f64(p + i * st * (int64_t)es, c->x->dtype);
            const char *pv = p + i * st * (int64_t)es, *pb = p + bi * st * (int64_t)es;
            if (v != v || a->beats(v, best) || (v == best && int_beats(a, pv, pb))) {
                best = v;
                bi = i;
            }
        }
        ((int32_t *)ty_tensor_ptr(c->y))[o] = (int32_t)bi;
    }
}

ty_status
ty_argreduce_forward(const ty_call *c, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    int a;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x->ndim, &a));
    reduce_plan p = {.ndim = x->ndim};
    if (x->ndim > 0) {
        p.mark[a] = 1;
    }
    TY_CHECK((unsigned)c->op < TY_OP_COUNT && arg_beats[c->op], TY_ERR_INTERNAL,
             "%s is not an arg-reduction", ty_op_name(c->op));
    arg_ctx ac = {.rc = {.x = x, .y = out[0]}, .beats = arg_beats[c->op]};
    split_dims(&ac.rc, x, &p);
    ty_parallel_for(ty_tensor_numel(out[0]), 1024, arg_range, &ac);
    return TY_OK;
}
