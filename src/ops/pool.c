/* 2-D pooling ops (NCHW): strided max / average pooling, adaptive max / average pooling, their
 * backward ops, and the "select" ops that make max pooling twice differentiable.
 *
 * Ops (x is (N, C, H, W); y and dy are (N, C, OH, OW)):
 *   max_pool2d(x) -> y                    avg_pool2d(x) -> y          (params pool)
 *   max_pool2d_grad(x, dy) -> dx          avg_pool2d_grad(x, dy) -> dx
 *   max_pool2d_select(x, g) -> y-shaped: g at each window's argmax of x
 *   adaptive_max_pool2d(x) -> y           adaptive_avg_pool2d(x) -> y (params adaptive_pool)
 *   adaptive_pool2d_grad(x, dy) -> dx     (mode 0: max, 1: average)
 *   adaptive_max_pool2d_select(x, g) -> y-shaped
 * avg_pool2d's mode: 0 counts the padding cells in the divisor, 1 excludes them. The average
 * backward ops read x only for its shape.
 *
 * Gradients: max_pool2d_grad is linear in dy and piecewise constant in x, so d/d(dy) is the
 * select op and d/dx is zero; the select op is linear in g with max_pool2d_grad as its adjoint.
 * The average backward ops are linear in dy, with the forward pooling as their adjoint.
 *
 * Computation goes through the kernels of src/kernels/cpu/pool.h on contiguous float32 /
 * float64 copies (float16 / bfloat16 compute in float32). The select kernel lives here and
 * repeats the kernels' window and argmax rules exactly, so all the ops agree on the argmax. */
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/pool.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

enum { PARAM_MAX = 1 << 30 };
enum { ADAPTIVE_MAX = 0, ADAPTIVE_AVG = 1 };

typedef struct pool_geom {
    int64_t N, C, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw;
    int adaptive;
    int include_pad;
} pool_geom;

/* ---- validation ---- */
static ty_status
check_input(const ty_tensor *x, const char *what)
{
    char b[TY_SHAPE_BUF];
    TY_CHECK(x->ndim == 4, TY_ERR_SHAPE, "%s must be 4-d (N, C, H, W), got shape %s", what,
             ty_shape_str(x->ndim, x->shape, b, sizeof b));
    TY_CHECK(x->shape[2] >= 1 && x->shape[3] >= 1, TY_ERR_SHAPE,
             "%s %s has an empty spatial dim", what,
             ty_shape_str(4, x->shape, b, sizeof b));
    return TY_OK;
}

static ty_status
float_dtype1(const ty_tensor *x, ty_dtype *out)
{
    TY_CHECK(ty_dtype_is_float(x->dtype), TY_ERR_DTYPE, "input must be floating point, got %s",
             ty_dtype_name(x->dtype));
    *out = x->dtype;
    return TY_OK;
}

static ty_status
float_dtype2(const ty_tensor *a, const ty_tensor *b, ty_dtype *out)
{
    ty_dtype dt = ty_promote(a->dtype, b->dtype);
    TY_CHECK(ty_dtype_is_float(a->dtype) && ty_dtype_is_float(b->dtype), TY_ERR_DTYPE,
             "operands must be floating point, got %s and %s", ty_dtype_name(a->dtype),
             ty_dtype_name(b->dtype));
    *out = dt;
    return TY_OK;
}

