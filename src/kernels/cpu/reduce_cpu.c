#include <math.h>
#include <stdlib.h>

#include "base/threadpool.h"
#include "base/isa.h"
#include "kernels/cpu/reduce_cpu.h"

enum { LANES = 8, ACC_TILE = 512 };

/* NaN-propagating max/min (as numpy). */
#define MAXF(a, b) (((a) != (a) || (a) > (b)) ? (a) : ((b) != (b) ? (b) : ((a) > (b) ? (a) : (b))))
#define MINF(a, b) (((a) != (a) || (a) < (b)) ? (a) : ((b) != (b) ? (b) : ((a) < (b) ? (a) : (b))))

#define GEN_REDUCE(SFX, T)                                                                         \
    /* one row of R contiguous values: LANES independent partial sums, combined in order */       \
    TY_CLONES static T row_##SFX(int kind, int64_t R, const T *x)                                            \
    {                                                                                              \
        if (kind == TY_RED_SUM) {                                                                  \
            double acc[LANES] = {0};                                                               \
            int64_t r = 0;                                                                         \
            for (; r + LANES <= R; r += LANES) {                                                   \
                for (int j = 0; j < LANES; j++) {                                                  \
                    acc[j] += (double)x[r + j];                                                    \
                }                                                                                  \
            }                                                                                      \
            double s = 0;                                                                          \
            for (int j = 0; j < LANES; j++) {                                                      \
                s += acc[j];                                                                       \
            }                                                                                      \
            for (; r < R; r++) {                                                                   \
                s += (double)x[r];                                                                 \
            }                                                                                      \
            return (T)s;                                                                           \
        }                                                                                          \
        T m = x[0];                                                                                \
        for (int64_t r = 1; r < R; r++) {                                                          \
            m = kind == TY_RED_MAX ? MAXF(m, x[r]) : MINF(m, x[r]);                                \
        }                                                                                          \
        return m;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* columns [b0, b1) of one (R, B) slab, accumulated over r in a small tile */                 \
    TY_CLONES static void cols_##SFX(int kind, int64_t R, int64_t B, int64_t b0, int64_t b1, const T *x,     \
                           T *out)                                                                 \
    {                                                                                              \
        double acc[ACC_TILE];                                                                      \
        T m[ACC_TILE];                                                                             \
        for (int64_t t0 = b0; t0 < b1; t0 += ACC_TILE) {                                           \
            int64_t n = b1 - t0 < ACC_TILE ? b1 - t0 : ACC_TILE;                                   \
            for (int64_t j = 0; j < n; j++) {                                                      \
                acc[j] = 0;                                                                        \
                m[j] = x[t0 + j];                                                                  \
            }                                                                                      \
            for (int64_t r = 0; r < R; r++) {                                                      \
                const T *row = x + r * B + t0;                                                     \
                if (kind == TY_RED_SUM) {                                                          \
                    for (int64_t j = 0; j < n; j++) {                                              \
                        acc[j] += (double)row[j];                                                  \
                    }                                                                              \
                } else if (kind == TY_RED_MAX) {                                                   \
                    for (int64_t j = 0; j < n; j++) {                                              \
                        m[j] = MAXF(m[j], row[j]);                                                 \
                    }                                                                              \
                } else {                                                                           \
                    for (int64_t j = 0; j < n; j++) {                                              \
                        m[j] = MINF(m[j], row[j]);                                                 \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            for (int64_t j = 0; j < n; j++) {                                                      \
                out[t0 + j] = kind == TY_RED_SUM ? (T)acc[j] : m[j];                               \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    typedef struct {                                                                               \
        int kind;                                                                                  \
        int64_t A, R, B, nbchunk;                                                                  \
        const T *x;                                                                                \
        T *out;                                                                                    \
    } ctx_##SFX;                                                                                   \
                                                                                                   \
    static void range_##SFX(void *v, int64_t begin, int64_t end)                                   \
    {                                                                                              \
        const ctx_##SFX *c = v;                                                                    \
        for (int64_t i = begin; i < end; i++) {                                                    \
            int64_t a = i / c->nbchunk, bc = i % c->nbchunk;                                       \
            const T *xa = c->x + a * c->R * c->B;                                                  \
            if (c->B == 1) {                                                                       \
                c->out[a] = row_##SFX(c->kind, c->R, xa);                                          \
            } else {                                                                               \
                int64_t step = (c->B + c->nbchunk - 1) / c->nbchunk;                               \
                int64_t b0 = bc * step, b1 = b0 + step < c->B ? b0 + step : c->B;                  \
                cols_##SFX(c->kind, c->R, c->B, b0, b1, xa, c->out + a * c->B);                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_cpu_reduce_arb_##SFX(int kind, int64_t A, int64_t R, int64_t B, const T *x, T *out)    \
    {                                                                                              \
        /* split B too when there are few slabs, so both cores get work */                        \
        int64_t nbchunk = (B > 1 && A < 8) ? (B + 1023) / 1024 : 1;                                \
        ctx_##SFX c = {kind, A, R, B, nbchunk, x, out};                                            \
        int64_t per = R * (B / nbchunk + 1);                                                       \
        ty_parallel_for(A * nbchunk, (1 << 15) / (per ? per : 1) + 1, range_##SFX, &c);            \
    }

GEN_REDUCE(f32, float)
GEN_REDUCE(f64, double)
