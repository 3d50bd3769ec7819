/* Fused training batch normalisation (batch_norm.h). */
#include <math.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/batch_norm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BN_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))
#endif

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
    const void *g, *relu_y, *x, *mean, *var, *w; /* relu_y: NULL, or g is masked by relu_y > 0 */
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


/* ---- float32 passes with AVX-512 intrinsics ----
 * The generic loops leave the compiler to vectorize 8 double lanes fed from floats, which it
 * does with a scalar insert per element. These make the same operations on the same lanes in
 * the same order (lane j takes positions j mod 8 of each row; a row's tail goes to its first
 * lanes under a mask), and the float passes the same operations per element, so every path
 * gives the same bits. */
static ty_isa_override isa_forced;

ty_isa
ty_batch_norm_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

#ifdef BN_X86
static int
use_avx512(void)
{
    return ty_isa_override_get(&isa_forced) >= TY_ISA_AVX512;
}

/* mask of the first n (<= 16) lanes */
static inline unsigned
first_lanes(int64_t n)
{
    return (1u << n) - 1;
}

/* the first n (<= 8) floats at p as doubles, the other lanes 0 */
AVX512 static inline __m512d
load8_pd(const float *p, int64_t n)
{
    __m512 v = _mm512_maskz_loadu_ps((__mmask16)first_lanes(n), p);
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}

/* the floats at p in the lanes of k (< 8 lanes) as doubles, the other lanes 0 */
AVX512 static inline __m512d
masked8_pd(const float *p, __mmask16 k)
{
    return _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(k, p)));
}

AVX512 static double
total_pd(__m512d acc)
{
    double a[LANES];
    _mm512_storeu_pd(a, acc);
    return lanes_total(a);
}

AVX512 static double
channel_sum_avx512(const float *x, int64_t N, int64_t C, int64_t S, double shift, int square)
{
    __m512d acc = _mm512_setzero_pd(), sh = _mm512_set1_pd(shift);
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * C * S;
        for (int64_t s = 0; s < S; s += LANES) {
            int64_t k = S - s < LANES ? S - s : LANES;
            __m512d v = _mm512_sub_pd(load8_pd(row + s, k), sh);
            v = square ? _mm512_mul_pd(v, v) : v;
            acc = _mm512_mask_add_pd(acc, (__mmask8)first_lanes(k), acc, v);
        }
    }
    return total_pd(acc);
}

/* channel_sum_avx512 of two neighbouring channels (x and x + S) at once: each channel's lanes
 * add in the same order as alone (same bits); the two independent chains of additions hide
 * each other's latency, which bounds one channel whose rows sit in cache. */
AVX512 static void
channel_sum_pair_avx512(const float *x, int64_t N, int64_t C, int64_t S, const double *shift,
                        int square, double *out)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    __m512d sh0 = _mm512_set1_pd(shift[0]), sh1 = _mm512_set1_pd(shift[1]);
    for (int64_t n = 0; n < N; n++) {
        const float *r0 = x + n * C * S, *r1 = r0 + S;
        for (int64_t s = 0; s < S; s += LANES) {
            int64_t k = S - s < LANES ? S - s : LANES;
            __mmask8 mk = (__mmask8)first_lanes(k);
            __m512d v0 = _mm512_sub_pd(load8_pd(r0 + s, k), sh0);
            __m512d v1 = _mm512_sub_pd(load8_pd(r1 + s, k), sh1);
            v0 = square ? _mm512_mul_pd(v0, v0) : v0;
            v1 = square ? _mm512_mul_pd(v1, v1) : v1;
            a0 = _mm512_mask_add_pd(a0, mk, a0, v0);
            a1 = _mm512_mask_add_pd(a1, mk, a1, v1);
        }
    }
    out[0] = total_pd(a0);
    out[1] = total_pd(a1);
}

