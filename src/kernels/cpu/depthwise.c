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
 * past the end; stores past an output are masked.
 *
 * Backward-data sums only real products w * dy (as a scatter would: no term for padding or
 * for the zeros between strided positions, so infinities and NaNs land where they should).
 * The exact path gathers each dx row phase from a list of (dy row, weight, shift) terms with
 * masked lanes; when a channel's weights are all finite the forward row kernel runs instead
 * over dy stuffed with zeros, which gives the same bits (fma(w, 0, acc) == acc for finite w)
 * several times faster. A scatter would stall on overlapping read-modify-writes. The
 * backward-filter kernel keeps 16 lane sums per tap, four taps at a time.
 *
 * Small planes (16x16 outputs or fewer: MobileNetV2's and ShuffleNetV2's 14x14 and 7x7 stages)
 * run on AVX-512 16 planes at a time with the lanes over planes instead (the *_block16
 * functions, pixels moved between planes and lanes by register transposes): the same
 * operations per output in the same order, so the same bits, without the padding, junk
 * columns and per-row overhead that dominate a 7x7 plane. The float32 forward of wider
 * planes at stride 1 or 2 reads the input plane in place on AVX-512 (the direct_* kernels:
 * padding read as +0 through masked loads, stride 2 keeping the even cells of two loads,
 * several rows at once): no copy, the same terms in the same order, the same bits.
 *
 * The copy costs about one pass over the plane, next to KH*KW multiply-adds per output, and
 * stays in L1/L2. The old path (im2col + a one-row GEMM per group) wrote KH*KW copies.
 *
 * On AVX2 the float32 forward of 3x3 layers with padding 1 at stride 1 or 2 (every depthwise
 * layer of MobileNetV2 and ShuffleNetV2) reads the input in place too, 8 columns by several
 * output rows at a time, each input row loaded once for all the output rows it feeds
 * (k3_plane_avx2); planes of at most 16x16 outputs run 8 at a time with the lanes over planes,
 * as on AVX-512 (fwd_block8): the same terms in the same order, the same bits. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/depthwise.h"
#include "kernels/cpu/transpose16.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DW_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
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
    int64_t tmp;        /* one padded row, read by whole vectors */
    int64_t wide;       /* forward: OH*Sq outputs, junk columns included, rounded up */
    int64_t acc;        /* backward-filter lane sums: M*taps*LANES */
    /* backward-data, fast path: M planes Z of RZ x SZ (PZ apart, with slack) holding dy
     * stuffed with zeros between strided positions and around it */
    int64_t RZ, SZ, PZ, zelems, zwide;
    const int64_t *offz;  /* per (m, kh, kw): where dx (0, 0) reads, in the Z planes */
    const int64_t *divs;  /* backward-data, exact path: div_tables */
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
        g->ph > lim || g->pw > lim || g->OH > lim || g->OW > lim || g->sh > lim || g->sw > lim) {
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
    pl->RZ = g->H + span_h;
    pl->SZ = g->W + span_w;
    if (__builtin_mul_overflow(pl->RZ, pl->SZ, &e) || e > lim ||
        __builtin_mul_overflow(round_up(e + pl->SZ + LANES, LANES), g->M, &pl->zelems) ||
        pl->zelems > lim || g->H * pl->SZ > lim) {
        return 0;
    }
    pl->PZ = round_up(e + pl->SZ + LANES, LANES);
    pl->zwide = round_up(g->H * pl->SZ, LANES);
    pl->wide = round_up(g->OH * pl->Sq, LANES);
    pl->tmp = round_up(max64(g->sw * pl->Sq, 2 * round_up(pl->Sq, LANES)), LANES);
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
#define DEFINE_ROWS(T, SFX, FMA)                                                                   \
    TY_CLONES static void fwd_row_##SFX(const T *base, const int64_t *off, const T *wk,            \
                                        int64_t taps, T *y, int64_t OW)                            \
    {                                                                                              \
        for (int64_t ow = 0; ow < OW; ow++) {                                                      \
            y[ow] = 0;                                                                             \
        }                                                                                          \
        for (int64_t t = 0; t < taps; t++) {                                                       \
            const T wv = wk[t], *p = base + off[t];                                                \
            for (int64_t ow = 0; ow < OW; ow++) {                                                  \
                y[ow] = FMA(wv, p[ow], y[ow]);                                                                                                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Backward-data, one phase row: out[j] = sum over k in order of wk[k] * rows[k][v0 + j -     \
     * ek[k]], for the k whose dy column lies in [0, OW), for j < n. */                           \
    TY_CLONES static void bwd_row_##SFX(T *out, int64_t n, int64_t v0, const T *const *rows,       \
                                        const T *wk, const int64_t *ek, int64_t nk, int64_t OW)    \
    {                                                                                              \
        for (int64_t j = 0; j < n; j++) {                                                          \
            T acc = 0;                                                                             \
            for (int64_t k = 0; k < nk; k++) {                                                     \
                int64_t ow = v0 + j - ek[k];                                                       \
                if (ow >= 0 && ow < OW) {                                                          \
                    acc = FMA(wk[k], rows[k][ow], acc);                                            \
                }                                                                                  \
            }                                                                                      \
            out[j] = acc;                                                                          \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* acc[t][j] += dy[oh, ow] * base[off[t] + oh*Sq + ow] for ow = 16*b + j, in (oh, b)      \
     * order */                                                                                    \
    TY_CLONES static void bwf_plane_##SFX(const T *base, const int64_t *off, int64_t taps,         \
                                          const T *dy, int64_t OH, int64_t OW, int64_t Sq, T *acc) \
    {                                                                                              \
        for (int64_t t = 0; t < taps; t++) {                                                       \
            T *a = acc + t * LANES;                                                                \
            for (int64_t oh = 0; oh < OH; oh++) {                                                  \
                const T *p = base + off[t] + oh * Sq, *d = dy + oh * OW;                           \
                for (int64_t ow0 = 0; ow0 < OW; ow0 += LANES) {                                    \
                    int64_t n = OW - ow0 < LANES ? OW - ow0 : LANES;                               \
                    for (int64_t j = 0; j < n; j++) {                                              \
                        a[j] = FMA(d[ow0 + j], p[ow0 + j], a[j]);                                  \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_ROWS(float, f32, fmaf)
DEFINE_ROWS(double, f64, fma)

#ifdef DW_X86
/* ---- f32, AVX-512 ---- */

/* The first n lanes (none for n <= 0). */
static inline AVX512 __mmask16
tail16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* A full vector goes out as a plain store (store forwarding serves later loads of it; masked
 * stores never feed it), an empty one not at all. */
static inline AVX512 void
store16(float *p, __mmask16 m, __m512 v)
{
    if (m == 0xFFFF) {
        _mm512_storeu_ps(p, v);
    } else if (m) {
        _mm512_mask_storeu_ps(p, m, v);
    }
}

/* 8 independent sums per step (a chain of KH*KW fused multiply-adds is latency-bound), then
 * blocks of 4 masked vectors: masked loads never fault, so the end needs no slack. */
AVX512 static void
fwd_row_avx512(const float *base, const int64_t *off, const float *wk, int64_t taps, float *y,
               int64_t OW)
{
    int64_t ow = 0;
    for (; ow + 128 <= OW; ow += 128) {
        __m512 a[8];
        for (int k = 0; k < 8; k++) {
            a[k] = _mm512_setzero_ps();
        }
        for (int64_t t = 0; t < taps; t++) {
            __m512 w = _mm512_set1_ps(wk[t]);
            const float *p = base + off[t] + ow;
            for (int k = 0; k < 8; k++) {
                a[k] = _mm512_fmadd_ps(w, _mm512_loadu_ps(p + 16 * k), a[k]);
            }
        }
        for (int k = 0; k < 8; k++) {
            _mm512_storeu_ps(y + ow + 16 * k, a[k]);
        }
    }
    for (; ow < OW; ow += 64) {
        __mmask16 m0 = tail16(OW - ow), m1 = tail16(OW - ow - 16), m2 = tail16(OW - ow - 32),
                  m3 = tail16(OW - ow - 48);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < taps; t++) {
            __m512 w = _mm512_set1_ps(wk[t]);
            const float *p = base + off[t] + ow;
            a0 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m0, p), a0);
            a1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m1, p + 16), a1);
            a2 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m2, p + 32), a2);
            a3 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m3, p + 48), a3);
        }
        store16(y + ow, m0, a0);
        store16(y + ow + 16, m1, a1);
        store16(y + ow + 32, m2, a2);
        store16(y + ow + 48, m3, a3);
    }
}

