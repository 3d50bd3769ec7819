/* Direct depthwise convolution: forward, backward-data, backward-filter (depthwise.h).
 *
 * Each input plane (n, c) is first copied into a zero-padded scratch split into sh*sw
 * sub-planes: sub-plane (a, b) holds the padded cells (u*sh + a, v*sw + b). For every tap the
 * inputs of consecutive outputs are then consecutive in one sub-plane, at a fixed offset,
 * whatever the stride, padding or dilation: an output row is a sum of KH*KW shifted
 * sub-plane rows, each scaled by one weight. Contiguous loads, no bounds checks, one code path
 * for every geometry. The forward treats the whole output plane as one row of OH*Sq (each
 * sub-plane row holds one output row plus a few junk columns, dropped afterwards), so small
 * planes (7x7, 14x14) still run full vectors. Slack after each sub-plane lets a vector read
 * past the end; stores past an output are masked. The backward-data kernel scatters the same
 * way into a zeroed scratch that is copied out without the padding; backward-filter keeps 16
 * lane sums per tap.
 *
 * The copy costs about one pass over the plane, next to KH*KW multiply-adds per output, and
 * stays in L1/L2. The old path (im2col + a one-row GEMM per group) wrote KH*KW copies. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/depthwise.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DW_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))
#endif

enum {
    LANES = 16,              /* lanes of the backward-filter sums, for every ISA */
    MIN_CHUNK_WORK = 1 << 15, /* multiply-adds per parallel chunk, at least */
};
#define SCRATCH_MAX_BYTES ((int64_t)1 << 26)

/* The scratch of one padded plane, split into sh*sw sub-planes: sub-plane (a, b) holds the
 * padded cells (u*sh + a, v*sw + b) at u*Sq + v, for u < Rq, v < Sq, and slack after them. */
typedef struct dw_plan {
    ty_dw_geom g;
    int64_t taps;       /* KH*KW */
    int64_t Rq, Sq;     /* rows and columns of a sub-plane */
    int64_t P;          /* elements from one sub-plane to the next (with the slack) */
    int64_t elems;      /* sh*sw*P */
    int64_t wide;       /* forward: OH*Sq outputs, junk columns included, rounded up */
    int64_t acc;        /* backward-filter lane sums: M*taps*LANES */
    const int64_t *off; /* per tap: where output (0, 0) reads, in the scratch */
} dw_plan;

static int64_t
round_up(int64_t v, int64_t m)
{
    return (v + m - 1) / m * m;
}

static int64_t
max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Fills the plan's sizes; 0 when they overflow or the scratch would be too large. The
 * sub-planes cover what the outputs read and what the backward-data copy-out reads. */
static int
plan_sizes(const ty_dw_geom *g, dw_plan *pl)
{
    const int64_t lim = SCRATCH_MAX_BYTES / 8;
    int64_t span_h, span_w, e, t;
    pl->g = *g;
    if (g->KH > lim || g->KW > lim || g->dh > lim || g->dw > lim || g->H > lim || g->W > lim ||
        g->ph > lim || g->pw > lim || g->OH > lim || g->OW > lim) {
        return 0; /* keeps every product below int64 overflow */
    }
    span_h = (g->KH - 1) * g->dh;
    span_w = (g->KW - 1) * g->dw;
    pl->taps = g->KH * g->KW;
    pl->Rq = max64(g->OH + span_h / g->sh, (g->H + g->ph + g->sh - 1) / g->sh);
    pl->Sq = max64(g->OW + span_w / g->sw, (g->W + g->pw + g->sw - 1) / g->sw);
    if (__builtin_mul_overflow(pl->Rq, pl->Sq, &e) || e > lim ||
        __builtin_mul_overflow(round_up(e + pl->Sq + LANES, LANES), g->sh * g->sw, &t) ||
        t > lim || __builtin_mul_overflow(g->M, pl->taps * LANES, &pl->acc) || pl->acc > lim) {
        return 0;
    }
    pl->P = round_up(e + pl->Sq + LANES, LANES);
    pl->elems = t;
    pl->wide = round_up(g->OH * pl->Sq, LANES);
    return 1;
}

int
ty_depthwise_fits(const ty_dw_geom *g)
{
    dw_plan pl;
    return plan_sizes(g, &pl);
}