AVX512 static void
channel_apply_avx512(const float *x, int64_t N, int64_t C, int64_t S, float m, float scale,
                     float shift, float *y)
{
    __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(shift);
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * C * S;
        float *out = y + n * C * S;
        for (int64_t s = 0; s < S; s += 16) {
            __mmask16 k = (__mmask16)first_lanes(S - s < 16 ? S - s : 16);
            __m512 v = _mm512_maskz_loadu_ps(k, row + s);
            v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, vm), vs), vb);
            _mm512_mask_storeu_ps(out + s, k, v);
        }
    }
}

/* The lanes of k whose relu output at y is > 0 (all of k without y): relu_backward keeps g
 * there and writes +0 elsewhere, NaN included, as a masked load does. */
AVX512 static inline __mmask16
relu_lanes(const float *y, __mmask16 k)
{
    if (!y) {
        return k;
    }
    return _mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, y), _mm512_setzero_ps(),
                                   _CMP_GT_OQ);
}

/* The passes that may mask g by a relu output are inlined twice, with relu_y NULL (no test
 * left in the loops) and with it. */
#define BN_INLINE __attribute__((always_inline)) inline

AVX512 static BN_INLINE void
grad_sums_body(const float *g, const float *relu_y, const float *x, int64_t N, int64_t C,
               int64_t S, double m, double *sg, double *sgx)
{
    __m512d a = _mm512_setzero_pd(), ax = _mm512_setzero_pd(), vm = _mm512_set1_pd(m);
    for (int64_t n = 0; n < N; n++) {
        const float *gr = g + n * C * S, *xr = x + n * C * S;
        const float *yr = relu_y ? relu_y + n * C * S : NULL;
        for (int64_t s = 0; s < S; s += LANES) {
            int64_t k = S - s < LANES ? S - s : LANES;
            __mmask8 mk = (__mmask8)first_lanes(k);
            __mmask16 kg = relu_lanes(yr ? yr + s : NULL, (__mmask16)mk);
            __m512d gv = masked8_pd(gr + s, kg);
            __m512d xv = _mm512_sub_pd(load8_pd(xr + s, k), vm);
            a = _mm512_mask_add_pd(a, mk, a, gv);
            ax = _mm512_mask_add_pd(ax, mk, ax, _mm512_mul_pd(gv, xv));
        }
    }
    *sg = total_pd(a);
    *sgx = total_pd(ax);
}

/* channel_grad_sums_avx512 of two neighbouring channels at once (same bits, see
 * channel_sum_pair_avx512) */
AVX512 static BN_INLINE void
grad_sums_pair_body(const float *g, const float *relu_y, const float *x, int64_t N, int64_t C,
                    int64_t S, const double *m, double *sg, double *sgx)
{
    __m512d a0 = _mm512_setzero_pd(), ax0 = _mm512_setzero_pd(), vm0 = _mm512_set1_pd(m[0]);
    __m512d a1 = _mm512_setzero_pd(), ax1 = _mm512_setzero_pd(), vm1 = _mm512_set1_pd(m[1]);
    for (int64_t n = 0; n < N; n++) {
        const float *g0 = g + n * C * S, *x0 = x + n * C * S, *g1 = g0 + S, *x1 = x0 + S;
        const float *y0 = relu_y ? relu_y + n * C * S : NULL, *y1 = y0 ? y0 + S : NULL;
        for (int64_t s = 0; s < S; s += LANES) {
            int64_t k = S - s < LANES ? S - s : LANES;
            __mmask8 mk = (__mmask8)first_lanes(k);
            __mmask16 k0 = relu_lanes(y0 ? y0 + s : NULL, (__mmask16)mk);
            __mmask16 k1 = relu_lanes(y1 ? y1 + s : NULL, (__mmask16)mk);
            __m512d gv0 = masked8_pd(g0 + s, k0), gv1 = masked8_pd(g1 + s, k1);
            __m512d xv0 = _mm512_sub_pd(load8_pd(x0 + s, k), vm0);
            __m512d xv1 = _mm512_sub_pd(load8_pd(x1 + s, k), vm1);
            a0 = _mm512_mask_add_pd(a0, mk, a0, gv0);
            a1 = _mm512_mask_add_pd(a1, mk, a1, gv1);
            ax0 = _mm512_mask_add_pd(ax0, mk, ax0, _mm512_mul_pd(gv0, xv0));
            ax1 = _mm512_mask_add_pd(ax1, mk, ax1, _mm512_mul_pd(gv1, xv1));
        }
    }
    sg[0] = total_pd(a0);
    sg[1] = total_pd(a1);
    sgx[0] = total_pd(ax0);
    sgx[1] = total_pd(ax1);
}

