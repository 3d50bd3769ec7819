/* Creation family: fill, arange, linspace, eye. These ops take no inputs: their params give
 * the shape and dtype. None is differentiable. */
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/op.h"

enum { FILL_GRAIN = 1 << 15 };
/* larger sizes are refused as invalid (ValueError) before any allocation is tried */
#define MAX_NUMEL ((int64_t)1 << 56)

static ty_status
check_dtype(int64_t code)
{
    TY_CHECK(code >= 0 && code < TY_DTYPE_COUNT, TY_ERR_DTYPE,
             "invalid dtype code %lld (expected 0..%d)", (long long)code, TY_DTYPE_COUNT - 1);
    return TY_OK;
}

static ty_status
check_count(int64_t n, const char *what)
{
    TY_CHECK(n >= 0, TY_ERR_INVALID_ARG, "%s must be non-negative, got %lld", what,
             (long long)n);
    TY_CHECK(n <= MAX_NUMEL, TY_ERR_INVALID_ARG,
             "%s = %lld is too large (max %lld elements)", what, (long long)n,
             (long long)MAX_NUMEL);
    return TY_OK;
}

static ty_status
meta_from_shape(const ty_i64list *l, int64_t dtype, ty_meta *out)
{
    char buf[TY_SHAPE_BUF];
    int64_t n = 1;
    TY_TRY(check_dtype(dtype));
    TY_CHECK(l->n >= 0 && l->n <= TY_MAX_DIMS, TY_ERR_SHAPE, "rank %d is out of range [0, %d]",
             (int)l->n, TY_MAX_DIMS);
    for (int i = 0; i < l->n; i++) {
        TY_CHECK(l->v[i] >= 0, TY_ERR_SHAPE, "negative dimension in shape %s",
                 ty_shape_str(l->n, l->v, buf, sizeof buf));
        TY_CHECK(!__builtin_mul_overflow(n, l->v[i], &n) && n <= MAX_NUMEL,
                 TY_ERR_INVALID_ARG, "shape %s has too many elements",
                 ty_shape_str(l->n, l->v, buf, sizeof buf));
    }
    out->dtype = (ty_dtype)dtype;
    out->ndim = l->n;
    memcpy(out->shape, l->v, sizeof(int64_t) * (size_t)l->n);
    return TY_OK;
}

/* ---- fill ---- */
/* An integer fill value the dtype cannot hold would saturate: refuse it (numpy does too). */
static ty_status
check_int_value(double v, ty_dtype dt)
{
    double lo, hi;
    switch (dt) {
    case TY_INT8: lo = INT8_MIN, hi = INT8_MAX; break;
    case TY_UINT8: lo = 0, hi = UINT8_MAX; break;
    case TY_INT16: lo = INT16_MIN, hi = INT16_MAX; break;
    case TY_INT32: lo = INT32_MIN, hi = INT32_MAX; break;
    case TY_INT64: lo = (double)INT64_MIN, hi = (double)INT64_MAX; break;
    default: return TY_OK;
    }
    TY_CHECK(v >= lo && v <= hi, TY_ERR_INVALID_ARG, "value %.17g does not fit %s", v,
             ty_dtype_name(dt));
    return TY_OK;
}

ty_status
ty_fill_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_fill *p = c->params;
    TY_TRY(meta_from_shape(&p->shape, p->dtype, out));
    /* numpy refuses to put NaN or inf into an integer array; so do we */
    TY_CHECK(isfinite(p->value) || ty_dtype_is_float(out->dtype) || out->dtype == TY_BOOL,
             TY_ERR_INVALID_ARG, "cannot fill a %s tensor with %g", ty_dtype_name(out->dtype),
             p->value);
    return check_int_value(p->value, out->dtype);
}

typedef struct fill_ctx {
    char *dst;
    size_t es;
    unsigned char pat[8];
} fill_ctx;

static void
fill_range(void *ctx, int64_t begin, int64_t end)
{
    const fill_ctx *f = ctx;
    /* fixed-size memcpy per element size so the compiler emits plain stores */
    switch (f->es) {
    case 1: memset(f->dst + begin, f->pat[0], (size_t)(end - begin)); break;
    case 2:
        for (int64_t i = begin; i < end; i++) {
            memcpy(f->dst + i * 2, f->pat, 2);
        }
        break;
    case 4:
        for (int64_t i = begin; i < end; i++) {
            memcpy(f->dst + i * 4, f->pat, 4);
        }
        break;
    default:
        for (int64_t i = begin; i < end; i++) {
            memcpy(f->dst + i * 8, f->pat, 8);
        }
        break;
    }
}