static void
plan_offsets(const dw_plan *pl, int64_t *off)
{
    const ty_dw_geom *g = &pl->g;
    for (int64_t kh = 0; kh < g->KH; kh++) {
        for (int64_t kw = 0; kw < g->KW; kw++) {
            int64_t r = kh * g->dh, q = kw * g->dw;
            off[kh * g->KW + kw] =
                ((r % g->sh) * g->sw + q % g->sw) * pl->P + r / g->sh * pl->Sq + q / g->sw;
        }
    }
}

/* ---- row kernels: the portable ones for float and double ---- */

/* y[ow] = sum_t wk[t] * base[off[t] + ow] */
#define DEFINE_ROWS(T, SFX)                                                                        \
    TY_CLONES static void fwd_row_##SFX(const T *base, const int64_t *off, const T *wk,            \
                                        int64_t taps, T *y, int64_t OW)                            \
    {                                                                                              \
        for (int64_t ow = 0; ow < OW; ow++) {                                                      \
            y[ow] = 0;                                                                             \
        }                                                                                          \
        for (int64_t t = 0; t < taps; t++) {                                                       \
            const T wv = wk[t], *p = base + off[t];                                                \
            for (int64_t ow = 0; ow < OW; ow++) {                                                  \
                y[ow] = y[ow] + wv * p[ow];                                                        \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* base[off[t] + ow] += wk[t] * dy[ow], tap by tap */                                          \
    TY_CLONES static void bwd_row_##SFX(T *base, const int64_t *off, const T *wk, int64_t taps,    \
                                        const T *dy, int64_t OW)                                   \
    {                                                                                              \
        for (int64_t t = 0; t < taps; t++) {                                                       \
            const T wv = wk[t];                                                                    \
            T *p = base + off[t];                                                                  \
            for (int64_t ow = 0; ow < OW; ow++) {                                                  \
                p[ow] = p[ow] + wv * dy[ow];                                                       \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* acc[t][j] += dy[ow] * base[off[t] + ow] for ow = 16*b + j */                                \
    TY_CLONES static void bwf_row_##SFX(const T *base, const int64_t *off, int64_t taps,           \
                                        const T *dy, int64_t OW, T *acc)                           \
    {                                                                                              \
        for (int64_t t = 0; t < taps; t++) {                                                       \
            T *a = acc + t * LANES;                                                                \
            const T *p = base + off[t];                                                            \
            for (int64_t ow0 = 0; ow0 < OW; ow0 += LANES) {                                        \
                int64_t n = OW - ow0 < LANES ? OW - ow0 : LANES;                                   \
                for (int64_t j = 0; j < n; j++) {                                                  \
                    a[j] = a[j] + dy[ow0 + j] * p[ow0 + j];                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_ROWS(float, f32)
DEFINE_ROWS(double, f64)

#ifdef DW_X86
/* ---- f32, AVX-512 ---- */

static inline AVX512 __mmask16
tail16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

AVX512 static void
fwd_row_avx512(const float *base, const int64_t *off, const float *wk, int64_t taps, float *y,
               int64_t OW)
{
    int64_t ow = 0;
    for (; ow + 64 <= OW; ow += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < taps; t++) {
            __m512 w = _mm512_set1_ps(wk[t]);
            const float *p = base + off[t] + ow;
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(w, _mm512_loadu_ps(p)));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(w, _mm512_loadu_ps(p + 16)));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(w, _mm512_loadu_ps(p + 32)));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(w, _mm512_loadu_ps(p + 48)));
        }
        _mm512_storeu_ps(y + ow, a0);
        _mm512_storeu_ps(y + ow + 16, a1);
        _mm512_storeu_ps(y + ow + 32, a2);
        _mm512_storeu_ps(y + ow + 48, a3);
    }
    for (; ow < OW; ow += 16) {
        __m512 a = _mm512_setzero_ps();
        for (int64_t t = 0; t < taps; t++) {
            __m512 x = _mm512_loadu_ps(base + off[t] + ow); /* slack past OW is in the scratch */
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(wk[t]), x));
        }
        _mm512_mask_storeu_ps(y + ow, tail16(OW - ow), a);
    }
}

AVX512 static void
bwd_row_avx512(float *base, const int64_t *off, const float *wk, int64_t taps, const float *dy,
               int64_t OW)
{
    for (int64_t t = 0; t < taps; t++) {
        __m512 w = _mm512_set1_ps(wk[t]);
        float *p = base + off[t];
        int64_t ow = 0;
        for (; ow + 32 <= OW; ow += 32) {
            __m512 d0 = _mm512_loadu_ps(dy + ow), d1 = _mm512_loadu_ps(dy + ow + 16);
            __m512 s0 = _mm512_loadu_ps(p + ow), s1 = _mm512_loadu_ps(p + ow + 16);
            _mm512_storeu_ps(p + ow, _mm512_add_ps(s0, _mm512_mul_ps(w, d0)));
            _mm512_storeu_ps(p + ow + 16, _mm512_add_ps(s1, _mm512_mul_ps(w, d1)));
        }
        for (; ow < OW; ow += 16) {
            __mmask16 m = tail16(OW - ow);
            __m512 d = _mm512_maskz_loadu_ps(m, dy + ow), s = _mm512_maskz_loadu_ps(m, p + ow);
            _mm512_mask_storeu_ps(p + ow, m, _mm512_add_ps(s, _mm512_mul_ps(w, d)));
        }
    }
}

AVX512 static void
bwf_row_avx512(const float *base, const int64_t *off, int64_t taps, const float *dy, int64_t OW,
               float *acc)
{
    for (int64_t t = 0; t < taps; t++) {
        __m512 a = _mm512_loadu_ps(acc + t * LANES);
        const float *p = base + off[t];
        int64_t ow = 0;
        for (; ow + 16 <= OW; ow += 16) {
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_loadu_ps(dy + ow), _mm512_loadu_ps(p + ow)));
        }
        if (ow < OW) {
            __mmask16 m = tail16(OW - ow);
            __m512 prod = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + ow), _mm512_loadu_ps(p + ow));
            a = _mm512_mask_add_ps(a, m, a, prod);
        }
        _mm512_storeu_ps(acc + t * LANES, a);
    }
}

