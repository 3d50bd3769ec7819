/* im2col / col2im. For each (channel, kernel offset) the input positions an output row or
 * column reads form one arithmetic run, so the valid output range is computed once and the
 * padding is written with memset instead of a bounds test per element. */
#include <string.h>
#ifdef __SSE2__
#include <xmmintrin.h>
#endif

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/im2col.h"

/* Elements per chunk below which splitting over threads costs more than it saves. */
enum { MIN_CHUNK_ELEMS = 1 << 15 };

typedef struct geom {
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW;
    const void *src;
    void *dst;
    int64_t ld; /* elements between col rows */
} geom;

/* The outputs o in [0, O) whose input index o*s + off lies in [0, L): [*lo, *hi). */
static inline void
valid_range(int64_t O, int64_t L, int64_t s, int64_t off, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = L - off <= 0 ? 0 : (L - off + s - 1) / s;
    a = a < O ? a : O;
    b = b < O ? b : O;
    *lo = a;
    *hi = b > a ? b : a;
}

/* Rows [begin, end) of col; row r is (c, i, j) with r = (c*kh + i)*kw + j. */
#define DEFINE_IM2COL(T, SFX)                                                                      \
    static void im2col_rows_##SFX(void *ctx, int64_t begin, int64_t end)                           \
    {                                                                                              \
        const geom *g = ctx;                                                                       \
        const T *x = g->src;                                                                       \
        T *col = g->dst;                                                                           \
        const int64_t OW = g->OW, ld = g->ld;                                                      \
        for (int64_t r = begin; r < end; r++) {                                                    \
            int64_t c = r / (g->kh * g->kw), i = r / g->kw % g->kh, j = r % g->kw;                 \
            int64_t hoff = i * g->dh - g->ph, woff = j * g->dw - g->pw;                            \
            int64_t oh0, oh1, ow0, ow1;                                                            \
            valid_range(g->OH, g->H, g->sh, hoff, &oh0, &oh1);                                     \
            valid_range(OW, g->W, g->sw, woff, &ow0, &ow1);                                        \
            const T *plane = x + c * g->H * g->W;                                                  \
            T *dst = col + r * ld;                                                                 \
            memset(dst, 0, sizeof(T) * (size_t)(oh0 * OW));                                        \
            for (int64_t oh = oh0; oh < oh1; oh++) {                                               \
                T *d = dst + oh * OW;                                                              \
                const T *s = plane + (oh * g->sh + hoff) * g->W; /* input row */                   \
                memset(d, 0, sizeof(T) * (size_t)ow0);                                             \
                if (g->sw == 1) {                                                                  \
                    memcpy(d + ow0, s + ow0 + woff, sizeof(T) * (size_t)(ow1 - ow0));              \
                } else {                                                                           \
                    for (int64_t ow = ow0; ow < ow1; ow++) {                                       \
                        d[ow] = s[ow * g->sw + woff];                                              \
                    }                                                                              \
                }                                                                                  \
                memset(d + ow1, 0, sizeof(T) * (size_t)(OW - ow1));                                \
            }                                                                                      \
            memset(dst + oh1 * OW, 0, sizeof(T) * (size_t)((g->OH - oh1) * OW));                   \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Channels [begin, end): a channel's x plane is written only by its own col rows, in the      \
     * same order every time. */                                                                   \
    static void col2im_channels_##SFX(void *ctx, int64_t begin, int64_t end)                       \
    {                                                                                              \
        const geom *g = ctx;                                                                       \
        const T *col = g->src;                                                                     \
        T *x = g->dst;                                                                             \
        const int64_t OW = g->OW, ld = g->ld, kk = g->kh * g->kw;                                  \
        for (int64_t c = begin; c < end; c++) {                                                    \
            T *plane = x + c * g->H * g->W;                                                        \
            for (int64_t k = 0; k < kk; k++) {                                                     \
                int64_t i = k / g->kw, j = k % g->kw;                                              \
                int64_t hoff = i * g->dh - g->ph, woff = j * g->dw - g->pw;                        \
                int64_t oh0, oh1, ow0, ow1;                                                        \
                valid_range(g->OH, g->H, g->sh, hoff, &oh0, &oh1);                                 \
                valid_range(OW, g->W, g->sw, woff, &ow0, &ow1);                                    \
                const T *src = col + (c * kk + k) * ld;                                            \
                for (int64_t oh = oh0; oh < oh1; oh++) {                                           \
                    const T *s = src + oh * OW;                                                    \
                    T *d = plane + (oh * g->sh + hoff) * g->W; /* input row */                     \
                    for (int64_t ow = ow0; ow < ow1; ow++) {                                       \
                        d[ow * g->sw + woff] += s[ow];                                             \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_im2col_##SFX(const T *x, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,      \
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,   \
                         int64_t OH, int64_t OW, T *col)                                           \
    {                                                                                              \
        geom g = {C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, x, col, OH * OW};               \
        int64_t rows = C * kh * kw, npix = OH * OW;                                                \
        if (rows <= 0 || npix <= 0) {                                                              \
            return;                                                                                \
        }                                                                                          \
        ty_parallel_for(rows, MIN_CHUNK_ELEMS / npix + 1, im2col_rows_##SFX, &g);                  \
    }                                                                                              \
                                                                                                   \
    void ty_col2im_##SFX(const T *col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,    \
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,   \
                         int64_t OH, int64_t OW, T *x)                                             \
    {                                                                                              \
        geom g = {C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, col, x, OH * OW};               \
        int64_t per_channel = kh * kw * OH * OW;                                                   \
        if (C <= 0 || per_channel <= 0) {                                                          \
            return;                                                                                \
        }                                                                                          \
        ty_parallel_for(C, MIN_CHUNK_ELEMS / per_channel + 1, col2im_channels_##SFX, &g);          \
    }

DEFINE_IM2COL(float, f32)
DEFINE_IM2COL(double, f64)

void
ty_col2im_ld_f32(const float *col, int64_t ld, int64_t C, int64_t H, int64_t W, int64_t kh,
                 int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                 int64_t dw, int64_t OH, int64_t OW, float *x)
{
    geom g = {C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW, col, x, ld};
    int64_t per_channel = kh * kw * OH * OW;
    if (C > 0 && per_channel > 0) {
        ty_parallel_for(C, MIN_CHUNK_ELEMS / per_channel + 1, col2im_channels_f32, &g);
    }
}

/* ---- implicit im2col: GEMM panels packed straight from the image ----
 * A panel's pixels [i0, i0 + len) split into runs that lie in one output row. The runs, and
 * for each kernel column the part of each run that is not padding, are the same for every
 * k row of the panel, so they are found once per call (the divisions of valid_range cost
 * more than copying a short run). */

enum { RANGE_TABLE_KW = 8 }; /* kernel widths up to this keep a table of valid parts */

typedef struct pix_run {
    const float *x;   /* the run's image */
    int64_t ih0, iw0; /* input position of the run's first pixel for kernel offset (0, 0) */
    int64_t n, at;    /* pixels in the run, and its first column in the panel */
    int8_t lo[RANGE_TABLE_KW], hi[RANGE_TABLE_KW]; /* valid part [lo, hi) per kernel column */
} pix_run;

/* d[t] = row[iw0 + t*sw] for t in [lo, hi), 0 for the rest of [0, n). */
static inline void
pack_run_f32(const float *restrict row, int64_t iw0, int64_t sw, int64_t lo, int64_t hi,
             int64_t n, float *restrict d)
{
    for (int64_t t = 0; t < lo; t++) {
        d[t] = 0;
    }
    if (sw == 1) {
        for (int64_t t = lo; t < hi; t++) {
            d[t] = row[iw0 + t];
        }
    } else if (sw == 2) { /* a constant stride the compiler vectorizes */
        for (int64_t t = lo; t < hi; t++) {
            d[t] = row[iw0 + 2 * t];
        }
    } else {
        for (int64_t t = lo; t < hi; t++) {
            d[t] = row[iw0 + t * sw];
        }
    }
    for (int64_t t = hi; t < n; t++) {
        d[t] = 0;
    }
}

static int
find_runs(const ty_im2col_src_f32 *g, int64_t i0, int64_t len, pix_run *runs)
{
    int nruns = 0;
    const int64_t npix = g->OH * g->OW;
    for (int64_t i = 0; i < len; nruns++) {
        int64_t img = g->img_stride > 0 ? (i0 + i) / npix : 0, q = (i0 + i) - img * npix;
        int64_t oh = q / g->OW, ow = q % g->OW;
        int64_t n = g->OW - ow < len - i ? g->OW - ow : len - i;
        pix_run *r = &runs[nruns];
        *r = (pix_run){.x = g->x + img * g->img_stride, .ih0 = oh * g->sh - g->ph,
                       .iw0 = ow * g->sw - g->pw, .n = n, .at = i};
        for (int64_t kj = 0; kj < g->kw && g->kw <= RANGE_TABLE_KW; kj++) {
            int64_t lo, hi;
            valid_range(n, g->W, g->sw, r->iw0 + kj * g->dw, &lo, &hi);
            r->lo[kj] = (int8_t)lo;
            r->hi[kj] = (int8_t)hi;
        }
        i += n;
    }
    return nruns;
}

/* Channels ahead whose input lines a panel prefetches: a deep layer's panel reads a few lines
 * of every channel plane, each a cache miss the hardware prefetchers do not predict. */
enum { PREFETCH_CHANNELS = 2 };

/* Prefetches the input lines channel c's k rows read for the runs. */
static inline void
prefetch_channel(const ty_im2col_src_f32 *g, const pix_run *runs, int nruns, int64_t c)
{
    if (c >= g->C) {
        return;
    }
    for (int r = 0; r < nruns; r++) {
        const pix_run *run = &runs[r];
        int64_t w0 = run->iw0 > 0 ? run->iw0 : 0;
        int64_t w1 = run->iw0 + (run->n - 1) * g->sw + (g->kw - 1) * g->dw;
        w1 = w1 < g->W ? w1 : g->W - 1;
        for (int64_t ki = 0; ki < g->kh && w1 >= w0; ki++) {
            int64_t ih = run->ih0 + ki * g->dh;
            if (ih < 0 || ih >= g->H) {
                continue;
            }
            const float *row = run->x + (c * g->H + ih) * g->W;
            for (int64_t w = w0; w < w1; w += 16) { /* a line (16 floats) at a time */
                __builtin_prefetch(row + w);
            }
            __builtin_prefetch(row + w1);
        }
    }
}

typedef void (*run_copier)(const float *row, int64_t iw0, int64_t sw, int64_t lo, int64_t hi,
                           int64_t n, float *d);

/* The panel: k rows [k0, k0 + kc), each from the runs' pixels through copy (pack_run_f32 or
 * a vector copy of it), inlined into each caller so that copy is a direct call. */
static inline __attribute__((always_inline)) void
pack_panel(const ty_im2col_src_f32 *g, const pix_run *runs, int nruns, int64_t len, int64_t k0,
           int64_t kc, int width, float *dst, run_copier copy)
{
    int64_t kk = g->kh * g->kw;
    int64_t c = k0 / kk, ki = k0 % kk / g->kw, kj = k0 % g->kw;
    for (int64_t p = 0; p < kc; p++) {
        float *d = dst + p * width;
        const int64_t plane_off = c * g->H * g->W;
        if (ki == 0 && kj == 0 && kk > 1) { /* 1x1: a prefetch per row costs what it saves */
            prefetch_channel(g, runs, nruns, c + PREFETCH_CHANNELS);
        }
        for (int r = 0; r < nruns; r++) {
            const pix_run *run = &runs[r];
            int64_t ih = run->ih0 + ki * g->dh, iw0 = run->iw0 + kj * g->dw, lo, hi;
            const float *plane = run->x + plane_off, *row = plane;
            if (ih < 0 || ih >= g->H) {
                lo = hi = 0;
            } else if (g->kw <= RANGE_TABLE_KW) {
                lo = run->lo[kj];
                hi = run->hi[kj];
            } else {
                valid_range(run->n, g->W, g->sw, iw0, &lo, &hi);
            }
            if (hi > lo) {
                row = plane + ih * g->W;
            }
            copy(row, iw0, g->sw, lo, hi, run->n, d + run->at);
        }
        for (int64_t i = len; i < width; i++) {
            d[i] = 0;
        }
        if (++kj == g->kw) {
            kj = 0;
            if (++ki == g->kh) {
                ki = 0;
                c++;
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_PACK_AVX512 1

/* pack_run_f32 for strides 1 and 2, 16 pixels at a time: the valid part [a, b) of each 16 is
 * loaded from where it starts (never reading outside it), its even elements picked for stride
 * 2, and expanded into lanes [a, b) with zeros around. Runs are short (4 to 16 pixels in
 * CIFAR's deep layers), where the scalar loops spent most of their time starting and ending. */
__attribute__((target("avx512f"))) static inline void
pack_run_avx512(const float *restrict row, int64_t iw0, int64_t sw, int64_t lo, int64_t hi,
                int64_t n, float *restrict d)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                          2, 0);
    for (int64_t t0 = 0; t0 < n; t0 += 16) {
        int64_t cnt = n - t0 < 16 ? n - t0 : 16;
        int64_t a = lo - t0 > 0 ? lo - t0 : 0, b = hi - t0 < cnt ? hi - t0 : cnt;
        __m512 v = _mm512_setzero_ps();
        if (b > a) {
            const float *src = row + iw0 + (t0 + a) * sw;
            __mmask16 lanes = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
            if (sw == 1) {
                v = _mm512_maskz_expandloadu_ps(lanes, src);
            } else {
                int64_t span = 2 * (b - a) - 1; /* elements from the first valid to the last */
                __m512 lo16, hi16 = _mm512_setzero_ps();
                if (span <= 16) {
                    lo16 = _mm512_maskz_loadu_ps((__mmask16)((1u << span) - 1), src);
                } else {
                    lo16 = _mm512_loadu_ps(src);
                    hi16 = _mm512_maskz_loadu_ps((__mmask16)((1u << (span - 16)) - 1), src + 16);
                }
                v = _mm512_maskz_expand_ps(lanes, _mm512_permutex2var_ps(lo16, even, hi16));
            }
        }
        _mm512_mask_storeu_ps(d + t0, (__mmask16)((1u << cnt) - 1), v);
    }
}

__attribute__((target("avx512f"))) static void
pack_panel_avx512(const ty_im2col_src_f32 *g, const pix_run *runs, int nruns, int64_t len,
                  int64_t k0, int64_t kc, int width, float *dst)
{
    pack_panel(g, runs, nruns, len, k0, kc, width, dst, pack_run_avx512);
}
#endif

TY_CLONES void
ty_im2col_pack_f32(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc, int width,
                   float *dst)
{
    const ty_im2col_src_f32 *g = ctx;
    pix_run runs[TY_IM2COL_PACK_MAX_WIDTH];
    int nruns = find_runs(g, i0, len, runs);
#ifdef HAVE_PACK_AVX512
    if (g->sw <= 2 && ty_cpu_isa() >= TY_ISA_AVX512) { /* the same values, vector copies */
        pack_panel_avx512(g, runs, nruns, len, k0, kc, width, dst);
        return;
    }
#endif
    pack_panel(g, runs, nruns, len, k0, kc, width, dst, pack_run_f32);
}

/* ---- implicit im2col, transposed: panels with the column-matrix row first ----
 * The filter gradient reads col with its rows as the GEMM's free index and its pixels as the
 * sum: dst[p*width + i] = col(i0 + i, k0 + p). Up to T_PIX pixels at a time split into runs
 * within one output row of one image, found once and shared by the call's rows; four rows at
 * a time are gathered into contiguous lines (as the forward packs them), then transposed in
 * 4 x 4 blocks, the way the GEMM packs a row-major operand. */
enum { T_PIX = 256 };

typedef struct t_run {
    const float *x;   /* the run's image */
    int64_t ih0, iw0; /* input position of its first pixel for kernel offset (0, 0) */
    int64_t n, at;    /* pixels, and the first one's index in the line */
} t_run;

static int
find_t_runs(const ty_im2col_src_f32 *g, int64_t k0, int64_t kc, t_run *runs)
{
    const int64_t npix = g->OH * g->OW;
    int nruns = 0;
    for (int64_t p = 0; p < kc; nruns++) {
        int64_t img = g->img_stride > 0 ? (k0 + p) / npix : 0, q = k0 + p - img * npix;
        int64_t oh = q / g->OW, ow = q % g->OW;
        int64_t n = g->OW - ow < kc - p ? g->OW - ow : kc - p;
        runs[nruns] = (t_run){.x = g->x + img * g->img_stride, .ih0 = oh * g->sh - g->ph,
                              .iw0 = ow * g->sw - g->pw, .n = n, .at = p};
        p += n;
    }
    return nruns;
}

/* line[p] = col(r, k0 + p) for the runs' pixels. */
static void
fill_line(const ty_im2col_src_f32 *g, int64_t r, const t_run *runs, int nruns, float *line)
{
    const int64_t kk = g->kh * g->kw, c = r / kk, ki = r / g->kw % g->kh, kj = r % g->kw;
    for (int u = 0; u < nruns; u++) {
        const t_run *run = &runs[u];
        int64_t ih = run->ih0 + ki * g->dh, iw0 = run->iw0 + kj * g->dw, lo = 0, hi = run->n;
        const float *row = run->x + c * g->H * g->W;
        if (ih < 0 || ih >= g->H) {
            hi = 0;
        } else {
            row += ih * g->W;
            if (iw0 < 0 || iw0 + (run->n - 1) * g->sw >= g->W) {
                valid_range(run->n, g->W, g->sw, iw0, &lo, &hi);
            }
        }
        pack_run_f32(row, iw0, g->sw, lo, hi, run->n, line + run->at);
    }
}

/* dst[p*width + i] = lines[i][p] for i < rows (<= 4), p < np. */
static void
transpose_lines(float (*lines)[T_PIX], int rows, int64_t np, int width, float *dst)
{
    int64_t p = 0;
#ifdef __SSE2__
    for (; rows == 4 && p + 4 <= np; p += 4) {
        __m128 r0 = _mm_loadu_ps(lines[0] + p), r1 = _mm_loadu_ps(lines[1] + p);
        __m128 r2 = _mm_loadu_ps(lines[2] + p), r3 = _mm_loadu_ps(lines[3] + p);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + p * width, r0);
        _mm_storeu_ps(dst + (p + 1) * width, r1);
        _mm_storeu_ps(dst + (p + 2) * width, r2);
        _mm_storeu_ps(dst + (p + 3) * width, r3);
    }
#endif
    for (; p < np; p++) {
        for (int i = 0; i < rows; i++) {
            dst[p * width + i] = lines[i][p];
        }
    }
}

TY_CLONES void
ty_im2col_pack_t_f32(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc,
                     int width, float *dst)
{
    const ty_im2col_src_f32 *g = ctx;
    t_run runs[T_PIX];
    float lines[4][T_PIX];
    for (int64_t p0 = 0; p0 < kc; p0 += T_PIX) {
        int64_t np = kc - p0 < T_PIX ? kc - p0 : T_PIX;
        int nruns = find_t_runs(g, k0 + p0, np, runs);
        for (int64_t i = 0; i < len; i += 4) {
            int rows = len - i < 4 ? (int)(len - i) : 4;
            for (int q = 0; q < rows; q++) {
                fill_line(g, i0 + i + q, runs, nruns, lines[q]);
            }
            transpose_lines(lines, rows, np, width, dst + p0 * width + i);
        }
    }
    for (int64_t p = 0; p < kc && len < width; p++) {
        memset(dst + p * width + len, 0, sizeof(float) * (size_t)(width - len));
    }
}
