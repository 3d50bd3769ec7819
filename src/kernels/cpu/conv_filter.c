/* Pixel-major images and tap-major column panels for the filter gradient (conv_filter.h).
 * Copies only: the AVX-512 and AVX2 paths move the same floats as the generic ones. */
#include <stdatomic.h>
#include <string.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/conv_filter.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FILTER_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))
#include "kernels/cpu/transpose16.h"
#endif

enum { TILE = 16 };

static ty_isa_override isa_forced;

static int
use_avx512(void)
{
    return ty_isa_override_get(&isa_forced) >= TY_ISA_AVX512;
}

#ifdef FILTER_X86
static int
use_avx2(void)
{
    return ty_isa_override_get(&isa_forced) == TY_ISA_AVX2;
}
#endif

ty_isa
ty_conv_filter_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

/* ---- transpose ---- */

/* rows [i0, i1) x cols [j0, j1) of the transpose, one element at a time (the edges). */
static void
transpose_scalar(const float *src, int64_t rows, int64_t cols, int64_t i0, int64_t i1,
                 int64_t j0, int64_t j1, float *dst)
{
    for (int64_t j = j0; j < j1; j++) {
        for (int64_t i = i0; i < i1; i++) {
            dst[j * rows + i] = src[i * cols + j];
        }
    }
}

#ifdef FILTER_X86
/* One 16 x 16 tile in registers: pairs of rows interleaved by floats, then by float pairs
 * (each 128-bit lane then holds 4 rows of one column), then the lanes gathered in two rounds
 * of shuffle_f32x4. */
AVX512 static void
tile16(const float *src, int64_t ls, float *dst, int64_t ld)
{
    __m512 r[TILE], t[TILE], u[TILE];
    for (int i = 0; i < TILE; i++) {
        r[i] = _mm512_loadu_ps(src + i * ls);
    }
    for (int i = 0; i < TILE; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < TILE; i += 4) { /* u[i + j]: column 4 * lane + j of rows i..i+3 */
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; j++) {
        __m512 va = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 vb = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 wa = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 wb = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        _mm512_storeu_ps(dst + j * ld, _mm512_shuffle_f32x4(va, wa, 0x88));
        _mm512_storeu_ps(dst + (8 + j) * ld, _mm512_shuffle_f32x4(va, wa, 0xDD));
        _mm512_storeu_ps(dst + (4 + j) * ld, _mm512_shuffle_f32x4(vb, wb, 0x88));
        _mm512_storeu_ps(dst + (12 + j) * ld, _mm512_shuffle_f32x4(vb, wb, 0xDD));
    }
}

/* columns [j0, j1) of src, j0 a multiple of TILE */
AVX512 static void
transpose_avx512(const float *src, int64_t rows, int64_t cols, int64_t j0, int64_t j1,
                 float *dst)
{
    int64_t ri = rows / TILE * TILE, cj = j0 + (j1 - j0) / TILE * TILE;
    for (int64_t i = 0; i < ri; i += TILE) {
        for (int64_t j = j0; j < cj; j += TILE) {
            tile16(src + i * cols + j, cols, dst + j * rows + i, rows);
        }
    }
    transpose_scalar(src, rows, cols, 0, ri, cj, j1, dst);
    transpose_scalar(src, rows, cols, ri, rows, j0, j1, dst);
}

/* The same by 8 x 8 tiles in AVX2 registers. */
AVX2 static void
transpose_avx2(const float *src, int64_t rows, int64_t cols, int64_t j0, int64_t j1,
               float *dst)
{
    int64_t ri = rows / 8 * 8, cj = j0 + (j1 - j0) / 8 * 8;
    for (int64_t i0 = 0; i0 < ri; i0 += TILE) { /* 16 rows at a time: both sides in cache */
        int64_t i1 = i0 + TILE < ri ? i0 + TILE : ri;
        for (int64_t j = j0; j < cj; j += 8) {
            for (int64_t i = i0; i < i1; i += 8) {
                __m256 r[8];
                for (int k = 0; k < 8; k++) {
                    r[k] = _mm256_loadu_ps(src + (i + k) * cols + j);
                }
                ty_transpose8_f32(r);
                for (int k = 0; k < 8; k++) {
                    _mm256_storeu_ps(dst + (j + k) * rows + i, r[k]);
                }
            }
        }
    }
    transpose_scalar(src, rows, cols, 0, ri, cj, j1, dst);
    transpose_scalar(src, rows, cols, ri, rows, j0, j1, dst);
}
#endif