/* ---- f32, AVX2: the same operations, 8 lanes (two registers per backward-filter lane set) ---- */

static inline AVX2 __m256i
tail8(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 static void
fwd_row_avx2(const float *base, const int64_t *off, const float *wk, int64_t taps, float *y,
             int64_t OW)
{
    int64_t ow = 0;
    for (; ow + 32 <= OW; ow += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < taps; t++) {
            __m256 w = _mm256_set1_ps(wk[t]);
            const float *p = base + off[t] + ow;
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(w, _mm256_loadu_ps(p)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(w, _mm256_loadu_ps(p + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(w, _mm256_loadu_ps(p + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(w, _mm256_loadu_ps(p + 24)));
        }
        _mm256_storeu_ps(y + ow, a0);
        _mm256_storeu_ps(y + ow + 8, a1);
        _mm256_storeu_ps(y + ow + 16, a2);
        _mm256_storeu_ps(y + ow + 24, a3);
    }
    for (; ow < OW; ow += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t t = 0; t < taps; t++) {
            __m256 x = _mm256_loadu_ps(base + off[t] + ow);
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(wk[t]), x));
        }
        _mm256_maskstore_ps(y + ow, tail8(OW - ow), a);
    }
}

AVX2 static void
bwd_row_avx2(float *base, const int64_t *off, const float *wk, int64_t taps, const float *dy,
             int64_t OW)
{
    for (int64_t t = 0; t < taps; t++) {
        __m256 w = _mm256_set1_ps(wk[t]);
        float *p = base + off[t];
        int64_t ow = 0;
        for (; ow + 16 <= OW; ow += 16) {
            __m256 d0 = _mm256_loadu_ps(dy + ow), d1 = _mm256_loadu_ps(dy + ow + 8);
            __m256 s0 = _mm256_loadu_ps(p + ow), s1 = _mm256_loadu_ps(p + ow + 8);
            _mm256_storeu_ps(p + ow, _mm256_add_ps(s0, _mm256_mul_ps(w, d0)));
            _mm256_storeu_ps(p + ow + 8, _mm256_add_ps(s1, _mm256_mul_ps(w, d1)));
        }
        for (; ow < OW; ow += 8) {
            __m256i m = tail8(OW - ow);
            __m256 d = _mm256_maskload_ps(dy + ow, m), s = _mm256_maskload_ps(p + ow, m);
            _mm256_maskstore_ps(p + ow, m, _mm256_add_ps(s, _mm256_mul_ps(w, d)));
        }
    }
}

AVX2 static void
bwf_row_avx2(const float *base, const int64_t *off, int64_t taps, const float *dy, int64_t OW,
             float *acc)
{
    for (int64_t t = 0; t < taps; t++) {
        __m256 lo = _mm256_loadu_ps(acc + t * LANES), hi = _mm256_loadu_ps(acc + t * LANES + 8);
        const float *p = base + off[t];
        int64_t ow = 0;
        for (; ow + 16 <= OW; ow += 16) {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(dy + ow), _mm256_loadu_ps(p + ow)));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(dy + ow + 8),
                                                 _mm256_loadu_ps(p + ow + 8)));
        }
        if (ow < OW) { /* masked lanes keep their sums: blend instead of adding zero */
            __m256i m0 = tail8(OW - ow), m1 = tail8(OW - ow - 8);
            __m256 p0 = _mm256_mul_ps(_mm256_maskload_ps(dy + ow, m0), _mm256_loadu_ps(p + ow));
            __m256 p1 =
                _mm256_mul_ps(_mm256_maskload_ps(dy + ow + 8, m1), _mm256_loadu_ps(p + ow + 8));
            lo = _mm256_blendv_ps(lo, _mm256_add_ps(lo, p0), _mm256_castsi256_ps(m0));
            hi = _mm256_blendv_ps(hi, _mm256_add_ps(hi, p1), _mm256_castsi256_ps(m1));
        }
        _mm256_storeu_ps(acc + t * LANES, lo);
        _mm256_storeu_ps(acc + t * LANES + 8, hi);
    }
}
#endif /* DW_X86 */

