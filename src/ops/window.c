/* Window family: sliding_window (MegEngine's Images2Neibs) and its adjoint
 * sliding_window_transpose (SlidingWindowTranspose).
 *
 *   sliding_window: (N, C, H, W) -> (N, C, OH, OW, KH, KW),
 *     y[n, c, i, j, a, b] = x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw] (0 outside the image)
 *   sliding_window_transpose: (N, C, OH, OW, KH, KW) -> (N, C, out_h, out_w), each entry
 *     added at the pixel sliding_window took it from.
 *
 * Each (n, c) plane is one work item and the transpose adds in a fixed order (i, j, a, b),
 * so the bits never depend on the thread count. The gradient of each is the other. */
#include <string.h>

#include "base/threadpool.h"
#include "ops/gradkit.h"
#include "ops/op.h"
#include "ops/strided.h"

typedef struct geom {
    int64_t planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
} geom;

/* The output length, 0 when the window does not fit, -1 when the geometry overflows int64. */
static int64_t
out_len(int64_t size, int64_t k, int64_t p, int64_t s, int64_t d)
{
    int64_t span, padded;
    if (__builtin_mul_overflow(d, k - 1, &span) || __builtin_add_overflow(span, 1, &span) ||
        __builtin_mul_overflow(p, 2, &padded) || __builtin_add_overflow(padded, size, &padded)) {
        return -1;
    }
    return padded < span ? 0 : (padded - span) / s + 1;
}

static geom
geom_of(const ty_p_window *p, int64_t planes, int64_t h, int64_t w)
{
    geom g = {planes, h, w, 0, 0, p->window_h, p->window_w, p->stride_h, p->stride_w,
              p->pad_h, p->pad_w, p->dilate_h, p->dilate_w};
    g.oh = out_len(h, g.kh, g.ph, g.sh, g.dh);
    g.ow = out_len(w, g.kw, g.pw, g.sw, g.dw);
    return g;
}

static ty_status
check_fits(const geom *g)
{
    TY_CHECK(g->oh >= 0 && g->ow >= 0, TY_ERR_INVALID_ARG,
             "the window geometry (size, padding, dilation) overflows int64");
    TY_CHECK(g->oh > 0 && g->ow > 0, TY_ERR_SHAPE,
             "the window %lldx%lld (dilation %lldx%lld) does not fit the %lldx%lld input "
             "padded by (%lld, %lld)", (long long)g->kh, (long long)g->kw, (long long)g->dh,
             (long long)g->dw, (long long)g->h, (long long)g->w, (long long)g->ph,
             (long long)g->pw);
    return TY_OK;
}

/* ---- sliding_window ---- */
ty_status
ty_sliding_window_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    char buf[TY_SHAPE_BUF];
    TY_CHECK(x->ndim == 4, TY_ERR_SHAPE, "expects an (N, C, H, W) input, got %s",
             ty_shape_str(x->ndim, x->shape, buf, sizeof buf));
    geom g = geom_of(c->params, x->shape[0] * x->shape[1], x->shape[2], x->shape[3]);
    TY_TRY(check_fits(&g));
    int64_t shape[6] = {x->shape[0], x->shape[1], g.oh, g.ow, g.kh, g.kw};
    out->dtype = x->dtype;
    out->ndim = 6;
    memcpy(out->shape, shape, sizeof shape);
    return TY_OK;
}

typedef struct win_ctx {
    geom g;
    const char *x;
    char *y;
    size_t es;
} win_ctx;

/* The taps b of a window row whose column j*sw - pw + b*dw lies in [0, w): [*b0, *b1). */
static void
valid_taps(const geom *g, int64_t j, int64_t *b0, int64_t *b1)
{
    int64_t first = j * g->sw - g->pw; /* column of tap 0 */
    int64_t lo = first >= 0 ? 0 : (-first + g->dw - 1) / g->dw;
    int64_t hi = first > g->w - 1 ? 0 : (g->w - 1 - first) / g->dw + 1;
    *b0 = lo < g->kw ? lo : g->kw;
    *b1 = hi < g->kw ? hi : g->kw;
    if (*b1 < *b0) {
        *b1 = *b0;
    }
}

/* One window row (kw taps) of plane src at image row ih into dst: zeros outside the image,
 * one memcpy inside when the dilation is 1. */
static void
copy_taps(const geom *g, const char *src, int64_t ih, int64_t j, char *dst, size_t es)
{
    int64_t b0, b1;
    if (ih < 0 || ih >= g->h) {
        memset(dst, 0, es * (size_t)g->kw);
        return;
    }
    valid_taps(g, j, &b0, &b1);
    memset(dst, 0, es * (size_t)b0);
    memset(dst + es * (size_t)b1, 0, es * (size_t)(g->kw - b1));
    if (b1 == b0) {
        return;
    }
    /* the first tap inside the image (no pointer before src is ever formed) */
    const char *first = src + (size_t)(ih * g->w + j * g->sw - g->pw + b0 * g->dw) * es;
    if (g->dw == 1) {
        memcpy(dst + es * (size_t)b0, first, es * (size_t)(b1 - b0));
        return;
    }
    for (int64_t b = b0; b < b1; b++) {
        ty_copy_elem(dst + es * (size_t)b, first + es * (size_t)((b - b0) * g->dw), es);
    }
}