typedef struct transpose_job {
    const float *src;
    int64_t rows, cols, piece; /* columns per piece, a multiple of TILE */
    float *dst;
} transpose_job;

static void
transpose_range(void *ctx, int64_t begin, int64_t end)
{
    const transpose_job *t = ctx;
    int64_t j0 = begin * t->piece, j1 = end * t->piece < t->cols ? end * t->piece : t->cols;
#ifdef FILTER_X86
    if (use_avx512() && t->rows >= TILE && t->cols >= TILE) {
        transpose_avx512(t->src, t->rows, t->cols, j0, j1, t->dst);
        return;
    }
    if (use_avx2() && t->rows >= 8 && t->cols >= 8) {
        transpose_avx2(t->src, t->rows, t->cols, j0, j1, t->dst);
        return;
    }
#endif
    for (int64_t i0 = 0; i0 < t->rows; i0 += TILE) { /* tiles that keep both sides in cache */
        for (int64_t j = j0; j < j1; j += TILE) {
            transpose_scalar(t->src, t->rows, t->cols, i0,
                             i0 + TILE < t->rows ? i0 + TILE : t->rows, j,
                             j + TILE < j1 ? j + TILE : j1, t->dst);
        }
    }
}

/* In parallel pieces of whole columns (about TRANSPOSE_PIECE floats each) where the call is
 * not inside a parallel region already: copies, so any split gives the same dst. */
enum { TRANSPOSE_PIECE = 1 << 14 };

void
ty_transpose_f32(const float *src, int64_t rows, int64_t cols, float *dst)
{
    int64_t piece = rows > 0 ? TRANSPOSE_PIECE / rows / TILE * TILE : TILE;
    transpose_job t = {src, rows, cols, piece > TILE ? piece : TILE, dst};
    ty_parallel_for((cols + t.piece - 1) / t.piece, 1, transpose_range, &t);
}

void
ty_pixel_major_sampled_f32(const float *src, int64_t C, int64_t H, int64_t W, int64_t sh,
                           int64_t sw, int64_t OH, int64_t OW, float *dst)
{
    for (int64_t oh = 0; oh < OH; oh++) {
        for (int64_t c0 = 0; c0 < C; c0 += TILE) { /* TILE input rows, in cache along ow */
            int64_t c1 = c0 + TILE < C ? c0 + TILE : C;
            const float *row = src + oh * sh * W;
            float *d = dst + oh * OW * C;
            for (int64_t ow = 0; ow < OW; ow++) {
                for (int64_t c = c0; c < c1; c++) {
                    d[ow * C + c] = row[c * H * W + ow * sw];
                }
            }
        }
    }
}

/* ---- tap-major panels ---- */

/* Rows [at, at + n) of a panel: n floats from channel c of tap (ki, kj) on. With dilation 1
 * they may run on into the next taps of kernel row ki, whose pixels are the next ones of the
 * pixel-major image row (a 3-channel 7x7 stem: 21 floats a copy instead of 3). */
typedef struct tap_seg {
    int64_t ki, kj, c, n, at;
} tap_seg;

/* The floats [*lo, *hi) of a segment that lie in image row ih at iw (the rest are padding);
 * returns the offset of its first float in the pixel-major image. */
static int64_t
seg_bounds(const ty_tap_src_f32 *s, const tap_seg *sg, int64_t ih, int64_t iw, int64_t *lo,
           int64_t *hi)
{
    int64_t f0 = iw * s->C + sg->c, end = s->W * s->C;
    if (ih < 0 || ih >= s->H) {
        *lo = *hi = 0;
        return 0;
    }
    *lo = f0 < 0 ? (-f0 < sg->n ? -f0 : sg->n) : 0;
    *hi = end - f0 < sg->n ? (end - f0 > *lo ? end - f0 : *lo) : sg->n;
    return ih * end + f0;
}