/* ---- choosing the f32 row kernels ---- */

typedef struct rows_f32 {
    void (*fwd)(const float *, const int64_t *, const float *, int64_t, float *, int64_t);
    void (*bwd)(float *, const int64_t *, const float *, int64_t, const float *, int64_t);
    void (*bwf)(const float *, const int64_t *, int64_t, const float *, int64_t, float *);
} rows_f32;

typedef struct rows_f64 {
    void (*fwd)(const double *, const int64_t *, const double *, int64_t, double *, int64_t);
    void (*bwd)(double *, const int64_t *, const double *, int64_t, const double *, int64_t);
    void (*bwf)(const double *, const int64_t *, int64_t, const double *, int64_t, double *);
} rows_f64;

static atomic_int isa_forced; /* a ty_isa; AUTO = detect */

static ty_isa
isa_now(void)
{
    int f = atomic_load_explicit(&isa_forced, memory_order_relaxed);
    return f == TY_ISA_AUTO ? ty_cpu_isa() : (ty_isa)f;
}

ty_isa
ty_depthwise_set_isa(ty_isa isa)
{
    if (isa <= TY_ISA_AUTO || isa > ty_cpu_isa()) {
        isa = TY_ISA_AUTO;
    }
    atomic_store(&isa_forced, (int)isa);
    return isa_now();
}

static rows_f32
pick_rows_f32(void)
{
#ifdef DW_X86
    ty_isa isa = isa_now();
    if (isa == TY_ISA_AVX512) {
        return (rows_f32){fwd_row_avx512, bwd_row_avx512, bwf_row_avx512};
    }
    if (isa == TY_ISA_AVX2) {
        return (rows_f32){fwd_row_avx2, bwd_row_avx2, bwf_row_avx2};
    }
#endif
    return (rows_f32){fwd_row_f32, bwd_row_f32, bwf_row_f32};
}

static rows_f64
pick_rows_f64(void)
{
    return (rows_f64){fwd_row_f64, bwd_row_f64, bwf_row_f64};
}

/* ---- planes ---- */

typedef struct dw_run {
    dw_plan pl;
    ty_dw_kind kind;
    const void *a, *b;
    void *out;
    rows_f32 r32;
    rows_f64 r64;
    _Atomic int oom;
} dw_run;

