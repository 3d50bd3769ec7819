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

/* ---- the kernels: one adapter per kernel of pool.h, on contiguous compute-dtype buffers
 * (x: the input, d: dy or the select op's g, y: the result) ---- */
typedef void (*pool_fn)(const pool_geom *g, int f64, const void *x, const void *d, void *y);

static int
is_max22(const pool_geom *g)
{
    return !g->adaptive && g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
           g->pw == 0;
}

/* Backward kernels accumulate into dx, which starts at zero. */
static void
zero_dx(const pool_geom *g, int f64, void *y)
{
    memset(y, 0, (size_t)(g->N * g->C * g->H * g->W) * (f64 ? sizeof(double) : sizeof(float)));
}

static void
k_max(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    (void)d;
    int64_t P = g->N * g->C;
    if (f64) {
        ty_maxpool2d_f64(x, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                         g->OW, y);
    } else {
        ty_maxpool2d_f32(x, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                         g->OW, y);
    }
}

static void
k_avg(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    (void)d;
    int64_t P = g->N * g->C;
    if (f64) {
        ty_avgpool2d_f64(x, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                         g->OW, g->include_pad, y);
    } else {
        ty_avgpool2d_f32(x, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                         g->OW, g->include_pad, y);
    }
}

static void
adaptive(const pool_geom *g, int f64, const void *x, int is_max, void *y)
{
    int64_t P = g->N * g->C;
    if (f64) {
        ty_adaptive_pool2d_f64(x, P, g->H, g->W, g->OH, g->OW, is_max, y);
    } else {
        ty_adaptive_pool2d_f32(x, P, g->H, g->W, g->OH, g->OW, is_max, y);
    }
}

static void
k_ada_max(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    (void)d;
    adaptive(g, f64, x, 1, y);
}

static void
k_ada_avg(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    (void)d;
    adaptive(g, f64, x, 0, y);
}

/* 2x2 stride-2 unpadded windows have a kernel that writes every cell of dx itself. */
static void
k_max_bwd(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    int64_t P = g->N * g->C;
    if (is_max22(g)) {
        if (f64) {
            ty_maxpool2d_2x2_bwd_f64(x, d, P, g->H, g->W, g->OH, g->OW, y);
        } else {
            ty_maxpool2d_2x2_bwd_f32(x, d, P, g->H, g->W, g->OH, g->OW, y);
        }
        return;
    }
    zero_dx(g, f64, y);
    if (f64) {
        ty_maxpool2d_bwd_f64(x, d, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                             g->OH, g->OW, y);
    } else {
        ty_maxpool2d_bwd_f32(x, d, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                             g->OH, g->OW, y);
    }
}

static void
k_avg_bwd(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    (void)x;
    int64_t P = g->N * g->C;
    zero_dx(g, f64, y);
    if (f64) {
        ty_avgpool2d_bwd_f64(d, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                             g->OW, g->include_pad, y);
    } else {
        ty_avgpool2d_bwd_f32(d, P, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->OH,
                             g->OW, g->include_pad, y);
    }
}

static void
adaptive_bwd(const pool_geom *g, int f64, const void *x, const void *d, int is_max, void *y)
{
    int64_t P = g->N * g->C;
    zero_dx(g, f64, y);
    if (f64) {
        ty_adaptive_pool2d_bwd_f64(x, d, P, g->H, g->W, g->OH, g->OW, is_max, y);
    } else {
        ty_adaptive_pool2d_bwd_f32(x, d, P, g->H, g->W, g->OH, g->OW, is_max, y);
    }
}

static void
k_ada_max_bwd(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    adaptive_bwd(g, f64, x, d, 1, y);
}

static void
k_ada_avg_bwd(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    adaptive_bwd(g, f64, x, d, 0, y);
}

static void
k_select(const pool_geom *g, int f64, const void *x, const void *d, void *y)
{
    select_ctx sc = {.g = g, .x = x, .gy = d, .out = y, .f64 = f64};
    int64_t P = g->N * g->C;
    int64_t win = g->adaptive ? (g->H / g->OH + 2) * (g->W / g->OW + 2) : g->kh * g->kw;
    int64_t work = g->OH * g->OW * (win > 0 ? win : 1) + 1;
    if (P > 0 && g->OH > 0 && g->OW > 0) {
        ty_parallel_for(P, (1 << 15) / work + 1, select_range, &sc);
    }
}

/* ---- a row per op: its params, its second input, its kernel and its gradient ---- */
typedef enum pool_in1 {
    IN1_NONE, /* x only: the forward poolings */
    IN1_DY,   /* (x, dy): dy has the pooled shape, the result x's shape (backward ops) */
    IN1_LIKE_X /* (x, g): g has x's shape, the result the pooled shape (select ops) */
} pool_in1;