/* A segment's values for pixels ow0 + t, t < np, of output row oh of image img: n floats of
 * the pixel-major image each, zeros in the padding. */
static void
seg_generic(const ty_tap_src_f32 *s, const tap_seg *sg, const float *x, int64_t oh,
            int64_t ow0, int64_t np, int width, float *dst)
{
    int64_t ih = oh * s->sh - s->ph + sg->ki * s->dh, iw0 = ow0 * s->sw - s->pw + sg->kj * s->dw;
    for (int64_t t = 0; t < np; t++) {
        int64_t lo, hi, at = seg_bounds(s, sg, ih, iw0 + t * s->sw, &lo, &hi);
        float *d = dst + t * width + sg->at;
        memset(d, 0, sizeof(float) * (size_t)lo);
        memcpy(d + lo, x + at + lo, sizeof(float) * (size_t)(hi - lo));
        memset(d + hi, 0, sizeof(float) * (size_t)(sg->n - hi));
    }
}

#ifdef FILTER_X86
/* The same with masked 16-float moves (n <= 16); a pixel partly in the padding loads its
 * floats into their lanes with an expanding load. */
AVX512 static void
seg_avx512(const ty_tap_src_f32 *s, const tap_seg *sg, const float *x, int64_t oh, int64_t ow0,
           int64_t np, int width, float *dst)
{
    int64_t ih = oh * s->sh - s->ph + sg->ki * s->dh, iw0 = ow0 * s->sw - s->pw + sg->kj * s->dw;
    __mmask16 m = (__mmask16)((1u << sg->n) - 1);
    float *d = dst + sg->at;
    for (int64_t t = 0; t < np; t++) {
        int64_t lo, hi, at = seg_bounds(s, sg, ih, iw0 + t * s->sw, &lo, &hi);
        __m512 v;
        if (lo == 0 && hi == sg->n) {
            v = _mm512_maskz_loadu_ps(m, x + at);
        } else {
            __mmask16 part = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
            v = _mm512_maskz_expandloadu_ps(part, x + at + lo);
        }
        _mm512_mask_storeu_ps(d + t * width, m, v);
    }
}

/* Lanes j with lo <= j < hi, as a maskload mask. */
AVX2 static inline __m256i
lanes_between(int64_t lo, int64_t hi)
{
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    lo = lo < 0 ? 0 : (lo > 8 ? 8 : lo);
    hi = hi < 0 ? 0 : (hi > 8 ? 8 : hi);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)lo), lane),
                               _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), lane));
}

/* The same in AVX2: 8-float moves, the last one ending at the segment's end (overlapping the
 * one before: the same floats twice), masked loads for the floats in the padding (they read
 * +0 and touch no memory); a segment of fewer than 8 floats by a masked store. Replaces a
 * memcpy and two memsets per pixel (a 3-channel 7x7 stem: 21 floats). */
AVX2 static void
seg_avx2(const ty_tap_src_f32 *s, const tap_seg *sg, const float *x, int64_t oh, int64_t ow0,
         int64_t np, int width, float *dst)
{
    int64_t ih = oh * s->sh - s->ph + sg->ki * s->dh, iw0 = ow0 * s->sw - s->pw + sg->kj * s->dw;
    int64_t n = sg->n;
    float *d = dst + sg->at;
    for (int64_t t = 0; t < np; t++, d += width) {
        int64_t lo, hi, at = seg_bounds(s, sg, ih, iw0 + t * s->sw, &lo, &hi);
        int whole = lo == 0 && hi == n;
        if (n < 8) {
            __m256 v = _mm256_maskload_ps(x + at, lanes_between(lo, hi));
            _mm256_maskstore_ps(d, lanes_between(0, n), v);
            continue;
        }
        for (int64_t j0 = 0; j0 < n; j0 += 8) {
            int64_t j = j0 + 8 <= n ? j0 : n - 8;
            __m256 v = whole ? _mm256_loadu_ps(x + at + j)
                             : _mm256_maskload_ps(x + at + j, lanes_between(lo - j, hi - j));
            _mm256_storeu_ps(d + j, v);
        }
    }
}
#endif