/* Lanes j with 0 <= lo + j < W: the columns of a row that exist (the others are padding). */
static inline AVX512 __mmask16
cols16(int64_t lo, int64_t W)
{
    if (lo >= 0 && lo + 16 <= W) {
        return 0xFFFF;
    }
    int64_t a = lo < 0 ? -lo : 0, b = W - lo < 16 ? W - lo : 16;
    return b <= a ? 0 : (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
}

enum { DIRECT_MAX_KW = 8 };

/* Input vector v of tap column kw for output columns ow .. ow+15 of a row (xr: the row, or
 * zeros): stride 1 reads them in place; stride 2 reads the 32 cells they span and keeps the
 * even ones. A padding cell reads as +0 through the masks (cm, made by direct_masks). */
#define DIRECT_IN_1(xr, c, m) _mm512_maskz_loadu_ps((m)[0], (xr) + (c))
#define DIRECT_IN_2(xr, c, m)                                                                      \
    _mm512_permutex2var_ps(_mm512_maskz_loadu_ps((m)[0], (xr) + (c)), even,                       \
                           _mm512_maskz_loadu_ps((m)[1], (xr) + (c) + 16))

/* The load masks of output columns ow .. ow + 16*NV - 1 at stride S: cm[(kw*NV + v)*2 + h]
 * for the h-th 16 cells that vector v of tap column kw reads. */
static inline AVX512 void
direct_masks(const ty_dw_geom *g, int64_t ow, int NV, int S, __mmask16 *cm)
{
    for (int64_t kw = 0; kw < g->KW; kw++) {
        for (int v = 0; v < NV; v++) {
            int64_t c = (ow + 16 * v) * S + kw * g->dw - g->pw;
            cm[(kw * NV + v) * 2] = cols16(c, g->W);
            cm[(kw * NV + v) * 2 + 1] = cols16(c + 16, g->W);
        }
    }
}

/* Every output row, R at a time (those below OH stored), 16*NV columns per step (the step's
 * load masks made once for all its rows, not per block: 144x56x56 0.258 -> 0.231 ms), at
 * stride S, straight from the input plane x (H x W), no padded copy. A padding cell is read
 * as +0 (a column through the load's mask, a row from zeros: a zeroed buffer of at least W
 * elements), so every output gets the scratch path's terms, taps in order from +0, and its
 * bits; R*NV independent sums hide the fused multiply-add latency. */
#define DEFINE_DIRECT(NAME, R, NV, S)                                                              \
    AVX512 static void NAME(const ty_dw_geom *g, const float *x, const float *zeros,              \
                            const float *wk, float *y)                                             \
    {                                                                                              \
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,  \
                                               28, 30);                                            \
        (void)even;                                                                                \
        for (int64_t ow = 0; ow < g->OW; ow += 16 * (NV)) {                                        \
            __mmask16 cm[DIRECT_MAX_KW * (NV) * 2];                                                \
            __m512 acc[(R) * (NV)];                                                                \
            direct_masks(g, ow, NV, S, cm);                                                        \
            for (int64_t oh = 0; oh < g->OH; oh += (R)) {                                          \
                _Pragma("GCC unroll 16") for (int k = 0; k < (R) * (NV); k++)                      \
                {                                                                                  \
                    acc[k] = _mm512_setzero_ps();                                                  \
                }                                                                                  \
                for (int64_t kh = 0; kh < g->KH; kh++) {                                           \
                    const float *row[R];                                                           \
                    _Pragma("GCC unroll 8") for (int r = 0; r < (R); r++)                          \
                    {                                                                              \
                        int64_t ih = (oh + r) * (S) + kh * g->dh - g->ph;                          \
                        row[r] = (ih >= 0 && ih < g->H ? x + ih * g->W : zeros) +                  \
                                 ow * (S) - g->pw;                                                 \
                    }                                                                              \
                    for (int64_t kw = 0; kw < g->KW; kw++) {                                       \
                        __m512 w = _mm512_set1_ps(wk[kh * g->KW + kw]);                            \
                        int64_t c = kw * g->dw;                                                    \
                        _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                     \
                        {                                                                          \
                            const __mmask16 *m = cm + (kw * (NV) + v) * 2;                         \
                            _Pragma("GCC unroll 8") for (int r = 0; r < (R); r++)                  \
                            {                                                                      \
                                __m512 in = DIRECT_IN_##S(row[r], c + 16 * (S) * v, m);            \
                                acc[r * (NV) + v] = _mm512_fmadd_ps(w, in, acc[r * (NV) + v]);     \
                            }                                                                      \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                _Pragma("GCC unroll 8") for (int r = 0; r < (R); r++)                              \
                {                                                                                  \
                    _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                         \
                    {                                                                              \
                        if (oh + r < g->OH) {                                                      \
                            store16(y + (oh + r) * g->OW + ow + 16 * v,                            \
                                    tail16(g->OW - ow - 16 * v), acc[r * (NV) + v]);               \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_DIRECT(direct_4x4_s1, 4, 4, 1)
DEFINE_DIRECT(direct_8x2_s1, 8, 2, 1)
DEFINE_DIRECT(direct_4x4_s2, 4, 4, 2)
DEFINE_DIRECT(direct_8x2_s2, 8, 2, 2)

/* 3x3 at stride 2, padding 1, dilation 1 (the downsampling layers of MobileNetV2 and
 * ShuffleNetV2): each input row is read once per tap row as two vectors per 16 outputs and
 * split into its even cells (tap column 1) and odd cells (tap column 2) by two permutes; tap
 * column 0 reads the odd cells one lane to the right, the lane entering from the cell before
 * the vector (the left padding, +0, for the first). DEFINE_DIRECT's stride-2 kernels load and
 * permute per tap (three times as many loads, half of them split across cache lines). The
 * same terms in the same order (taps in order from +0; padding cells +0), so the same bits. */
static inline AVX512 __attribute__((always_inline)) void
s2k3_cells(const float *row, int64_t W, int64_t ow, __m512 *left, __m512 *even, __m512 *odd)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                         28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27,
                                         29, 31);
    if (!row) {
        *left = *even = *odd = _mm512_setzero_ps();
        return;
    }
    int64_t c = 2 * ow; /* the first even cell */
    __m512 v0 = _mm512_maskz_loadu_ps(cols16(c, W), row + c);
    __m512 v1 = _mm512_maskz_loadu_ps(cols16(c + 16, W), row + c + 16);
    *even = _mm512_permutex2var_ps(v0, ev, v1);
    *odd = _mm512_permutex2var_ps(v0, od, v1);
    __m512 before = _mm512_set1_ps(c > 0 && c - 1 < W ? row[c - 1] : 0.0f);
    *left = _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(*odd), _mm512_castps_si512(before), 15));
}

#define DEFINE_K3(NAME, R, NV, S, CELLS)                                                           \
    AVX512 static void NAME(const ty_dw_geom *g, const float *x, const float *wk, float *y,      \
                            int64_t oh)                                                            \
    {                                                                                              \
        __m512 w[9];                                                                               \
        _Pragma("GCC unroll 9") for (int t = 0; t < 9; t++)                                        \
        {                                                                                          \
            w[t] = _mm512_set1_ps(wk[t]);                                                          \
        }                                                                                          \
        for (int64_t ow = 0; ow < g->OW; ow += 16 * (NV)) {                                        \
            __m512 acc[(R) * (NV)];                                                                \
            _Pragma("GCC unroll 16") for (int k = 0; k < (R) * (NV); k++)                          \
            {                                                                                      \
                acc[k] = _mm512_setzero_ps();                                                      \
            }                                                                                      \
            _Pragma("GCC unroll 3") for (int kh = 0; kh < 3; kh++)                                 \
            {                                                                                      \
                _Pragma("GCC unroll 8") for (int r = 0; r < (R); r++)                              \
                {                                                                                  \
                    int64_t ih = (S) * (oh + r) + kh - 1;                                          \
                    const float *row = ih >= 0 && ih < g->H ? x + ih * g->W : NULL;                \
                    _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                         \
                    {                                                                              \
                        __m512 l, e, o;                                                            \
                        CELLS(row, g->W, ow + 16 * v, &l, &e, &o);                                 \
                        __m512 a = acc[r * (NV) + v];                                              \
                        a = _mm512_fmadd_ps(w[3 * kh], l, a);                                      \
                        a = _mm512_fmadd_ps(w[3 * kh + 1], e, a);                                  \
                        acc[r * (NV) + v] = _mm512_fmadd_ps(w[3 * kh + 2], o, a);                  \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int r = 0; r < (R); r++)                                  \
            {                                                                                      \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                             \
                {                                                                                  \
                    if (oh + r < g->OH) {                                                          \
                        store16(y + (oh + r) * g->OW + ow + 16 * v, tail16(g->OW - ow - 16 * v),   \
                                acc[r * (NV) + v]);                                                \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_K3(s2k3_4x4, 4, 4, 2, s2k3_cells)
DEFINE_K3(s2k3_8x2, 8, 2, 2, s2k3_cells)

/* 16 outputs per step, every term added in registers; lanes whose dy column falls outside
 * [0, OW) skip the term (masked loads never fault). */
AVX512 static void
bwd_row_avx512(float *out, int64_t n, int64_t v0, const float *const *rows, const float *wk,
               const int64_t *ek, int64_t nk, int64_t OW)
{
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 mc = tail16(n - j);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t k = 0; k < nk; k++) {
            int64_t c0 = v0 + j - ek[k]; /* dy column of lane 0 */
            __mmask16 mk = (__mmask16)(tail16(OW - c0) & ~tail16(-c0) & mc);
            __m512 d = _mm512_maskz_loadu_ps(mk, rows[k] + c0);
            acc = _mm512_mask3_fmadd_ps(_mm512_set1_ps(wk[k]), d, acc, mk);
        }
        _mm512_mask_storeu_ps(out + j, mc, acc);
    }
}

/* Taps go four at a time: four independent sums share each dy load (one chain of a 7-wide
 * plane is only 7 dependent multiply-adds long). */
AVX512 static void
bwf_plane_avx512(const float *base, const int64_t *off, int64_t taps, const float *dy, int64_t OH,
                 int64_t OW, int64_t Sq, float *acc)
{
    __mmask16 m = tail16(OW % 16);
    int64_t t = 0;
    for (; t + 4 <= taps; t += 4) {
        __m512 a[4];
        for (int k = 0; k < 4; k++) {
            a[k] = _mm512_loadu_ps(acc + (t + k) * LANES);
        }
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *d = dy + oh * OW, *p = base + oh * Sq;
            int64_t ow = 0;
            for (; ow + 16 <= OW; ow += 16) {
                __m512 dv = _mm512_loadu_ps(d + ow);
                for (int k = 0; k < 4; k++) {
                    a[k] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(p + off[t + k] + ow), a[k]);
                }
            }
            if (ow < OW) { /* the other lanes keep their sums */
                __m512 dv = _mm512_maskz_loadu_ps(m, d + ow);
                for (int k = 0; k < 4; k++) {
                    __m512 x = _mm512_maskz_loadu_ps(m, p + off[t + k] + ow);
                    a[k] = _mm512_mask3_fmadd_ps(dv, x, a[k], m);
                }
            }
        }
        for (int k = 0; k < 4; k++) {
            _mm512_storeu_ps(acc + (t + k) * LANES, a[k]);
        }
    }
    for (; t < taps; t++) {
        __m512 a = _mm512_loadu_ps(acc + t * LANES);
        for (int64_t oh = 0; oh < OH; oh++) {
            const float *p = base + off[t] + oh * Sq, *d = dy + oh * OW;
            int64_t ow = 0;
            for (; ow + 16 <= OW; ow += 16) {
                a = _mm512_fmadd_ps(_mm512_loadu_ps(d + ow), _mm512_loadu_ps(p + ow), a);
            }
            if (ow < OW) {
                __m512 dv = _mm512_maskz_loadu_ps(m, d + ow);
                a = _mm512_mask3_fmadd_ps(dv, _mm512_maskz_loadu_ps(m, p + ow), a, m);
            }
        }
        _mm512_storeu_ps(acc + t * LANES, a);
    }
}

/* ---- f32, AVX2: the same operations, 8 lanes (two registers per backward-filter lane set) ---- */

static inline AVX2 __m256i
tail8(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? (n > 0 ? n : 0) : 8)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* p[0 .. n) = the first n lanes of v (none for n <= 0), by plain stores (Zen 3 runs an AVX2
 * masked store as many micro-ops: 960x7x7 s1 spent most of its time in them). */
static inline AVX2 void
store_tail8(float *p, __m256 v, int64_t n)
{
    if (n >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m128 h = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(p, h);
        p += 4;
        n -= 4;
        h = _mm256_extractf128_ps(v, 1);
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)(void *)p, h);
        p += 2;
        n -= 2;
        h = _mm_movehl_ps(h, h);
    }
    if (n > 0) {
        _mm_store_ss(p, h);
    }
}

AVX2 static void
fwd_row_avx2(const float *base, const int64_t *off, const float *wk, int64_t taps, float *y,
             int64_t OW)
{
    int64_t ow = 0;
    for (; ow + 64 <= OW; ow += 64) {
        __m256 a[8];
        for (int k = 0; k < 8; k++) {
            a[k] = _mm256_setzero_ps();
        }
        for (int64_t t = 0; t < taps; t++) {
            __m256 w = _mm256_set1_ps(wk[t]);
            const float *p = base + off[t] + ow;
            for (int k = 0; k < 8; k++) {
                a[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 8 * k), a[k]);
            }
        }
        for (int k = 0; k < 8; k++) {
            _mm256_storeu_ps(y + ow + 8 * k, a[k]);
        }
    }
    for (; ow < OW; ow += 32) {
        __m256i m0 = tail8(OW - ow), m1 = tail8(OW - ow - 8), m2 = tail8(OW - ow - 16),
                m3 = tail8(OW - ow - 24);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < taps; t++) {
            __m256 w = _mm256_set1_ps(wk[t]);
            const float *p = base + off[t] + ow;
            a0 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p, m0), a0);
            a1 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p + 8, m1), a1);
            a2 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p + 16, m2), a2);
            a3 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p + 24, m3), a3);
        }
        store_tail8(y + ow, a0, OW - ow);
        store_tail8(y + ow + 8, a1, OW - ow - 8);
        store_tail8(y + ow + 16, a2, OW - ow - 16);
        store_tail8(y + ow + 24, a3, OW - ow - 24);
    }
}

AVX2 static void
bwd_row_avx2(float *out, int64_t n, int64_t v0, const float *const *rows, const float *wk,
             const int64_t *ek, int64_t nk, int64_t OW)
{
    for (int64_t j = 0; j < n; j += 8) {
        __m256i mc = tail8(n - j);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t k = 0; k < nk; k++) {
            int64_t c0 = v0 + j - ek[k];
            __m256i mk = _mm256_andnot_si256(tail8(-c0), _mm256_and_si256(tail8(OW - c0), mc));
            __m256 d = _mm256_maskload_ps(rows[k] + c0, mk);
            __m256 f = _mm256_fmadd_ps(_mm256_set1_ps(wk[k]), d, acc);
            acc = _mm256_blendv_ps(acc, f, _mm256_castsi256_ps(mk));
        }
        store_tail8(out + j, acc, n - j);
    }
}

/* Four taps at a time as on AVX-512 (eight independent sums share each dy load; one tap's
 * two chains were bound by the multiply-add latency): each tap's lane sums take the same
 * terms in the same order, so the same bits. */
static inline AVX2 __attribute__((always_inline)) void
bwf_taps_avx2(const float *base, const int64_t *off, int K, const float *dy, int64_t OH,
              int64_t OW, int64_t Sq, float *acc)
{
    __m256i m0 = tail8(OW % 16), m1 = tail8(OW % 16 - 8);
    __m256 lo[4], hi[4];
    for (int k = 0; k < K; k++) {
        lo[k] = _mm256_loadu_ps(acc + k * LANES);
        hi[k] = _mm256_loadu_ps(acc + k * LANES + 8);
    }
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *d = dy + oh * OW, *p = base + oh * Sq;
        int64_t ow = 0;
        for (; ow + 16 <= OW; ow += 16) {
            __m256 d0 = _mm256_loadu_ps(d + ow), d1 = _mm256_loadu_ps(d + ow + 8);
            for (int k = 0; k < K; k++) {
                lo[k] = _mm256_fmadd_ps(d0, _mm256_loadu_ps(p + off[k] + ow), lo[k]);
                hi[k] = _mm256_fmadd_ps(d1, _mm256_loadu_ps(p + off[k] + ow + 8), hi[k]);
            }
        }
        if (ow < OW) { /* masked lanes keep their sums */
            __m256 d0 = _mm256_maskload_ps(d + ow, m0), d1 = _mm256_maskload_ps(d + ow + 8, m1);
            for (int k = 0; k < K; k++) {
                __m256 s0 = _mm256_fmadd_ps(d0, _mm256_maskload_ps(p + off[k] + ow, m0), lo[k]);
                __m256 s1 = _mm256_fmadd_ps(d1, _mm256_maskload_ps(p + off[k] + ow + 8, m1),
                                            hi[k]);
                lo[k] = _mm256_blendv_ps(lo[k], s0, _mm256_castsi256_ps(m0));
                hi[k] = _mm256_blendv_ps(hi[k], s1, _mm256_castsi256_ps(m1));
            }
        }
    }
    for (int k = 0; k < K; k++) {
        _mm256_storeu_ps(acc + k * LANES, lo[k]);
        _mm256_storeu_ps(acc + k * LANES + 8, hi[k]);
    }
}