/* First v whose padded column v*sw + b lies in the input, and one past the last (<= Sq). */
static void
col_span(const ty_dw_geom *g, int64_t Sq, int64_t b, int64_t *vlo, int64_t *vhi)
{
    int64_t lo = g->pw - b > 0 ? (g->pw - b + g->sw - 1) / g->sw : 0;
    int64_t end = g->W + g->pw - b; /* columns v*sw < end are inside */
    int64_t hi = end > 0 ? (end + g->sw - 1) / g->sw : 0;
    hi = hi < Sq ? hi : Sq;
    *vlo = lo < hi ? lo : hi;
    *vhi = hi;
}

/* dst[v] = src[v*step], v < n: exact copies, so the ISA never changes the bits. */
#define DEFINE_COPY(T, SFX)                                                                        \
    static void copy_gen_##SFX(T *dst, const T *src, int64_t n, int64_t step)                      \
    {                                                                                              \
        if (step == 1) {                                                                           \
            memcpy(dst, src, sizeof(T) * (size_t)n);                                               \
            return;                                                                                \
        }                                                                                          \
        for (int64_t v = 0; v < n; v++) {                                                          \
            dst[v] = src[v * step];                                                                \
        }                                                                                          \
    }

DEFINE_COPY(float, f32)
DEFINE_COPY(double, f64)

#ifdef DW_X86
/* The even elements of src: 16 per step from two loads of 16 (src[2n - 1] is never read). */
AVX512 static int64_t
copy_even_avx512(float *dst, const float *src, int64_t n)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    int64_t v = 0;
    for (; v + 17 <= n; v += 16) {
        __m512 lo = _mm512_loadu_ps(src + 2 * v), hi = _mm512_loadu_ps(src + 2 * v + 16);
        _mm512_storeu_ps(dst + v, _mm512_permutex2var_ps(lo, ev, hi));
    }
    return v;
}

AVX2 static int64_t
copy_even_avx2(float *dst, const float *src, int64_t n)
{
    int64_t v = 0;
    for (; v + 9 <= n; v += 8) {
        __m256 lo = _mm256_loadu_ps(src + 2 * v), hi = _mm256_loadu_ps(src + 2 * v + 8);
        __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)); /* 0 2 8 10 | 4 6 12 14 */
        e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(dst + v, e);
    }
    return v;
}
#endif

static ty_isa isa_now(void);

static void
copy_f32(float *dst, const float *src, int64_t n, int64_t step)
{
    int64_t v = 0;
#ifdef DW_X86
    if (step == 2) {
        ty_isa isa = isa_now();
        v = isa == TY_ISA_AVX512 ? copy_even_avx512(dst, src, n)
            : isa == TY_ISA_AVX2 ? copy_even_avx2(dst, src, n) : 0;
    }
#endif
    copy_gen_f32(dst + v, src + v * step, n - v, step);
}

static void
copy_f64(double *dst, const double *src, int64_t n, int64_t step)
{
    copy_gen_f64(dst, src, n, step);
}