/* The panel rows' segments, each within one tap (or one kernel row, with dilation 1); at
 * most one per row. */
static int
find_segs(const ty_tap_src_f32 *s, int64_t i0, int64_t rows, int64_t at, int64_t maxn,
          tap_seg *segs)
{
    int nsegs = 0;
    for (int64_t i = 0; i < rows;) {
        int64_t row = i0 + i, tap = row / s->C, c = row % s->C, kj = tap % s->kw;
        int64_t n = s->dw == 1 ? (s->kw - kj) * s->C - c : s->C - c;
        n = n < rows - i ? n : rows - i;
        n = n < maxn ? n : maxn;
        segs[nsegs++] = (tap_seg){tap / s->kw, kj, c, n, at + i};
        i += n;
    }
    return nsegs;
}

void
ty_tap_pack_f32(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc, int width,
                float *dst)
{
    enum { MAX_SEGS = 64 };
    const ty_tap_src_f32 *s = ctx;
    const int64_t ohw = s->OH * s->OW;
    int avx512 = 0, avx2 = 0;
#ifdef FILTER_X86
    avx512 = use_avx512();
    avx2 = use_avx2();
#endif
    tap_seg segs[MAX_SEGS];
    for (int64_t r0 = 0; r0 < len; r0 += MAX_SEGS) {
        int64_t rows = len - r0 < MAX_SEGS ? len - r0 : MAX_SEGS;
        int nsegs = find_segs(s, i0 + r0, rows, r0, avx512 ? TILE : rows, segs);
        for (int64_t p = 0; p < kc;) { /* runs of pixels within one output row */
            int64_t q = k0 + p, img = q / ohw, oh = q % ohw / s->OW, ow = q % s->OW;
            int64_t np = s->OW - ow < kc - p ? s->OW - ow : kc - p;
            const float *x = s->x + img * s->H * s->W * s->C;
            for (int u = 0; u < nsegs; u++) {
#ifdef FILTER_X86
                if (avx512) {
                    seg_avx512(s, &segs[u], x, oh, ow, np, width, dst + p * width);
                    continue;
                }
                if (avx2) {
                    seg_avx2(s, &segs[u], x, oh, ow, np, width, dst + p * width);
                    continue;
                }
#endif
                seg_generic(s, &segs[u], x, oh, ow, np, width, dst + p * width);
            }
            p += np;
        }
    }
    for (int64_t p = 0; p < kc && len < width; p++) {
        memset(dst + p * width + len, 0, sizeof(float) * (size_t)(width - len));
    }
}

/* ---- Winograd F(2x2, 3x3) for the filter gradient ----
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1],
 * G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Each loop runs over a block of channels
 * (contiguous in the pixel-major layouts), which the compiler vectorizes; every value goes
 * through the same operations whatever the block, thread or ISA. */
enum { WF_CB = 64 };

/* One tile's 4x4 input values for channels [c0, c0 + cn), zeros outside the image. */
static void
x_tile(const ty_wino_filter_geom *g, const float *img, int64_t ih0, int64_t iw0, int64_t c0,
       int64_t cn, float d[4][4][WF_CB])
{
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++) {
            int64_t ih = ih0 + i, iw = iw0 + j;
            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) {
                memset(d[i][j], 0, sizeof(float) * (size_t)cn);
            } else {
                memcpy(d[i][j], img + (ih * g->W + iw) * g->C + c0, sizeof(float) * (size_t)cn);
            }
        }
    }
}