AVX2 static void
bwf_plane_avx2(const float *base, const int64_t *off, int64_t taps, const float *dy, int64_t OH,
               int64_t OW, int64_t Sq, float *acc)
{
    int64_t t = 0;
    for (; t + 4 <= taps; t += 4) {
        bwf_taps_avx2(base, off + t, 4, dy, OH, OW, Sq, acc + t * LANES);
    }
    for (; t < taps; t++) {
        bwf_taps_avx2(base, off + t, 1, dy, OH, OW, Sq, acc + t * LANES);
    }
}

/* ---- f32 forward, 3x3, padding 1, stride 1 or 2, AVX2: straight from the input ----
 * R output rows of 8 columns at a time. Each input row those rows read is loaded once per
 * step (three shifted vectors) and feeds every output row it reaches (up to 3 at stride 1, 2
 * at stride 2), instead of being reloaded per tap: 30 loads for 72 multiply-adds at stride 1
 * (8 rows), with no padded copy. Input rows go in increasing order, so each output still
 * takes its taps in row-major order from +0: the scratch path's bits. At stride 2 two loads
 * are split into their even and odd cells by in-lane shuffles only, leaving the outputs in
 * the order 0 1 4 5 2 3 6 7; every input vector and every sum uses that same order, one
 * cross-lane permute per output vector at the end. The column blocks at the edges use masked
 * loads (padding reads +0); padding rows are +0. One thread, Zen 3, against the padded copy
 * and row kernel: 32x112x112 s1 0.38 -> 0.16 ms, 96x112x112 s2 0.78 -> 0.23, 144x56x56 s1
 * 0.68 -> 0.17, 576x14x14 s2 0.121 -> 0.045, 960x7x7 s1 0.129 -> 0.042. */
/* Output rows per step R: 8 at stride 1, 4 at stride 2 (32x112x112 s1 one thread 0.175 (4
 * rows) -> 0.158 ms (8); 96x112x112 s2 0.238 (4) against 0.365 (8): its 17 input rows'
 * shuffled cells no longer fit the registers). */
#define K3_ROWS(S) ((S) == 1 ? 8 : 4)

/* gemm.h's batch norm chain on one vector of outputs, its constants k[0..2] per lane: what
 * fuse_chain.c's bn3_loop_avx2 does to them after the store (sub, mul, add, each rounded;
 * relu as max(+0, v) + 0, relu6 then min(6, v)), so the same bits without the second pass
 * (that pass was 3.4% of deployed MobileNetV2's samples on one thread, Zen 3). */
static inline AVX2 __attribute__((always_inline)) __m256
dw_chain8(__m256 v, const __m256 *k, int act)
{
    const __m256 zero = _mm256_setzero_ps();
    v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, k[0]), k[1]), k[2]);
    if (act) {
        v = _mm256_add_ps(_mm256_max_ps(zero, v), zero);
    }
    if (act == 2) {
        v = _mm256_min_ps(_mm256_set1_ps(6.0f), v);
    }
    return v;
}


/* The cells of input row `row` (NULL: padding) that tap columns 0, 1, 2 multiply for the 8
 * outputs whose first cell is c; m: the masks of the four loads at c - 1, c, c + 1 (or
 * c + 7), c + 8. */
static inline AVX2 __attribute__((always_inline)) void
k3_cells_avx2(const float *row, int64_t c, int S, int masked, const __m256i *m, __m256 *l,
              __m256 *e, __m256 *o)
{
    if (!row) {
        *l = *e = *o = _mm256_setzero_ps();
    } else if (S == 1) {
        *l = masked ? _mm256_maskload_ps(row + c - 1, m[0]) : _mm256_loadu_ps(row + c - 1);
        *e = masked ? _mm256_maskload_ps(row + c, m[1]) : _mm256_loadu_ps(row + c);
        *o = masked ? _mm256_maskload_ps(row + c + 1, m[2]) : _mm256_loadu_ps(row + c + 1);
    } else {
        __m256 lo = masked ? _mm256_maskload_ps(row + c, m[1]) : _mm256_loadu_ps(row + c);
        __m256 hi = masked ? _mm256_maskload_ps(row + c + 8, m[3])
                           : _mm256_loadu_ps(row + c + 8);
        __m256 lo1 = masked ? _mm256_maskload_ps(row + c - 1, m[0])
                            : _mm256_loadu_ps(row + c - 1);
        __m256 hi1 = masked ? _mm256_maskload_ps(row + c + 7, m[2])
                            : _mm256_loadu_ps(row + c + 7);
        *e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
        *o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
        *l = _mm256_shuffle_ps(lo1, hi1, _MM_SHUFFLE(2, 0, 2, 0));
    }
}

/* Output rows oh .. oh+R-1 (those below OH stored), columns ow .. ow+7, at stride S, through
 * the chain kc (NULL: none). */
static inline AVX2 __attribute__((always_inline)) void
k3_block_avx2(const ty_dw_geom *g, const float *x, const __m256 *w, float *y, int64_t oh,
              int64_t ow, int S, int R, int masked, const __m256i *m, const __m256 *kc, int act)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        acc[r] = _mm256_setzero_ps();
    }
    int64_t c = S * ow, ih0 = S * oh - 1;
#pragma GCC unroll 12
    for (int i = 0; i < S * (R - 1) + 3; i++) {
        int64_t ih = ih0 + i;
        const float *row = ih >= 0 && ih < g->H ? x + ih * g->W : NULL;
        __m256 l, e, o;
        k3_cells_avx2(row, c, S, masked, m, &l, &e, &o);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            int kh = i - S * r;
            if (kh >= 0 && kh < 3) {
                acc[r] = _mm256_fmadd_ps(w[3 * kh], l, acc[r]);
                acc[r] = _mm256_fmadd_ps(w[3 * kh + 1], e, acc[r]);
                acc[r] = _mm256_fmadd_ps(w[3 * kh + 2], o, acc[r]);
            }
        }
    }
    int64_t n = g->OW - ow;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        __m256 v = acc[r];
        if (S == 2) {
            v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v),
                                                       _MM_SHUFFLE(3, 1, 2, 0)));
        }
        if (oh + r >= g->OH) {
            break;
        }
        if (kc) {
            v = dw_chain8(v, kc, act);
        }
        store_tail8(y + (oh + r) * g->OW + ow, v, n);
    }
}

/* Lanes j with 0 <= lo + j < W, as a maskload mask. */
static inline AVX2 __m256i
cols8(int64_t lo, int64_t W)
{
    return _mm256_andnot_si256(tail8(-lo), tail8(W - lo));
}

/* One output plane at stride S: interior column blocks with plain loads, the edge ones
 * masked. */
static inline AVX2 __attribute__((always_inline)) void
k3_plane_avx2(const ty_dw_geom *g, const float *x, const float *wk, float *y, int S,
              const __m256 *kc, int act)
{
    __m256 w[9];
    for (int t = 0; t < 9; t++) {
        w[t] = _mm256_set1_ps(wk[t]);
    }
    for (int64_t oh = 0; oh < g->OH; oh += K3_ROWS(S)) {
        for (int64_t ow = 0; ow < g->OW; ow += 8) {
            int64_t c = S * ow; /* reads cells c - 1 .. c + 8 (S = 1), c + 15 (S = 2) */
            if (c >= 1 && c + 8 * S + 2 - S <= g->W) {
                k3_block_avx2(g, x, w, y, oh, ow, S, K3_ROWS(S), 0, NULL, kc, act);
                continue;
            }
            __m256i m[4] = {cols8(c - 1, g->W), cols8(c, g->W),
                            cols8(S == 1 ? c + 1 : c + 7, g->W), cols8(c + 8, g->W)};
            k3_block_avx2(g, x, w, y, oh, ow, S, K3_ROWS(S), 1, m, kc, act);
        }
    }
}

AVX2 static void
k3s1_avx2(const ty_dw_geom *g, const float *x, const float *wk, float *y, const __m256 *kc,
          int act)
{
    k3_plane_avx2(g, x, wk, y, 1, kc, act);
}

AVX2 static void
k3s2_avx2(const ty_dw_geom *g, const float *x, const float *wk, float *y, const __m256 *kc,
          int act)
{
    k3_plane_avx2(g, x, wk, y, 2, kc, act);
}
#endif /* DW_X86 */

/* ---- choosing the f32 row kernels ---- */

typedef struct rows_f32 {
    void (*fwd)(const float *, const int64_t *, const float *, int64_t, float *, int64_t);
    void (*bwd)(float *, int64_t, int64_t, const float *const *, const float *, const int64_t *,
                int64_t, int64_t);
    void (*bwf)(const float *, const int64_t *, int64_t, const float *, int64_t, int64_t,
                int64_t, float *);
} rows_f32;

typedef struct rows_f64 {
    void (*fwd)(const double *, const int64_t *, const double *, int64_t, double *, int64_t);
    void (*bwd)(double *, int64_t, int64_t, const double *const *, const double *,
                const int64_t *, int64_t, int64_t);
    void (*bwf)(const double *, const int64_t *, int64_t, const double *, int64_t, int64_t,
                int64_t, double *);
} rows_f64;

static ty_isa_override isa_forced;
static atomic_int exact_forced; /* tests: the exact backward-data path only */
static atomic_int planes_forced; /* tests, benchmarks: no 8-plane AVX2 forward */

void
ty_depthwise_set_planes_only(int on)
{
    atomic_store(&planes_forced, on != 0);
}

void
ty_depthwise_set_exact_backward(int on)
{
    atomic_store(&exact_forced, on != 0);
}

static ty_isa
isa_now(void)
{
    return ty_isa_override_get(&isa_forced);
}

ty_isa
ty_depthwise_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

static rows_f32
pick_rows_f32(void)
{
#ifdef DW_X86
    ty_isa isa = isa_now();
    if (isa == TY_ISA_AVX512) {
        return (rows_f32){fwd_row_avx512, bwd_row_avx512, bwf_plane_avx512};
    }
    if (isa == TY_ISA_AVX2) {
        return (rows_f32){fwd_row_avx2, bwd_row_avx2, bwf_plane_avx2};
    }
#endif
    return (rows_f32){fwd_row_f32, bwd_row_f32, bwf_plane_f32};
}

static rows_f64
pick_rows_f64(void)
{
    return (rows_f64){fwd_row_f64, bwd_row_f64, bwf_plane_f64};
}

/* ---- planes ---- */

/* dst[q] = src[q - pw] where 0 <= q - pw < W, else 0, for q < n: one padded row (src NULL:
 * all zeros). The vector versions write whole vectors, up to 15 elements past n, into rows or
 * slack written later; their stores are then the very vectors the next loads read, which
 * store forwarding serves (element stores under a vector load stall it). */
typedef void (*padrow_fn)(const float *src, int64_t W, int64_t pw, int64_t n, float *dst);

#define DEFINE_PADROW(T, SFX)                                                                      \
    static void pad_row_##SFX(const T *src, int64_t W, int64_t pw, int64_t n, T *dst)              \
    {                                                                                              \
        for (int64_t q = 0; q < n; q++) {                                                          \
            dst[q] = src && q >= pw && q - pw < W ? src[q - pw] : (T)0;                            \
        }                                                                                          \
    }

DEFINE_PADROW(float, f32)
DEFINE_PADROW(double, f64)

#ifdef DW_X86
AVX512 static void
pad_row_avx512(const float *src, int64_t W, int64_t pw, int64_t n, float *dst)
{
    for (int64_t q0 = 0; q0 < n; q0 += 16) {
        __m512 v = _mm512_setzero_ps();
        if (src) {
            __mmask16 m = (__mmask16)(tail16(W + pw - q0) & ~tail16(pw - q0));
            v = _mm512_maskz_loadu_ps(m, src + (q0 - pw));
        }
        _mm512_storeu_ps(dst + q0, v);
    }
}

AVX2 static void
pad_row_avx2(const float *src, int64_t W, int64_t pw, int64_t n, float *dst)
{
    for (int64_t q0 = 0; q0 < n; q0 += 8) {
        __m256 v = _mm256_setzero_ps();
        if (src) {
            __m256i m = _mm256_andnot_si256(tail8(pw - q0), tail8(W + pw - q0));
            v = _mm256_maskload_ps(src + (q0 - pw), m);
        }
        _mm256_storeu_ps(dst + q0, v);
    }
}
#endif

/* dst[q] = src[(q - j0) / sw] where q - j0 is a multiple of sw in [0, sw*(W-1)], else 0, for
 * q < n: a dy row stuffed with sw - 1 zeros between values. (AVX-512 expand-loads were
 * slower than this memset and scatter.) */