AVX512 static BN_INLINE void
dx_body(const float *g, const float *relu_y, const float *x, int64_t N, int64_t C, int64_t S,
        float m, float k1, float k2, float k3, float *dx)
{
    __m512 vm = _mm512_set1_ps(m), v1 = _mm512_set1_ps(k1), v2 = _mm512_set1_ps(k2);
    __m512 v3 = _mm512_set1_ps(k3);
    for (int64_t n = 0; n < N; n++) {
        const float *gr = g + n * C * S, *xr = x + n * C * S;
        const float *yr = relu_y ? relu_y + n * C * S : NULL;
        float *out = dx + n * C * S;
        for (int64_t s = 0; s < S; s += 16) {
            __mmask16 k = (__mmask16)first_lanes(S - s < 16 ? S - s : 16);
            __m512 gv = _mm512_maskz_loadu_ps(relu_lanes(yr ? yr + s : NULL, k), gr + s);
            __m512 xv = _mm512_maskz_loadu_ps(k, xr + s);
            __m512 t = _mm512_mul_ps(_mm512_sub_ps(xv, vm), v3);
            _mm512_mask_storeu_ps(out + s, k,
                                  _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(gv, v2), t), v1));
        }
    }
}
AVX512 static void
channel_grad_sums_avx512(const float *g, const float *relu_y, const float *x, int64_t N,
                         int64_t C, int64_t S, double m, double *sg, double *sgx)
{
    if (relu_y) {
        grad_sums_body(g, relu_y, x, N, C, S, m, sg, sgx);
    } else {
        grad_sums_body(g, NULL, x, N, C, S, m, sg, sgx);
    }
}

AVX512 static void
channel_grad_sums_pair_avx512(const float *g, const float *relu_y, const float *x, int64_t N,
                              int64_t C, int64_t S, const double *m, double *sg, double *sgx)
{
    if (relu_y) {
        grad_sums_pair_body(g, relu_y, x, N, C, S, m, sg, sgx);
    } else {
        grad_sums_pair_body(g, NULL, x, N, C, S, m, sg, sgx);
    }
}

AVX512 static void
channel_dx_avx512(const float *g, const float *relu_y, const float *x, int64_t N, int64_t C,
                  int64_t S, float m, float k1, float k2, float k3, float *dx)
{
    if (relu_y) {
        dx_body(g, relu_y, x, N, C, S, m, k1, k2, k3, dx);
    } else {
        dx_body(g, NULL, x, N, C, S, m, k1, k2, k3, dx);
    }
}

/* ---- the same passes in AVX2 ----
 * The 8 double lanes are two vectors (lanes 0-3, 4-7); a tail's lanes are added under a blend
 * (acc + 0 would turn a -0 sum into +0), so each lane sees the AVX-512 path's operations in
 * its order: the same bits. One or two channels at once (nch, a constant once inlined). */
static int
use_avx2(void)
{
    return ty_isa_override_get(&isa_forced) == TY_ISA_AVX2;
}

typedef struct d8 {
    __m256d lo, hi;
} d8;