static TY_CLONES void
x_transform(float d[restrict 4][4][WF_CB], int64_t cn, float *restrict out, int64_t xi_stride)
{
    float t[4][4][WF_CB];
    for (int j = 0; j < 4; j++) {
        for (int64_t c = 0; c < cn; c++) {
            t[0][j][c] = d[0][j][c] - d[2][j][c];
            t[1][j][c] = d[1][j][c] + d[2][j][c];
            t[2][j][c] = d[2][j][c] - d[1][j][c];
            t[3][j][c] = d[1][j][c] - d[3][j][c];
        }
    }
    for (int i = 0; i < 4; i++) {
        float *o = out + i * 4 * xi_stride;
        for (int64_t c = 0; c < cn; c++) {
            o[c] = t[i][0][c] - t[i][2][c];
            o[xi_stride + c] = t[i][1][c] + t[i][2][c];
            o[2 * xi_stride + c] = t[i][2][c] - t[i][1][c];
            o[3 * xi_stride + c] = t[i][1][c] - t[i][3][c];
        }
    }
}

/* The transforms run over ranges of tiles in parallel (where the call is not inside a
 * parallel region already): each tile writes its own entries. */
enum { TILES_PIECE = 16 };

typedef struct tiles_job {
    const ty_wino_filter_geom *g;
    const float *src;
    float *dst;
} tiles_job;

static void
x_tiles(void *ctx, int64_t begin, int64_t end)
{
    const tiles_job *j = ctx;
    const ty_wino_filter_geom *g = j->g;
    const float *x = j->src;
    float *V = j->dst;
    const int64_t xi_stride = g->plane * g->C;
    float d[4][4][WF_CB];
    for (int64_t t = begin; t < end; t++) {
        int64_t img = t / (g->TH * g->TW), ty = t / g->TW % g->TH, tx = t % g->TW;
        const float *im = x + img * g->H * g->W * g->C;
        for (int64_t c0 = 0; c0 < g->C; c0 += WF_CB) {
            int64_t cn = g->C - c0 < WF_CB ? g->C - c0 : WF_CB;
            x_tile(g, im, 2 * ty - g->ph, 2 * tx - g->pw, c0, cn, d);
            x_transform(d, cn, V + t * g->C + c0, xi_stride);
        }
    }
}

void
ty_wino_filter_x_f32(const ty_wino_filter_geom *g, const float *x, float *V)
{
    tiles_job j = {g, x, V};
    ty_parallel_for(g->nimg * g->TH * g->TW, TILES_PIECE, x_tiles, &j);
}

static TY_CLONES void
dy_transform(const float *restrict e00, const float *restrict e01, const float *restrict e10,
             const float *restrict e11, int64_t n, float *restrict out, int64_t xi_stride)
{
    float r[4][2][WF_CB]; /* rows: A e (4 x 2) */
    for (int64_t o = 0; o < n; o++) {
        r[0][0][o] = e00[o];
        r[0][1][o] = e01[o];
        r[1][0][o] = e00[o] + e10[o];
        r[1][1][o] = e01[o] + e11[o];
        r[2][0][o] = e00[o] - e10[o];
        r[2][1][o] = e01[o] - e11[o];
        r[3][0][o] = -e10[o];
        r[3][1][o] = -e11[o];
    }
    for (int i = 0; i < 4; i++) { /* columns: (A e) A^T (4 x 4) */
        float *restrict p = out + i * 4 * xi_stride;
        for (int64_t o = 0; o < n; o++) {
            p[o] = r[i][0][o];
            p[xi_stride + o] = r[i][0][o] + r[i][1][o];
            p[2 * xi_stride + o] = r[i][0][o] - r[i][1][o];
            p[3 * xi_stride + o] = -r[i][1][o];
        }
    }
}