#define DEFINE_STUFF(T, SFX)                                                                       \
    static void stuff_row_##SFX(const T *src, int64_t W, int64_t sw, int64_t j0, int64_t n,        \
                                T *dst)                                                            \
    {                                                                                              \
        int64_t lo = j0 < 0 ? (-j0 + sw - 1) / sw : 0, hi = n - j0 > 0 ? (n - j0 + sw - 1) / sw : 0; \
        memset(dst, 0, sizeof(T) * (size_t)n);                                                     \
        for (int64_t k = lo; k < hi && k < W; k++) {                                               \
            dst[k * sw + j0] = src[k];                                                             \
        }                                                                                          \
    }

DEFINE_STUFF(float, f32)
DEFINE_STUFF(double, f64)

/* dst rows of n (contiguous) = the first n of src rows ld apart: dropping the junk columns of
 * a flat row. Exact copies; AVX-512 moves a short row with one masked load and store. */
typedef void (*copyrows_fn)(float *dst, int64_t n, const float *src, int64_t ld, int64_t rows);

#define DEFINE_COPYROWS(T, SFX)                                                                    \
    static void copy_rows_##SFX(T *dst, int64_t n, const T *src, int64_t ld, int64_t rows)         \
    {                                                                                              \
        for (int64_t i = 0; i < rows; i++) {                                                       \
            for (int64_t j = 0; j < n; j++) {                                                      \
                dst[i * n + j] = src[i * ld + j];                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_COPYROWS(float, f32)
DEFINE_COPYROWS(double, f64)

#ifdef DW_X86
AVX512 static void
copy_rows_avx512(float *dst, int64_t n, const float *src, int64_t ld, int64_t rows)
{
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 m = tail16(n - j);
            _mm512_mask_storeu_ps(dst + i * n + j, m, _mm512_maskz_loadu_ps(m, src + i * ld + j));
        }
    }
}
#endif

static copyrows_fn
pick_copyrows(void)
{
#ifdef DW_X86
    if (isa_now() == TY_ISA_AVX512) {
        return copy_rows_avx512;
    }
#endif
    return copy_rows_f32;
}

/* out[k] = the pairwise sum of the 16 lanes acc[k][.]: lanes j and j + w added for w = 8, 4,
 * 2, 1. AVX-512 adds the same pairs, a whole level per instruction. */
typedef void (*lanesum_fn)(const float *acc, int64_t n, float *out);

#define DEFINE_LANESUM(T, SFX)                                                                     \
    static void lane_sum_##SFX(const T *acc, int64_t n, T *out)                                    \
    {                                                                                              \
        for (int64_t k = 0; k < n; k++) {                                                          \
            T h[LANES];                                                                            \
            memcpy(h, acc + k * LANES, sizeof h);                                                  \
            for (int w = LANES / 2; w >= 1; w /= 2) {                                              \
                for (int j = 0; j < w; j++) {                                                      \
                    h[j] = h[j] + h[j + w];                                                        \
                }                                                                                  \
            }                                                                                      \
            out[k] = h[0];                                                                         \
        }                                                                                          \
    }

DEFINE_LANESUM(float, f32)
DEFINE_LANESUM(double, f64)

#ifdef DW_X86
AVX512 static void
lane_sum_avx512(const float *acc, int64_t n, float *out)
{
    for (int64_t k = 0; k < n; k++) {
        __m512 v = _mm512_loadu_ps(acc + k * LANES);
        __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); /* F only */
        __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
        __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
        __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
        __m128 h1 = _mm_add_ss(h2, _mm_movehdup_ps(h2));
        out[k] = _mm_cvtss_f32(h1);
    }
}
#endif

static lanesum_fn
pick_lanesum(void)
{
#ifdef DW_X86
    if (isa_now() == TY_ISA_AVX512) {
        return lane_sum_avx512;
    }
#endif
    return lane_sum_f32;
}

static padrow_fn
pick_padrow(void)
{
#ifdef DW_X86
    ty_isa isa = isa_now();
    if (isa == TY_ISA_AVX512) {
        return pad_row_avx512;
    }
    if (isa == TY_ISA_AVX2) {
        return pad_row_avx2;
    }
#endif
    return pad_row_f32;
}

/* e[v] = row[2v], o[v] = row[2v + 1] for v < n: the two column phases of a padded row at
 * stride 2. The vector versions run whole vectors and may write up to 15 elements past n (into
 * later rows or the slack, written afterwards) and read row up to 2*round_up(n, 16). Exact
 * copies, so the ISA never changes the bits. */
typedef void (*split2_fn)(const float *row, int64_t n, float *e, float *o);

#define DEFINE_SPLIT2(T, SFX)                                                                      \
    static void split2_##SFX(const T *row, int64_t n, T *e, T *o)                                  \
    {                                                                                              \
        for (int64_t v = 0; v < n; v++) {                                                          \
            e[v] = row[2 * v];                                                                     \
            o[v] = row[2 * v + 1];                                                                 \
        }                                                                                          \
    }

DEFINE_SPLIT2(float, f32)
DEFINE_SPLIT2(double, f64)

#ifdef DW_X86
AVX512 static void
split2_avx512(const float *row, int64_t n, float *e, float *o)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int64_t v = 0; v < n; v += 16) {
        __m512 lo = _mm512_loadu_ps(row + 2 * v), hi = _mm512_loadu_ps(row + 2 * v + 16);
        _mm512_storeu_ps(e + v, _mm512_permutex2var_ps(lo, ev, hi));
        _mm512_storeu_ps(o + v, _mm512_permutex2var_ps(lo, od, hi));
    }
}

AVX2 static void
split2_avx2(const float *row, int64_t n, float *e, float *o)
{
    for (int64_t v = 0; v < n; v += 8) {
        __m256 lo = _mm256_loadu_ps(row + 2 * v), hi = _mm256_loadu_ps(row + 2 * v + 8);
        __m256 a = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0)); /* 0 2 8 10 | 4 6 12 14 */
        __m256 b = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
        a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(a), _MM_SHUFFLE(3, 1, 2, 0)));
        b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(b), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(e + v, a);
        _mm256_storeu_ps(o + v, b);
    }
}
#endif

static split2_fn
pick_split2(void)
{
#ifdef DW_X86
    ty_isa isa = isa_now();
    if (isa == TY_ISA_AVX512) {
        return split2_avx512;
    }
    if (isa == TY_ISA_AVX2) {
        return split2_avx2;
    }
#endif
    return split2_f32;
}

typedef struct dw_run {
    dw_plan pl;
    ty_dw_kind kind;
    const void *a, *b;
    void *out;
    rows_f32 r32;
    rows_f64 r64;
    split2_fn split2; /* f32 */
    padrow_fn padrow; /* f32 */
    copyrows_fn copyrows; /* f32 */
    lanesum_fn lanesum;   /* f32 */
    int exact;        /* tests: backward-data always takes the exact path */
    int direct;       /* f32 forward: the ISA whose kernels may read the input in place, or 0 */
    ty_dw_done_fn done; /* f32 forward: run on finished output planes, or NULL */
    void *done_ctx;
    /* f32 forward: what done does, as a batch norm chain in place (no residual), or NULL;
     * range_k3 and range_block8 apply it in the registers and skip done */
    const ty_epi_bn_f32 *bn;
    int64_t mblocks;  /* backward-filter: items per input channel (filter_mblocks) */
    const int64_t *pix8; /* f32 forward, 8 planes at a time: block8_pixels, or NULL */
    _Atomic int oom;
} dw_run;

/* The forward's hook over input planes [i0, i1) (output planes i0*M .. i1*M). */
static void
planes_done(const dw_run *r, int64_t i0, int64_t i1)
{
    int64_t plane = r->pl.g.M * r->pl.g.OH * r->pl.g.OW;
    if (r->done) {
        r->done(r->done_ctx, (float *)r->out + i0 * plane, (i1 - i0) * plane);
    }
}

/* Whether the f32 forward of a plane runs straight from the input (the direct_* kernels):
 * stride 1 or 2 both ways, rows of 16 outputs or more (narrower planes go 16 at a time, or
 * flat), AVX-512. */
static int
direct_fits(const dw_run *r)
{
    const ty_dw_geom *g = &r->pl.g;
    return r->direct == TY_ISA_AVX512 && g->sh == g->sw && (g->sh == 1 || g->sh == 2) &&
           g->KW <= DIRECT_MAX_KW && g->OW >= 16;
}

/* 3x3, padding 1, dilation 1, stride 1 or 2 both ways: MobileNetV2's and ShuffleNetV2's
 * depthwise layers, which AVX2 runs straight from the input (k3s1_avx2, k3s2_avx2). */
static int
k3_avx2_fits(const dw_run *r)
{
    const ty_dw_geom *g = &r->pl.g;
    return r->direct == TY_ISA_AVX2 && g->KH == 3 && g->KW == 3 && g->ph == 1 && g->pw == 1 &&
           g->dh == 1 && g->dw == 1 && g->sh == g->sw && (g->sh == 1 || g->sh == 2);
}

#ifdef DW_X86
/* Input plane i of a k3_avx2_fits layer (its M output planes), through the chain bn (NULL:
 * none). */
AVX2 static void
k3_planes_avx2(const dw_run *r, int64_t i, const ty_epi_bn_f32 *bn)
{
    const ty_dw_geom *g = &r->pl.g;
    int64_t c = i % g->C, n = i / g->C, ohw = g->OH * g->OW;
    const float *x = (const float *)r->a + i * g->H * g->W;
    for (int64_t m = 0; m < g->M; m++) {
        int64_t oc = c * g->M + m;
        const float *wk = (const float *)r->b + oc * 9;
        float *y = (float *)r->out + (n * g->C * g->M + oc) * ohw;
        __m256 kc[3];
        if (bn) {
            kc[0] = _mm256_set1_ps(bn->mean[oc]);
            kc[1] = _mm256_set1_ps(bn->scale[oc]);
            kc[2] = _mm256_set1_ps(bn->beta[oc]);
        }
        (g->sh == 1 ? k3s1_avx2 : k3s2_avx2)(g, x, wk, y, bn ? kc : NULL, bn ? bn->act : 0);
    }
}
#endif

static int
direct_plane_f32(const dw_run *r, int64_t i, const float *zeros)
{
#ifdef DW_X86
    if (k3_avx2_fits(r)) {
        k3_planes_avx2(r, i, NULL);
        return 1;
    }
    if (!direct_fits(r)) {
        return 0;
    }
    const ty_dw_geom *g = &r->pl.g;
    int64_t c = i % g->C, n = i / g->C, ohw = g->OH * g->OW;
    int wide = g->OW > 32, rows = wide ? 4 : 8;
    int k3 = g->KH == 3 && g->KW == 3 && g->ph == 1 && g->pw == 1 && g->dh == 1 && g->dw == 1;
    int s2k3 = k3 && g->sh == 2;
    const float *x = (const float *)r->a + i * g->H * g->W;
    for (int64_t m = 0; m < g->M; m++) {
        const float *wk = (const float *)r->b + (c * g->M + m) * r->pl.taps;
        float *y = (float *)r->out + ((n * g->C + c) * g->M + m) * ohw;
        if (s2k3) {
            for (int64_t oh = 0; oh < g->OH; oh += rows) {
                (wide ? s2k3_4x4 : s2k3_8x2)(g, x, wk, y, oh);
            }
        } else if (g->sh == 1) {
            (wide ? direct_4x4_s1 : direct_8x2_s1)(g, x, zeros, wk, y);
        } else {
            (wide ? direct_4x4_s2 : direct_8x2_s2)(g, x, zeros, wk, y);
        }
    }
    return 1;
#else
    (void)r, (void)i, (void)zeros;
    return 0;
#endif
}

static int
direct_plane_f64(const dw_run *r, int64_t i, const double *zeros)
{
    (void)r, (void)i, (void)zeros;
    return 0;
}

/* Rows at least this wide run row by row; narrower ones as one flat row (see the top). */
enum { ROWWISE_MIN_OW = 32 };