#define DEFINE_PLANES(T, SFX, ROWS)                                                                \
    /* The padded sub-planes of plane x (H x W), slack zeroed. */                                 \
    static void fill_##SFX(const dw_plan *pl, const T *x, T *s)                                    \
    {                                                                                              \
        const ty_dw_geom *g = &pl->g;                                                              \
        for (int64_t a = 0; a < g->sh; a++) {                                                      \
            for (int64_t b = 0; b < g->sw; b++) {                                                  \
                T *sub = s + (a * g->sw + b) * pl->P;                                              \
                int64_t vlo, vhi;                                                                  \
                col_span(g, pl->Sq, b, &vlo, &vhi);                                                \
                for (int64_t u = 0; u < pl->Rq; u++) {                                             \
                    T *dst = sub + u * pl->Sq;                                                     \
                    int64_t ih = u * g->sh + a - g->ph;                                            \
                    if (ih < 0 || ih >= g->H || vhi == vlo) {                                      \
                        memset(dst, 0, sizeof(T) * (size_t)pl->Sq);                                \
                        continue;                                                                  \
                    }                                                                              \
                    memset(dst, 0, sizeof(T) * (size_t)vlo);                                       \
                    copy_##SFX(dst + vlo, x + ih * g->W + vlo * g->sw + b - g->pw, vhi - vlo,      \
                               g->sw);                                                             \
                    memset(dst + vhi, 0, sizeof(T) * (size_t)(pl->Sq - vhi));                      \
                }                                                                                  \
                memset(sub + pl->Rq * pl->Sq, 0, sizeof(T) * (size_t)(pl->P - pl->Rq * pl->Sq));   \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* dx = the scratch without its padding. */                                                    \
    static void unfill_##SFX(const dw_plan *pl, const T *s, T *dx)                                 \
    {                                                                                              \
        const ty_dw_geom *g = &pl->g;                                                              \
        for (int64_t ih = 0; ih < g->H; ih++) {                                                    \
            int64_t r = ih + g->ph;                                                                \
            const T *row = s + (r % g->sh) * g->sw * pl->P + r / g->sh * pl->Sq;                   \
            if (g->sw == 1) {                                                                      \
                memcpy(dx + ih * g->W, row + g->pw, sizeof(T) * (size_t)g->W);                     \
                continue;                                                                          \
            }                                                                                      \
            for (int64_t iw = 0; iw < g->W; iw++) {                                                \
                int64_t q = iw + g->pw;                                                            \
                dx[ih * g->W + iw] = row[q % g->sw * pl->P + q / g->sw];                           \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* The output as one flat row of OH*Sq (each sub-plane row is an output row, junk columns  \
     * past OW included), then the junk dropped. */                                                \
    static void fwd_plane_##SFX(const dw_run *r, int64_t i, T *s)                                  \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t c = i % g->C, n = i / g->C, ohw = g->OH * g->OW;                                   \
        T *wide = s + pl->elems;                                                                   \
        fill_##SFX(pl, (const T *)r->a + i * g->H * g->W, s);                                      \
        for (int64_t m = 0; m < g->M; m++) {                                                       \
            const T *wk = (const T *)r->b + (c * g->M + m) * pl->taps;                             \
            T *y = (T *)r->out + ((n * g->C + c) * g->M + m) * ohw;                                \
            if (pl->Sq == g->OW) {                                                                 \
                r->ROWS.fwd(s, pl->off, wk, pl->taps, y, ohw);                                     \
                continue;                                                                          \
            }                                                                                      \
            r->ROWS.fwd(s, pl->off, wk, pl->taps, wide, g->OH * pl->Sq);                           \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                memcpy(y + oh * g->OW, wide + oh * pl->Sq, sizeof(T) * (size_t)g->OW);             \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void bwd_data_plane_##SFX(const dw_run *r, int64_t i, T *s)                             \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t c = i % g->C, n = i / g->C, ohw = g->OH * g->OW;                                   \
        memset(s, 0, sizeof(T) * (size_t)pl->elems);                                               \
        for (int64_t m = 0; m < g->M; m++) {                                                       \
            const T *wk = (const T *)r->a + (c * g->M + m) * pl->taps;                                \
            const T *dy = (const T *)r->b + ((n * g->C + c) * g->M + m) * ohw;                     \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                r->ROWS.bwd(s + oh * pl->Sq, pl->off, wk, pl->taps, dy + oh * g->OW, g->OW);   \
            }                                                                                      \
        }                                                                                          \
        unfill_##SFX(pl, s, (T *)r->out + i * g->H * g->W);                                        \
    }                                                                                              \
                                                                                                   \
    /* dw of the M output channels of input channel c, images in order. */                        \
    static void bwd_filter_channel_##SFX(const dw_run *r, int64_t c, T *s, T *acc)                 \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t ohw = g->OH * g->OW;                                                               \
        memset(acc, 0, sizeof(T) * (size_t)pl->acc);                                               \
        for (int64_t n = 0; n < g->N; n++) {                                                       \
            fill_##SFX(pl, (const T *)r->a + (n * g->C + c) * g->H * g->W, s);                     \
            for (int64_t m = 0; m < g->M; m++) {                                                   \
                const T *dy = (const T *)r->b + ((n * g->C + c) * g->M + m) * ohw;                 \
                for (int64_t oh = 0; oh < g->OH; oh++) {                                           \
                    r->ROWS.bwf(s + oh * pl->Sq, pl->off, pl->taps, dy + oh * g->OW, g->OW,    \
                                acc + m * pl->taps * LANES);                                          \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        T *dw = (T *)r->out + c * g->M * pl->taps;                                                    \
        for (int64_t k = 0; k < g->M * pl->taps; k++) {                                               \
            T sum = 0;                                                                             \
            for (int j = 0; j < LANES; j++) {                                                      \
                sum = sum + acc[k * LANES + j];                                                    \
            }                                                                                      \
            dw[k] = sum;                                                                           \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void range_##SFX(void *ctx, int64_t begin, int64_t end)                                 \
    {                                                                                              \
        dw_run *r = ctx;                                                                           \
        const dw_plan *pl = &r->pl;                                                                \
        int64_t n = pl->elems + (r->kind == TY_DW_FWD ? pl->wide : 0) +                          \
                    (r->kind == TY_DW_BWD_FILTER ? pl->acc : 0);                       \
        void *mem = NULL;                                                                          \
        if (posix_memalign(&mem, 64, sizeof(T) * (size_t)(n > 0 ? n : 1)) != 0) {                  \
            atomic_store(&r->oom, 1);                                                              \
            return;                                                                                \
        }                                                                                          \
        T *s = mem;                                                                                \
        for (int64_t i = begin; i < end; i++) {                                                    \
            if (r->kind == TY_DW_FWD) {                                                            \
                fwd_plane_##SFX(r, i, s);                                                          \
            } else if (r->kind == TY_DW_BWD_DATA) {                                                \
                bwd_data_plane_##SFX(r, i, s);                                                     \
            } else {                                                                               \
                bwd_filter_channel_##SFX(r, i, s, s + pl->elems);                                  \
            }                                                                                      \
        }                                                                                          \
        free(mem);                                                                                 \
    }

DEFINE_PLANES(float, f32, r32)
DEFINE_PLANES(double, f64, r64)

/* Items: planes (n, c), or channels c for the filter gradient, each done whole by one chunk. */
static ty_status
run(dw_run *r, ty_range_fn fn)
{
    const ty_dw_geom *g = &r->pl.g;
    int64_t items = r->kind == TY_DW_BWD_FILTER ? g->C : g->N * g->C;
    double work = (double)(g->M > 0 ? g->M : 1) * (double)g->OH * (double)g->OW *
                  (double)r->pl.taps * (r->kind == TY_DW_BWD_FILTER ? (double)g->N : 1.0);
    double grain = work > 0 ? (double)MIN_CHUNK_WORK / work : (double)items;
    int64_t *off = NULL;
    if (items <= 0) {
        return TY_OK;
    }
    off = malloc(sizeof(int64_t) * (size_t)r->pl.taps);
    TY_CHECK(off, TY_ERR_OOM, "out of memory for depthwise tap offsets");
    plan_offsets(&r->pl, off);
    r->pl.off = off;
    atomic_init(&r->oom, 0);
    ty_parallel_for(items, grain < 1 ? 1 : grain > (double)items ? items : (int64_t)grain, fn, r);
    free(off);
    TY_CHECK(!atomic_load(&r->oom), TY_ERR_OOM, "out of memory for a depthwise scratch plane");
    return TY_OK;
}

static ty_status
prepare(ty_dw_kind kind, const ty_dw_geom *g, const void *a, const void *b, void *out,
        dw_run *r)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->a = a;
    r->b = b;
    r->out = out;
    TY_CHECK(plan_sizes(g, &r->pl), TY_ERR_INVALID_ARG,
             "depthwise geometry too large for the direct kernel");
    return TY_OK;
}

ty_status
ty_depthwise_f32(ty_dw_kind kind, const ty_dw_geom *g, const float *a, const float *b,
                 float *out)
{
    dw_run r;
    TY_TRY(prepare(kind, g, a, b, out, &r));
    r.r32 = pick_rows_f32();
    return run(&r, range_f32);
}

ty_status
ty_depthwise_f64(ty_dw_kind kind, const ty_dw_geom *g, const double *a, const double *b,
                 double *out)
{
    dw_run r;
    TY_TRY(prepare(kind, g, a, b, out, &r));
    r.r64 = pick_rows_f64();
    return run(&r, range_f64);
}