static void
dy_tiles(void *ctx, int64_t begin, int64_t end)
{
    const tiles_job *j = ctx;
    const ty_wino_filter_geom *g = j->g;
    const float *dy = j->src;
    float *U = j->dst;
    const int64_t xi_stride = g->plane * g->OC;
    const float *e[4];
    float zbuf[WF_CB] = {0};
    for (int64_t t = begin; t < end; t++) {
        int64_t img = t / (g->TH * g->TW), ty = t / g->TW % g->TH, tx = t % g->TW;
        const float *im = dy + img * g->OH * g->OW * g->OC;
        for (int64_t o0 = 0; o0 < g->OC; o0 += WF_CB) {
            int64_t on = g->OC - o0 < WF_CB ? g->OC - o0 : WF_CB;
            for (int a = 0; a < 2; a++) {
                for (int b = 0; b < 2; b++) {
                    int64_t oh = 2 * ty + a, ow = 2 * tx + b;
                    e[a * 2 + b] = oh < g->OH && ow < g->OW ? im + (oh * g->OW + ow) * g->OC + o0
                                                            : zbuf;
                }
            }
            dy_transform(e[0], e[1], e[2], e[3], on, U + t * g->OC + o0, xi_stride);
        }
    }
}

void
ty_wino_filter_dy_f32(const ty_wino_filter_geom *g, const float *dy, float *U)
{
    tiles_job j = {g, dy, U};
    ty_parallel_for(g->nimg * g->TH * g->TW, TILES_PIECE, dy_tiles, &j);
}

static TY_CLONES void
out_transform(const float *M, int64_t plane, int64_t n, float *dw)
{
    for (int64_t q = 0; q < n; q++) {
        float m[4][4], r[3][4];
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 4; j++) {
                m[i][j] = M[(i * 4 + j) * plane + q];
            }
        }
        for (int j = 0; j < 4; j++) { /* G^T M */
            float s = m[1][j] + m[2][j];
            r[0][j] = m[0][j] + 0.5f * s;
            r[1][j] = 0.5f * (m[1][j] - m[2][j]);
            r[2][j] = 0.5f * s + m[3][j];
        }
        for (int a = 0; a < 3; a++) { /* (G^T M) G */
            float s = r[a][1] + r[a][2];
            dw[q * 9 + a * 3] = r[a][0] + 0.5f * s;
            dw[q * 9 + a * 3 + 1] = 0.5f * (r[a][1] - r[a][2]);
            dw[q * 9 + a * 3 + 2] = 0.5f * s + r[a][3];
        }
    }
}

void
ty_wino_filter_out_f32(const float *M, int64_t OC, int64_t C, int64_t o0, int64_t o1,
                       float *dw)
{
    out_transform(M + o0 * C, OC * C, (o1 - o0) * C, dw + o0 * C * 9);
}

/* ---- the flipped weight of backward-data ----
 * In tiles of TILE x TILE channel pairs so that both sides stay in cache (a 512 x 512 3x3
 * weight is 9 MiB). */

/* whether any of the n floats has an exponent of all ones */
static int
nonfinite_generic(const float *v, int64_t n)
{
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

static int
flip_generic(const float *w, int64_t OCg, int64_t Cg, int64_t kk, int64_t o0, int64_t o1,
             int64_t c0, int64_t c1, float *wt)
{
    int bad = 0;
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t o = o0; o < o1; o++) {
            const float *src = w + (o * Cg + c) * kk;
            float *dst = wt + (c * OCg + o) * kk;
            for (int64_t k = 0; k < kk; k++) {
                dst[kk - 1 - k] = src[k];
            }
            bad |= nonfinite_generic(src, kk);
        }
    }
    return bad;
}

#ifdef FILTER_X86
/* kk <= 16: one masked load, a lane reversal and a masked store per kernel. */
AVX512 static int
flip_avx512(const float *w, int64_t OCg, int64_t Cg, int64_t kk, int64_t o0, int64_t o1,
            int64_t c0, int64_t c1, float *wt)
{
    __mmask16 m = (__mmask16)((1u << kk) - 1);
    __m512i rev = _mm512_sub_epi32(_mm512_set1_epi32((int)kk - 1),
                                   _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                                    3, 2, 1, 0));
    __m512i expo = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t o = o0; o < o1; o++) {
            __m512 v = _mm512_maskz_loadu_ps(m, w + (o * Cg + c) * kk);
            __m512i e = _mm512_and_si512(_mm512_castps_si512(v), expo);
            bad |= _mm512_mask_cmpeq_epi32_mask(m, e, expo);
            /* lanes past kk hold index < 0 wrapped: they are masked off on the store */
            _mm512_mask_storeu_ps(wt + (c * OCg + o) * kk, m, _mm512_permutexvar_ps(rev, v));
        }
    }
    return bad != 0;
}
#endif