#define DEFINE_PLANES(T, SFX, ROWS, SPLIT2, PADROW, STUFF, COPYROWS, LANESUM)                      \
    /* The padded sub-planes of plane x (H x W): each padded row is built in tmp and dealt out \
     * to its sw column phases. Rows go in increasing order, so a vector split writing past a   \
     * row end only touches rows (or slack) written later. The slack is never filled: what     \
     * kernels read there lands only in masked-off lanes or junk columns. */                    \
    static void fill_##SFX(const dw_run *r, const T *x, T *s, T *tmp)                              \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t Sq = pl->Sq;                                                                       \
        for (int64_t u = 0; u < pl->Rq; u++) {                                                     \
            for (int64_t a = 0; a < g->sh; a++) {                                                  \
                T *dst = s + a * g->sw * pl->P + u * Sq;                                           \
                int64_t ih = u * g->sh + a - g->ph;                                                \
                const T *src = ih >= 0 && ih < g->H ? x + ih * g->W : NULL;                        \
                if (!src || g->sw == 1) {                                                          \
                    for (int64_t b = 0; b < g->sw; b++) {                                          \
                        PADROW(src, g->W, g->pw, Sq, dst + b * pl->P);                             \
                    }                                                                              \
                } else if (g->sw == 2) {                                                           \
                    PADROW(src, g->W, g->pw, 2 * Sq, tmp);                                         \
                    SPLIT2(tmp, Sq, dst, dst + pl->P);                                             \
                } else {                                                                           \
                    PADROW(src, g->W, g->pw, g->sw * Sq, tmp);                                     \
                    for (int64_t b = 0; b < g->sw; b++) {                                          \
                        for (int64_t v = 0; v < Sq; v++) {                                         \
                            dst[b * pl->P + v] = tmp[v * g->sw + b];                               \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
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
        T *tmp = s + pl->elems, *wide = tmp + pl->tmp;                                             \
        if (direct_plane_##SFX(r, i, s)) { /* s: zeros, as allocated */                          \
            return;                                                                                \
        }                                                                                          \
        fill_##SFX(r, (const T *)r->a + i * g->H * g->W, s, tmp);                                  \
        for (int64_t m = 0; m < g->M; m++) {                                                       \
            const T *wk = (const T *)r->b + (c * g->M + m) * pl->taps;                             \
            T *y = (T *)r->out + ((n * g->C + c) * g->M + m) * ohw;                                \
            if (g->OW >= ROWWISE_MIN_OW) {                                                         \
                for (int64_t oh = 0; oh < g->OH; oh++) {                                           \
                    r->ROWS.fwd(s + oh * pl->Sq, pl->off, wk, pl->taps, y + oh * g->OW, g->OW);    \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            if (pl->Sq == g->OW) {                                                                 \
                r->ROWS.fwd(s, pl->off, wk, pl->taps, y, ohw);                                     \
                continue;                                                                          \
            }                                                                                      \
            r->ROWS.fwd(s, pl->off, wk, pl->taps, wide, g->OH * pl->Sq);                           \
            COPYROWS(y, g->OW, wide, pl->Sq, g->OH);                                               \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* dx as the adjoint of the forward, gathered: only real products (w * dy), no padding or  \
     * stuffed zeros, so infinities and NaNs land where a scatter puts them. dx row ih (padded  \
     * row rr = ih + ph) takes dy row (rr - kh*dh)/sh from the kernel rows kh that divide;    \
     * dx column iw (padded q = iw + pw = v*sw + b) takes, from the taps kw with             \
     * kw*dw = b (mod sw), dy column v - kw*dw/sw. So each phase b of a dx row is one gather   \
     * over a list of (dy row, weight, shift) terms, in (m, kh, kw) order. */                  \
    static void bwd_data_exact_##SFX(const dw_run *r, int64_t i, T *rowbuf, T *wk_,               \
                                     int64_t *ek, const T **rows)                                  \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t c = i % g->C, n = i / g->C, ohw = g->OH * g->OW;                                   \
        const T *w = (const T *)r->a + c * g->M * pl->taps;                                        \
        const T *dy = (const T *)r->b + (n * g->C + c) * g->M * ohw;                               \
        T *dx = (T *)r->out + i * g->H * g->W;                                                     \
        const int64_t *hq = pl->divs, *wq = pl->divs + 2 * g->KH; /* (rem, quot) tables */         \
        for (int64_t ih = 0; ih < g->H; ih++) {                                                    \
            int64_t ra = (ih + g->ph) % g->sh, rq = (ih + g->ph) / g->sh;                          \
            for (int64_t b = 0; b < g->sw; b++) {                                                  \
                int64_t iw0 = ((b - g->pw) % g->sw + g->sw) % g->sw, nk = 0;                       \
                if (iw0 >= g->W) {                                                                 \
                    continue;                                                                      \
                }                                                                                  \
                for (int64_t m = 0; m < g->M; m++) {                                               \
                    for (int64_t kh = 0; kh < g->KH; kh++) {                                       \
                        int64_t oh = rq - hq[2 * kh + 1];                                          \
                        if (hq[2 * kh] != ra || oh < 0 || oh >= g->OH) {                           \
                            continue;                                                              \
                        }                                                                          \
                        for (int64_t kw = 0; kw < g->KW; kw++) {                                   \
                            if (wq[2 * kw] == b) {                                                 \
                                rows[nk] = dy + m * ohw + oh * g->OW;                              \
                                wk_[nk] = w[(m * g->KH + kh) * g->KW + kw];                        \
                                ek[nk++] = wq[2 * kw + 1];                                         \
                            }                                                                      \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                int64_t cnt = (g->W - iw0 + g->sw - 1) / g->sw, v0 = (iw0 + g->pw) / g->sw;        \
                T *d = dx + ih * g->W;                                                             \
                if (g->sw == 1) {                                                                  \
                    r->ROWS.bwd(d, cnt, v0, rows, wk_, ek, nk, g->OW);                             \
                    continue;                                                                      \
                }                                                                                  \
                r->ROWS.bwd(rowbuf, cnt, v0, rows, wk_, ek, nk, g->OW);                            \
                for (int64_t k = 0; k < cnt; k++) {                                                \
                    d[iw0 + k * g->sw] = rowbuf[k];                                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Z of output-gradient plane dy: Z[oh*sh + (KH-1)*dh - ph][ow*sw + (KW-1)*dw - pw] = dy,   \
     * zeros elsewhere; rows in increasing order, by whole vectors (see padrow). */             \
    static void fill_z_##SFX(const dw_run *r, const T *dy, T *z)                                   \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t i0 = (g->KH - 1) * g->dh - g->ph, j0 = (g->KW - 1) * g->dw - g->pw;                \
        for (int64_t i = 0; i < pl->RZ; i++) {                                                     \
            int64_t t = i - i0, oh = t / g->sh;                                                    \
            T *zr = z + i * pl->SZ;                                                                \
            int data = t >= 0 && t % g->sh == 0 && oh < g->OH;                                     \
            if (g->sw == 1 || !data) {                                                             \
                PADROW(data ? dy + oh * g->OW : NULL, g->OW, j0, pl->SZ, zr);                      \
                continue;                                                                          \
            }                                                                                      \
            STUFF(dy + oh * g->OW, g->OW, g->sw, j0, pl->SZ, zr);                                  \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* The fast path: the forward row kernel over the zero-stuffed Z planes, terms in the same   \
     * (m, kh, kw) order. It adds w * 0 where the exact path adds nothing: fma(w, 0, acc) is     \
     * acc for finite w (acc starts at +0 and is never -0), so the bits are the exact path's     \
     * whenever the channel's weights are finite. */                                             \
    static void bwd_data_fast_##SFX(const dw_run *r, int64_t i, T *s)                              \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t c = i % g->C, n = i / g->C, ohw = g->OH * g->OW, nt = g->M * pl->taps;            \
        T *wide = s + pl->zelems;                                                                  \
        const T *w = (const T *)r->a + c * nt;                                                     \
        T *dx = (T *)r->out + i * g->H * g->W;                                                     \
        for (int64_t m = 0; m < g->M; m++) {                                                       \
            fill_z_##SFX(r, (const T *)r->b + ((n * g->C + c) * g->M + m) * ohw, s + m * pl->PZ);  \
        }                                                                                          \
        if (g->W >= ROWWISE_MIN_OW) {                                                              \
            for (int64_t ih = 0; ih < g->H; ih++) {                                                \
                r->ROWS.fwd(s + ih * pl->SZ, pl->offz, w, nt, dx + ih * g->W, g->W);               \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        r->ROWS.fwd(s, pl->offz, w, nt, wide, g->H * pl->SZ);                                      \
        COPYROWS(dx, g->W, wide, pl->SZ, g->H);                                                    \
    }                                                                                              \
                                                                                                   \
    static int finite_##SFX(const T *w, int64_t n)                                                 \
    {                                                                                              \
        int ok = 1;                                                                                \
        for (int64_t k = 0; k < n; k++) {                                                          \
            ok &= w[k] - w[k] == 0; /* false for inf and NaN */                                    \
        }                                                                                          \
        return ok;                                                                                 \
    }                                                                                              \
                                                                                                   \
    /* dw of output channels [m0, m1) of input channel c, images in order. */                     \
    static void bwd_filter_channel_##SFX(const dw_run *r, int64_t c, int64_t m0, int64_t m1, T *s, \
                                         T *acc)                                                   \
    {                                                                                              \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t ohw = g->OH * g->OW;                                                               \
        memset(acc, 0, sizeof(T) * (size_t)((m1 - m0) * pl->taps * LANES));                        \
        for (int64_t n = 0; n < g->N; n++) {                                                       \
            fill_##SFX(r, (const T *)r->a + (n * g->C + c) * g->H * g->W, s, s + pl->elems);       \
            for (int64_t m = m0; m < m1; m++) {                                                    \
                const T *dy = (const T *)r->b + ((n * g->C + c) * g->M + m) * ohw;                 \
                r->ROWS.bwf(s, pl->off, pl->taps, dy, g->OH, g->OW, pl->Sq,                        \
                            acc + (m - m0) * pl->taps * LANES);                                    \
            }                                                                                      \
        }                                                                                          \
        T *dw = (T *)r->out + (c * g->M + m0) * pl->taps;                                          \
        LANESUM(acc, (m1 - m0) * pl->taps, dw);                                                    \
    }                                                                                              \
                                                                                                   \
    static void range_##SFX(void *ctx, int64_t begin, int64_t end)                                 \
    {                                                                                              \
        dw_run *r = ctx;                                                                           \
        const dw_plan *pl = &r->pl;                                                                \
        const ty_dw_geom *g = &pl->g;                                                              \
        int64_t nt = g->M * pl->taps; /* backward-data terms of one phase row, at most */          \
        int64_t bwd = max64(pl->zelems + pl->zwide, round_up(g->W, LANES) + round_up(nt, LANES));   \
        int64_t n = r->kind == TY_DW_BWD_DATA                                                      \
                        ? bwd                                                                      \
                        : pl->elems + pl->tmp + (r->kind == TY_DW_FWD ? pl->wide : pl->acc);       \
        size_t per_term = r->kind == TY_DW_BWD_DATA ? sizeof(int64_t) + sizeof(T *) : 0;           \
        size_t bytes = sizeof(T) * (size_t)n + per_term * (size_t)nt;                              \
        void *mem = NULL;                                                                          \
        if (posix_memalign(&mem, 64, bytes + 8) != 0) {                                            \
            atomic_store(&r->oom, 1);                                                              \
            return;                                                                                \
        }                                                                                          \
        T *s = mem;                                                                                \
        memset(s, 0, sizeof(T) * (size_t)n); /* the slack: see fill */                             \
        int64_t *ek = (int64_t *)(void *)(s + n);                                                  \
        const T **rows = (const T **)(void *)(ek + nt);                                            \
        for (int64_t i = begin; i < end; i++) {                                                    \
            if (r->kind == TY_DW_FWD) {                                                            \
                fwd_plane_##SFX(r, i, s);                                                          \
                planes_done(r, i, i + 1);                                                          \
            } else if (r->kind == TY_DW_BWD_DATA) {                                                \
                const T *w = (const T *)r->a + i % g->C * nt;                                      \
                if (!r->exact && finite_##SFX(w, nt)) {                                            \
                    bwd_data_fast_##SFX(r, i, s);                                                  \
                } else {                                                                           \
                    bwd_data_exact_##SFX(r, i, s, s + round_up(g->W, LANES), ek, rows);            \
                }                                                                                  \
            } else {                                                                               \
                int64_t c = i / r->mblocks, b = i % r->mblocks;                                    \
                bwd_filter_channel_##SFX(r, c, b * g->M / r->mblocks, (b + 1) * g->M / r->mblocks, \
                                         s, s + pl->elems + pl->tmp);                              \
            }                                                                                      \
        }                                                                                          \
        free(mem);                                                                                 \
    }

DEFINE_PLANES(float, f32, r32, r->split2, r->padrow, stuff_row_f32, r->copyrows, r->lanesum)
DEFINE_PLANES(double, f64, r64, split2_f64, pad_row_f64, stuff_row_f64, copy_rows_f64,
              lane_sum_f64)

/* Backward-data, fast path: term (m, kh, kw) reads Z_m at the flipped tap. */
static void
z_offsets(const dw_plan *pl, int64_t *offz)
{
    const ty_dw_geom *g = &pl->g;
    for (int64_t m = 0; m < g->M; m++) {
        for (int64_t kh = 0; kh < g->KH; kh++) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                offz[(m * g->KH + kh) * g->KW + kw] = m * pl->PZ +
                                                      (g->KH - 1 - kh) * g->dh * pl->SZ +
                                                      (g->KW - 1 - kw) * g->dw;
            }
        }
    }
}

/* Backward-data, exact path: (kh*dh % sh, kh*dh / sh) for each kh, then (kw*dw % sw, kw*dw / sw). */
static void
div_tables(const ty_dw_geom *g, int64_t *t)
{
    for (int64_t kh = 0; kh < g->KH; kh++) {
        t[2 * kh] = kh * g->dh % g->sh;
        t[2 * kh + 1] = kh * g->dh / g->sh;
    }
    for (int64_t kw = 0; kw < g->KW; kw++) {
        t[2 * (g->KH + kw)] = kw * g->dw % g->sw;
        t[2 * (g->KH + kw) + 1] = kw * g->dw / g->sw;
    }
}

/* Runs fn over items, each worth `work` multiply-adds, with the tap tables set up. */
static ty_status
run_items(dw_run *r, ty_range_fn fn, int64_t items, double work)
{
    const ty_dw_geom *g = &r->pl.g;
    double grain = work > 0 ? (double)MIN_CHUNK_WORK / work : (double)items;
    int64_t *off = NULL;
    if (items <= 0) {
        return TY_OK;
    }
    off = malloc(sizeof(int64_t) * (size_t)(r->pl.taps * (1 + g->M) + 2 * (g->KH + g->KW)));
    TY_CHECK(off, TY_ERR_OOM, "out of memory for depthwise tap offsets");
    plan_offsets(&r->pl, off);
    z_offsets(&r->pl, off + r->pl.taps);
    div_tables(g, off + r->pl.taps * (1 + g->M));
    r->pl.off = off;
    r->pl.offz = off + r->pl.taps;
    r->pl.divs = off + r->pl.taps * (1 + g->M);
    atomic_init(&r->oom, 0);
    ty_parallel_for(items, grain < 1 ? 1 : grain > (double)items ? items : (int64_t)grain, fn, r);
    free(off);
    TY_CHECK(!atomic_load(&r->oom), TY_ERR_OOM, "out of memory for a depthwise scratch plane");
    return TY_OK;
}

/* The filter gradient's items per input channel: with few input channels (a first layer of
 * one or three, seen as depthwise with multiplier M), a channel's M outputs split into blocks,
 * so the work spreads over the threads (Fashion-MNIST's 1 -> 32 layer at batch 64 ran on one
 * thread). Each dw element is the same sum in any block, so the bits do not change; the x
 * plane is padded once per block instead of once per channel, which costs one thread about
 * 5% at 4 items (15% at 8). From the shape alone. */
enum { FILTER_MIN_ITEMS = 4 };

static int64_t
filter_mblocks(const ty_dw_geom *g)
{
    if (g->C <= 0 || g->C >= FILTER_MIN_ITEMS || g->M <= 1) {
        return 1;
    }
    int64_t want = (FILTER_MIN_ITEMS + g->C - 1) / g->C;
    return want < g->M ? want : g->M;
}

/* Items: planes (n, c), or for the filter gradient blocks of a channel's outputs (channel c,
 * block b at c * mblocks + b), each done whole by one chunk. */
static ty_status
run(dw_run *r, ty_range_fn fn)
{
    const ty_dw_geom *g = &r->pl.g;
    int bwf = r->kind == TY_DW_BWD_FILTER;
    r->mblocks = bwf ? filter_mblocks(g) : 1; /* block16 keeps 1: it takes M == 1 only */
    int64_t items = bwf ? g->C * r->mblocks : g->N * g->C;
    double work = (double)(g->M > 0 ? g->M : 1) * (double)g->OH * (double)g->OW *
                  (double)r->pl.taps * (bwf ? (double)g->N / (double)r->mblocks : 1.0);
    return run_items(r, fn, items, work);
}

/* ---- f32 forward of small planes, 16 planes at a time, AVX-512 ----
 * A 7x7 plane leaves a row kernel mostly padding, junk and loop overhead. Here the 16 lanes
 * are 16 planes (16 channels): each padded pixel of the 16 planes is gathered into one vector,
 * every output is KH*KW full fused multiply-adds with per-lane weights, and is scattered back.
 * Each output gets the very operations of the row kernels (taps in order from +0, one fma
 * each), so the bits are theirs. */
enum { BLOCK_MAX_OUT = 256 }; /* output pixels per plane, at most (16x16) */

static int64_t
block_rows(const ty_dw_geom *g)
{
    return (g->OH - 1) * g->sh + (g->KH - 1) * g->dh + 1;
}

static int64_t
block_cols(const ty_dw_geom *g)
{
    return (g->OW - 1) * g->sw + (g->KW - 1) * g->dw + 1;
}

static int
block16_fits(const dw_run *r)
{
    const ty_dw_geom *g = &r->pl.g;
    int64_t lim = SCRATCH_MAX_BYTES / 64;
    int64_t items = r->kind == TY_DW_BWD_FILTER ? g->C : g->N * g->C;
    int64_t outs = r->kind == TY_DW_BWD_DATA ? g->H * g->W : g->OH * g->OW;
    if (r->kind == TY_DW_BWD_DATA && g->sh == 1 && g->sw == 1 && outs > BLOCK_MAX_OUT / 4) {
        return 0; /* the plane kernels do these well (14x14 at stride 1) */
    }
    return isa_now() == TY_ISA_AVX512 && g->M == 1 && outs <= BLOCK_MAX_OUT && items >= 16 &&
           g->H * g->W <= lim && g->OH * g->OW <= lim &&
           g->C * r->pl.taps <= lim && block_rows(g) <= lim && block_cols(g) <= lim &&
           block_rows(g) * block_cols(g) <= lim;
}

#ifdef DW_X86

/* out + j*stride + p = buf[p][j] for the 16 planes j and pixels p < npix: 16 pixels at a
 * time transposed in registers, each plane written by whole contiguous vectors. */
AVX512 static void
unblock16(const float *buf, int64_t npix, float *out, int64_t stride)
{
    for (int64_t p0 = 0; p0 < npix; p0 += 16) {
        int64_t n = npix - p0 < 16 ? npix - p0 : 16;
        __m512 r[16];
        for (int k = 0; k < 16; k++) {
            r[k] = k < n ? _mm512_loadu_ps(buf + (p0 + k) * 16) : _mm512_setzero_ps();
        }
        ty_transpose16_f32(r);
        for (int j = 0; j < 16; j++) {
            store16(out + j * stride + p0, tail16(n), r[j]);
        }
    }
}

/* P = the zero-padded pixels (Hp x Wp) of the 16 planes x, x + hw, ..., one vector per pixel:
 * each input row taken 16 columns of the 16 planes at a time, transposed in registers. */
AVX512 static void
load_padded16(const ty_dw_geom *g, const float *x, int64_t Hp, int64_t Wp, float *P)
{
    int64_t hw = g->H * g->W;
    int64_t nw = g->W < Wp - g->pw ? g->W : Wp - g->pw; /* input columns P holds */
    for (int64_t rr = 0; rr < Hp; rr++) {
        int64_t ih = rr - g->ph;
        float *row = P + rr * Wp * 16;
        if (ih < 0 || ih >= g->H || nw <= 0) {
            memset(row, 0, sizeof(float) * 16 * (size_t)Wp);
            continue;
        }
        int64_t lead = g->pw < Wp ? g->pw : Wp;
        memset(row, 0, sizeof(float) * 16 * (size_t)lead);
        memset(row + (g->pw + nw) * 16, 0, sizeof(float) * 16 * (size_t)(Wp - g->pw - nw));
        for (int64_t iw0 = 0; iw0 < nw; iw0 += 16) {
            int64_t n = nw - iw0 < 16 ? nw - iw0 : 16;
            __mmask16 m = tail16(n);
            __m512 r[16];
            for (int j = 0; j < 16; j++) {
                r[j] = _mm512_maskz_loadu_ps(m, x + j * hw + ih * g->W + iw0);
            }
            ty_transpose16_f32(r);
            for (int k = 0; k < n; k++) {
                _mm512_storeu_ps(row + (g->pw + iw0 + k) * 16, r[k]);
            }
        }
    }
}

/* Output pixels p .. p+7 of the 16 planes (lanes): eight independent sums, so the fused
 * multiply-add latency no longer bounds a pixel's chain of taps. Past the last pixel the
 * last one is computed again and stored again, with the same bits. */
AVX512 static void
fwd_pixels8(const ty_dw_geom *g, const float *P, int64_t Wp, const float *wv,
            const int64_t *boff, int64_t T, int64_t p, float *Yb)
{
    int64_t ohw = g->OH * g->OW, q[8];
    const float *b[8];
    for (int k = 0; k < 8; k++) {
        q[k] = p + k < ohw ? p + k : ohw - 1;
        b[k] = P + (q[k] / g->OW * g->sh * Wp + q[k] % g->OW * g->sw) * 16;
    }
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0;
    for (int64_t t = 0; t < T; t++) {
        __m512 w = _mm512_loadu_ps(wv + 16 * t);
        int64_t o = boff[t];
        a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[0] + o), a0);
        a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[1] + o), a1);
        a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[2] + o), a2);
        a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[3] + o), a3);
        a4 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[4] + o), a4);
        a5 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[5] + o), a5);
        a6 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[6] + o), a6);
        a7 = _mm512_fmadd_ps(w, _mm512_loadu_ps(b[7] + o), a7);
    }
    __m512 acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int k = 0; k < 8; k++) {
        _mm512_storeu_ps(Yb + q[k] * 16, acc[k]);
    }
}