/* lanes < n (0 <= n <= 8) of 8 floats */
AVX2 static inline __m256i
mask8_ps(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 floats at p, or the lanes of m (the others 0) where a row ends (k < 8): Zen 3 runs an
 * AVX2 masked move as many micro-ops, so full vectors go plain */
AVX2 static inline __m256
load8_ps(const float *p, int64_t k, __m256i m)
{
    return k == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

AVX2 static inline void
store8_ps(float *p, int64_t k, __m256i m, __m256 v)
{
    if (k == 8) {
        _mm256_storeu_ps(p, v);
    } else {
        _mm256_maskstore_ps(p, m, v);
    }
}

AVX2 static inline d8
to_d8(__m256 v)
{
    return (d8){_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))};
}

/* acc + v in the lanes < k, acc elsewhere */
AVX2 static inline d8
add_d8(d8 acc, d8 v, int64_t k)
{
    d8 t = {_mm256_add_pd(acc.lo, v.lo), _mm256_add_pd(acc.hi, v.hi)};
    if (k == LANES) {
        return t;
    }
    __m256i n = _mm256_set1_epi64x(k);
    __m256d mlo = _mm256_castsi256_pd(_mm256_cmpgt_epi64(n, _mm256_setr_epi64x(0, 1, 2, 3)));
    __m256d mhi = _mm256_castsi256_pd(_mm256_cmpgt_epi64(n, _mm256_setr_epi64x(4, 5, 6, 7)));
    return (d8){_mm256_blendv_pd(acc.lo, t.lo, mlo), _mm256_blendv_pd(acc.hi, t.hi, mhi)};
}

AVX2 static inline d8
sub_d8(d8 a, __m256d b)
{
    return (d8){_mm256_sub_pd(a.lo, b), _mm256_sub_pd(a.hi, b)};
}

AVX2 static inline d8
mul_d8(d8 a, d8 b)
{
    return (d8){_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)};
}

AVX2 static double
total_d8(d8 acc)
{
    double a[LANES];
    _mm256_storeu_pd(a, acc.lo);
    _mm256_storeu_pd(a + 4, acc.hi);
    return lanes_total(a);
}

/* g at p where the relu output at y is > 0 (everywhere without y), +0 elsewhere and past k,
 * as relu_lanes and a masked load do */
AVX2 static inline __m256
relu_g8(const float *p, const float *y, int64_t k, __m256i m)
{
    __m256 gv = load8_ps(p, k, m);
    if (!y) {
        return gv;
    }
    __m256 gt = _mm256_cmp_ps(load8_ps(y, k, m), _mm256_setzero_ps(), _CMP_GT_OQ);
    return _mm256_and_ps(gv, gt);
}

AVX2 static BN_INLINE void
sum_body_avx2(const float *x, int nch, int64_t N, int64_t C, int64_t S, const double *shift,
              int square, double *out)
{
    d8 acc[2];
    for (int i = 0; i < nch; i++) {
        acc[i] = (d8){_mm256_setzero_pd(), _mm256_setzero_pd()};
    }
    for (int64_t n = 0; n < N; n++) {
        for (int64_t s = 0; s < S; s += LANES) {
            int64_t k = S - s < LANES ? S - s : LANES;
            __m256i m = mask8_ps(k);
            for (int i = 0; i < nch; i++) {
                d8 v = sub_d8(to_d8(load8_ps(x + n * C * S + i * S + s, k, m)),
                              _mm256_set1_pd(shift[i]));
                acc[i] = add_d8(acc[i], square ? mul_d8(v, v) : v, k);
            }
        }
    }
    for (int i = 0; i < nch; i++) {
        out[i] = total_d8(acc[i]);
    }
}

AVX2 static void
channel_sums_avx2(const float *x, int nch, int64_t N, int64_t C, int64_t S, const double *shift,
                  int square, double *out)
{
    if (nch == 2) {
        sum_body_avx2(x, 2, N, C, S, shift, square, out);
    } else {
        sum_body_avx2(x, 1, N, C, S, shift, square, out);
    }
}