typedef struct flip_job {
    const float *w;
    int64_t OCg, Cg, kk, otiles;
    float *wt;
    atomic_int bad;
} flip_job;

/* pieces [begin, end) of (group, TILE output channels): disjoint parts of wt */
static void
flip_range(void *ctx, int64_t begin, int64_t end)
{
    flip_job *j = ctx;
    int bad = 0, avx512 = 0;
#ifdef FILTER_X86
    avx512 = use_avx512() && j->kk <= TILE;
#endif
    for (int64_t piece = begin; piece < end; piece++) {
        int64_t gi = piece / j->otiles, o0 = piece % j->otiles * TILE;
        int64_t o1 = o0 + TILE < j->OCg ? o0 + TILE : j->OCg;
        const float *wg = j->w + gi * j->OCg * j->Cg * j->kk;
        float *tg = j->wt + gi * j->OCg * j->Cg * j->kk;
        for (int64_t c0 = 0; c0 < j->Cg; c0 += TILE) {
            int64_t c1 = c0 + TILE < j->Cg ? c0 + TILE : j->Cg;
#ifdef FILTER_X86
            if (avx512) {
                bad |= flip_avx512(wg, j->OCg, j->Cg, j->kk, o0, o1, c0, c1, tg);
                continue;
            }
#endif
            bad |= flip_generic(wg, j->OCg, j->Cg, j->kk, o0, o1, c0, c1, tg);
        }
    }
    if (bad) {
        atomic_store(&j->bad, 1);
    }
}

/* In parallel pieces of TILE output channels of a group (each about TILE x Cg kernels) where
 * the call is not inside a parallel region already. */
int
ty_flip_weight_f32(const float *w, int64_t G, int64_t OCg, int64_t Cg, int64_t kk, float *wt)
{
    flip_job j = {.w = w, .OCg = OCg, .Cg = Cg, .kk = kk, .otiles = (OCg + TILE - 1) / TILE,
                  .wt = wt};
    atomic_init(&j.bad, 0);
    int64_t per = TILE * Cg * kk; /* floats a piece */
    ty_parallel_for(G * j.otiles, per >= 16384 ? 1 : 16384 / (per > 0 ? per : 1), flip_range,
                    &j);
    return atomic_load(&j.bad);
}

/* ---- Winograd F(2x2, 3x3) for the input gradient ---- */

/* Kernels (o, c0 + c), c < n: G w' G^T into the 16 planes at out (plane floats apart),
 * vectorized over c from a tap-major copy; returns 1 if any tap is an infinity or a NaN. */
