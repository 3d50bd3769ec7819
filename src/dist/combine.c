/* The elementwise combine of deterministic reductions: the ranks' blocks in a pairwise tree
 * over the rank index, the same loops on every rank so every rank gets the same bits. */
#include <time.h>

#include "dist/dist_impl.h"

#define COMBINE_LOOP(T, ACC)                                                                       \
    do {                                                                                           \
        T *d = dst;                                                                                \
        const T *s = src;                                                                          \
        if (mode == TY_DIST_SUM) {                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                      \
                d[i] = (T)((ACC)d[i] + (ACC)s[i]);                                                 \
            }                                                                                      \
        } else if (mode == TY_DIST_MAX) {                                                          \
            for (int64_t i = 0; i < n; i++) {                                                      \
                d[i] = (s[i] > d[i] || s[i] != s[i]) ? s[i] : d[i];                                \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                d[i] = (s[i] < d[i] || s[i] != s[i]) ? s[i] : d[i];                                \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Integer sums wrap (through the unsigned type: no undefined overflow). */
void
ty_dist_combine(void *dst, const void *src, int64_t n, ty_dtype dt, ty_dist_mode mode)
{
    switch (dt) {
    case TY_FLOAT32: COMBINE_LOOP(float, float); break;
    case TY_FLOAT64: COMBINE_LOOP(double, double); break;
    case TY_INT8: COMBINE_LOOP(int8_t, uint8_t); break;
    case TY_UINT8: COMBINE_LOOP(uint8_t, uint8_t); break;
    case TY_INT16: COMBINE_LOOP(int16_t, uint16_t); break;
    case TY_INT32: COMBINE_LOOP(int32_t, uint32_t); break;
    case TY_INT64: COMBINE_LOOP(int64_t, uint64_t); break;
    case TY_BOOL: {
        /* sum and max are "any", min is "all" */
        uint8_t *d = dst;
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            d[i] = mode == TY_DIST_MIN ? (d[i] && s[i]) : (d[i] || s[i]);
        }
        break;
    }
    default: break; /* float16/bfloat16 are combined as float32 */
    }
}

/* At stride s, block i takes block i + s for i a multiple of 2s: adjacent pairs, then pairs
 * of pairs; an odd last block is carried up (a tree split at the largest power of two). */
void
ty_dist_combine_tree(void *blocks, int nblocks, int64_t n, ty_dtype dt, ty_dist_mode mode)
{
    size_t bytes = (size_t)n * ty_dtype_size(dt);
    char *b = blocks;
    for (int s = 1; s < nblocks; s *= 2) {
        for (int i = 0; i + s < nblocks; i += 2 * s) {
            ty_dist_combine(b + (size_t)i * bytes, b + (size_t)(i + s) * bytes, n, dt, mode);
        }
    }
}

ty_dtype
ty_dist_acc_dtype(ty_dtype dt)
{
    return dt == TY_FLOAT16 || dt == TY_BFLOAT16 ? TY_FLOAT32 : dt;
}

void
ty_dist_widen(float *dst, const void *src, int64_t n, ty_dtype dt)
{
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        dst[i] = dt == TY_FLOAT16 ? ty_f16_to_f32(s[i]) : ty_bf16_to_f32(s[i]);
    }
}

void
ty_dist_narrow(void *dst, const float *src, int64_t n, ty_dtype dt)
{
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        d[i] = dt == TY_FLOAT16 ? ty_f32_to_f16(src[i]) : ty_f32_to_bf16(src[i]);
    }
}

double
ty_dist_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