AVX2 static void
channel_apply_avx2(const float *x, int64_t N, int64_t C, int64_t S, float m, float scale,
                   float shift, float *y)
{
    __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(shift);
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * C * S;
        float *out = y + n * C * S;
        for (int64_t s = 0; s < S; s += 8) {
            int64_t k = S - s < 8 ? S - s : 8;
            __m256i mk = mask8_ps(k);
            __m256 v = load8_ps(row + s, k, mk);
            v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, vm), vs), vb);
            store8_ps(out + s, k, mk, v);
        }
    }
}

AVX2 static BN_INLINE void
grad_sums_body_avx2(const float *g, const float *relu_y, const float *x, int nch, int64_t N,
                    int64_t C, int64_t S, const double *m, double *sg, double *sgx)
{
    d8 a[2], ax[2];
    for (int i = 0; i < nch; i++) {
        a[i] = ax[i] = (d8){_mm256_setzero_pd(), _mm256_setzero_pd()};
    }
    for (int64_t n = 0; n < N; n++) {
        for (int64_t s = 0; s < S; s += LANES) {
            int64_t k = S - s < LANES ? S - s : LANES;
            __m256i mk = mask8_ps(k);
            for (int i = 0; i < nch; i++) {
                int64_t at = n * C * S + i * S + s;
                d8 gv = to_d8(relu_g8(g + at, relu_y ? relu_y + at : NULL, k, mk));
                d8 xv = sub_d8(to_d8(load8_ps(x + at, k, mk)), _mm256_set1_pd(m[i]));
                a[i] = add_d8(a[i], gv, k);
                ax[i] = add_d8(ax[i], mul_d8(gv, xv), k);
            }
        }
    }
    for (int i = 0; i < nch; i++) {
        sg[i] = total_d8(a[i]);
        sgx[i] = total_d8(ax[i]);
    }
}

AVX2 static void
channel_grad_sums_avx2(const float *g, const float *relu_y, const float *x, int nch, int64_t N,
                       int64_t C, int64_t S, const double *m, double *sg, double *sgx)
{
    if (relu_y) {
        if (nch == 2) {
            grad_sums_body_avx2(g, relu_y, x, 2, N, C, S, m, sg, sgx);
        } else {
            grad_sums_body_avx2(g, relu_y, x, 1, N, C, S, m, sg, sgx);
        }
    } else if (nch == 2) {
        grad_sums_body_avx2(g, NULL, x, 2, N, C, S, m, sg, sgx);
    } else {
        grad_sums_body_avx2(g, NULL, x, 1, N, C, S, m, sg, sgx);
    }
}

AVX2 static BN_INLINE void
dx_body_avx2(const float *g, const float *relu_y, const float *x, int64_t N, int64_t C, int64_t S,
             float m, float k1, float k2, float k3, float *dx)
{
    __m256 vm = _mm256_set1_ps(m), v1 = _mm256_set1_ps(k1), v2 = _mm256_set1_ps(k2);
    __m256 v3 = _mm256_set1_ps(k3);
    for (int64_t n = 0; n < N; n++) {
        const float *gr = g + n * C * S, *xr = x + n * C * S;
        const float *yr = relu_y ? relu_y + n * C * S : NULL;
        float *out = dx + n * C * S;
        for (int64_t s = 0; s < S; s += 8) {
            int64_t k = S - s < 8 ? S - s : 8;
            __m256i mk = mask8_ps(k);
            __m256 gv = relu_g8(gr + s, yr ? yr + s : NULL, k, mk);
            __m256 xv = load8_ps(xr + s, k, mk);
            __m256 t = _mm256_mul_ps(_mm256_sub_ps(xv, vm), v3);
            store8_ps(out + s, k, mk, _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(gv, v2), t), v1));
        }
    }
}