static TY_CLONES int
wino_weight_block(const float *restrict k, int64_t n, float *restrict out, int64_t plane)
{
    float g[9][WF_CB], s[4][3][WF_CB];
    uint32_t bad = 0;
    for (int64_t c = 0; c < n; c++) {
        for (int t = 0; t < 9; t++) {
            g[8 - t][c] = k[c * 9 + t]; /* the flipped kernel: taps reversed in both dims */
        }
    }
    for (int t = 0; t < 9; t++) {
        for (int64_t c = 0; c < n; c++) {
            uint32_t u;
            memcpy(&u, &g[t][c], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
    }
    for (int b = 0; b < 3; b++) { /* G g */
        for (int64_t c = 0; c < n; c++) {
            s[0][b][c] = g[b][c];
            s[1][b][c] = 0.5f * (g[b][c] + g[3 + b][c] + g[6 + b][c]);
            s[2][b][c] = 0.5f * (g[b][c] - g[3 + b][c] + g[6 + b][c]);
            s[3][b][c] = g[6 + b][c];
        }
    }
    for (int i = 0; i < 4; i++) { /* (G g) G^T */
        float *o0 = out + (i * 4) * plane, *o1 = o0 + plane, *o2 = o1 + plane, *o3 = o2 + plane;
        for (int64_t c = 0; c < n; c++) {
            o0[c] = s[i][0][c];
            o1[c] = 0.5f * (s[i][0][c] + s[i][1][c] + s[i][2][c]);
            o2[c] = 0.5f * (s[i][0][c] - s[i][1][c] + s[i][2][c]);
            o3[c] = s[i][2][c];
        }
    }
    return bad != 0;
}

typedef struct wino_weight_job {
    const float *w;
    int64_t OC, C;
    float *Wt;
    atomic_int bad;
} wino_weight_job;

/* output channels [begin, end): disjoint parts of Wt, so any split gives the same bits */
static void
wino_weight_range(void *ctx, int64_t begin, int64_t end)
{
    wino_weight_job *j = ctx;
    int bad = 0;
    for (int64_t o = begin; o < end; o++) {
        for (int64_t c0 = 0; c0 < j->C; c0 += WF_CB) {
            int64_t n = j->C - c0 < WF_CB ? j->C - c0 : WF_CB;
            bad |= wino_weight_block(j->w + (o * j->C + c0) * 9, n, j->Wt + o * j->C + c0,
                                     j->OC * j->C);
        }
    }
    if (bad) {
        atomic_store(&j->bad, 1);
    }
}

int
ty_wino_data_weight_f32(const float *w, int64_t OC, int64_t C, float *Wt)
{
    wino_weight_job j = {.w = w, .OC = OC, .C = C, .Wt = Wt};
    atomic_init(&j.bad, 0);
    /* about 16 x 64 x 64 floats a piece: worth a thread */
    int64_t grain = C >= 4096 ? 1 : 4096 / (C > 0 ? C : 1);
    ty_parallel_for(OC, grain, wino_weight_range, &j);
    return atomic_load(&j.bad);
}

static TY_CLONES void
data_out_tile(const float *restrict M, int64_t xi_stride, int64_t n, float y[2][2][WF_CB])
{
    float r[2][4][WF_CB]; /* A^T M (2 x 4) */
    for (int j = 0; j < 4; j++) {
        const float *m0 = M + j * xi_stride, *m1 = M + (4 + j) * xi_stride;
        const float *m2 = M + (8 + j) * xi_stride, *m3 = M + (12 + j) * xi_stride;
        for (int64_t c = 0; c < n; c++) {
            r[0][j][c] = m0[c] + m1[c] + m2[c];
            r[1][j][c] = m1[c] - m2[c] - m3[c];
        }
    }
    for (int a = 0; a < 2; a++) { /* (A^T M) A */
        for (int64_t c = 0; c < n; c++) {
            y[a][0][c] = r[a][0][c] + r[a][1][c] + r[a][2][c];
            y[a][1][c] = r[a][1][c] - r[a][2][c] - r[a][3][c];
        }
    }
}

void
ty_wino_data_out_f32(const ty_wino_filter_geom *g, const float *M, int64_t C, float *dx)
{
    const int64_t T = g->nimg * g->TH * g->TW, xi_stride = g->plane * C;
    float y[2][2][WF_CB];
    for (int64_t t = 0; t < T; t++) {
        int64_t img = t / (g->TH * g->TW), ty = t / g->TW % g->TH, tx = t % g->TW;
        float *im = dx + img * g->OH * g->OW * C;
        for (int64_t c0 = 0; c0 < C; c0 += WF_CB) {
            int64_t cn = C - c0 < WF_CB ? C - c0 : WF_CB;
            data_out_tile(M + t * C + c0, xi_stride, cn, y);
            for (int a = 0; a < 2; a++) {
                for (int b = 0; b < 2; b++) {
                    int64_t oh = 2 * ty + a, ow = 2 * tx + b;
                    if (oh < g->OH && ow < g->OW) {
                        memcpy(im + (oh * g->OW + ow) * C + c0, y[a][b],
                               sizeof(float) * (size_t)cn);
                    }
                }
            }
        }
    }
}