static void
fill_value(ty_tensor *t, double value)
{
    fill_ctx f = {ty_tensor_ptr(t), ty_dtype_size(t->dtype), {0}};
    ty_store_f64(f.pat, t->dtype, value);
    ty_parallel_for(ty_tensor_numel(t), FILL_GRAIN, fill_range, &f);
}

ty_status
ty_fill_forward(const ty_call *c, ty_tensor **out)
{
    fill_value(out[0], ((const ty_p_fill *)c->params)->value);
    return TY_OK;
}

/* ---- arange ---- */
static ty_status
arange_len(const ty_p_arange *p, int64_t *n)
{
    TY_CHECK(isfinite(p->start) && isfinite(p->stop) && isfinite(p->step), TY_ERR_INVALID_ARG,
             "start, stop and step must be finite, got (%g, %g, %g)", p->start, p->stop,
             p->step);
    TY_CHECK(p->step != 0, TY_ERR_INVALID_ARG, "step must not be zero");
    double len = ceil((p->stop - p->start) / p->step);
    TY_CHECK(!(len > (double)MAX_NUMEL), TY_ERR_INVALID_ARG,
             "range [%g, %g) with step %g has too many elements", p->start, p->stop, p->step);
    *n = len > 0 ? (int64_t)len : 0;
    return TY_OK;
}

ty_status
ty_arange_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_arange *p = c->params;
    int64_t n = 0;
    TY_TRY(check_dtype(p->dtype));
    TY_CHECK(p->dtype != TY_BOOL, TY_ERR_DTYPE, "dtype bool is not supported");
    TY_TRY(arange_len(p, &n));
    out->dtype = (ty_dtype)p->dtype;
    out->ndim = 1;
    out->shape[0] = n;
    return TY_OK;
}

/* start + i * step, or (linspace) stop exactly at index last */
typedef struct ramp_ctx {
    char *dst;
    ty_dtype dt;
    size_t es;
    double start, step, stop;
    int64_t last;
} ramp_ctx;

static void
ramp_range(void *ctx, int64_t begin, int64_t end)
{
    const ramp_ctx *r = ctx;
    for (int64_t i = begin; i < end; i++) {
        double v = i == r->last ? r->stop : r->start + (double)i * r->step;
        ty_store_f64(r->dst + i * (int64_t)r->es, r->dt, v);
    }
}

static void
run_ramp(ty_tensor *t, double start, double step, double stop, int64_t last)
{
    ramp_ctx r = {ty_tensor_ptr(t), t->dtype, ty_dtype_size(t->dtype), start, step, stop, last};
    ty_parallel_for(ty_tensor_numel(t), FILL_GRAIN, ramp_range, &r);
}

ty_status
ty_arange_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_arange *p = c->params;
    run_ramp(out[0], p->start, p->step, 0.0, -1);
    return TY_OK;
}

/* ---- linspace ---- */
ty_status
ty_linspace_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_linspace *p = c->params;
    TY_TRY(check_dtype(p->dtype));
    TY_CHECK(p->dtype != TY_BOOL, TY_ERR_DTYPE, "dtype bool is not supported");
    TY_CHECK(isfinite(p->start) && isfinite(p->stop), TY_ERR_INVALID_ARG,
             "start and stop must be finite, got (%g, %g)", p->start, p->stop);
    TY_TRY(check_count(p->num, "num"));
    out->dtype = (ty_dtype)p->dtype;
    out->ndim = 1;
    out->shape[0] = p->num;
    return TY_OK;
}

ty_status
ty_linspace_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_linspace *p = c->params;
    double step = p->num > 1 ? (p->stop - p->start) / (double)(p->num - 1) : 0.0;
    /* numpy's rule: the last point is stop itself, not start + (num-1) * step */
    run_ramp(out[0], p->start, step, p->stop, p->num > 1 ? p->num - 1 : -1);
    return TY_OK;
}

/* ---- eye ---- */
ty_status
ty_eye_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_eye *p = c->params;
    ty_i64list l = {2, {p->n, p->m}};
    return meta_from_shape(&l, p->dtype, out);
}

ty_status
ty_eye_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_eye *p = c->params;
    ty_tensor *t = out[0];
    size_t es = ty_dtype_size(t->dtype);
    char *dst = ty_tensor_ptr(t);
    int64_t k = p->n < p->m ? p->n : p->m;
    fill_value(t, 0.0);
    for (int64_t i = 0; i < k; i++) {
        ty_store_f64(dst + (i * p->m + i) * (int64_t)es, t->dtype, 1.0);
    }
    return TY_OK;
}