/* Strided pooling geometry of x under p, with every parameter check. */
static ty_status
strided_geom(const ty_p_pool *p, const ty_tensor *x, pool_geom *g)
{
    char b[TY_SHAPE_BUF];
    TY_CHECK(p->kernel_h >= 1 && p->kernel_w >= 1 && p->kernel_h <= PARAM_MAX &&
                 p->kernel_w <= PARAM_MAX,
             TY_ERR_INVALID_ARG, "kernel size must be in [1, 2^30], got (%lld, %lld)",
             (long long)p->kernel_h, (long long)p->kernel_w);
    TY_CHECK(p->stride_h >= 1 && p->stride_w >= 1 && p->stride_h <= PARAM_MAX &&
                 p->stride_w <= PARAM_MAX,
             TY_ERR_INVALID_ARG, "stride must be in [1, 2^30], got (%lld, %lld)",
             (long long)p->stride_h, (long long)p->stride_w);
    TY_CHECK(p->pad_h >= 0 && p->pad_w >= 0 && p->pad_h <= p->kernel_h / 2 &&
                 p->pad_w <= p->kernel_w / 2,
             TY_ERR_INVALID_ARG,
             "padding must be in [0, kernel / 2], got padding (%lld, %lld) with kernel "
             "(%lld, %lld)",
             (long long)p->pad_h, (long long)p->pad_w, (long long)p->kernel_h,
             (long long)p->kernel_w);
    TY_CHECK(p->mode == 0 || p->mode == 1, TY_ERR_INVALID_ARG,
             "mode must be 0 (count padding) or 1 (exclude padding), got %lld",
             (long long)p->mode);
    TY_TRY(check_input(x, "input"));
    *g = (pool_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                     .kh = p->kernel_h, .kw = p->kernel_w, .sh = p->stride_h,
                     .sw = p->stride_w, .ph = p->pad_h, .pw = p->pad_w,
                     .include_pad = p->mode == 0};
    TY_CHECK(g->H + 2 * g->ph >= g->kh && g->W + 2 * g->pw >= g->kw, TY_ERR_SHAPE,
             "kernel (%lld, %lld) does not fit input %s padded by (%lld, %lld)",
             (long long)g->kh, (long long)g->kw, ty_shape_str(4, x->shape, b, sizeof b),
             (long long)g->ph, (long long)g->pw);
    g->OH = (g->H + 2 * g->ph - g->kh) / g->sh + 1;
    g->OW = (g->W + 2 * g->pw - g->kw) / g->sw + 1;
    int64_t ys[4] = {g->N, g->C, g->OH, g->OW}, n;
    return ty_shape_numel(4, ys, &n);
}

static ty_status
adaptive_geom(const ty_p_adaptive_pool *p, const ty_tensor *x, pool_geom *g)
{
    char b[TY_SHAPE_BUF];
    int64_t t;
    TY_CHECK(p->out_h >= 1 && p->out_w >= 1 && p->out_h <= PARAM_MAX && p->out_w <= PARAM_MAX,
             TY_ERR_INVALID_ARG, "output size must be in [1, 2^30], got (%lld, %lld)",
             (long long)p->out_h, (long long)p->out_w);
    TY_TRY(check_input(x, "input"));
    *g = (pool_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                     .OH = p->out_h, .OW = p->out_w, .sh = 1, .sw = 1, .adaptive = 1};
    /* The kernels compute (o + 1) * L + O - 1 for window ends. */
    TY_CHECK(!__builtin_mul_overflow(g->H + 1, g->OH, &t) &&
                 !__builtin_mul_overflow(g->W + 1, g->OW, &t),
             TY_ERR_SHAPE, "output size (%lld, %lld) is too large for input %s",
             (long long)g->OH, (long long)g->OW, ty_shape_str(4, x->shape, b, sizeof b));
    int64_t ys[4] = {g->N, g->C, g->OH, g->OW}, n;
    return ty_shape_numel(4, ys, &n);
}

static void
geom_yshape(const pool_geom *g, int64_t *ys)
{
    ys[0] = g->N;
    ys[1] = g->C;
    ys[2] = g->OH;
    ys[3] = g->OW;
}

/* dy (or the select op's g) must have the pooled shape of x. */
static ty_status
check_dy(const pool_geom *g, const ty_tensor *dy, const ty_tensor *x, const char *what)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF], b3[TY_SHAPE_BUF];
    int64_t ys[4];
    geom_yshape(g, ys);
    TY_CHECK(dy->ndim == 4 && memcmp(dy->shape, ys, sizeof ys) == 0, TY_ERR_SHAPE,
             "%s has shape %s, expected %s (the pooled shape of input %s)", what,
             ty_shape_str(dy->ndim, dy->shape, b1, sizeof b1), ty_shape_str(4, ys, b2, sizeof b2),
             ty_shape_str(4, x->shape, b3, sizeof b3));
    return TY_OK;
}

