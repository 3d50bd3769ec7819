/* 2-D max / average pooling, strided and adaptive, forward and backward.
 *
 * Strided and adaptive pooling differ only in where a window starts and ends, so both go
 * through window_1d and share the per-type bodies below. The backward of max pooling
 * recomputes the argmax instead of storing indices: the forward pass then needs no extra
 * output, and the same search decides both passes, so they always agree. */
#include <math.h>

#include "core/threadpool.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/pool.h"

enum { MIN_CHUNK_WORK = 1 << 15 };

typedef struct pool_geom {
    int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw;
    int adaptive;
    int include_pad;
} pool_geom;

typedef struct pool_ctx {
    pool_geom g;
    int is_max;
    const void *x;  /* forward input; also read by the max backward */
    const void *dy; /* backward only */
    void *out;      /* y, or dx (accumulated) */
} pool_ctx;

/* Input range [*lo, *hi) of output index o along one axis of length L (O outputs), and the
 * window length counted by count_include_pad (*padded). */
static inline void
window_1d(const pool_geom *g, int axis_w, int64_t o, int64_t *lo, int64_t *hi, int64_t *padded)
{
    int64_t L = axis_w ? g->W : g->H, O = axis_w ? g->OW : g->OH;
    if (g->adaptive) {
        *lo = o * L / O;
        *hi = ((o + 1) * L + O - 1) / O;
        *padded = *hi - *lo;
        return;
    }
    int64_t k = axis_w ? g->kw : g->kh, s = axis_w ? g->sw : g->sh, p = axis_w ? g->pw : g->ph;
    int64_t start = o * s - p;
    int64_t end = start + k < L + p ? start + k : L + p;
    *padded = end > start ? end - start : 0;
    *lo = start > 0 ? start : 0;
    *hi = end < L ? end : L;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

static inline int64_t
avg_divisor(const pool_geom *g, int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t hpad,
            int64_t wpad)
{
    return g->include_pad && !g->adaptive ? hpad * wpad : (h1 - h0) * (w1 - w0);
}

/* 2x2 windows, stride 2, no padding, and every window fully inside the plane. */
static inline int
is_plain_2x2(const pool_geom *g)
{
    return !g->adaptive && g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
           g->pw == 0 && 2 * g->OH <= g->H && 2 * g->OW <= g->W;
}

#define DEFINE_POOL(T, SFX)                                                                        \
    /* Index in the plane of the window's maximum (first max; a NaN beats any number, first        \
     * NaN wins), or -1 for an empty window. */                                                    \
    static inline int64_t argmax_##SFX(const T *plane, int64_t W, int64_t h0, int64_t h1,          \
                                       int64_t w0, int64_t w1)                                     \
    {                                                                                              \
        int64_t best = -1;                                                                         \
        T m = 0;                                                                                   \
        for (int64_t h = h0; h < h1; h++) {                                                        \
            const T *row = plane + h * W;                                                          \
            for (int64_t w = w0; w < w1; w++) {                                                    \
                T v = row[w];                                                                      \
                if (best < 0 || v > m || (isnan(v) && !isnan(m))) {                                \
                    best = h * W + w;                                                              \
                    m = v;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return best;                                                                               \
    }                                                                                              \
                                                                                                   \
    /* The common 2x2 stride-2 unpadded max pool, branch-free so it vectorises. Same rule   \
     * as argmax_: the later element wins only if greater, or NaN against a number. */        \
    TY_CLONES static void max22_fwd_##SFX(const pool_geom *g, const T *plane, T *y)                         \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            const T *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W;                                  \
            T *yr = y + oh * g->OW;                                                                \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];          \
                T m1 = (b > a || (b != b && a == a)) ? b : a;                                      \
                T m2 = (d > c || (d != d && c == c)) ? d : c;                                      \
                yr[ow] = (m2 > m1 || (m2 != m2 && m1 == m1)) ? m2 : m1;                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    TY_CLONES static void max22_bwd_##SFX(const pool_geom *g, const T *plane, const T *dy, T *dx)           \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            const T *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W;                                  \
            T *d0 = dx + 2 * oh * g->W, *d1 = d0 + g->W;                                           \
            const T *dyr = dy + oh * g->OW;                                                        \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];          \
                int pb = b > a || (b != b && a == a), pd = d > c || (d != d && c == c);            \
                T m1 = pb ? b : a, m2 = pd ? d : c;                                                \
                int second = m2 > m1 || (m2 != m2 && m1 == m1);                                    \
                T v = dyr[ow], z = 0;                                                              \
                d0[2 * ow] += (!second && !pb) ? v : z;                                            \
                d0[2 * ow + 1] += (!second && pb) ? v : z;                                         \
                d1[2 * ow] += (second && !pd) ? v : z;                                             \
                d1[2 * ow + 1] += (second && pd) ? v : z;                                          \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void pool_fwd_##SFX(void *ctx, int64_t begin, int64_t end)                              \
    {                                                                                              \
        const pool_ctx *c = ctx;                                                                   \
        const pool_geom *g = &c->g;                                                                \
        if (c->is_max && is_plain_2x2(g)) {                                                        \
            for (int64_t p = begin; p < end; p++) {                                                \
                max22_fwd_##SFX(g, (const T *)c->x + p * g->H * g->W,                              \
                                (T *)c->out + p * g->OH * g->OW);                                  \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = begin; p < end; p++) {                                                    \
            const T *plane = (const T *)c->x + p * g->H * g->W;                                    \
            T *y = (T *)c->out + p * g->OH * g->OW;                                                \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                int64_t h0, h1, hpad;                                                              \
                window_1d(g, 0, oh, &h0, &h1, &hpad);                                              \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    int64_t w0, w1, wpad;                                                          \
                    window_1d(g, 1, ow, &w0, &w1, &wpad);                                          \
                    if (c->is_max) {                                                               \
                        int64_t idx = argmax_##SFX(plane, g->W, h0, h1, w0, w1);                   \
                        y[oh * g->OW + ow] = idx < 0 ? (T)-INFINITY : plane[idx];                  \
                        continue;                                                                  \
                    }                                                                              \
                    T sum = 0;                                                                     \
                    for (int64_t h = h0; h < h1; h++) {                                            \
                        for (int64_t w = w0; w < w1; w++) {                                        \
                            sum += plane[h * g->W + w];                                            \
                        }                                                                          \
                    }                                                                              \
                    int64_t div = avg_divisor(g, h0, h1, w0, w1, hpad, wpad);                      \
                    y[oh * g->OW + ow] = div > 0 ? sum / (T)div : (T)0;                            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void pool_bwd_##SFX(void *ctx, int64_t begin, int64_t end)                              \
    {                                                                                              \
        const pool_ctx *c = ctx;                                                                   \
        const pool_geom *g = &c->g;                                                                \
        if (c->is_max && is_plain_2x2(g)) {                                                        \
            for (int64_t p = begin; p < end; p++) {                                                \
                max22_bwd_##SFX(g, (const T *)c->x + p * g->H * g->W,                              \
                                (const T *)c->dy + p * g->OH * g->OW,                              \
                                (T *)c->out + p * g->H * g->W);                                    \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = begin; p < end; p++) {                                                    \
            const T *plane = c->is_max ? (const T *)c->x + p * g->H * g->W : NULL;                 \
            const T *dy = (const T *)c->dy + p * g->OH * g->OW;                                    \
            T *dx = (T *)c->out + p * g->H * g->W;                                                 \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                int64_t h0, h1, hpad;                                                              \
                window_1d(g, 0, oh, &h0, &h1, &hpad);                                              \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    int64_t w0, w1, wpad;                                                          \
                    window_1d(g, 1, ow, &w0, &w1, &wpad);                                          \
                    T d = dy[oh * g->OW + ow];                                                     \
                    if (c->is_max) {                                                               \
                        int64_t idx = argmax_##SFX(plane, g->W, h0, h1, w0, w1);                   \
                        if (idx >= 0) {                                                            \
                            dx[idx] += d;                                                          \
                        }                                                                          \
                        continue;                                                                  \
                    }                                                                              \
                    int64_t div = avg_divisor(g, h0, h1, w0, w1, hpad, wpad);                      \
                    if (div <= 0) {                                                                \
                        continue;                                                                  \
                    }                                                                              \
                    T share = d / (T)div;                                                          \
                    for (int64_t h = h0; h < h1; h++) {                                            \
                        for (int64_t w = w0; w < w1; w++) {                                        \
                            dx[h * g->W + w] += share;                                             \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_maxpool2d_##SFX(const T *x, int64_t planes, int64_t H, int64_t W, int64_t kh,          \
                            int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,            \
                            int64_t OH, int64_t OW, T *y)                                          \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, 0}, 1, x, NULL, y};                \
        run_planes(&c, planes, pool_fwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_maxpool2d_bwd_##SFX(const T *x, const T *dy, int64_t planes, int64_t H, int64_t W,     \
                                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,        \
                                int64_t pw, int64_t OH, int64_t OW, T *dx)                         \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, 0}, 1, x, dy, dx};                 \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_avgpool2d_##SFX(const T *x, int64_t planes, int64_t H, int64_t W, int64_t kh,          \
                            int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,            \
                            int64_t OH, int64_t OW, int count_include_pad, T *y)                   \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, count_include_pad != 0},           \
                      0, x, NULL, y};                                                              \
        run_planes(&c, planes, pool_fwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_avgpool2d_bwd_##SFX(const T *dy, int64_t planes, int64_t H, int64_t W, int64_t kh,     \
                                int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,        \
                                int64_t OH, int64_t OW, int count_include_pad, T *dx)              \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, count_include_pad != 0},           \
                      0, NULL, dy, dx};                                                            \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_adaptive_pool2d_##SFX(const T *x, int64_t planes, int64_t H, int64_t W, int64_t OH,    \
                                  int64_t OW, int is_max, T *y)                                    \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, 0, 0, 1, 1, 0, 0, 1, 0}, is_max != 0, x, NULL, y};            \
        run_planes(&c, planes, pool_fwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_adaptive_pool2d_bwd_##SFX(const T *x, const T *dy, int64_t planes, int64_t H,          \
                                      int64_t W, int64_t OH, int64_t OW, int is_max, T *dx)        \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, 0, 0, 1, 1, 0, 0, 1, 0}, is_max != 0, x, dy, dx};             \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }

/* Splits planes over threads, enough planes per chunk to pay for the hand-off. */
static void
run_planes(pool_ctx *c, int64_t planes, ty_range_fn fn)
{
    const pool_geom *g = &c->g;
    if (planes <= 0 || g->OH <= 0 || g->OW <= 0) {
        return;
    }
    int64_t win = g->adaptive ? (g->H / g->OH + 2) * (g->W / g->OW + 2) : g->kh * g->kw;
    int64_t per_plane = g->OH * g->OW * (win > 0 ? win : 1) + g->H * g->W;
    ty_parallel_for(planes, MIN_CHUNK_WORK / per_plane + 1, fn, c);
}

DEFINE_POOL(float, f32)
DEFINE_POOL(double, f64)