AVX512 static void
fwd_block16(const dw_run *r, int64_t i0, float *P, float *wv, const int64_t *boff, float *Yb)
{
    const dw_plan *pl = &r->pl;
    const ty_dw_geom *g = &pl->g;
    int64_t hw = g->H * g->W, ohw = g->OH * g->OW, T = pl->taps;
    int64_t Hp = block_rows(g), Wp = block_cols(g);
    int32_t wcol[16];
    for (int j = 0; j < 16; j++) {
        wcol[j] = (int32_t)((i0 + j) % g->C * T);
    }
    __m512i wi = _mm512_loadu_si512(wcol);
    for (int64_t t = 0; t < T; t++) {
        __m512i idx = _mm512_add_epi32(wi, _mm512_set1_epi32((int)t));
        _mm512_storeu_ps(wv + 16 * t, _mm512_i32gather_ps(idx, (const float *)r->b, 4));
    }
    load_padded16(g, (const float *)r->a + i0 * hw, Hp, Wp, P);
    float *y = (float *)r->out + i0 * ohw;
    for (int64_t p = 0; p < ohw; p += 8) {
        fwd_pixels8(g, P, Wp, wv, boff, T, p, Yb);
    }
    unblock16(Yb, ohw, y, ohw);
}
#endif

#ifdef DW_X86
/* P = the zero-padded pixels of planes x, x + hw, ..., x + 15*hw, one vector per pixel. */
AVX512 static void
gather_padded16(const ty_dw_geom *g, const float *x, float *P)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i xi = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)(g->H * g->W)));
    int64_t Hp = block_rows(g), Wp = block_cols(g);
    for (int64_t rr = 0; rr < Hp; rr++) {
        int64_t ih = rr - g->ph;
        for (int64_t q = 0; q < Wp; q++) {
            int64_t iw = q - g->pw;
            __m512 v = _mm512_setzero_ps();
            if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) {
                v = _mm512_i32gather_ps(xi, x + ih * g->W + iw, 4);
            }
            _mm512_storeu_ps(P + (rr * Wp + q) * 16, v);
        }
    }
}

/* Backward-filter of channels c0 .. c0+15, lanes over channels. The row kernels' lane sums
 * become acc[t][j] (a vector over the 16 channels) for positions ow = j (mod 16), added in
 * the same (n, oh, ow) order, then summed pairwise the same way: the same bits. */
AVX512 static void
bwf_block16(const dw_run *r, int64_t c0, float *P, float *acc, const int64_t *boff)
{
    const dw_plan *pl = &r->pl;
    const ty_dw_geom *g = &pl->g;
    int64_t hw = g->H * g->W, ohw = g->OH * g->OW, T = pl->taps, Wp = block_cols(g);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i yi = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)ohw));
    memset(acc, 0, sizeof(float) * (size_t)(T * 16 * 16));
    for (int64_t n = 0; n < g->N; n++) {
        gather_padded16(g, (const float *)r->a + (n * g->C + c0) * hw, P);
        const float *dy = (const float *)r->b + (n * g->C + c0) * ohw;
        for (int64_t oh = 0; oh < g->OH; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow++) {
                __m512 d = _mm512_i32gather_ps(yi, dy + oh * g->OW + ow, 4);
                const float *base = P + (oh * g->sh * Wp + ow * g->sw) * 16;
                float *a = acc + (ow % 16) * 16;
                for (int64_t t = 0; t < T; t++) {
                    __m512 v = _mm512_loadu_ps(a + t * 256);
                    v = _mm512_fmadd_ps(d, _mm512_loadu_ps(base + boff[t]), v);
                    _mm512_storeu_ps(a + t * 256, v);
                }
            }
        }
    }
    const __m512i wi = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)T));
    float *dw = (float *)r->out + c0 * T;
    for (int64_t t = 0; t < T; t++) {
        float *h = acc + t * 256;
        for (int w = 8; w >= 1; w /= 2) { /* lanes j and j + w, as lane_sum */
            for (int j = 0; j < w; j++) {
                __m512 sum = _mm512_add_ps(_mm512_loadu_ps(h + j * 16), _mm512_loadu_ps(h + (j + w) * 16));
                _mm512_storeu_ps(h + j * 16, sum);
            }
        }
        _mm512_i32scatter_ps(dw + t, wi, _mm512_loadu_ps(h), 4);
    }
}
#endif