/* ---- the select kernel: out[o] = g[o's window argmax in x], 0 for an empty window ---- */
typedef struct select_ctx {
    const pool_geom *g;
    const void *x, *gy;
    void *out;
    int f64;
} select_ctx;

/* Input range [*lo, *hi) of output index o along one axis (the kernels' rule). */
static void
window(const pool_geom *g, int axis_w, int64_t o, int64_t *lo, int64_t *hi)
{
    int64_t L = axis_w ? g->W : g->H, O = axis_w ? g->OW : g->OH;
    if (g->adaptive) {
        *lo = o * L / O;
        *hi = ((o + 1) * L + O - 1) / O;
        return;
    }
    int64_t k = axis_w ? g->kw : g->kh, s = axis_w ? g->sw : g->sh, p = axis_w ? g->pw : g->ph;
    int64_t start = o * s - p, end = start + k;
    *lo = start > 0 ? start : 0;
    *hi = end < L ? end : L;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

/* First maximum in row-major window order; a NaN beats any number (the first NaN wins). */
#define DEFINE_SELECT(T, SFX)                                                                      \
    static void select_plane_##SFX(const pool_geom *g, const T *x, const T *gy, T *out)           \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            int64_t h0, h1;                                                                        \
            window(g, 0, oh, &h0, &h1);                                                            \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                int64_t w0, w1, best = -1;                                                         \
                T m = 0;                                                                           \
                window(g, 1, ow, &w0, &w1);                                                        \
                for (int64_t h = h0; h < h1; h++) {                                                \
                    for (int64_t w = w0; w < w1; w++) {                                            \
                        T v = x[h * g->W + w];                                                     \
                        if (best < 0 || v > m || (isnan(v) && !isnan(m))) {                       \
                            best = h * g->W + w;                                                   \
                            m = v;                                                                 \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                out[oh * g->OW + ow] = best < 0 ? (T)0 : gy[best];                                 \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_SELECT(float, f32)
DEFINE_SELECT(double, f64)

static void
select_range(void *ctx, int64_t begin, int64_t end)
{
    const select_ctx *c = ctx;
    const pool_geom *g = c->g;
    int64_t in_sz = g->H * g->W, out_sz = g->OH * g->OW;
    for (int64_t p = begin; p < end; p++) {
        if (c->f64) {
            select_plane_f64(g, (const double *)c->x + p * in_sz,
                             (const double *)c->gy + p * in_sz, (double *)c->out + p * out_sz);
        } else {
            select_plane_f32(g, (const float *)c->x + p * in_sz, (const float *)c->gy + p * in_sz,
                             (float *)c->out + p * out_sz);
        }
    }
}

/* ---- running a kernel ---- */
typedef enum pool_kind {
    K_MAX_FWD, K_AVG_FWD, K_ADA_MAX_FWD, K_ADA_AVG_FWD,
    K_MAX_BWD, K_AVG_BWD, K_ADA_MAX_BWD, K_ADA_AVG_BWD,
    K_SELECT,
    K_MAX22_BWD /* K_MAX_BWD for 2x2 stride-2 unpadded windows: writes all of dx */
} pool_kind;

static int
is_max22(const pool_geom *g)
{
    return !g->adaptive && g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
           g->pw == 0;
}

static ty_status
prep(ty_tensor *t, ty_dtype cdt, ty_tensor **out)
{
    if (t->dtype != cdt) {
        return ty_strided_cast(t, cdt, out);
    }
    return ty_contiguous(t, out);
}

/* Calls the kernel of kind on contiguous compute-dtype buffers (xp: x, dp: dy or g). */
static void
pool_kernel(pool_kind kind, const pool_geom *g, int f64, const void *xp, const void *dp,
            void *yp)
{
    int64_t P = g->N * g->C;
    switch (kind) {
    case K_MAX_FWD:
        if (f64) {
            ty_maxpool2d_f64(xp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                             g->OW, yp);
        } else {
            ty_maxpool2d_f32(xp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                             g->OW, yp);
        }
        break;
    case K_AVG_FWD:
        if (f64) {
            ty_avgpool2d_f64(xp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                             g->OW, g->include_pad, yp);
        } else {
            ty_avgpool2d_f32(xp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                             g->OW, g->include_pad, yp);
        }
        break;
    case K_ADA_MAX_FWD:
    case K_ADA_AVG_FWD:
        if (f64) {
            ty_adaptive_pool2d_f64(xp, P, g->H, g->W, g->OH, g->OW, kind == K_ADA_MAX_FWD, yp);
        } else {
            ty_adaptive_pool2d_f32(xp, P, g->H, g->W, g->OH, g->OW, kind == K_ADA_MAX_FWD, yp);
        }
        break;
    case K_MAX_BWD:
        if (f64) {
            ty_maxpool2d_bwd_f64(xp, dp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                                 g->OH, g->OW, yp);
        } else {
            ty_maxpool2d_bwd_f32(xp, dp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                                 g->OH, g->OW, yp);
        }
        break;
    case K_AVG_BWD:
        if (f64) {
            ty_avgpool2d_bwd_f64(dp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                                 g->OH, g->OW, g->include_pad, yp);
        } else {
            ty_avgpool2d_bwd_f32(dp, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                                 g->OH, g->OW, g->include_pad, yp);
        }
        break;
    case K_ADA_MAX_BWD:
    case K_ADA_AVG_BWD:
        if (f64) {
            ty_adaptive_pool2d_bwd_f64(xp, dp, P, g->H, g->W, g->OH, g->OW,
                                       kind == K_ADA_MAX_BWD, yp);
        } else {
            ty_adaptive_pool2d_bwd_f32(xp, dp, P, g->H, g->W, g->OH, g->OW,
                                       kind == K_ADA_MAX_BWD, yp);
        }
        break;
    case K_MAX22_BWD:
        if (f64) {
            ty_maxpool2d_2x2_bwd_f64(xp, dp, P, g->H, g->W, g->OH, g->OW, yp);
        } else {
            ty_maxpool2d_2x2_bwd_f32(xp, dp, P, g->H, g->W, g->OH, g->OW, yp);
        }
        break;
    case K_SELECT: {
        select_ctx sc = {.g = g, .x = xp, .gy = dp, .out = yp, .f64 = f64};
        int64_t win = g->adaptive ? (g->H / g->OH + 2) * (g->W / g->OW + 2) : g->kh * g->kw;
        int64_t work = g->OH * g->OW * (win > 0 ? win : 1) + 1;
        if (P > 0 && g->OH > 0 && g->OW > 0) {
            ty_parallel_for(P, (1 << 15) / work + 1, select_range, &sc);
        }
        break;
    }
    }
}

/* Runs kind: x and d (dy or g) converted as needed (either may be NULL when unused), result
 * written into out. Backward kinds accumulate, so their result starts at zero (K_MAX22_BWD
 * writes every cell itself). */
static ty_status
pool_exec(pool_kind kind, const pool_geom *g, ty_tensor *x, ty_tensor *d, ty_tensor *out)
{
    ty_dtype cdt = out->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *cx = NULL, *cd = NULL, *y = NULL;
    if (kind == K_MAX_BWD && is_max22(g)) {
        kind = K_MAX22_BWD; /* no zeroing needed */
    }
    ty_status status = TY_OK;
    int64_t n;
    TY_TRY(ty_shape_numel(out->ndim, out->shape, &n));
    if (n == 0) {
        return TY_OK;
    }
    if (x) {
        TY_TRY_GOTO(prep(x, cdt, &cx));
    }
    if (d) {
        TY_TRY_GOTO(prep(d, cdt, &cd));
    }
    if (out->dtype == cdt) {
        ty_tensor_retain(out);
        y = out;
    } else {
        TY_TRY_GOTO(ty_tensor_new_like_meta(cdt, out->ndim, out->shape, &y));
    }
    if (kind >= K_MAX_BWD && kind <= K_ADA_AVG_BWD) {
        memset(ty_tensor_ptr(y), 0, (size_t)n * ty_dtype_size(cdt));
    }
    pool_kernel(kind, g, cdt == TY_FLOAT64, cx ? ty_tensor_ptr(cx) : NULL,
                cd ? ty_tensor_ptr(cd) : NULL, ty_tensor_ptr(y));
    if (y != out) {
        TY_TRY_GOTO(ty_strided_copy(out, y));
    }
fail:
    ty_tensor_release(cx);
    ty_tensor_release(cd);
    ty_tensor_release(y);
    return status;
}

static void
meta_set(ty_meta *out, int ndim, const int64_t *shape)
{
    out->ndim = ndim;
    memcpy(out->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

/* ---- max_pool2d / avg_pool2d: x -> y ---- */
ty_status
ty_pool2d_infer(const ty_call *c, ty_meta *out)
{
    pool_geom g = {0};
    int64_t ys[4];
    TY_TRY(float_dtype1(c->in[0], &out->dtype));
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    geom_yshape(&g, ys);
    meta_set(out, 4, ys);
    return TY_OK;
}

ty_status
ty_max_pool2d_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    return pool_exec(K_MAX_FWD, &g, c->in[0], NULL, out[0]);
}

ty_status
ty_avg_pool2d_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    return pool_exec(K_AVG_FWD, &g, c->in[0], NULL, out[0]);
}

/* ---- max_pool2d_grad / avg_pool2d_grad: (x, dy) -> dx of x's shape ---- */
ty_status
ty_pool2d_grad_infer(const ty_call *c, ty_meta *out)
{
    pool_geom g = {0};
    TY_TRY(float_dtype2(c->in[0], c->in[1], &out->dtype));
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    TY_TRY(check_dy(&g, c->in[1], c->in[0], "output gradient"));
    meta_set(out, 4, c->in[0]->shape);
    return TY_OK;
}

ty_status
ty_max_pool2d_grad_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    return pool_exec(K_MAX_BWD, &g, c->in[0], c->in[1], out[0]);
}

ty_status
ty_avg_pool2d_grad_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    return pool_exec(K_AVG_BWD, &g, NULL, c->in[1], out[0]);
}

/* ---- max_pool2d_select: (x, g of x's shape) -> y-shaped ---- */
ty_status
ty_max_pool2d_select_infer(const ty_call *c, ty_meta *out)
{
    pool_geom g = {0};
    int64_t ys[4];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(float_dtype2(c->in[0], c->in[1], &out->dtype));
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    TY_CHECK(c->in[1]->ndim == 4 && memcmp(c->in[1]->shape, c->in[0]->shape,
                                           sizeof(int64_t) * 4) == 0,
             TY_ERR_SHAPE, "selected values have shape %s, expected the input's shape %s",
             ty_shape_str(c->in[1]->ndim, c->in[1]->shape, b1, sizeof b1),
             ty_shape_str(4, c->in[0]->shape, b2, sizeof b2));
    geom_yshape(&g, ys);
    meta_set(out, 4, ys);
    return TY_OK;
}

ty_status
ty_max_pool2d_select_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(strided_geom(c->params, c->in[0], &g));
    return pool_exec(K_SELECT, &g, c->in[0], c->in[1], out[0]);
}

/* ---- adaptive_max_pool2d / adaptive_avg_pool2d: x -> y ---- */
ty_status
ty_adaptive_pool2d_infer(const ty_call *c, ty_meta *out)
{
    pool_geom g = {0};
    int64_t ys[4];
    TY_TRY(float_dtype1(c->in[0], &out->dtype));
    TY_TRY(adaptive_geom(c->params, c->in[0], &g));
    geom_yshape(&g, ys);
    meta_set(out, 4, ys);
    return TY_OK;
}

ty_status
ty_adaptive_max_pool2d_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(adaptive_geom(c->params, c->in[0], &g));
    return pool_exec(K_ADA_MAX_FWD, &g, c->in[0], NULL, out[0]);
}