typedef enum pool_grad_form {
    GRAD_OF_X,       /* gin[0] = grad_op(x, g) */
    GRAD_IN1_WITH_X, /* linear in input 1: gin[1] = grad_op(x, g); x gets none */
    GRAD_IN1_ALONE   /* linear in input 1: gin[1] = grad_op(g); x gets none */
} pool_grad_form;

enum { KEEP_MODE = -1 };

typedef struct pool_variant {
    pool_fn kernel;
    int reads_x;  /* the average backward kernels read x only for its shape */
    ty_op grad_op;
    pool_grad_form grad_form;
    int grad_mode; /* the adaptive grad_op's mode param, or KEEP_MODE for the call's params */
} pool_variant;

typedef struct pool_row {
    int adaptive;     /* params are ty_p_adaptive_pool, else ty_p_pool */
    pool_in1 in1;
    int by_mode;      /* the params' mode (ADAPTIVE_MAX / _AVG) picks the variant */
    pool_variant v[2];
} pool_row;

#define V(kern, rx, gop, form, mode) {kern, rx, TY_OP_##gop, form, mode}
static const pool_row pool_rows[TY_OP_COUNT] = {
    [TY_OP_MAX_POOL2D] = {0, IN1_NONE, 0, {V(k_max, 1, MAX_POOL2D_GRAD, GRAD_OF_X, KEEP_MODE)}},
    [TY_OP_AVG_POOL2D] = {0, IN1_NONE, 0, {V(k_avg, 1, AVG_POOL2D_GRAD, GRAD_OF_X, KEEP_MODE)}},
    /* max_pool2d_grad is linear in dy and piecewise constant in x: d/d(dy) is the select op */
    [TY_OP_MAX_POOL2D_GRAD] =
        {0, IN1_DY, 0, {V(k_max_bwd, 1, MAX_POOL2D_SELECT, GRAD_IN1_WITH_X, KEEP_MODE)}},
    [TY_OP_AVG_POOL2D_GRAD] =
        {0, IN1_DY, 0, {V(k_avg_bwd, 0, AVG_POOL2D, GRAD_IN1_ALONE, KEEP_MODE)}},
    /* the select op is linear in g with max_pool2d_grad as its adjoint */
    [TY_OP_MAX_POOL2D_SELECT] =
        {0, IN1_LIKE_X, 0, {V(k_select, 1, MAX_POOL2D_GRAD, GRAD_IN1_WITH_X, KEEP_MODE)}},
    [TY_OP_ADAPTIVE_MAX_POOL2D] =
        {1, IN1_NONE, 0, {V(k_ada_max, 1, ADAPTIVE_POOL2D_GRAD, GRAD_OF_X, ADAPTIVE_MAX)}},
    [TY_OP_ADAPTIVE_AVG_POOL2D] =
        {1, IN1_NONE, 0, {V(k_ada_avg, 1, ADAPTIVE_POOL2D_GRAD, GRAD_OF_X, ADAPTIVE_AVG)}},
    [TY_OP_ADAPTIVE_POOL2D_GRAD] =
        {1, IN1_DY, 1,
         {[ADAPTIVE_MAX] = V(k_ada_max_bwd, 1, ADAPTIVE_MAX_POOL2D_SELECT, GRAD_IN1_WITH_X,
                             KEEP_MODE),
          [ADAPTIVE_AVG] = V(k_ada_avg_bwd, 0, ADAPTIVE_AVG_POOL2D, GRAD_IN1_ALONE, KEEP_MODE)}},
    [TY_OP_ADAPTIVE_MAX_POOL2D_SELECT] =
        {1, IN1_LIKE_X, 0,
         {V(k_select, 1, ADAPTIVE_POOL2D_GRAD, GRAD_IN1_WITH_X, ADAPTIVE_MAX)}},
};
#undef V

/* The row and variant of the call, with the mode check of ops whose mode picks the variant. */
static ty_status
variant_of(const ty_call *c, const pool_row **row, const pool_variant **v)
{
    TY_CHECK((unsigned)c->op < TY_OP_COUNT && pool_rows[c->op].v[0].kernel, TY_ERR_INTERNAL,
             "%s is not a pooling op", ty_op_name(c->op));
    *row = &pool_rows[c->op];
    int64_t mode = (*row)->by_mode ? ((const ty_p_adaptive_pool *)c->params)->mode : 0;
    TY_CHECK(mode == ADAPTIVE_MAX || mode == ADAPTIVE_AVG, TY_ERR_INVALID_ARG,
             "mode must be 0 (max) or 1 (average), got %lld", (long long)mode);
    *v = &(*row)->v[mode];
    return TY_OK;
}