AVX2 static void
channel_dx_avx2(const float *g, const float *relu_y, const float *x, int64_t N, int64_t C,
                int64_t S, float m, float k1, float k2, float k3, float *dx)
{
    if (relu_y) {
        dx_body_avx2(g, relu_y, x, N, C, S, m, k1, k2, k3, dx);
    } else {
        dx_body_avx2(g, NULL, x, N, C, S, m, k1, k2, k3, dx);
    }
}
#else
static int
use_avx512(void)
{
    return 0;
}

static int
use_avx2(void)
{
    return 0;
}
#endif

#define DEFINE_BN(T, SFX, F32)                                                                          \
    /* sum over the channel's rows of f(x - shift), f the identity or the square */               \
    static TY_CLONES double channel_sum_##SFX(const T *x, int64_t N, int64_t C, int64_t S,        \
                                               double shift, int square)                          \
    {                                                                                              \
        if (F32 && use_avx512()) {                                                                 \
            return channel_sum_avx512((const float *)x, N, C, S, shift, square);                   \
        }                                                                                          \
        if (F32 && use_avx2()) {                                                                   \
            double out;                                                                            \
            channel_sums_avx2((const float *)x, 1, N, C, S, &shift, square, &out);                 \
            return out;                                                                            \
        }                                                                                          \
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
        if (F32 && use_avx512()) {                                                                 \
            channel_apply_avx512((const float *)x, N, C, S, (float)m, (float)scale, (float)shift,  \
                                 (float *)y);                                                      \
            return;                                                                                \
        }                                                                                          \
        if (F32 && use_avx2()) {                                                                   \
            channel_apply_avx2((const float *)x, N, C, S, (float)m, (float)scale, (float)shift,    \
                               (float *)y);                                                        \
            return;                                                                                \
        }                                                                                          \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *row = x + n * C * S;                                                          \
            T *out = y + n * C * S;                                                                \
            for (int64_t s = 0; s < S; s++) {                                                      \
                out[s] = (row[s] - m) * scale + shift;                                             \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* out[i] = channel_sum of channel i < nch from x on (nch 2: the AVX float32 paths) */      \
    static void channel_sums_##SFX(const T *x, int nch, int64_t N, int64_t C, int64_t S,           \
                                   const double *shift, int square, double *out)                  \
    {                                                                                              \
        if (nch == 2 && use_avx2()) {                                                              \
            channel_sums_avx2((const float *)x, 2, N, C, S, shift, square, out);                   \
            return;                                                                                \
        }                                                                                          \
        if (nch == 2) {                                                                            \
            channel_sum_pair_avx512((const float *)x, N, C, S, shift, square, out);                \
            return;                                                                                \
        }                                                                                          \
        out[0] = channel_sum_##SFX(x, N, C, S, shift[0], square);                                  \
    }                                                                                              \
                                                                                                   \
    static void channels_##SFX(void *vctx, int64_t begin, int64_t end)                             \
    {                                                                                              \
        const bn_ctx *k = vctx;                                                                    \
        const T *x = k->x, *w = k->w, *b = k->b;                                                   \
        const double count = (double)k->N * (double)k->S;                                          \
        for (int64_t c = begin; c < end;) {                                                        \
            int nch = F32 && (use_avx512() || use_avx2()) && c + 1 < end ? 2 : 1;                 \
            double m[2], v[2], sh[2] = {0.0, 0.0};                                                 \
            channel_sums_##SFX(x + c * k->S, nch, k->N, k->C, k->S, sh, 0, m);                     \
            for (int i = 0; i < nch; i++) {                                                        \
                m[i] /= count;                                                                     \
                sh[i] = (double)(T)m[i];                                                           \
            }                                                                                      \
            channel_sums_##SFX(x + c * k->S, nch, k->N, k->C, k->S, sh, 1, v);                     \
            for (int i = 0; i < nch; i++, c++) {                                                   \
                double var = v[i] / count;                                                         \
                T scale = (T)((double)w[c] / sqrt(var + k->eps));                                  \
                ((T *)k->mean)[c] = (T)m[i];                                                       \
                ((T *)k->var)[c] = (T)var;                                                         \
                channel_apply_##SFX(x + c * k->S, k->N, k->C, k->S, (T)m[i], scale, b[c],          \
                                    (T *)k->y + c * k->S);                                         \
            }                                                                                      \
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

#define DEFINE_BN_BACKWARD(T, SFX, F32)                                                                 \
    /* g at i, or relu_backward(relu_y, g) there: g where relu_y > 0, else +0 */                \
    static inline T grad_at_##SFX(const T *g, const T *relu_y, int64_t i)                          \
    {                                                                                              \
        return !relu_y || relu_y[i] > 0 ? g[i] : (T)0;                                             \
    }                                                                                              \
                                                                                                   \
    /* *sg = sum(g), *sgx = sum(g (x - m)) over the channel's rows */                             \
    static TY_CLONES void channel_grad_sums_##SFX(const T *g, const T *relu_y, const T *x,        \
                                                  int64_t N, int64_t C, int64_t S, double m,      \
                                                  double *sg, double *sgx)                        \
    {                                                                                              \
        if (F32 && use_avx512()) {                                                                 \
            channel_grad_sums_avx512((const float *)g, (const float *)relu_y, (const float *)x,    \
                                     N, C, S, m, sg, sgx);                                         \
            return;                                                                                \
        }                                                                                          \
        if (F32 && use_avx2()) {                                                                   \
            channel_grad_sums_avx2((const float *)g, (const float *)relu_y, (const float *)x, 1,   \
                                   N, C, S, &m, sg, sgx);                                          \
            return;                                                                                \
        }                                                                                          \
        double a[LANES] = {0}, ax[LANES] = {0};                                                    \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *gr = g + n * C * S, *xr = x + n * C * S;                                      \
            const T *yr = relu_y ? relu_y + n * C * S : NULL;                                      \
            int64_t s = 0;                                                                         \
            for (; s + LANES <= S; s += LANES) {                                                   \
                for (int j = 0; j < LANES; j++) {                                                  \
                    double gv = (double)grad_at_##SFX(gr, yr, s + j);                              \
                    a[j] += gv;                                                                    \
                    ax[j] += gv * ((double)xr[s + j] - m);                                         \
                }                                                                                  \
            }                                                                                      \
            for (; s < S; s++) {                                                                   \
                double gv = (double)grad_at_##SFX(gr, yr, s);                                      \
                a[s % LANES] += gv;                                                                \
                ax[s % LANES] += gv * ((double)xr[s] - m);                                         \
            }                                                                                      \
        }                                                                                          \
        *sg = lanes_total(a);                                                                      \
        *sgx = lanes_total(ax);                                                                    \
    }                                                                                              \
                                                                                                   \
    static TY_CLONES void channel_dx_##SFX(const T *g, const T *relu_y, const T *x, int64_t N,     \
                                           int64_t C, int64_t S, T m, T k1, T k2, T k3, T *dx)     \
    {                                                                                              \
        if (F32 && use_avx512()) {                                                                 \
            channel_dx_avx512((const float *)g, (const float *)relu_y, (const float *)x, N, C, S,  \
                              (float)m, (float)k1, (float)k2, (float)k3, (float *)dx);             \
            return;                                                                                \
        }                                                                                          \
        if (F32 && use_avx2()) {                                                                   \
            channel_dx_avx2((const float *)g, (const float *)relu_y, (const float *)x, N, C, S,    \
                            (float)m, (float)k1, (float)k2, (float)k3, (float *)dx);               \
            return;                                                                                \
        }                                                                                          \
        for (int64_t n = 0; n < N; n++) {                                                          \
            const T *gr = g + n * C * S, *xr = x + n * C * S;                                      \
            const T *yr = relu_y ? relu_y + n * C * S : NULL;                                      \
            T *out = dx + n * C * S;                                                               \
            for (int64_t s = 0; s < S; s++) {                                                      \
                out[s] = (grad_at_##SFX(gr, yr, s) - k2 - (xr[s] - m) * k3) * k1;                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void grad_channels_##SFX(void *vctx, int64_t begin, int64_t end)                        \
    {                                                                                              \
        const bnb_ctx *k = vctx;                                                                   \
        const T *mean = k->mean, *var = k->var, *w = k->w;                                         \
        const double count = (double)k->N * (double)k->S;                                          \
        for (int64_t c = begin; c < end;) {                                                        \
            int nch = F32 && (use_avx512() || use_avx2()) && c + 1 < end ? 2 : 1;             \
            const T *gc = (const T *)k->g + c * k->S, *xc = (const T *)k->x + c * k->S;            \
            const T *yc = k->relu_y ? (const T *)k->relu_y + c * k->S : NULL;                      \
            double m[2] = {(double)mean[c], nch == 2 ? (double)mean[c + 1] : 0.0}, sg[2], sgx[2];  \
            if (nch == 2 && use_avx2()) {                                                          \
                channel_grad_sums_avx2((const float *)gc, (const float *)yc, (const float *)xc, 2, \
                                       k->N, k->C, k->S, m, sg, sgx);                              \
            } else if (nch == 2) {                                                                 \
                channel_grad_sums_pair_avx512((const float *)gc, (const float *)yc,                \
                                              (const float *)xc, k->N, k->C, k->S, m, sg, sgx);    \
            } else {                                                                               \
                channel_grad_sums_##SFX(gc, yc, xc, k->N, k->C, k->S, m[0], &sg[0], &sgx[0]);      \
            }                                                                                      \
            for (int i = 0; i < nch; i++, c++) {                                                   \
                double r = 1.0 / sqrt((double)var[c] + k->eps);                                   \
                double dw = sgx[i] * r;                                                            \
                ((T *)k->dw)[c] = (T)dw;                                                           \
                ((T *)k->db)[c] = (T)sg[i];                                                        \
                channel_dx_##SFX(gc + i * k->S, yc ? yc + i * k->S : NULL, xc + i * k->S, k->N,    \
                                 k->C, k->S, mean[c], (T)((double)w[c] * r), (T)(sg[i] / count),   \
                                 (T)(r * dw / count), (T *)k->dx + c * k->S);                      \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_batch_norm_train_relu_backward_##SFX(const T *g, const T *relu_y, const T *x,          \
                                                 int64_t N, int64_t C, int64_t S, const T *mean,   \
                                                 const T *var, const T *w, double eps, T *dx,      \
                                                 T *dw, T *db)                                     \
    {                                                                                              \
        bnb_ctx k = {g, relu_y, x, mean, var, w, dx, dw, db, N, C, S, eps};                        \
        int64_t per_channel = N * S;                                                               \
        ty_parallel_for(C, MIN_CHUNK_ELEMS / (per_channel > 0 ? per_channel : 1) + 1,              \
                        grad_channels_##SFX, &k);                                                  \
    }                                                                                              \
                                                                                                   \
    void ty_batch_norm_train_backward_##SFX(const T *g, const T *x, int64_t N, int64_t C,          \
                                            int64_t S, const T *mean, const T *var, const T *w,    \
                                            double eps, T *dx, T *dw, T *db)                       \
    {                                                                                              \
        ty_batch_norm_train_relu_backward_##SFX(g, NULL, x, N, C, S, mean, var, w, eps, dx, dw,    \
                                                db);                                               \
    }

DEFINE_BN(float, f32, 1)
DEFINE_BN(double, f64, 0)
DEFINE_BN_BACKWARD(float, f32, 1)
DEFINE_BN_BACKWARD(double, f64, 0)