ty_status
ty_adaptive_avg_pool2d_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(adaptive_geom(c->params, c->in[0], &g));
    return pool_exec(K_ADA_AVG_FWD, &g, c->in[0], NULL, out[0]);
}

/* ---- adaptive_pool2d_grad: (x, dy) -> dx; mode 0: max, 1: average ---- */
static ty_status
check_adaptive_mode(const ty_p_adaptive_pool *p)
{
    TY_CHECK(p->mode == ADAPTIVE_MAX || p->mode == ADAPTIVE_AVG, TY_ERR_INVALID_ARG,
             "mode must be 0 (max) or 1 (average), got %lld", (long long)p->mode);
    return TY_OK;
}

ty_status
ty_adaptive_pool2d_grad_infer(const ty_call *c, ty_meta *out)
{
    pool_geom g = {0};
    TY_TRY(check_adaptive_mode(c->params));
    TY_TRY(float_dtype2(c->in[0], c->in[1], &out->dtype));
    TY_TRY(adaptive_geom(c->params, c->in[0], &g));
    TY_TRY(check_dy(&g, c->in[1], c->in[0], "output gradient"));
    meta_set(out, 4, c->in[0]->shape);
    return TY_OK;
}

ty_status
ty_adaptive_pool2d_grad_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_adaptive_pool *p = c->params;
    pool_geom g = {0};
    TY_TRY(check_adaptive_mode(p));
    TY_TRY(adaptive_geom(p, c->in[0], &g));
    if (p->mode == ADAPTIVE_MAX) {
        return pool_exec(K_ADA_MAX_BWD, &g, c->in[0], c->in[1], out[0]);
    }
    return pool_exec(K_ADA_AVG_BWD, &g, NULL, c->in[1], out[0]);
}