#ifdef DW_X86
/* Backward-data of planes i0 .. i0+15, lanes over planes: dx pixel (ih, iw) sums, over the
 * taps (kh, kw) in order that reach a dy pixel, w * dy: the exact path's terms and order, so
 * its bits (only real products). rowv[ih*KH + kh], colv[iw*KW + kw]: the dy row / column the
 * tap reaches, or -1. */
AVX512 static void
bwd_block16(const dw_run *r, int64_t i0, float *D, float *wv, const int64_t *rowv,
            const int64_t *colv, float *Xb)
{
    const dw_plan *pl = &r->pl;
    const ty_dw_geom *g = &pl->g;
    int64_t hw = g->H * g->W, ohw = g->OH * g->OW, T = pl->taps;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i yi = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)ohw));
    int32_t wcol[16];
    for (int j = 0; j < 16; j++) {
        wcol[j] = (int32_t)((i0 + j) % g->C * T);
    }
    __m512i wi = _mm512_loadu_si512(wcol);
    for (int64_t t = 0; t < T; t++) {
        __m512i idx = _mm512_add_epi32(wi, _mm512_set1_epi32((int)t));
        _mm512_storeu_ps(wv + 16 * t, _mm512_i32gather_ps(idx, (const float *)r->a, 4));
    }
    const float *dy = (const float *)r->b + i0 * ohw;
    for (int64_t o = 0; o < ohw; o++) {
        _mm512_storeu_ps(D + o * 16, _mm512_i32gather_ps(yi, dy + o, 4));
    }
    float *dx = (float *)r->out + i0 * hw;
    for (int64_t ih = 0; ih < g->H; ih++) {
        for (int64_t iw = 0; iw < g->W; iw++) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t kh = 0; kh < g->KH; kh++) {
                int64_t oh = rowv[ih * g->KH + kh];
                if (oh < 0) {
                    continue;
                }
                for (int64_t kw = 0; kw < g->KW; kw++) {
                    int64_t ow = colv[iw * g->KW + kw];
                    if (ow >= 0) {
                        acc = _mm512_fmadd_ps(_mm512_loadu_ps(wv + 16 * (kh * g->KW + kw)),
                                              _mm512_loadu_ps(D + (oh * g->OW + ow) * 16), acc);
                    }
                }
            }
            _mm512_storeu_ps(Xb + (ih * g->W + iw) * 16, acc);
        }
    }
    unblock16(Xb, hw, dx, hw);
}
#endif

/* The dy row (column) that kernel row kh (column kw) reaches from input row ih (column iw),
 * or -1: t = i + p - k*d must be a multiple of the stride inside the output. */
static void
reach_table(int64_t n, int64_t K, int64_t p, int64_t d, int64_t s, int64_t O, int64_t *tab)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t k = 0; k < K; k++) {
            int64_t t = i + p - k * d;
            tab[i * K + k] = t >= 0 && t % s == 0 && t / s < O ? t / s : -1;
        }
    }
}

/* Groups of 16 planes (channels for the filter gradient); the last item is the leftovers,
 * run by the plane kernels. */
static void
range_block16(void *ctx, int64_t begin, int64_t end)
{
    dw_run *r = ctx;
    const ty_dw_geom *g = &r->pl.g;
    int bwf = r->kind == TY_DW_BWD_FILTER;
    int64_t items = bwf ? g->C : g->N * g->C, full = items / 16, T = r->pl.taps;
    if (end > full) {
        range_f32(ctx, full * 16, items);
        end = full;
    }
    if (begin >= end) {
        return;
    }
#ifdef DW_X86
    int bwd = r->kind == TY_DW_BWD_DATA;
    size_t nP = (size_t)((bwd ? g->OH * g->OW : block_rows(g) * block_cols(g)) * 16);
    size_t nw = (size_t)(T * 16 * (bwf ? 16 : 1));
    size_t nt = bwd ? (size_t)(g->H * g->KH + g->W * g->KW) : (size_t)T;
    size_t nb = (size_t)((bwd ? g->H * g->W : g->OH * g->OW) * 16); /* block of outputs */
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(float) * (nP + nw + nb) + sizeof(int64_t) * nt) != 0) {
        atomic_store(&r->oom, 1);
        return;
    }
    float *P = mem, *wv = P + nP, *ob = wv + nw;
    int64_t *boff = (int64_t *)(void *)(ob + nb);
    if (bwd) {
        reach_table(g->H, g->KH, g->ph, g->dh, g->sh, g->OH, boff);
        reach_table(g->W, g->KW, g->pw, g->dw, g->sw, g->OW, boff + g->H * g->KH);
    } else {
        for (int64_t t = 0; t < T; t++) {
            boff[t] = (t / g->KW * g->dh * block_cols(g) + t % g->KW * g->dw) * 16;
        }
    }
    for (int64_t gi = begin; gi < end; gi++) {
        if (bwd) {
            bwd_block16(r, gi * 16, P, wv, boff, boff + g->H * g->KH, ob);
        } else if (bwf) {
            bwf_block16(r, gi * 16, P, wv, boff);
        } else {
            fwd_block16(r, gi * 16, P, wv, boff, ob);
            planes_done(r, gi * 16, gi * 16 + 16);
        }
    }
    free(mem);
#else
    range_f32(ctx, begin * 16, end * 16);
#endif
}

/* Planes [begin, end) of the AVX2 3x3 forward (k3_avx2_fits), which reads the input in
 * place and needs none of range_f32's padded-plane scratch, allocated and zeroed per chunk
 * (96x112x112 s2: 66 KB a plane); hot in cache that costs little: 32x112x112 s1 one thread
 * 0.157 -> 0.151 ms. */
static void
range_k3(void *ctx, int64_t begin, int64_t end)
{
    dw_run *r = ctx;
    for (int64_t i = begin; i < end; i++) {
#ifdef DW_X86
        k3_planes_avx2(r, i, r->bn);
#else
        direct_plane_f32(r, i, NULL);
#endif
        if (!r->bn) {
            planes_done(r, i, i + 1);
        }
    }
}

/* ---- f32 forward, 8 planes at a time, AVX2 ----
 * The AVX2 counterpart of fwd_block16: the 8 lanes are 8 planes (8 channels). Each padded
 * pixel of the 8 planes is one vector (input rows transposed 4 columns at a time), every
 * output pixel KH*KW full fused multiply-adds with per-lane weights, 8 pixels at a time with 8
 * independent sums, transposed back in registers and stored straight into the 8 output
 * planes. Each output gets the plane kernels' operations (taps in order from +0, padding
 * cells +0, one fma each), so their bits. A 14x14 or 7x7 plane leaves the plane kernels'
 * 8-column blocks and 8- or 4-row steps partly empty, and at stride 2 they split lanes into
 * even and odd cells; here every lane is an output (but for the last pixels of a plane or
 * row). One thread, Zen 3, the plane kernels -> 8 planes (benchmarks/depthwise_shapes.c):
 * MobileNetV2 384x14x14 s1 0.048 -> 0.038 ms, 576x14x14 s1 0.074 -> 0.057, 576x14x14 s2
 * 0.048 -> 0.029, 192x28x28 s2 0.048 -> 0.032, 960x7x7 s1 0.042 -> 0.030; ShuffleNetV2
 * 116x28x28 s2 0.028 -> 0.020, 232x14x14 s2 0.017 -> 0.011, 232x7x7 s1 0.0094 -> 0.0073.
 * Larger outputs mostly lose (the transposes of every input and output pixel against the
 * plane kernels' full vectors): see block8_fits. */

/* Whether fwd_block8 runs rows of 8 outputs with each input vector loaded once
 * (fwd_row8_k3s1). */
static int
block8_k3s1(const ty_dw_geom *g)
{
    return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1;
}

/* Whether fwd_block8 goes by rows of 8 outputs; 7x7 planes stay per pixel (960x7x7: equal). */
static int
block8_rows(const ty_dw_geom *g)
{
    return block8_k3s1(g) && g->OW >= 8;
}

/* pix[q] = where in P output pixel q reads its first tap, for q < round_up(OH*OW, 8) (the
 * last pixel again past the end). Made once per layer: made per chunk, 784 pixels (one
 * division each) cost about as much as a 28x28 group on two threads, whose chunks are
 * often single groups. */
static void
block8_pixels(const ty_dw_geom *g, int64_t *pix)
{
    int64_t ohw = g->OH * g->OW, Wp = block_cols(g);
    for (int64_t q = 0, oh = 0, ow = 0; q < round_up(ohw, 8); q++) {
        pix[q] = (oh * g->sh * Wp + ow * g->sw) * 8;
        if (q + 1 < ohw && ++ow == g->OW) {
            ow = 0;
            oh++;
        }
    }
}

#ifdef DW_X86

/* The 4x4 transpose inside each 128-bit half: on return v[m] holds, in each half, lane m of
 * the four old v[i] (8 shuffles). */
static inline AVX2 __attribute__((always_inline)) void
transpose4x2_avx2(__m256 v[4])
{
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    v[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    v[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    v[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    v[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}

/* Columns c .. c+3 of the 8 planes' rows src, src + hw, ... as 4 pixel vectors v[m] (lane j:
 * plane j, column c+m): each vector built from two 128-bit loads (planes i and i+4), then
 * transposed within the halves; cheaper than a full 8x8 transpose (16 shuffles for 8
 * columns, not 24). masked: only the first n columns read (the others +0). */
static inline AVX2 __attribute__((always_inline)) void
columns4_avx2(const float *src, int64_t hw, int masked, __m128i m, __m256 v[4])
{
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const float *a = src + i * hw, *b = src + (i + 4) * hw;
        __m128 lo = masked ? _mm_maskload_ps(a, m) : _mm_loadu_ps(a);
        __m128 hi = masked ? _mm_maskload_ps(b, m) : _mm_loadu_ps(b);
        v[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
    }
    transpose4x2_avx2(v);
}

/* The lanes i < n of a 128-bit maskload mask. */
static inline AVX2 __m128i
tail4(int64_t n)
{
    return _mm_cmpgt_epi32(_mm_set1_epi32((int)(n < 4 ? (n > 0 ? n : 0) : 4)),
                           _mm_setr_epi32(0, 1, 2, 3));
}

/* P = the zero-padded pixels (Hp x Wp) of the 8 planes x, x + hw, ..., one vector per pixel,
 * the padding left as it is (P zeroed once per chunk: every group writes the same cells).
 * Input rows go 4 columns at a time (columns4_avx2). */
AVX2 static void
load_padded8(const ty_dw_geom *g, const float *x, int64_t Hp, int64_t Wp, float *P)
{
    int64_t hw = g->H * g->W;
    int64_t nw = g->W < Wp - g->pw ? g->W : Wp - g->pw; /* input columns P holds */
    int64_t nh = g->H < Hp - g->ph ? g->H : Hp - g->ph;
    for (int64_t ih = 0; ih < nh; ih++) {
        float *row = P + ((ih + g->ph) * Wp + g->pw) * 8;
        const float *src = x + ih * g->W;
        int64_t iw = 0;
        __m256 v[4];
        for (; iw + 4 <= nw; iw += 4) {
            columns4_avx2(src + iw, hw, 0, _mm_setzero_si128(), v);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                _mm256_storeu_ps(row + (iw + k) * 8, v[k]);
            }
        }
        if (iw < nw) {
            columns4_avx2(src + iw, hw, 1, tail4(nw - iw), v);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* constant indices: v stays in registers */
                if (k < nw - iw) {
                    _mm256_storeu_ps(row + (iw + k) * 8, v[k]);
                }
            }
        }
    }
}

/* The chain kc (per lane: the 8 planes' constants; NULL: none) on 8 pixel vectors of the 8
 * planes, before they are transposed into the planes. */
static inline AVX2 __attribute__((always_inline)) void
chain_lanes8(__m256 a[8], const __m256 *kc, int act)
{
    if (kc) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            a[k] = dw_chain8(a[k], kc, act);
        }
    }
}

/* Output pixels p .. p+7 of the 8 planes (lanes), pixel q reading from P + pix[q] (pix holds
 * the last pixel's again up to a multiple of 8): 8 independent sums, then transposed and
 * stored to the planes y, y + ohw, ... (the first ohw - p pixels). */