static ty_status
geom_of(const pool_row *row, const ty_call *c, pool_geom *g)
{
    return row->adaptive ? adaptive_geom(c->params, c->in[0], g)
                         : strided_geom(c->params, c->in[0], g);
}

/* Runs the kernel on x and d converted to the compute dtype (either may be NULL when
 * unused), writing the result into out. */
static ty_status
pool_exec(pool_fn kernel, const pool_geom *g, ty_tensor *x, ty_tensor *d, ty_tensor *out)
{
    ty_dtype cdt = out->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *cx = NULL, *cd = NULL, *y = NULL;
    ty_status status = TY_OK;
    int64_t n;
    TY_TRY(ty_shape_numel(out->ndim, out->shape, &n));
    if (n == 0) {
        return TY_OK;
    }
    if (x) {
        TY_TRY_GOTO(ty_contiguous_as(x, cdt, &cx));
    }
    if (d) {
        TY_TRY_GOTO(ty_contiguous_as(d, cdt, &cd));
    }
    TY_TRY_GOTO(ty_compute_target(out, cdt, &y));
    kernel(g, cdt == TY_FLOAT64, cx ? ty_tensor_ptr(cx) : NULL, cd ? ty_tensor_ptr(cd) : NULL,
           ty_tensor_ptr(y));
    TY_TRY_GOTO(ty_compute_done(out, y));
fail:
    ty_tensor_release(cx);
    ty_tensor_release(cd);
    ty_tensor_release(y);
    return status;
}

/* ---- the ops: infer and forward read the call's row ---- */
static ty_status
check_like_x(const ty_tensor *v, const ty_tensor *x)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(v->ndim == 4 && memcmp(v->shape, x->shape, sizeof(int64_t) * 4) == 0, TY_ERR_SHAPE,
             "selected values have shape %s, expected the input's shape %s",
             ty_shape_str(v->ndim, v->shape, b1, sizeof b1),
             ty_shape_str(4, x->shape, b2, sizeof b2));
    return TY_OK;
}

ty_status
ty_pool2d_infer(const ty_call *c, ty_meta *out)
{
    const pool_row *row = NULL;
    const pool_variant *v = NULL;
    pool_geom g = {0};
    TY_TRY(variant_of(c, &row, &v));
    if (row->in1 == IN1_NONE) {
        TY_TRY(float_dtype1(c->in[0], &out->dtype));
    } else {
        TY_TRY(float_dtype2(c->in[0], c->in[1], &out->dtype));
    }
    TY_TRY(geom_of(row, c, &g));
    if (row->in1 == IN1_DY) {
        TY_TRY(check_dy(&g, c->in[1], c->in[0], "output gradient"));
        out->ndim = 4;
        memcpy(out->shape, c->in[0]->shape, sizeof(int64_t) * 4);
        return TY_OK;
    }
    if (row->in1 == IN1_LIKE_X) {
        TY_TRY(check_like_x(c->in[1], c->in[0]));
    }
    out->ndim = 4;
    geom_yshape(&g, out->shape);
    return TY_OK;
}

ty_status
ty_pool2d_forward(const ty_call *c, ty_tensor **out)
{
    const pool_row *row = NULL;
    const pool_variant *v = NULL;
    pool_geom g = {0};
    TY_TRY(variant_of(c, &row, &v));
    TY_TRY(geom_of(row, c, &g));
    return pool_exec(v->kernel, &g, v->reads_x ? c->in[0] : NULL,
                     row->in1 == IN1_NONE ? NULL : c->in[1], out[0]);
}

/* ---- the gradient, from the row: every pooling op is linear in the values it moves ---- */
ty_status
ty_grad_pool2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const pool_row *row = NULL;
    const pool_variant *v = NULL;
    TY_TRY(variant_of(c, &row, &v));
    ty_tensor *g = gout[0];
    int target = v->grad_form == GRAD_OF_X ? 0 : 1;
    for (int i = 0; i < c->nin; i++) {
        gin[i] = NULL;
    }
    if (!g) {
        return TY_OK;
    }
    ty_p_adaptive_pool mp;
    const void *params = c->params;
    if (v->grad_mode != KEEP_MODE) {
        mp = *(const ty_p_adaptive_pool *)c->params;
        mp.mode = v->grad_mode;
        params = &mp;
    }
    ty_gk k = {0};
    ty_tensor *d = v->grad_form == GRAD_IN1_ALONE
                       ? gk_apply(&k, v->grad_op, params, 1, g, NULL, NULL)
                       : gk_apply(&k, v->grad_op, params, 2, c->in[0], g, NULL);
    d = gk_fit_dtype(&k, d, c->in[target]);
    return gk_finish(&k, d, &gin[target]);
}