/* ---- adaptive_max_pool2d_select: (x, g of x's shape) -> y-shaped ---- */
ty_status
ty_adaptive_max_pool2d_select_infer(const ty_call *c, ty_meta *out)
{
    pool_geom g = {0};
    int64_t ys[4];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(float_dtype2(c->in[0], c->in[1], &out->dtype));
    TY_TRY(adaptive_geom(c->params, c->in[0], &g));
    TY_CHECK(c->in[1]->ndim == 4 && memcmp(c->in[1]->shape, c->in[0]->shape,
                                           sizeof(int64_t) * 4) == 0,
             TY_ERR_SHAPE, "selected values have shape %s, expected the input's shape %s",
             ty_shape_str(c->in[1]->ndim, c->in[1]->shape, b1, sizeof b1),
             ty_shape_str(4, c->in[0]->shape, b2, sizeof b2));
    geom_yshape(&g, ys);
    meta_set(out, 4, ys);
    return TY_OK;
}

ty_status
ty_adaptive_max_pool2d_select_forward(const ty_call *c, ty_tensor **out)
{
    pool_geom g = {0};
    TY_TRY(adaptive_geom(c->params, c->in[0], &g));
    return pool_exec(K_SELECT, &g, c->in[0], c->in[1], out[0]);
}