static void
gather_range(void *ctx, int64_t begin, int64_t end)
{
    const win_ctx *c = ctx;
    const geom *g = &c->g;
    size_t es = c->es;
    for (int64_t pl = begin; pl < end; pl++) {
        const char *src = c->x + (size_t)(pl * g->h * g->w) * es;
        char *dst = c->y + (size_t)(pl * g->oh * g->ow * g->kh * g->kw) * es;
        for (int64_t i = 0; i < g->oh; i++) {
            for (int64_t j = 0; j < g->ow; j++) {
                for (int64_t a = 0; a < g->kh; a++, dst += es * (size_t)g->kw) {
                    copy_taps(g, src, i * g->sh - g->ph + a * g->dh, j, dst, es);
                }
            }
        }
    }
}

ty_status
ty_sliding_window_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *x = NULL;
    TY_TRY(ty_contiguous(c->in[0], &x));
    win_ctx w = {geom_of(c->params, x->shape[0] * x->shape[1], x->shape[2], x->shape[3]),
                 ty_tensor_ptr(x), ty_tensor_ptr(out[0]), ty_dtype_size(x->dtype)};
    ty_parallel_for(w.g.planes, 1, gather_range, &w);
    ty_tensor_release(x);
    return TY_OK;
}

ty_status
ty_grad_sliding_window(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                       ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    if (!gout[0]) {
        return gk_finish(&k, NULL, &gin[0]);
    }
    ty_p_window p = *(const ty_p_window *)c->params;
    p.out_h = c->in[0]->shape[2];
    p.out_w = c->in[0]->shape[3];
    ty_tensor *d = gk_apply(&k, TY_OP_SLIDING_WINDOW_TRANSPOSE, &p, 1, gout[0], NULL, NULL);
    return gk_finish(&k, d, &gin[0]);
}

/* ---- sliding_window_transpose ---- */
ty_status
ty_sliding_window_transpose_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *y = c->in[0];
    const ty_p_window *p = c->params;
    char buf[TY_SHAPE_BUF];
    TY_CHECK(y->dtype == TY_FLOAT32 || y->dtype == TY_FLOAT64, TY_ERR_DTYPE,
             "expects a float32 or float64 input, got %s", ty_dtype_name(y->dtype));
    TY_CHECK(y->ndim == 6, TY_ERR_SHAPE, "expects an (N, C, OH, OW, KH, KW) input, got %s",
             ty_shape_str(y->ndim, y->shape, buf, sizeof buf));
    TY_CHECK(p->out_h > 0 && p->out_w > 0, TY_ERR_INVALID_ARG,
             "out_h and out_w must be positive, got %lld and %lld", (long long)p->out_h,
             (long long)p->out_w);
    geom g = geom_of(p, y->shape[0] * y->shape[1], p->out_h, p->out_w);
    TY_TRY(check_fits(&g));
    TY_CHECK(y->shape[2] == g.oh && y->shape[3] == g.ow && y->shape[4] == g.kh &&
                 y->shape[5] == g.kw, TY_ERR_SHAPE,
             "input %s does not match a %lldx%lld output and the window: expected "
             "(N, C, %lld, %lld, %lld, %lld)", ty_shape_str(y->ndim, y->shape, buf, sizeof buf),
             (long long)p->out_h, (long long)p->out_w, (long long)g.oh, (long long)g.ow,
             (long long)g.kh, (long long)g.kw);
    int64_t shape[4] = {y->shape[0], y->shape[1], p->out_h, p->out_w};
    out->dtype = y->dtype;
    out->ndim = 4;
    memcpy(out->shape, shape, sizeof shape);
    return TY_OK;
}

#define SCATTER_RANGE(NAME, T)                                                                 \
    static void NAME(void *ctx, int64_t begin, int64_t end)                                    \
    {                                                                                          \
        const win_ctx *c = ctx;                                                                \
        const geom *g = &c->g;                                                                 \
        for (int64_t pl = begin; pl < end; pl++) {                                             \
            const T *src = (const T *)c->x + pl * g->oh * g->ow * g->kh * g->kw;               \
            T *dst = (T *)c->y + pl * g->h * g->w;                                             \
            memset(dst, 0, sizeof(T) * (size_t)(g->h * g->w));                                 \
            for (int64_t i = 0; i < g->oh; i++) {                                              \
                for (int64_t j = 0; j < g->ow; j++) {                                          \
                    for (int64_t a = 0; a < g->kh; a++) {                                      \
                        int64_t ih = i * g->sh - g->ph + a * g->dh;                            \
                        for (int64_t b = 0; b < g->kw; b++, src++) {                           \
                            int64_t iw = j * g->sw - g->pw + b * g->dw;                        \
                            if (ih >= 0 && ih < g->h && iw >= 0 && iw < g->w) {                \
                                dst[ih * g->w + iw] += *src;                                   \
                            }                                                                  \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }
SCATTER_RANGE(scatter_f32, float)
SCATTER_RANGE(scatter_f64, double)

ty_status
ty_sliding_window_transpose_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_window *p = c->params;
    ty_tensor *y = NULL;
    TY_TRY(ty_contiguous(c->in[0], &y));
    win_ctx w = {geom_of(p, y->shape[0] * y->shape[1], p->out_h, p->out_w), ty_tensor_ptr(y),
                 ty_tensor_ptr(out[0]), ty_dtype_size(y->dtype)};
    ty_parallel_for(w.g.planes, 1, y->dtype == TY_FLOAT32 ? scatter_f32 : scatter_f64, &w);
    ty_tensor_release(y);
    return TY_OK;
}

ty_status
ty_grad_sliding_window_transpose(const ty_call *c, ty_tensor *const *out,
                                 ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    if (!gout[0]) {
        return gk_finish(&k, NULL, &gin[0]);
    }
    ty_tensor *d = gk_apply(&k, TY_OP_SLIDING_WINDOW, c->params, 1, gout[0], NULL, NULL);
    return gk_finish(&k, d, &gin[0]);
}
