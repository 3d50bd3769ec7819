/* Fused training batch normalisation (batch_norm.h). */
#include <math.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/batch_norm.h"

enum {
    LANES = 8,               /* partial sums per channel, added in order at the end */
    MIN_CHUNK_ELEMS = 1 << 14 /* per parallel chunk */
};

typedef struct bn_ctx {
    const void *x, *w, *b;
    void *y, *mean, *var;
    int64_t N, C, S;
    double eps;
} bn_ctx;

typedef struct bnb_ctx {
    const void *g, *x, *mean, *var, *w;
    void *dx, *dw, *db;
    int64_t N, C, S;
    double eps;
} bnb_ctx;

static double
lanes_total(const double *acc)
{
    double t = 0.0;
    for (int j = 0; j < LANES; j++) {
        t += acc[j];
    }
    return t;
}

#define DEFINE_BN(T, SFX)                                                                          \
    /* sum over the channel's rows of f(x - shift), f the identity or the square */               \
    static TY_CLONES double channel_sum_##SFX(const T *x, int64_t N, int64_t C, int64_t S,        \
                                               double shift, int square)                          \
    {                                                                                              \
        double acc[LANES] = {0};                                                                   \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *row = x + n * C * S;                                                          \
            int64_t s = 0;                                                                         \
            for (; s + LANES <= S; s += LANES) {                                                   \
                for (int j = 0; j < LANES; j++) {                                                  \
                    double v = (double)row[s + j] - shift;                                         \
                    acc[j] += square ? v * v : v;                                                  \
                }                                                                                  \
            }                                                                                      \
            for (; s < S; s++) {                                                                   \
                double v = (double)row[s] - shift;                                                 \
                acc[s % LANES] += square ? v * v : v;                                              \
            }                                                                                      \
        }                                                                                          \
        return lanes_total(acc);                                                                   \
    }                                                                                              \
                                                                                                   \
    static TY_CLONES void channel_apply_##SFX(const T *x, int64_t N, int64_t C, int64_t S, T m,    \
                                              T scale, T shift, T *y)                              \
    {                                                                                              \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *row = x + n * C * S;                                                          \
            T *out = y + n * C * S;                                                                \
            for (int64_t s = 0; s < S; s++) {                                                      \
                out[s] = (row[s] - m) * scale + shift;                                             \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void channels_##SFX(void *vctx, int64_t begin, int64_t end)                             \
    {                                                                                              \
        const bn_ctx *k = vctx;                                                                    \
        const T *x = k->x, *w = k->w, *b = k->b;                                                   \
        const double count = (double)k->N * (double)k->S;                                          \
        for (int64_t c = begin; c < end; c++) {                                                    \
            const T *xc = x + c * k->S;                                                            \
            double m = channel_sum_##SFX(xc, k->N, k->C, k->S, 0.0, 0) / count;                    \
            double v = channel_sum_##SFX(xc, k->N, k->C, k->S, (double)(T)m, 1) / count;           \
            T scale = (T)((double)w[c] / sqrt(v + k->eps));                                        \
            ((T *)k->mean)[c] = (T)m;                                                              \
            ((T *)k->var)[c] = (T)v;                                                               \
            channel_apply_##SFX(xc, k->N, k->C, k->S, (T)m, scale, b[c], (T *)k->y + c * k->S);    \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_batch_norm_train_##SFX(const T *x, int64_t N, int64_t C, int64_t S, const T *w,        \
                                   const T *b, double eps, T *y, T *mean, T *var)                  \
    {                                                                                              \
        bn_ctx k = {x, w, b, y, mean, var, N, C, S, eps};                                          \
        int64_t per_channel = N * S;                                                               \
        ty_parallel_for(C, MIN_CHUNK_ELEMS / (per_channel > 0 ? per_channel : 1) + 1,              \
                        channels_##SFX, &k);                                                       \
    }

#define DEFINE_BN_BACKWARD(T, SFX)                                                                 \
    /* *sg = sum(g), *sgx = sum(g (x - m)) over the channel's rows */                             \
    static TY_CLONES void channel_grad_sums_##SFX(const T *g, const T *x, int64_t N, int64_t C,   \
                                                  int64_t S, double m, double *sg, double *sgx)   \
    {                                                                                              \
        double a[LANES] = {0}, ax[LANES] = {0};                                                    \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *gr = g + n * C * S, *xr = x + n * C * S;                                      \
            int64_t s = 0;                                                                         \
            for (; s + LANES <= S; s += LANES) {                                                   \
                for (int j = 0; j < LANES; j++) {                                                  \
                    a[j] += (double)gr[s + j];                                                     \
                    ax[j] += (double)gr[s + j] * ((double)xr[s + j] - m);                          \
                }                                                                                  \
            }                                                                                      \
            for (; s < S; s++) {                                                                   \
                a[s % LANES] += (double)gr[s];                                                     \
                ax[s % LANES] += (double)gr[s] * ((double)xr[s] - m);                              \
            }                                                                                      \
        }                                                                                          \
        *sg = lanes_total(a);                                                                      \
        *sgx = lanes_total(ax);                                                                    \
    }                                                                                              \
                                                                                                   \
    static TY_CLONES void channel_dx_##SFX(const T *g, const T *x, int64_t N, int64_t C,           \
                                           int64_t S, T m, T k1, T k2, T k3, T *dx)                \
    {                                                                                              \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *gr = g + n * C * S, *xr = x + n * C * S;                                      \
            T *out = dx + n * C * S;                                                               \
            for (int64_t s = 0; s < S; s++) {                                                      \
                out[s] = (gr[s] - k2 - (xr[s] - m) * k3) * k1;                                     \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void grad_channels_##SFX(void *vctx, int64_t begin, int64_t end)                        \
    {                                                                                              \
        const bnb_ctx *k = vctx;                                                                   \
        const T *mean = k->mean, *var = k->var, *w = k->w;                                         \
        const double count = (double)k->N * (double)k->S;                                          \
        for (int64_t c = begin; c < end; c++) {                                                    \
            const T *gc = (const T *)k->g + c * k->S, *xc = (const T *)k->x + c * k->S;            \
            double r = 1.0 / sqrt((double)var[c] + k->eps), sg, sgx;                               \
            channel_grad_sums_##SFX(gc, xc, k->N, k->C, k->S, (double)mean[c], &sg, &sgx);         \
            double dw = sgx * r;                                                                   \
            ((T *)k->dw)[c] = (T)dw;                                                               \
            ((T *)k->db)[c] = (T)sg;                                                               \
            channel_dx_##SFX(gc, xc, k->N, k->C, k->S, mean[c], (T)((double)w[c] * r),             \
                             (T)(sg / count), (T)(r * dw / count), (T *)k->dx + c * k->S);         \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_batch_norm_train_backward_##SFX(const T *g, const T *x, int64_t N, int64_t C,          \
                                            int64_t S, const T *mean, const T *var, const T *w,    \
                                            double eps, T *dx, T *dw, T *db)                       \
    {                                                                                              \
        bnb_ctx k = {g, x, mean, var, w, dx, dw, db, N, C, S, eps};                                \
        int64_t per_channel = N * S;                                                               \
        ty_parallel_for(C, MIN_CHUNK_ELEMS / (per_channel > 0 ? per_channel : 1) + 1,              \
                        grad_channels_##SFX, &k);                                                  \
    }

DEFINE_BN(float, f32)
DEFINE_BN(double, f64)
DEFINE_BN_BACKWARD(float, f32)
DEFINE_BN_BACKWARD(double, f64)