/* ---- gradients ---- */
/* One-input ops (the forward poolings): gin[0] = op(x, g) with the call's params. */
static ty_status
grad_unary(const ty_call *c, ty_op op, const void *params, ty_tensor *g, ty_tensor **gin)
{
    ty_gk k = {0};
    gin[0] = NULL;
    if (!g) {
        return TY_OK;
    }
    ty_tensor *dx = gk_fit_dtype(&k, gk_apply(&k, op, params, 2, c->in[0], g, NULL), c->in[0]);
    return gk_finish(&k, dx, &gin[0]);
}

/* Two-input ops (x, v) linear in v with x held fixed: gin[0] = none (piecewise constant in x),
 * gin[1] = op applied to (x, g), or to g alone when op_unary. */
static ty_status
grad_linear_in_second(const ty_call *c, ty_op op, const void *params, int op_unary,
                      ty_tensor *g, ty_tensor **gin)
{
    ty_gk k = {0};
    gin[0] = NULL;
    gin[1] = NULL;
    if (!g) {
        return TY_OK;
    }
    ty_tensor *d = op_unary ? gk_apply(&k, op, params, 1, g, NULL, NULL)
                            : gk_apply(&k, op, params, 2, c->in[0], g, NULL);
    d = gk_fit_dtype(&k, d, c->in[1]);
    return gk_finish2(&k, NULL, &gin[0], d, &gin[1]);
}