AVX2 static void
fwd_pixels8_avx2(int64_t ohw, const float *P, const int64_t *pix, const float *wv,
                 const int64_t *boff, int64_t T, int64_t p, float *y, const __m256 *kc, int act)
{
    const float *b[8];
    __m256 a[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        b[k] = P + pix[p + k];
        a[k] = _mm256_setzero_ps();
    }
    for (int64_t t = 0; t < T; t++) {
        __m256 w = _mm256_loadu_ps(wv + 8 * t);
        int64_t o = boff[t];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            a[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(b[k] + o), a[k]);
        }
    }
    chain_lanes8(a, kc, act);
    ty_transpose8_f32(a);
    int64_t n = ohw - p;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        store_tail8(y + j * ohw + p, a[j], n);
    }
}

/* 3x3 at stride 1, dilation 1: outputs ow .. ow+7 of row oh (the first OW - ow stored), each
 * input pixel vector loaded once and fed to the (up to) three outputs it reaches: 30 loads
 * for 72 multiply-adds instead of 81. Output k takes input j = k + kw for tap column kw, so
 * as j goes up each output still gets its taps in order. Reads up to 2 pixels past the row's
 * last output block (into the next row, or the slack after P), only for outputs not stored. */
static inline AVX2 __attribute__((always_inline)) void
fwd_row8_k3s1(const ty_dw_geom *g, const float *P, int64_t Wp, const float *wv, int64_t oh,
              int64_t ow, float *y, const __m256 *kc, int act)
{
    __m256 a[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        a[k] = _mm256_setzero_ps();
    }
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; kh++) {
        const float *row = P + ((oh + kh) * Wp + ow) * 8;
        __m256 w0 = _mm256_loadu_ps(wv + 8 * (3 * kh)), w1 = _mm256_loadu_ps(wv + 8 * (3 * kh + 1));
        __m256 w2 = _mm256_loadu_ps(wv + 8 * (3 * kh + 2));
#pragma GCC unroll 10
        for (int j = 0; j < 10; j++) {
            __m256 v = _mm256_loadu_ps(row + 8 * j);
            if (j < 8) {
                a[j] = _mm256_fmadd_ps(w0, v, a[j]);
            }
            if (j >= 1 && j < 9) {
                a[j - 1] = _mm256_fmadd_ps(w1, v, a[j - 1]);
            }
            if (j >= 2) {
                a[j - 2] = _mm256_fmadd_ps(w2, v, a[j - 2]);
            }
        }
    }
    chain_lanes8(a, kc, act);
    ty_transpose8_f32(a);
    int64_t ohw = g->OH * g->OW, n = g->OW - ow;
    float *yo = y + oh * g->OW + ow;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        store_tail8(yo + j * ohw, a[j], n);
    }
}

AVX2 static void
fwd_block8(const dw_run *r, int64_t i0, float *P, float *wv, const int64_t *boff,
           const int64_t *pix)
{
    const ty_dw_geom *g = &r->pl.g;
    int64_t hw = g->H * g->W, ohw = g->OH * g->OW, T = r->pl.taps;
    const float *w[8];
    for (int j = 0; j < 8; j++) {
        w[j] = (const float *)r->b + (i0 + j) % g->C * T;
    }
    /* wv[t] = tap t of the 8 channels, by whole vectors: scalar stores there stalled the
     * vector loads of fwd_pixels8_avx2 (576x14x14 s2 spent 15% of its time on them) */
    for (int64_t t0 = 0; t0 < T; t0 += 8) {
        __m256i m = tail8(T - t0);
        __m256 v[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            v[j] = _mm256_maskload_ps(w[j] + t0, m);
        }
        ty_transpose8_f32(v);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            if (t0 + k < T) {
                _mm256_storeu_ps(wv + 8 * (t0 + k), v[k]);
            }
        }
    }
    load_padded8(g, (const float *)r->a + i0 * hw, block_rows(g), block_cols(g), P);
    float *y = (float *)r->out + i0 * ohw;
    __m256 kc[3];
    const ty_epi_bn_f32 *bn = r->bn;
    if (bn) { /* lane j: channel (i0 + j) % C (M is 1) */
        _Alignas(32) float k[3][8];
        for (int j = 0; j < 8; j++) {
            int64_t oc = (i0 + j) % g->C;
            k[0][j] = bn->mean[oc];
            k[1][j] = bn->scale[oc];
            k[2][j] = bn->beta[oc];
        }
        for (int q = 0; q < 3; q++) {
            kc[q] = _mm256_load_ps(k[q]);
        }
    }
    const __m256 *kp = bn ? kc : NULL;
    int act = bn ? bn->act : 0;
    if (block8_rows(g)) {
        for (int64_t oh = 0; oh < g->OH; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow += 8) {
                fwd_row8_k3s1(g, P, block_cols(g), wv, oh, ow, y, kp, act);
            }
        }
        return;
    }
    for (int64_t p = 0; p < ohw; p += 8) {
        fwd_pixels8_avx2(ohw, P, pix, wv, boff, T, p, y, kp, act);
    }
}
#endif

/* The cells of P (Hp x Wp pixel vectors) that load_padded8 never writes, zeroed: the padding
 * (zeroing all of P per chunk cost ShuffleNetV2's 24x56x56 s2, 3 groups, about 10%). */
static void
zero_border8(const ty_dw_geom *g, int64_t Hp, int64_t Wp, float *P)
{
    int64_t nw = g->W < Wp - g->pw ? g->W : Wp - g->pw;
    int64_t nh = g->H < Hp - g->ph ? g->H : Hp - g->ph;
    nw = nw > 0 ? nw : 0;
    nh = nh > 0 ? nh : 0;
    for (int64_t rr = 0; rr < Hp; rr++) {
        float *row = P + rr * Wp * 8;
        if (rr < g->ph || rr >= g->ph + nh || nw == 0) {
            memset(row, 0, sizeof(float) * 8 * (size_t)Wp);
            continue;
        }
        memset(row, 0, sizeof(float) * 8 * (size_t)g->pw);
        memset(row + (g->pw + nw) * 8, 0, sizeof(float) * 8 * (size_t)(Wp - g->pw - nw));
    }
}

enum { BLOCK8_SLACK = 8 * 8 }; /* floats after P that fwd_row8_k3s1 may read */

/* Groups of 8 planes; the last item is the leftovers, run by the plane kernels. */
static void
range_block8(void *ctx, int64_t begin, int64_t end)
{
    dw_run *r = ctx;
    const ty_dw_geom *g = &r->pl.g;
    int64_t items = g->N * g->C, full = items / 8, T = r->pl.taps;
    if (end > full) {
        (k3_avx2_fits(r) ? range_k3 : range_f32)(ctx, full * 8, items);
        end = full;
    }
    if (begin >= end) {
        return;
    }
#ifdef DW_X86
    int64_t Wp = block_cols(g);
    size_t nP = (size_t)(block_rows(g) * Wp * 8 + BLOCK8_SLACK), nw = (size_t)(T * 8);
    size_t nt = (size_t)T;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(float) * (nP + nw) + sizeof(int64_t) * nt) != 0) {
        atomic_store(&r->oom, 1);
        return;
    }
    float *P = mem, *wv = P + nP;
    int64_t *boff = (int64_t *)(void *)(wv + nw);
    zero_border8(g, block_rows(g), Wp, P);
    memset(P + nP - BLOCK8_SLACK, 0, sizeof(float) * BLOCK8_SLACK);
    for (int64_t t = 0; t < T; t++) {
        boff[t] = (t / g->KW * g->dh * Wp + t % g->KW * g->dw) * 8;
    }
    for (int64_t gi = begin; gi < end; gi++) {
        fwd_block8(r, gi * 8, P, wv, boff, r->pix8);
        if (!r->bn) {
            planes_done(r, gi * 8, gi * 8 + 8);
        }
    }
    free(mem);
#else
    range_f32(ctx, begin * 8, end * 8);
#endif
}

/* Up to 28x28 outputs 8 planes at a time too at stride 2 both ways with 32 planes or more (the
 * plane kernels split lanes into even and odd cells there), and 3x3 at stride 1 with 64 planes
 * or more (rows of 8 outputs, fwd_row8_k3s1). One thread, plane kernels -> 8 planes:
 * 144x56x56 s2 0.097 -> 0.088 ms, ShuffleNetV2 58x56x56 s2 0.039 -> 0.037, 192x28x28 s1
 * 0.073 -> 0.067; ShuffleNetV2 58x28x28 s1 even (0.022), and 24x56x56 s2 (3 groups) 0.0157 ->
 * 0.0162; 56x56 outputs lose: 96x112x112 s2 0.21 -> 0.27, 144x56x56 s1 0.158 -> 0.167. */
enum { BLOCK8_WIDE_MAX_OUT = 28 * 28, BLOCK8_S2_MIN_PLANES = 32, BLOCK8_S1_MIN_PLANES = 64 };

/* Whether the AVX2 forward runs 8 planes at a time (range_block8): one output channel per
 * input channel, at least 8 planes, outputs of at most 16x16 (see fwd_block8), or up to 28x28
 * as above. */
static int
block8_fits(const dw_run *r)
{
    const ty_dw_geom *g = &r->pl.g;
    int64_t lim = SCRATCH_MAX_BYTES / 32, outs = g->OH * g->OW, planes = g->N * g->C;
    int s2 = g->sh == 2 && g->sw == 2 && planes >= BLOCK8_S2_MIN_PLANES;
    int s1 = block8_k3s1(g) && g->OW >= 8 && planes >= BLOCK8_S1_MIN_PLANES;
    int wide = outs <= BLOCK8_WIDE_MAX_OUT && (s1 || s2);
    return r->direct == TY_ISA_AVX2 && !atomic_load(&planes_forced) && g->M == 1 &&
           planes >= 8 && g->OH > 0 && g->OW > 0 && (outs <= BLOCK_MAX_OUT || wide) &&
           g->H * g->W <= lim && block_rows(g) <= lim && block_cols(g) <= lim &&
           block_rows(g) * block_cols(g) <= lim;
}

/* The 8-plane forward over groups of 8 planes and the leftovers, the pixel table shared (on
 * the stack: block8_fits bounds the outputs by BLOCK8_WIDE_MAX_OUT, so no allocation per call). */
static ty_status
run_block8(dw_run *r)
{
    const ty_dw_geom *g = &r->pl.g;
    int64_t items = g->N * g->C / 8 + (g->N * g->C % 8 != 0);
    int64_t pix[BLOCK8_WIDE_MAX_OUT];
    _Static_assert((int)BLOCK_MAX_OUT <= (int)BLOCK8_WIDE_MAX_OUT && BLOCK8_WIDE_MAX_OUT % 8 == 0,
                   "the pixel table holds every output of a layer block8_fits takes");
    r->pix8 = NULL;
    if (!block8_rows(g)) {
        block8_pixels(g, pix);
        r->pix8 = pix;
    }
    return run_items(r, range_block8, items,
                     8.0 * (double)g->OH * (double)g->OW * (double)r->pl.taps);
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
    r->exact = atomic_load(&exact_forced);
    r->mblocks = 1; /* run() sets the filter gradient's own */
    TY_CHECK(plan_sizes(g, &r->pl), TY_ERR_INVALID_ARG,
             "depthwise geometry too large for the direct kernel");
    return TY_OK;
}

static ty_status depthwise_f32(dw_run *r);

ty_status
ty_depthwise_f32(ty_dw_kind kind, const ty_dw_geom *g, const float *a, const float *b,
                 float *out)
{
    dw_run r;
    TY_TRY(prepare(kind, g, a, b, out, &r));
    return depthwise_f32(&r);
}

ty_status
ty_depthwise_fwd_f32_hook(const ty_dw_geom *g, const float *x, const float *w, float *y,
                          ty_dw_done_fn fn, void *ctx, const ty_epi_bn_f32 *bn)
{
    dw_run r;
    TY_TRY(prepare(TY_DW_FWD, g, x, w, y, &r));
    r.done = fn;
    r.done_ctx = ctx;
    r.bn = fn && bn && !bn->res_order && bn->out == y ? bn : NULL;
    return depthwise_f32(&r);
}

static ty_status
depthwise_f32(dw_run *r)
{
    const ty_dw_geom *g = &r->pl.g;
    r->r32 = pick_rows_f32();
    r->split2 = pick_split2();
    r->padrow = pick_padrow();
    r->copyrows = pick_copyrows();
    r->lanesum = pick_lanesum();
    ty_isa isa = isa_now();
    r->direct = r->kind == TY_DW_FWD && (isa == TY_ISA_AVX512 || isa == TY_ISA_AVX2) ? isa : 0;
    if (r->kind == TY_DW_FWD && block8_fits(r)) {
        return run_block8(r);
    }
    if (r->kind == TY_DW_FWD && k3_avx2_fits(r)) {
        return run(r, range_k3);
    }
    if (block16_fits(r)) {
        int64_t planes = r->kind == TY_DW_BWD_FILTER ? g->C : g->N * g->C;
        int64_t items = planes / 16 + (planes % 16 != 0);
        double per = 16.0 * (double)g->OH * (double)g->OW * (double)r->pl.taps;
        return run_items(r, range_block16, items,
                         r->kind == TY_DW_BWD_FILTER ? per * g->N : per);
    }
    return run(r, range_f32);
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