ty_status
ty_grad_max_pool2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                   ty_tensor **gin)
{
    (void)out;
    return grad_unary(c, TY_OP_MAX_POOL2D_GRAD, c->params, gout[0], gin);
}

ty_status
ty_grad_avg_pool2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                   ty_tensor **gin)
{
    (void)out;
    return grad_unary(c, TY_OP_AVG_POOL2D_GRAD, c->params, gout[0], gin);
}

/* dx = max_pool2d_grad(x, dy): d/d(dy) = max_pool2d_select(x, g) */
ty_status
ty_grad_max_pool2d_grad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                        ty_tensor **gin)
{
    (void)out;
    return grad_linear_in_second(c, TY_OP_MAX_POOL2D_SELECT, c->params, 0, gout[0], gin);
}

/* y = max_pool2d_select(x, v): d/dv = max_pool2d_grad(x, g) */
ty_status
ty_grad_max_pool2d_select(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                          ty_tensor **gin)
{
    (void)out;
    return grad_linear_in_second(c, TY_OP_MAX_POOL2D_GRAD, c->params, 0, gout[0], gin);
}

/* dx = avg_pool2d_grad(x, dy): d/d(dy) = avg_pool2d(g) */
ty_status
ty_grad_avg_pool2d_grad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                        ty_tensor **gin)
{
    (void)out;
    return grad_linear_in_second(c, TY_OP_AVG_POOL2D, c->params, 1, gout[0], gin);
}

ty_status
ty_grad_adaptive_max_pool2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                            ty_tensor **gin)
{
    (void)out;
    ty_p_adaptive_pool p = *(const ty_p_adaptive_pool *)c->params;
    p.mode = ADAPTIVE_MAX;
    return grad_unary(c, TY_OP_ADAPTIVE_POOL2D_GRAD, &p, gout[0], gin);
}

ty_status
ty_grad_adaptive_avg_pool2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                            ty_tensor **gin)
{
    (void)out;
    ty_p_adaptive_pool p = *(const ty_p_adaptive_pool *)c->params;
    p.mode = ADAPTIVE_AVG;
    return grad_unary(c, TY_OP_ADAPTIVE_POOL2D_GRAD, &p, gout[0], gin);
}

/* dx = adaptive_pool2d_grad(x, dy): d/d(dy) = adaptive_max_pool2d_select(x, g) (max) or
 * adaptive_avg_pool2d(g) (average) */
ty_status
ty_grad_adaptive_pool2d_grad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                             ty_tensor **gin)
{
    (void)out;
    const ty_p_adaptive_pool *p = c->params;
    if (p->mode == ADAPTIVE_MAX) {
        return grad_linear_in_second(c, TY_OP_ADAPTIVE_MAX_POOL2D_SELECT, p, 0, gout[0], gin);
    }
    return grad_linear_in_second(c, TY_OP_ADAPTIVE_AVG_POOL2D, p, 1, gout[0], gin);
}

/* y = adaptive_max_pool2d_select(x, v): d/dv = adaptive_pool2d_grad(x, g) in max mode */
ty_status
ty_grad_adaptive_max_pool2d_select(const ty_call *c, ty_tensor *const *out,
                                   ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_p_adaptive_pool p = *(const ty_p_adaptive_pool *)c->params;
    p.mode = ADAPTIVE_MAX;
    return grad_linear_in_second(c, TY_OP_ADAPTIVE_POOL2D_GRAD, &p, 0, gout[0], gin);
}
