/* RoI align / RoI pooling and remap / warp_perspective sampling (see vision.h).
 *
 * Both families are "sample, then weigh": a bin or an output pixel reads a few input cells
 * with weights. One function per family lists those cells and weights (roi_bin_* and
 * warp_taps), and the forward and the backward both walk that list, so the two passes always
 * agree on which cells a value came from. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/vision.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VISION_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))
#else
#define VISION_X86 0
#endif

enum { MIN_CHUNK_WORK = 1 << 14 };

/* ===================== RoI align / RoI pooling ===================== */
/* One bilinear sample of an H x W plane (MegEngine's rule): the 4 cells around the point,
 * each read as 0 (and given no gradient) when it lies outside the plane. */
typedef struct bilinear {
    int n;
    int64_t idx[4];
    double w[4];
} bilinear;

static void
bilinear_at(int64_t H, int64_t W, double y, double x, bilinear *b)
{
    b->n = 0;
    if (!(y > -1.0 && y < (double)H && x > -1.0 && x < (double)W)) {
        return; /* no cell around the point (NaN included) */
    }
    double fy = floor(y), fx = floor(x), ly = y - fy, lx = x - fx;
    int64_t y0 = (int64_t)fy, x0 = (int64_t)fx;
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 2; j++) {
            int64_t r = y0 + i, c = x0 + j;
            if (r >= 0 && r < H && c >= 0 && c < W) {
                b->idx[b->n] = r * W + c;
                b->w[b->n++] = (i ? ly : 1.0 - ly) * (j ? lx : 1.0 - lx);
            }
        }
    }
}

/* The geometry of one RoI: where its bins start and how big they are. */
typedef struct roi_box {
    int64_t batch;
    double y0, x0, bin_h, bin_w; /* align */
    int64_t grid_h, grid_w;      /* align: samples per bin */
    double ry0, rx0;             /* pooling: the rounded box start */
} roi_box;

static int64_t
adaptive_grid(int64_t fixed, double extent, int64_t bins)
{
    if (fixed > 0) {
        return fixed;
    }
    double n = ceil(extent / (double)bins);
    return n > 0 ? (int64_t)n : 0;
}

static void
roi_box_of(const ty_roi_geom *g, const double *r, roi_box *b)
{
    *b = (roi_box){.batch = (int64_t)r[0]};
    if (g->pooling) {
        double x0 = round(r[1] * g->scale), y0 = round(r[2] * g->scale);
        double x1 = round(r[3] * g->scale), y1 = round(r[4] * g->scale);
        double h = fmax(y1 - y0 + 1.0, 1.0), w = fmax(x1 - x0 + 1.0, 1.0);
        b->ry0 = y0;
        b->rx0 = x0;
        b->bin_h = h / (double)g->OH;
        b->bin_w = w / (double)g->OW;
        return;
    }
    b->x0 = r[1] * g->scale - g->offset;
    b->y0 = r[2] * g->scale - g->offset;
    /* a reversed box is empty: every sample sits at its start (MegEngine's rule) */
    double w = fmax(r[3] * g->scale - g->offset - b->x0, 0.0);
    double h = fmax(r[4] * g->scale - g->offset - b->y0, 0.0);
    b->bin_h = h / (double)g->OH;
    b->bin_w = w / (double)g->OW;
    b->grid_h = adaptive_grid(g->sample_h, h, g->OH);
    b->grid_w = adaptive_grid(g->sample_w, w, g->OW);
}

/* Cell range [lo, hi) of pooling bin o along an axis of length L. */
static void
pool_bin(double start, double bin, int64_t o, int64_t L, int64_t *lo, int64_t *hi)
{
    double a = floor((double)o * bin) + start, e = ceil((double)(o + 1) * bin) + start;
    a = fmin(fmax(a, 0.0), (double)L);
    e = fmin(fmax(e, 0.0), (double)L);
    *lo = (int64_t)a;
    *hi = (int64_t)e;
}

/* Visits the cells of bin (oh, ow) of box b with their weights: average: every sample of an
 * align bin (bilinear weights / count) or every cell of a pooling bin (1 / count); max: the
 * argmax sample of x (its bilinear weights) or the argmax cell (weight 1). A visit either
 * adds w * v[cell] to the returned sum (dx NULL) or adds w * d into dx[cell]. */
#define DEFINE_ROI(T, SFX)                                                                          \
    static double roi_cell_##SFX(const T *v, T *dx, int64_t i, double w, double d)                \
    {                                                                                               \
        if (dx) {                                                                                   \
            dx[i] = (T)((double)dx[i] + w * d);                                                     \
            return 0;                                                                               \
        }                                                                                           \
        return w * (double)v[i];                                                                    \
    }                                                                                               \
    static double roi_pool_bin_##SFX(const ty_roi_geom *g, const roi_box *b, const T *xp,          \
                                     int64_t oh, int64_t ow, const T *v, T *dx, double d)           \
    {                                                                                               \
        int64_t h0, h1, w0, w1;                                                                     \
        pool_bin(b->ry0, b->bin_h, oh, g->H, &h0, &h1);                                     \
        pool_bin(b->rx0, b->bin_w, ow, g->W, &w0, &w1);                                     \
        if (h1 <= h0 || w1 <= w0) {                                                                 \
            return 0;                                                                               \
        }                                                                                           \
        if (g->is_max) {                                                                            \
            int64_t best = h0 * g->W + w0;                                                          \
            for (int64_t h = h0; h < h1; h++) {                                                     \
                for (int64_t x = w0; x < w1; x++) {                                                 \
                    T c = xp[h * g->W + x], m = xp[best];                                           \
                    if (c > m || (isnan(c) && !isnan(m))) {                                         \
                        best = h * g->W + x;                                                        \
                    }                                                                               \
                }                                                                                   \
            }                                                                                       \
            return roi_cell_##SFX(v, dx, best, 1.0, d);                                             \
        }                                                                                           \
        double inv = 1.0 / (double)((h1 - h0) * (w1 - w0)), s = 0;                                  \
        for (int64_t h = h0; h < h1; h++) {                                                         \
            for (int64_t x = w0; x < w1; x++) {                                                     \
                s += roi_cell_##SFX(v, dx, h * g->W + x, inv, d);                                   \
            }                                                                                       \
        }                                                                                           \
        return s;                                                                                   \
    }                                                                                               \
    static double roi_align_bin_##SFX(const ty_roi_geom *g, const roi_box *b, const T *xp,         \
                                      int64_t oh, int64_t ow, const T *v, T *dx, double d,          \
                                      const bilinear *tab)                                          \
    {                                                                                               \
        double count = (double)(b->grid_h * b->grid_w), s = 0, best_v = 0;                          \
        bilinear best = {0};                                                                        \
        int have = 0;                                                                               \
        if (tab && !g->is_max && !dx) { /* the forward average from a table: a plain gather */ \
            for (int64_t i = 0; i < b->grid_h * b->grid_w; i++) {                                   \
                for (int k = 0; k < tab[i].n; k++) {                                                \
                    s += tab[i].w[k] * (double)v[tab[i].idx[k]];                                    \
                }                                                                                   \
            }                                                                                       \
            return s;                                                                               \
        }                                                                                           \
        for (int64_t iy = 0; iy < b->grid_h; iy++) {                                                \
            for (int64_t ix = 0; ix < b->grid_w; ix++) {                                            \
                bilinear own;                                                                       \
                const bilinear *pp = tab ? &tab[iy * b->grid_w + ix] : &own;                        \
                if (!tab) {                                                                         \
                    double y = b->y0 + (double)oh * b->bin_h +                                      \
                               ((double)iy + 0.5) * b->bin_h / (double)b->grid_h;                   \
                    double x = b->x0 + (double)ow * b->bin_w +                                      \
                               ((double)ix + 0.5) * b->bin_w / (double)b->grid_w;                   \
                    bilinear_at(g->H, g->W, y, x, &own);                                            \
                }                                                                                   \
                if (!g->is_max) { /* a table holds the average's weights divided already */        \
                    for (int k = 0; k < pp->n; k++) {                                               \
                        s += roi_cell_##SFX(v, dx, pp->idx[k], tab ? pp->w[k] : pp->w[k] / count,   \
                                            d);                                                     \
                    }                                                                               \
                    continue;                                                                       \
                }                                                                                   \
                double c = 0;                                                                       \
                for (int k = 0; k < pp->n; k++) {                                                   \
                    c += pp->w[k] * (double)xp[pp->idx[k]];                                         \
                }                                                                                   \
                if (!have || c > best_v || (isnan(c) && !isnan(best_v))) {                          \
                    have = 1;                                                                       \
                    best_v = c;                                                                     \
                    best = *pp;                                                                     \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        for (int k = 0; k < best.n; k++) {                                                          \
            s += roi_cell_##SFX(v, dx, best.idx[k], best.w[k], d);                                  \
        }                                                                                           \
        return s;                                                                                   \
    }                                                                                               \
    static double roi_bin_##SFX(const ty_roi_geom *g, const roi_box *b, const T *xp, int64_t oh,  \
                                int64_t ow, const T *v, T *dx, double d, const bilinear *tab)       \
    {                                                                                               \
        return g->pooling ? roi_pool_bin_##SFX(g, b, xp, oh, ow, v, dx, d)                          \
                          : roi_align_bin_##SFX(g, b, xp, oh, ow, v, dx, d,                         \
                                                tab ? tab + (oh * g->OW + ow) * b->grid_h *         \
                                                              b->grid_w                             \
                                                    : NULL);                                        \
    }                                                                                               \
    /* forward unit: channels [c0, c1) of box k */                                               \
    static void roi_fwd_unit_##SFX(const roi_ctx *c, int64_t k, int64_t c0, int64_t c1,           \
                                   bilinear *buf)                                                   \
    {                                                                                               \
        const ty_roi_geom *g = c->g;                                                                \
        roi_box b;                                                                                  \
        roi_box_of(g, c->rois + k * 5, &b);                                                         \
        const bilinear *tab = roi_table(g, &b, buf);                                                \
        for (int64_t ch = c0; ch < c1; ch++) {                                                      \
            int64_t plane = (b.batch * g->C + ch) * g->H * g->W;                                    \
            const T *xp = (const T *)c->x + plane, *vp = (const T *)c->v + plane;                   \
            T *y = (T *)c->y + (k * g->C + ch) * g->OH * g->OW;                                     \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                                \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                            \
                    y[oh * g->OW + ow] = (T)roi_bin_##SFX(g, &b, xp, oh, ow, vp, NULL, 0, tab);     \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    /* backward unit: channels [c0, c1) of input image bt, its boxes in order */                   \
    static void roi_bwd_unit_##SFX(const roi_ctx *c, int64_t bt, int64_t c0, int64_t c1,          \
                                   bilinear *buf)                                                   \
    {                                                                                               \
        const ty_roi_geom *g = c->g;                                                                \
        for (int64_t k = 0; k < g->K; k++) {                                                        \
            roi_box b;                                                                              \
            roi_box_of(g, c->rois + k * 5, &b);                                                     \
            if (b.batch != bt) {                                                                    \
                continue;                                                                           \
            }                                                                                       \
            const bilinear *tab = roi_table(g, &b, buf);                                            \
            for (int64_t ch = c0; ch < c1; ch++) {                                                  \
                int64_t plane = (bt * g->C + ch) * g->H * g->W;                                     \
                const T *xp = (const T *)c->x + plane;                                              \
                T *dx = (T *)c->y + plane;                                                          \
                const T *dy = (const T *)c->v + (k * g->C + ch) * g->OH * g->OW;                    \
                for (int64_t oh = 0; oh < g->OH; oh++) {                                            \
                    for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                        roi_bin_##SFX(g, &b, xp, oh, ow, NULL, dx, (double)dy[oh * g->OW + ow],     \
                                      tab);                                                         \
                    }                                                                               \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }

/* The bilinear samples of every bin of an align box, computed once for all its channels (in
 * buf, ROI_TAB entries): NULL when they do not fit (or buf is NULL), and each sample is then
 * recomputed where it is used, with the same bits. */
enum { ROI_TAB = 4096 };

static const bilinear *
roi_table(const ty_roi_geom *g, const roi_box *b, bilinear *buf)
{
    if (g->pooling || !buf || b->grid_h * b->grid_w > ROI_TAB / (g->OH * g->OW)) {
        return NULL;
    }
    bilinear *p = buf;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        for (int64_t ow = 0; ow < g->OW; ow++) {
            for (int64_t iy = 0; iy < b->grid_h; iy++) {
                double y = b->y0 + (double)oh * b->bin_h +
                           ((double)iy + 0.5) * b->bin_h / (double)b->grid_h;
                for (int64_t ix = 0; ix < b->grid_w; ix++) {
                    double x = b->x0 + (double)ow * b->bin_w +
                               ((double)ix + 0.5) * b->bin_w / (double)b->grid_w;
                    bilinear_at(g->H, g->W, y, x, p);
                    for (int k = 0; k < p->n && !g->is_max; k++) {
                        p->w[k] /= (double)(b->grid_h * b->grid_w);
                    }
                    p++;
                }
            }
        }
    }
    return buf;
}

typedef struct roi_ctx {
    const ty_roi_geom *g;
    const double *rois;
    const void *x, *v;
    void *y;
    int f64, bwd;
    int avg32;      /* float32 average align: roi_avg_unit_f32 */
    ty_isa isa;     /* of its gathers, fixed for the whole call */
    int64_t cblock; /* channels per unit */
} roi_ctx;

DEFINE_ROI(float, f32)
DEFINE_ROI(double, f64)

/* ---- float32 average RoI align: 16-lane sums ----
 * A bin's taps (4 per sample, the sample's bilinear cells, weights divided by the sample
 * count; -1 where a cell lies outside the image) are summed in float over 16 lanes, tap t
 * into lane t % 16, and the lanes then pairwise (lane l + lane l + 8, then + 4, + 2, + 1).
 * The portable loop and the AVX2 / AVX-512 gathers make the same operations in the same
 * order, so every path gives the same bits. */
enum { LANES = 16, ROI_FLAT = 1 << 14 };

/* The sample (iy, ix) of bin (oh, ow) of box b (as roi_table places it). */
static void
roi_sample(const ty_roi_geom *g, const roi_box *b, int64_t oh, int64_t ow, int64_t iy,
           int64_t ix, bilinear *s)
{
    double y = b->y0 + (double)oh * b->bin_h + ((double)iy + 0.5) * b->bin_h / (double)b->grid_h;
    double x = b->x0 + (double)ow * b->bin_w + ((double)ix + 0.5) * b->bin_w / (double)b->grid_w;
    bilinear_at(g->H, g->W, y, x, s);
}

/* Taps of bin (oh, ow) of box b, padded with empty taps to L (a multiple of LANES). */
static void
roi_flat_fill(const ty_roi_geom *g, const roi_box *b, int64_t oh, int64_t ow, int64_t L,
              int32_t *idx, float *w)
{
    double count = (double)(b->grid_h * b->grid_w);
    int64_t t = 0;
    for (int64_t iy = 0; iy < b->grid_h; iy++) {
        for (int64_t ix = 0; ix < b->grid_w; ix++) {
            bilinear s;
            roi_sample(g, b, oh, ow, iy, ix, &s);
            for (int k = 0; k < 4; k++, t++) {
                idx[t] = k < s.n ? (int32_t)s.idx[k] : -1;
                w[t] = k < s.n ? (float)(s.w[k] / count) : 0.0f;
            }
        }
    }
    for (; t < L; t++) {
        idx[t] = -1;
        w[t] = 0.0f;
    }
}

static float
lanes_tree(float *a)
{
    for (int step = LANES / 2; step >= 1; step /= 2) {
        for (int l = 0; l < step; l++) {
            a[l] = a[l] + a[l + step];
        }
    }
    return a[0];
}

static float
flat_sum_generic(const int32_t *idx, const float *w, int64_t L, const float *xp)
{
    float acc[LANES] = {0};
    for (int64_t t = 0; t < L; t += LANES) {
        for (int l = 0; l < LANES; l++) {
            float v = idx[t + l] >= 0 ? xp[idx[t + l]] : 0.0f;
            acc[l] = acc[l] + w[t + l] * v;
        }
    }
    return lanes_tree(acc);
}

/* The bin's sum with its taps made one at a time (no table): the same lanes and order. */
static float
roi_stream_bin(const ty_roi_geom *g, const roi_box *b, int64_t oh, int64_t ow, const float *xp)
{
    float acc[LANES] = {0};
    double count = (double)(b->grid_h * b->grid_w);
    int64_t t = 0;
    for (int64_t iy = 0; iy < b->grid_h; iy++) {
        for (int64_t ix = 0; ix < b->grid_w; ix++) {
            bilinear s;
            roi_sample(g, b, oh, ow, iy, ix, &s);
            for (int k = 0; k < 4; k++, t++) { /* an empty tap adds 0: skipped */
                if (k < s.n) {
                    acc[t % LANES] = acc[t % LANES] + (float)(s.w[k] / count) * xp[s.idx[k]];
                }
            }
        }
    }
    return lanes_tree(acc);
}

#if VISION_X86
/* lanes l + 4, then l + 2, then l + 1 of a 4-lane sum: lanes_tree's last steps */
static inline float
tree4(__m128 s4)
{
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

AVX512 static float
flat_sum_avx512(const int32_t *idx, const float *w, int64_t L, const float *xp)
{
    __m512 acc = _mm512_setzero_ps();
    for (int64_t t = 0; t < L; t += LANES) {
        __m512i vi = _mm512_loadu_si512(idx + t);
        __mmask16 ok = _mm512_cmpge_epi32_mask(vi, _mm512_setzero_si512());
        __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ok, vi, xp, 4);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(w + t), v));
    }
    __m256 lo = _mm512_castps512_ps256(acc);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    return tree4(_mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)));
}

AVX2 static float
flat_sum_avx2(const int32_t *idx, const float *w, int64_t L, const float *xp)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    const __m256i neg = _mm256_set1_epi32(-1);
    for (int64_t t = 0; t < L; t += LANES) {
        __m256i i0 = _mm256_loadu_si256((const __m256i *)(const void *)(idx + t));
        __m256i i1 = _mm256_loadu_si256((const __m256i *)(const void *)(idx + t + 8));
        __m256 v0 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xp, i0,
                                             _mm256_castsi256_ps(_mm256_cmpgt_epi32(i0, neg)), 4);
        __m256 v1 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xp, i1,
                                             _mm256_castsi256_ps(_mm256_cmpgt_epi32(i1, neg)), 4);
        lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(w + t), v0));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_loadu_ps(w + t + 8), v1));
    }
    __m256 s8 = _mm256_add_ps(lo, hi);
    return tree4(_mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)));
}
#endif

static float
flat_sum(ty_isa isa, const int32_t *idx, const float *w, int64_t L, const float *xp)
{
#if VISION_X86
    if (isa == TY_ISA_AVX512) {
        return flat_sum_avx512(idx, w, L, xp);
    }
    if (isa == TY_ISA_AVX2) {
        return flat_sum_avx2(idx, w, L, xp);
    }
#endif
    (void)isa;
    return flat_sum_generic(idx, w, L, xp);
}

/* Forward unit of the float32 average: channels [c0, c1) of box k, from a table of every
 * bin's taps (buf: ROI_FLAT entries) or, when it does not fit, one bin's taps at a time
 * (one: LANES entries, the sum streamed through the portable lanes: the same bits). */
static void
roi_avg_unit_f32(const roi_ctx *c, int64_t k, int64_t c0, int64_t c1, int32_t *bidx,
                 float *bw)
{
    const ty_roi_geom *g = c->g;
    roi_box b;
    roi_box_of(g, c->rois + k * 5, &b);
    int64_t bins = g->OH * g->OW;
    int64_t L = (b.grid_h * b.grid_w * 4 + LANES - 1) / LANES * LANES;
    int table = bidx && bins * L <= ROI_FLAT;
    for (int64_t q = 0; table && q < bins; q++) {
        roi_flat_fill(g, &b, q / g->OW, q % g->OW, L, bidx + q * L, bw + q * L);
    }
    for (int64_t ch = c0; ch < c1; ch++) {
        const float *xp = (const float *)c->x + (b.batch * g->C + ch) * g->H * g->W;
        float *y = (float *)c->y + (k * g->C + ch) * bins;
        for (int64_t q = 0; q < bins; q++) {
            y[q] = table ? flat_sum(c->isa, bidx + q * L, bw + q * L, L, xp)
                         : roi_stream_bin(g, &b, q / g->OW, q % g->OW, xp);
        }
    }
}

static void
roi_range(void *ctx, int64_t begin, int64_t end)
{
    const roi_ctx *c = ctx;
    int64_t blocks = (c->g->C + c->cblock - 1) / c->cblock;
    if (c->avg32) {
        int32_t *bidx = malloc(sizeof(int32_t) * ROI_FLAT);
        float *bw = malloc(sizeof(float) * ROI_FLAT);
        for (int64_t p = begin; p < end; p++) {
            int64_t c0 = (p % blocks) * c->cblock;
            int64_t c1 = c0 + c->cblock < c->g->C ? c0 + c->cblock : c->g->C;
            roi_avg_unit_f32(c, p / blocks, c0, c1, bidx && bw ? bidx : NULL, bw);
        }
        free(bidx);
        free(bw);
        return;
    }
    bilinear *buf = c->g->pooling ? NULL : malloc(sizeof(bilinear) * ROI_TAB);
    for (int64_t p = begin; p < end; p++) {
        int64_t a = p / blocks, c0 = (p % blocks) * c->cblock;
        int64_t c1 = c0 + c->cblock < c->g->C ? c0 + c->cblock : c->g->C;
        if (c->bwd) {
            if (c->f64) {
                roi_bwd_unit_f64(c, a, c0, c1, buf);
            } else {
                roi_bwd_unit_f32(c, a, c0, c1, buf);
            }
        } else if (c->f64) {
            roi_fwd_unit_f64(c, a, c0, c1, buf);
        } else {
            roi_fwd_unit_f32(c, a, c0, c1, buf);
        }
    }
    free(buf);
}

static void
roi_run_all(const ty_roi_geom *g, const double *rois, const void *x, const void *v, void *y,
            int f64, int bwd)
{
    /* units: channel blocks (sized by the shape alone) of a box (forward) or of an input
     * image (backward, its boxes in order: a dx cell's terms come in the same order for any
     * blocking) */
    roi_ctx c = {.g = g, .rois = rois, .x = x, .v = v, .y = y, .f64 = f64, .bwd = bwd,
                 .avg32 = !f64 && !bwd && !g->is_max && !g->pooling && x == v &&
                          g->H * g->W <= INT32_MAX,
                 .isa = ty_cpu_isa(), .cblock = g->C >= 16 ? g->C / 8 : 1};
    if (c.avg32 && g->K >= 16) {
        c.cblock = g->C; /* enough boxes to share out: each builds its table once */
    }
    if (g->C == 0) {
        return;
    }
    int64_t blocks = (g->C + c.cblock - 1) / c.cblock;
    int64_t per = g->OH * g->OW * 16 * c.cblock * (bwd ? (g->K / (g->N ? g->N : 1) + 1) : 1) + 1;
    ty_parallel_for((bwd ? g->N : g->K) * blocks, MIN_CHUNK_WORK / per + 1, roi_range, &c);
}

void
ty_roi_fwd_f32(const ty_roi_geom *g, const double *rois, const float *x, const float *v, float *y)
{
    roi_run_all(g, rois, x, v, y, 0, 0);
}

void
ty_roi_fwd_f64(const ty_roi_geom *g, const double *rois, const double *x, const double *v,
               double *y)
{
    roi_run_all(g, rois, x, v, y, 1, 0);
}

void
ty_roi_bwd_f32(const ty_roi_geom *g, const double *rois, const float *x, const float *dy,
               float *dx)
{
    roi_run_all(g, rois, x, dy, dx, 0, 1);
}

void
ty_roi_bwd_f64(const ty_roi_geom *g, const double *rois, const double *x, const double *dy,
               double *dx)
{
    roi_run_all(g, rois, x, dy, dx, 1, 1);
}

/* ===================== remap / warp_perspective ===================== */
/* Index of cell p along an axis of length len under the border mode; -1: the constant. */
static int64_t
border_index(int64_t p, int64_t len, int mode)
{
    if (p >= 0 && p < len) {
        return p;
    }
    int64_t period, q;
    switch (mode) {
    case TY_BORDER_REPLICATE: return p < 0 ? 0 : len - 1;
    case TY_BORDER_REFLECT: /* fedcba|abcdef|fedcba */
        period = 2 * len;
        q = ((p % period) + period) % period;
        return q < len ? q : period - 1 - q;
    case TY_BORDER_REFLECT_101: /* fedcb|abcdef|edcba */
        if (len == 1) {
            return 0;
        }
        period = 2 * len - 2;
        q = ((p % period) + period) % period;
        return q < len ? q : period - q;
    case TY_BORDER_WRAP: return ((p % len) + len) % len;
    default: return -1;
    }
}

enum { MAX_TAPS = 16 }; /* cubic: 4 x 4 cells */

typedef struct taps {
    int n, nan;
    int64_t idx[MAX_TAPS]; /* -1: the constant border value */
    double w[MAX_TAPS];
} taps;

/* Keys' cubic convolution weights (a = -0.75, as OpenCV and PyTorch) of the cells at offsets
 * -1, 0, 1, 2 from floor, for the fraction t. */
static void
cubic_weights(double t, double *w)
{
    const double a = -0.75;
    double d[4] = {t + 1.0, t, 1.0 - t, 2.0 - t};
    for (int i = 0; i < 4; i++) {
        double x = d[i];
        w[i] = x <= 1.0 ? ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                        : ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    }
}

/* Far-away coordinates are clamped first so that floor() fits an int64; every border mode
 * sees them as far outside all the same. */
static double
clamp_coord(double v)
{
    return v < -1e15 ? -1e15 : (v > 1e15 ? 1e15 : v);
}

/* The cells (-1: the constant border) and weights along one axis of length len of a sample
 * at coordinate s (not NaN, clamped): 1 (nearest), 2 (linear) or 4 (cubic) of them. */
typedef struct axis_taps {
    int k;
    int64_t cell[4];
    double w[4];
} axis_taps;

static inline void
axis_of(const ty_warp_geom *g, double s, int64_t len, axis_taps *a)
{
    if (g->interp == TY_INTERP_NEAREST) {
        a->k = 1;
        a->cell[0] = border_index((int64_t)round(s), len, g->border);
        a->w[0] = 1.0;
        return;
    }
    double f = floor(s), t = s - f;
    int64_t p0 = (int64_t)f, lo = 0;
    if (g->interp == TY_INTERP_CUBIC) {
        a->k = 4;
        lo = -1;
        cubic_weights(t, a->w);
    } else {
        a->k = 2;
        a->w[0] = 1.0 - t;
        a->w[1] = t;
    }
    if (p0 + lo >= 0 && p0 + lo + a->k <= len) { /* inside: no border mode applies */
        for (int i = 0; i < a->k; i++) {
            a->cell[i] = p0 + lo + i;
        }
        return;
    }
    for (int i = 0; i < a->k; i++) {
        a->cell[i] = border_index(p0 + lo + i, len, g->border);
    }
}

/* The 2-D taps: rows of ay times columns of ax, row-major. */
static void
taps_combine(const ty_warp_geom *g, const axis_taps *ay, const axis_taps *ax, taps *t)
{
    t->nan = 0;
    t->n = ay->k * ax->k;
    for (int i = 0; i < ay->k; i++) {
        for (int j = 0; j < ax->k; j++) {
            t->idx[i * ax->k + j] =
                ay->cell[i] < 0 || ax->cell[j] < 0 ? -1 : ay->cell[i] * g->W + ax->cell[j];
            t->w[i * ax->k + j] = ay->w[i] * ax->w[j];
        }
    }
}

static void
warp_taps(const ty_warp_geom *g, double sx, double sy, taps *t)
{
    t->nan = isnan(sx) || isnan(sy);
    t->n = 0;
    if (t->nan) {
        return;
    }
    axis_taps ax, ay;
    axis_of(g, clamp_coord(sx), g->W, &ax);
    axis_of(g, clamp_coord(sy), g->H, &ay);
    taps_combine(g, &ay, &ax, t);
}

static void
warp_coord(const ty_warp_geom *g, int64_t n, int64_t oh, int64_t ow, double *sx, double *sy)
{
    if (g->map) {
        const double *m = g->map + ((n * g->OH + oh) * g->OW + ow) * 2;
        *sx = m[0];
        *sy = m[1];
        return;
    }
    const double *M = g->mat + n * 9;
    double u = (double)ow, v = (double)oh;
    double d = M[6] * u + M[7] * v + M[8];
    *sx = (M[0] * u + M[1] * v + M[2]) / d;
    *sy = (M[3] * u + M[4] * v + M[5]) / d;
}

/* What one output pixel reads: its in-image cells and weights, and the constant border's
 * share (sum of the outside cells' weights times border_val; NaN for a NaN coordinate). The
 * forward and the backward both use it, computed once per output row and shared by every
 * channel; the sum is cterm + w[0] x[idx[0]] + ... in that order, for every channel. */
typedef struct wrec {
    int64_t idx[MAX_TAPS];
    double w[MAX_TAPS];
    double cterm;
    int n;
} wrec;

static void
warp_rec(const ty_warp_geom *g, int64_t n, int64_t oh, int64_t ow, wrec *r)
{
    double sx, sy;
    taps t;
    warp_coord(g, n, oh, ow, &sx, &sy);
    warp_taps(g, sx, sy, &t);
    r->n = 0;
    r->cterm = t.nan ? NAN : 0.0;
    for (int i = 0; i < t.n; i++) {
        if (t.idx[i] < 0) {
            r->cterm += t.w[i] * g->border_val;
        } else {
            r->idx[r->n] = t.idx[i];
            r->w[r->n++] = t.w[i];
        }
    }
}

typedef struct warp_ctx {
    const ty_warp_geom *g;
    const void *src;
    void *dst;
    int f64, bwd;
    int plan;       /* float32 through row plans (see there) */
    ty_isa isa;     /* of the plans' gathers, fixed for the whole call */
    int64_t cblock; /* backward: channels per unit */
} warp_ctx;

/* The records of output row oh of image n: into buf (OW entries), or NULL when buf is NULL
 * (no memory: each pixel is then recomputed per channel, with the same bits). */
static const wrec *
warp_row(const ty_warp_geom *g, int64_t n, int64_t oh, wrec *buf)
{
    if (!buf) {
        return NULL;
    }
    for (int64_t ow = 0; ow < g->OW; ow++) {
        warp_rec(g, n, oh, ow, &buf[ow]);
    }
    return buf;
}

static const wrec *
rec_at(const ty_warp_geom *g, const wrec *row, int64_t n, int64_t oh, int64_t ow, wrec *one)
{
    if (row) {
        return &row[ow];
    }
    warp_rec(g, n, oh, ow, one);
    return one;
}

#define DEFINE_WARP(T, SFX)                                                                         \
    /* forward unit: output row oh of image n, every channel */                                    \
    static void warp_fwd_row_##SFX(const warp_ctx *c, int64_t n, int64_t oh, wrec *buf)            \
    {                                                                                               \
        const ty_warp_geom *g = c->g;                                                               \
        const wrec *row = warp_row(g, n, oh, buf);                                                  \
        for (int64_t ch = 0; ch < g->C; ch++) {                                                     \
            const T *xp = (const T *)c->src + (g->src_batch[n] * g->C + ch) * g->H * g->W;          \
            T *yp = (T *)c->dst + ((n * g->C + ch) * g->OH + oh) * g->OW;                           \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                                \
                wrec one;                                                                           \
                const wrec *r = rec_at(g, row, n, oh, ow, &one);                                    \
                double s = r->cterm;                                                                \
                for (int i = 0; i < r->n; i++) {                                                    \
                    s += r->w[i] * (double)xp[r->idx[i]];                                           \
                }                                                                                   \
                yp[ow] = (T)s;                                                                      \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    /* backward unit: channels [c0, c1) of input image b, every output image reading it */        \
    static void warp_bwd_unit_##SFX(const warp_ctx *c, int64_t b, int64_t c0, int64_t c1,         \
                                    wrec *buf)                                                      \
    {                                                                                               \
        const ty_warp_geom *g = c->g;                                                               \
        for (int64_t n = 0; n < g->ON; n++) {                                                       \
            if (g->src_batch[n] != b) {                                                             \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                                \
                const wrec *row = warp_row(g, n, oh, buf);                                          \
                for (int64_t ch = c0; ch < c1; ch++) {                                              \
                    T *dxp = (T *)c->dst + (b * g->C + ch) * g->H * g->W;                           \
                    const T *dyp = (const T *)c->src + ((n * g->C + ch) * g->OH + oh) * g->OW;      \
                    for (int64_t ow = 0; ow < g->OW; ow++) {                                        \
                        wrec one;                                                                   \
                        const wrec *r = rec_at(g, row, n, oh, ow, &one);                            \
                        double d = (double)dyp[ow];                                                 \
                        for (int i = 0; i < r->n; i++) {                                            \
                            dxp[r->idx[i]] = (T)((double)dxp[r->idx[i]] + r->w[i] * d);             \
                        }                                                                           \
                    }                                                                               \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    }

DEFINE_WARP(float, f32)
DEFINE_WARP(double, f64)

/* ---- float32: a row plan, run with gathers ----
 * A float32 image samples from a plan of its output rows: per tap, the cell of each pixel
 * (int32; -1 where the constant border or a NaN coordinate reads nothing) and its weight as a
 * float, and per pixel the constant border's share. A pixel is cterm + w0 v0 + w1 v1 + ...
 * in float, in tap order, multiplies and adds separate (no contraction); nearest sampling's
 * one tap is the cell's value itself, or cterm outside: the portable loop and
 * the AVX2 / AVX-512 gathers below make the same operations, so every path gives the same
 * bits. */
typedef struct row_plan {
    int taps;      /* 1 (nearest), 4 (linear) or 16 (cubic) */
    int64_t OW;    /* pixels in the row */
    int32_t *idx;  /* taps x OW */
    float *w;      /* taps x OW */
    float *cterm;  /* OW */
    axis_taps *ax; /* the columns' taps of a separable matrix (g->OW), or NULL */
    char *xnan;    /* g->OW: the column's coordinate is NaN */
    double *ct;    /* g->OW: a row's border terms */
} row_plan;

static int
plan_taps(const ty_warp_geom *g)
{
    return g->interp == TY_INTERP_NEAREST ? 1 : (g->interp == TY_INTERP_CUBIC ? 16 : 4);
}

/* Fits the plan: every cell index of a plane in an int32. */
static int
plan_fits(const ty_warp_geom *g)
{
    return g->H * g->W <= INT32_MAX;
}

/* Plan storage for rows of OW pixels (NULL when out of memory: each pixel then gets a plan
 * of its own on the stack, with the same bits). */
static row_plan *
plan_new(const ty_warp_geom *g, int64_t OW)
{
    int k = plan_taps(g);
    row_plan *p = malloc(sizeof(row_plan));
    char *mem = malloc(((sizeof(int32_t) + sizeof(float)) * (size_t)k + sizeof(float)) *
                       (size_t)OW);
    if (!p || !mem) {
        free(p);
        free(mem);
        return NULL;
    }
    *p = (row_plan){.taps = k, .OW = OW, .idx = (int32_t *)(void *)mem};
    p->w = (float *)(void *)(mem + sizeof(int32_t) * (size_t)k * (size_t)OW);
    p->cterm = p->w + (size_t)k * (size_t)OW;
    if (g->mat) { /* without memory for it, every pixel takes the general path: same plan */
        p->ax = malloc(sizeof(axis_taps) * (size_t)g->OW);
        p->xnan = malloc((size_t)g->OW);
        p->ct = malloc(sizeof(double) * (size_t)g->OW);
        if (!p->ax || !p->xnan || !p->ct) {
            free(p->ax);
            free(p->xnan);
            free(p->ct);
            p->ax = NULL;
            p->xnan = NULL;
            p->ct = NULL;
        }
    }
    return p;
}

static void
plan_free(row_plan *p)
{
    if (p) {
        free(p->idx);
        free(p->ax);
        free(p->xnan);
        free(p->ct);
        free(p);
    }
}

/* Pixel o of p from its axes' taps (ay NULL: a NaN coordinate): plan_put of warp_taps'
 * taps without making them. */
static void
plan_put_axes(const ty_warp_geom *g, int k, const axis_taps *ay, const axis_taps *ax,
              row_plan *p, int64_t o)
{
    double ct = ay ? 0.0 : NAN;
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < k; j++) {
            int64_t t = (int64_t)(i * k + j) * p->OW + o;
            if (!ay) {
                p->idx[t] = -1;
                p->w[t] = 0.0f;
                continue;
            }
            double w = ay->w[i] * ax->w[j];
            int out = ay->cell[i] < 0 || ax->cell[j] < 0;
            p->idx[t] = out ? -1 : (int32_t)(ay->cell[i] * g->W + ax->cell[j]);
            p->w[t] = out ? 0.0f : (float)w;
            if (out) {
                ct += w * g->border_val;
            }
        }
    }
    p->cterm[o] = (float)ct;
}

/* A matrix with M01 = M10 = M20 = M21 = 0 (a scale and shift: interpolate, resize) gives x
 * from the column alone and y from the row alone, bit for bit (the zero terms add +-0 for
 * every pixel alike): the taps of a column or a row are made once. */
static int
separable(const double *M)
{
    return M[1] == 0.0 && M[3] == 0.0 && M[6] == 0.0 && M[7] == 0.0;
}

/* Row r's pixels (starting at o0 in p) from the row's taps ay and the columns' taps: what
 * warp_taps and plan_put make pixel by pixel (tap t = i kx + j: cell row i x column j,
 * weight wy[i] wx[j], outside cells' shares added to the border term in tap order), written
 * tap by tap along the row. */
static void
plan_sep_row(const ty_warp_geom *g, const axis_taps *ay, int ynan, int64_t o0, row_plan *p)
{
    const int64_t OW = g->OW, P = p->OW;
    const int kx = ay->k; /* both axes have the same count */
    double *ct = p->ct;
    for (int64_t ow = 0; ow < OW; ow++) {
        ct[ow] = ynan || p->xnan[ow] ? NAN : 0.0;
    }
    for (int i = 0; i < ay->k; i++) {
        for (int j = 0; j < kx; j++) {
            int t = i * kx + j;
            int32_t *I = p->idx + t * P + o0;
            float *Wt = p->w + t * P + o0;
            for (int64_t ow = 0; ow < OW; ow++) {
                const axis_taps *ax = &p->ax[ow];
                if (ynan || p->xnan[ow]) {
                    I[ow] = -1;
                    Wt[ow] = 0.0f;
                    continue;
                }
                double w = ay->w[i] * ax->w[j];
                int out = ay->cell[i] < 0 || ax->cell[j] < 0;
                I[ow] = out ? -1 : (int32_t)(ay->cell[i] * g->W + ax->cell[j]);
                Wt[ow] = out ? 0.0f : (float)w;
                if (out) {
                    ct[ow] += w * g->border_val;
                }
            }
        }
    }
    for (int64_t ow = 0; ow < OW; ow++) {
        p->cterm[o0 + ow] = (float)ct[ow];
    }
}

/* The rows of [q0, q0 + p->OW) (whole rows of the output plane) from the column and row
 * taps: the same plan as warp_taps makes for each pixel. */
static void
plan_fill_separable(const ty_warp_geom *g, int64_t n, int64_t q0, row_plan *p)
{
    double sx, sy;
    for (int64_t ow = 0; ow < g->OW; ow++) {
        warp_coord(g, n, 0, ow, &sx, &sy);
        p->xnan[ow] = (char)isnan(sx);
        if (!isnan(sx)) {
            axis_of(g, clamp_coord(sx), g->W, &p->ax[ow]);
        }
    }
    for (int64_t r = q0 / g->OW; r < (q0 + p->OW) / g->OW; r++) {
        axis_taps ay = {.k = plan_taps(g) == 1 ? 1 : (plan_taps(g) == 4 ? 2 : 4)};
        warp_coord(g, n, r, 0, &sx, &sy);
        if (!isnan(sy)) {
            axis_of(g, clamp_coord(sy), g->H, &ay);
        }
        plan_sep_row(g, &ay, isnan(sy), r * g->OW - q0, p);
    }
}

/* Linear taps of pixels [o0, o0 + m) of row oh (m <= LIN_CHUNK), written at p's pixel at,
 * when all four cells of every one lie inside the image; returns 0 (nothing written)
 * otherwise. The same coordinates, floors and weights as warp_taps (no border mode applies,
 * nothing is clamped), in loops the compiler vectorizes. */
enum { LIN_CHUNK = 64 };

TY_CLONES static int
plan_linear_inside(const ty_warp_geom *g, const double *M, int64_t oh, int64_t o0, int64_t m,
                   row_plan *p, int64_t at)
{
    double fx[LIN_CHUNK], fy[LIN_CHUNK], ax[LIN_CHUNK], ay[LIN_CHUNK];
    const double v = (double)oh, W = (double)g->W, H = (double)g->H;
    int inside = 1;
    for (int64_t q = 0; q < m; q++) {
        double u = (double)(o0 + q), d = M[6] * u + M[7] * v + M[8];
        double sx = (M[0] * u + M[1] * v + M[2]) / d, sy = (M[3] * u + M[4] * v + M[5]) / d;
        fx[q] = floor(sx);
        fy[q] = floor(sy);
        ax[q] = sx - fx[q];
        ay[q] = sy - fy[q];
        inside &= fx[q] >= 0.0 && fx[q] + 1.0 < W && fy[q] >= 0.0 && fy[q] + 1.0 < H;
    }
    if (!inside) {
        return 0;
    }
    const int64_t P = p->OW;
    for (int64_t q = 0; q < m; q++) {
        int32_t i0 = (int32_t)fy[q] * (int32_t)g->W + (int32_t)fx[q];
        p->idx[at + q] = i0;
        p->idx[P + at + q] = i0 + 1;
        p->idx[2 * P + at + q] = i0 + (int32_t)g->W;
        p->idx[3 * P + at + q] = i0 + (int32_t)g->W + 1;
        p->w[at + q] = (float)((1.0 - ay[q]) * (1.0 - ax[q]));
        p->w[P + at + q] = (float)((1.0 - ay[q]) * ax[q]);
        p->w[2 * P + at + q] = (float)(ay[q] * (1.0 - ax[q]));
        p->w[3 * P + at + q] = (float)(ay[q] * ax[q]);
        p->cterm[at + q] = 0.0f;
    }
    return 1;
}

/* Pixels [q0, q0 + p->OW) of image n's output plane (row-major) into p. */
static void
plan_fill(const ty_warp_geom *g, int64_t n, int64_t q0, row_plan *p)
{
    if (p->ax && separable(g->mat + n * 9) && q0 % g->OW == 0 && p->OW % g->OW == 0) {
        plan_fill_separable(g, n, q0, p);
        return;
    }
    const int k = plan_taps(g) == 1 ? 1 : (plan_taps(g) == 4 ? 2 : 4);
    int64_t oh = q0 / g->OW, ow = q0 % g->OW;
    for (int64_t o = 0; o < p->OW; o++) {
        if (g->mat && k == 2 && (ow % LIN_CHUNK == 0 || o == 0)) {
            int64_t m = LIN_CHUNK - ow % LIN_CHUNK;
            m = m < g->OW - ow ? m : g->OW - ow;
            m = m < p->OW - o ? m : p->OW - o;
            if (plan_linear_inside(g, g->mat + n * 9, oh, ow, m, p, o)) {
                o += m - 1;
                ow += m;
                if (ow == g->OW) {
                    ow = 0;
                    oh++;
                }
                continue;
            }
        }
        double sx, sy;
        axis_taps ax, ay;
        warp_coord(g, n, oh, ow, &sx, &sy);
        int nan = isnan(sx) || isnan(sy);
        if (!nan) { /* warp_taps' axes */
            axis_of(g, clamp_coord(sx), g->W, &ax);
            axis_of(g, clamp_coord(sy), g->H, &ay);
        }
        plan_put_axes(g, k, nan ? NULL : &ay, &ax, p, o);
        if (++ow == g->OW) {
            ow = 0;
            oh++;
        }
    }
}

/* y[o] for pixels [o0, o1) of plan p over plane xp: the portable loop. */
static void
plan_run_generic(const row_plan *p, int64_t o0, int64_t o1, const float *xp, float *y)
{
    if (p->taps == 1) { /* nearest: the cell (weight 1, no border share), or the border */
        for (int64_t o = o0; o < o1; o++) {
            y[o] = p->idx[o] >= 0 ? xp[p->idx[o]] : p->cterm[o];
        }
        return;
    }
    for (int64_t o = o0; o < o1; o++) {
        y[o] = p->cterm[o];
    }
    for (int t = 0; t < p->taps; t++) {
        const int32_t *idx = p->idx + t * p->OW;
        const float *w = p->w + t * p->OW;
        for (int64_t o = o0; o < o1; o++) {
            float v = idx[o] >= 0 ? xp[idx[o]] : 0.0f;
            y[o] = y[o] + w[o] * v;
        }
    }
}

#if VISION_X86
/* x[i] and x[i + 1] for 16 indices: two gathers of 8 float pairs (half the elements of two
 * float gathers), split into the first and second of each pair. */
AVX512 static inline void
pair_gather(__m512i i, const float *xp, __m512 *first, __m512 *second)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 lo = _mm512_castpd_ps(_mm512_i32gather_pd(_mm512_castsi512_si256(i), xp, 4));
    __m512 hi = _mm512_castpd_ps(_mm512_i32gather_pd(_mm512_extracti64x4_epi64(i, 1), xp, 4));
    *first = _mm512_permutex2var_ps(lo, even, hi);
    *second = _mm512_permutex2var_ps(lo, odd, hi);
}

/* Linear sampling of 16 pixels whose taps 0, 1 and 2, 3 are neighbouring in-image cells (the
 * image's interior): the pairs come in pair gathers; the sum is made as plan_run_generic's.
 * Returns 0 (nothing written) when some pixel's taps are not such pairs. */
AVX512 static int
plan_pairs_avx512(const row_plan *p, int64_t o, const float *xp, float *y)
{
    const int64_t OW = p->OW;
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    __m512i i0 = _mm512_loadu_si512(p->idx + o), i1 = _mm512_loadu_si512(p->idx + OW + o);
    __m512i i2 = _mm512_loadu_si512(p->idx + 2 * OW + o);
    __m512i i3 = _mm512_loadu_si512(p->idx + 3 * OW + o);
    __mmask16 ok = _mm512_cmpeq_epi32_mask(_mm512_add_epi32(i0, one), i1) &
                   _mm512_cmpeq_epi32_mask(_mm512_add_epi32(i2, one), i3) &
                   _mm512_cmpge_epi32_mask(i0, zero) & _mm512_cmpge_epi32_mask(i2, zero);
    if (ok != (__mmask16)0xFFFF) {
        return 0;
    }
    __m512 v0, v1, v2, v3;
    pair_gather(i0, xp, &v0, &v1);
    pair_gather(i2, xp, &v2, &v3);
    __m512 acc = _mm512_loadu_ps(p->cterm + o);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(p->w + o), v0));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(p->w + OW + o), v1));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(p->w + 2 * OW + o), v2));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(p->w + 3 * OW + o), v3));
    _mm512_storeu_ps(y + o, acc);
    return 1;
}

AVX512 static void
plan_run_avx512(const row_plan *p, const float *xp, float *y)
{
    const int64_t OW = p->OW;
    for (int64_t o = 0; o < OW; o += 16) {
        __mmask16 m = OW - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (OW - o)) - 1u);
        if (p->taps == 4 && m == (__mmask16)0xFFFF && plan_pairs_avx512(p, o, xp, y)) {
            continue;
        }
        __m512 acc = _mm512_maskz_loadu_ps(m, p->cterm + o);
        if (p->taps == 1) {
            __m512i vi = _mm512_maskz_loadu_epi32(m, p->idx + o);
            __mmask16 ok = _mm512_mask_cmpge_epi32_mask(m, vi, _mm512_setzero_si512());
            _mm512_mask_storeu_ps(y + o, m, _mm512_mask_i32gather_ps(acc, ok, vi, xp, 4));
            continue;
        }
        for (int t = 0; t < p->taps; t++) {
            __m512i vi = _mm512_maskz_loadu_epi32(m, p->idx + t * OW + o);
            __mmask16 ok = _mm512_mask_cmpge_epi32_mask(m, vi, _mm512_setzero_si512());
            __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ok, vi, xp, 4);
            __m512 w = _mm512_maskz_loadu_ps(m, p->w + t * OW + o);
            acc = _mm512_add_ps(acc, _mm512_mul_ps(w, v));
        }
        _mm512_mask_storeu_ps(y + o, m, acc);
    }
}

AVX2 static void
plan_run_avx2(const row_plan *p, const float *xp, float *y)
{
    const int64_t OW = p->OW, full = OW / 8 * 8;
    const __m256i neg = _mm256_set1_epi32(-1);
    for (int64_t o = 0; o < full; o += 8) {
        __m256 acc = _mm256_loadu_ps(p->cterm + o);
        if (p->taps == 1) {
            __m256i vi = _mm256_loadu_si256((const __m256i *)(const void *)(p->idx + o));
            __m256 ok = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vi, neg));
            _mm256_storeu_ps(y + o, _mm256_mask_i32gather_ps(acc, xp, vi, ok, 4));
            continue;
        }
        for (int t = 0; t < p->taps; t++) {
            __m256i vi = _mm256_loadu_si256((const __m256i *)(const void *)(p->idx + t * OW + o));
            __m256 ok = _mm256_castsi256_ps(_mm256_cmpgt_epi32(vi, neg));
            __m256 v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), xp, vi, ok, 4);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(p->w + t * OW + o), v));
        }
        _mm256_storeu_ps(y + o, acc);
    }
    plan_run_generic(p, full, OW, xp, y);
}
#endif

static void
plan_run(const row_plan *p, ty_isa isa, const float *xp, float *y)
{
#if VISION_X86
    if (isa == TY_ISA_AVX512) {
        plan_run_avx512(p, xp, y);
        return;
    }
    if (isa == TY_ISA_AVX2) {
        plan_run_avx2(p, xp, y);
        return;
    }
#endif
    (void)isa;
    plan_run_generic(p, 0, p->OW, xp, y);
}

/* dx[cell] += w * dy[o] for every tap of every pixel, pixels in order, taps in order. */
static void
plan_scatter(const row_plan *p, const float *dy, float *dx)
{
    for (int64_t o = 0; o < p->OW; o++) {
        float d = dy[o];
        for (int t = 0; t < p->taps; t++) {
            int32_t i = p->idx[t * p->OW + o];
            if (i >= 0) {
                dx[i] = dx[i] + p->w[t * p->OW + o] * d;
            }
        }
    }
}

/* plan_scatter for four channels at once (dy rows dy + k * dstride, dx planes dx + k *
 * xstride): four independent chains of read-add-write, each in plan_scatter's order (the same
 * bits), so that one channel's update need not wait for the last one to reach memory. */
static void
plan_scatter4(const row_plan *p, const float *dy, int64_t dstride, float *dx, int64_t xstride)
{
    float *d0 = dx, *d1 = dx + xstride, *d2 = dx + 2 * xstride, *d3 = dx + 3 * xstride;
    for (int64_t o = 0; o < p->OW; o++) {
        float g0 = dy[o], g1 = dy[dstride + o], g2 = dy[2 * dstride + o], g3 = dy[3 * dstride + o];
        for (int t = 0; t < p->taps; t++) {
            int32_t i = p->idx[t * p->OW + o];
            float w = p->w[t * p->OW + o];
            if (i >= 0) {
                d0[i] = d0[i] + w * g0;
                d1[i] = d1[i] + w * g1;
                d2[i] = d2[i] + w * g2;
                d3[i] = d3[i] + w * g3;
            }
        }
    }
}

/* Output rows [r0, r1) of image n in float32, as one plan over their pixels (the rows of a
 * plane are contiguous), or (no memory) one pixel's plan at a time. A block's input region
 * stays in the L1 cache while every channel runs it. bwd: scatters dy into dx for channels
 * [c0, c1), pixels in order per channel, else writes y. */
static void
warp_plan_block(const warp_ctx *c, row_plan *p, int64_t n, int64_t r0, int64_t r1, int64_t c0,
                int64_t c1)
{
    const ty_warp_geom *g = c->g;
    int64_t first = r0 * g->OW, count = (r1 - r0) * g->OW, step = p ? count : 1;
    row_plan one = {.taps = plan_taps(g), .OW = 1};
    int32_t idx[MAX_TAPS];
    float w[MAX_TAPS], cterm;
    if (!p) {
        one.idx = idx;
        one.w = w;
        one.cterm = &cterm;
        p = &one;
    }
    p->OW = step;
    for (int64_t q = first; q < first + count; q += step) {
        plan_fill(g, n, q, p);
        for (int64_t ch = c0; ch < c1; ch++) {
            int64_t out = (n * g->C + ch) * g->OH * g->OW + q;
            int64_t plane = (g->src_batch[n] * g->C + ch) * g->H * g->W;
            if (c->bwd && ch + 4 <= c1) {
                plan_scatter4(p, (const float *)c->src + out, g->OH * g->OW,
                              (float *)c->dst + plane, g->H * g->W);
                ch += 3;
            } else if (c->bwd) {
                plan_scatter(p, (const float *)c->src + out, (float *)c->dst + plane);
            } else {
                plan_run(p, c->isa, (const float *)c->src + plane, (float *)c->dst + out);
            }
        }
    }
}

/* Rows per plan block: about PLAN_PIXELS pixels (fewer for cubic's 16 taps), at least one
 * row; fixed by the shape. */
enum { PLAN_PIXELS = 1024 };

static int64_t
plan_rows(const ty_warp_geom *g)
{
    int64_t px = PLAN_PIXELS * 4 / plan_taps(g);
    int64_t r = px / (g->OW ? g->OW : 1);
    return r < 1 ? 1 : (r > g->OH ? (g->OH ? g->OH : 1) : r);
}

static void
warp_fwd_range(void *ctx, int64_t begin, int64_t end)
{
    const warp_ctx *c = ctx;
    if (c->plan) { /* units: blocks of rows */
        int64_t rb = plan_rows(c->g), blocks = (c->g->OH + rb - 1) / rb;
        row_plan *p = plan_new(c->g, rb * c->g->OW);
        for (int64_t u = begin; u < end; u++) {
            int64_t r0 = (u % blocks) * rb, r1 = r0 + rb < c->g->OH ? r0 + rb : c->g->OH;
            warp_plan_block(c, p, u / blocks, r0, r1, 0, c->g->C);
        }
        plan_free(p);
        return;
    }
    wrec *buf = malloc(sizeof(wrec) * (size_t)c->g->OW);
    for (int64_t p = begin; p < end; p++) {
        int64_t n = p / c->g->OH, oh = p % c->g->OH;
        if (c->f64) {
            warp_fwd_row_f64(c, n, oh, buf);
        } else {
            warp_fwd_row_f32(c, n, oh, buf);
        }
    }
    free(buf);
}

/* backward unit: channels [c0, c1) of input image b, every output image reading it */
static void
warp_bwd_plan_unit(const warp_ctx *c, row_plan *p, int64_t b, int64_t c0, int64_t c1)
{
    int64_t rb = plan_rows(c->g);
    for (int64_t n = 0; n < c->g->ON; n++) {
        for (int64_t r0 = 0; r0 < c->g->OH && c->g->src_batch[n] == b; r0 += rb) {
            warp_plan_block(c, p, n, r0, r0 + rb < c->g->OH ? r0 + rb : c->g->OH, c0, c1);
        }
    }
}

static void
warp_bwd_range(void *ctx, int64_t begin, int64_t end)
{
    const warp_ctx *c = ctx;
    int64_t blocks = (c->g->C + c->cblock - 1) / c->cblock;
    wrec *buf = c->plan ? NULL : malloc(sizeof(wrec) * (size_t)c->g->OW);
    row_plan *plan = c->plan ? plan_new(c->g, plan_rows(c->g) * c->g->OW) : NULL;
    for (int64_t p = begin; p < end; p++) {
        int64_t b = p / blocks, c0 = (p % blocks) * c->cblock;
        int64_t c1 = c0 + c->cblock < c->g->C ? c0 + c->cblock : c->g->C;
        if (c->plan) {
            warp_bwd_plan_unit(c, plan, b, c0, c1);
        } else if (c->f64) {
            warp_bwd_unit_f64(c, b, c0, c1, buf);
        } else {
            warp_bwd_unit_f32(c, b, c0, c1, buf);
        }
    }
    free(buf);
    plan_free(plan);
}

static void
warp_run(const ty_warp_geom *g, const void *src, void *dst, int f64, int bwd)
{
    /* backward units: channel blocks of an input image, sized by the shape alone; the order
     * in which a dx cell gathers its terms does not depend on the blocks */
    warp_ctx c = {.g = g, .src = src, .dst = dst, .f64 = f64, .bwd = bwd,
                  .plan = !f64 && plan_fits(g), .isa = ty_cpu_isa(),
                  .cblock = g->C >= 16 ? g->C / 8 : 1};
    if (g->C == 0 || g->OW == 0) {
        return;
    }
    if (bwd && c.plan) {
        /* each unit makes the plans of every output image reading its input image: only as
         * many channel blocks as it takes for 8 units (a shape rule; the bits do not depend
         * on the blocks) */
        int64_t want = (8 + g->N - 1) / (g->N ? g->N : 1);
        want = want < 1 ? 1 : (want > g->C ? g->C : want);
        c.cblock = (g->C + want - 1) / want;
    }
    if (!bwd && c.plan) {
        int64_t rb = plan_rows(g), per = rb * g->OW * (g->C * 5 + 40) + 1;
        ty_parallel_for(g->ON * ((g->OH + rb - 1) / rb), MIN_CHUNK_WORK / per + 1,
                        warp_fwd_range, &c);
        return;
    }
    if (!bwd) {
        int64_t per = g->OW * (g->C * 5 + 40) + 1;
        ty_parallel_for(g->ON * g->OH, MIN_CHUNK_WORK / per + 1, warp_fwd_range, &c);
        return;
    }
    int64_t blocks = (g->C + c.cblock - 1) / c.cblock;
    int64_t per = g->OH * g->OW * (c.cblock * 5 + 40) * (g->ON / (g->N ? g->N : 1) + 1) + 1;
    ty_parallel_for(g->N * blocks, MIN_CHUNK_WORK / per + 1, warp_bwd_range, &c);
}

void
ty_warp_fwd_f32(const ty_warp_geom *g, const float *x, float *y)
{
    warp_run(g, x, y, 0, 0);
}

void
ty_warp_fwd_f64(const ty_warp_geom *g, const double *x, double *y)
{
    warp_run(g, x, y, 1, 0);
}

void
ty_warp_bwd_f32(const ty_warp_geom *g, const float *dy, float *dx)
{
    warp_run(g, dy, dx, 0, 1);
}

void
ty_warp_bwd_f64(const ty_warp_geom *g, const double *dy, double *dx)
{
    warp_run(g, dy, dx, 1, 1);
}

/* ---- gradient w.r.t. the coordinates ---- */
/* Slopes of cubic_weights' four weights w.r.t. t (Keys' kernel differentiated). */
static void
cubic_slopes(double t, double *s)
{
    const double a = -0.75;
    double d[4] = {t + 1.0, t, 1.0 - t, 2.0 - t}, dir[4] = {1.0, 1.0, -1.0, -1.0};
    for (int i = 0; i < 4; i++) {
        double x = d[i];
        double k = x <= 1.0 ? (3.0 * (a + 2.0) * x - 2.0 * (a + 3.0)) * x
                            : (3.0 * a * x - 10.0 * a) * x + 8.0 * a;
        s[i] = k * dir[i];
    }
}

/* The taps of (sx, sy) as warp_taps lists them (k x k cells, row-major) with the 1-D
 * weights and their slopes along x (wx, sxl) and y (wy, syl); returns k, 0 when nothing moves
 * the sample (nearest sampling, a NaN coordinate). */
typedef struct slopes {
    double wx[4], wy[4], sxl[4], syl[4];
} slopes;

static int
warp_slopes(const ty_warp_geom *g, double sx, double sy, taps *t, slopes *s)
{
    warp_taps(g, sx, sy, t);
    if (t->nan || g->interp == TY_INTERP_NEAREST) {
        return 0;
    }
    sx = clamp_coord(sx);
    sy = clamp_coord(sy);
    double ax = sx - floor(sx), ay = sy - floor(sy);
    if (g->interp == TY_INTERP_CUBIC) {
        cubic_weights(ax, s->wx);
        cubic_weights(ay, s->wy);
        cubic_slopes(ax, s->sxl);
        cubic_slopes(ay, s->syl);
        return 4;
    }
    s->wx[0] = 1.0 - ax;
    s->wx[1] = ax;
    s->wy[0] = 1.0 - ay;
    s->wy[1] = ay;
    s->sxl[0] = s->syl[0] = -1.0;
    s->sxl[1] = s->syl[1] = 1.0;
    return 2;
}

typedef struct warp_cg_ctx {
    const ty_warp_geom *g;
    const void *x, *dy;
    double *gc;
    int f64;
} warp_cg_ctx;

/* Per channel, the slope along x is sum_j sxl[j] (sum_i wy[i] v[i][j]): interpolated
 * columns first, so cells that a border mode repeats cancel exactly (and along y alike). A
 * row goes in chunks of CG_CHUNK pixels, channel by channel over a chunk; each pixel adds its
 * channels in order. */
enum { CG_CHUNK = 32 };

/* The slopes along x and y of the k x k cell values v (row-major) of one sample. */
static inline void
cg_slopes(const slopes *sl, const double *v, int k, double *ax, double *ay)
{
    for (int i = 0; i < k; i++) {
        double row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += sl->wx[j] * v[i * k + j];
            col += sl->wy[j] * v[j * k + i];
        }
        *ay += sl->syl[i] * row;
        *ax += sl->sxl[i] * col;
    }
}

#define DEFINE_WARP_CG(T, SFX)                                                                     \
    static void warp_cg_row_##SFX(const warp_cg_ctx *c, int64_t n, int64_t oh)                    \
    {                                                                                              \
        const ty_warp_geom *g = c->g;                                                              \
        const T *x = (const T *)c->x + g->src_batch[n] * g->C * g->H * g->W;                       \
        const T *dy = (const T *)c->dy + n * g->C * g->OH * g->OW + oh * g->OW;                    \
        for (int64_t o0 = 0; o0 < g->OW; o0 += CG_CHUNK) {                                         \
            int64_t m = g->OW - o0 < CG_CHUNK ? g->OW - o0 : CG_CHUNK;                             \
            taps t[CG_CHUNK];                                                                      \
            slopes sl[CG_CHUNK];                                                                   \
            int k[CG_CHUNK];                                                                       \
            double gx[CG_CHUNK] = {0}, gy[CG_CHUNK] = {0};                                         \
            for (int64_t q = 0; q < m; q++) {                                                      \
                double sx, sy;                                                                     \
                warp_coord(g, n, oh, o0 + q, &sx, &sy);                                            \
                k[q] = warp_slopes(g, sx, sy, &t[q], &sl[q]);                                      \
            }                                                                                      \
            for (int64_t ch = 0; ch < g->C; ch++) {                                                \
                const T *xp = x + ch * g->H * g->W;                                                \
                const T *dyc = dy + ch * g->OH * g->OW + o0;                                       \
                for (int64_t q = 0; q < m; q++) {                                                  \
                    if (t[q].nan) {                                                                \
                        continue;                                                                  \
                    }                                                                              \
                    double d = (double)dyc[q], ax = 0, ay = 0, v[MAX_TAPS];                        \
                    for (int i = 0; i < k[q] * k[q]; i++) {                                        \
                        int64_t a = t[q].idx[i];                                                   \
                        v[i] = a < 0 ? g->border_val : (double)xp[a];                              \
                    }                                                                              \
                    if (k[q] == 2) { /* linear: the same sums, unrolled by the compiler */        \
                        cg_slopes(&sl[q], v, 2, &ax, &ay);                                         \
                    } else {                                                                       \
                        cg_slopes(&sl[q], v, k[q], &ax, &ay);                                      \
                    }                                                                              \
                    gx[q] += d * ax; /* nearest: 0 (d * 0: a non-finite d gives NaN) */            \
                    gy[q] += d * ay;                                                               \
                }                                                                                  \
            }                                                                                      \
            for (int64_t q = 0; q < m; q++) {                                                      \
                double *out = c->gc + ((n * g->OH + oh) * g->OW + o0 + q) * 2;                     \
                out[0] = gx[q];                                                                    \
                out[1] = gy[q];                                                                    \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_WARP_CG(float, f32)
DEFINE_WARP_CG(double, f64)

static void
warp_cg_range(void *ctx, int64_t begin, int64_t end)
{
    const warp_cg_ctx *c = ctx;
    for (int64_t p = begin; p < end; p++) {
        if (c->f64) {
            warp_cg_row_f64(c, p / c->g->OH, p % c->g->OH);
        } else {
            warp_cg_row_f32(c, p / c->g->OH, p % c->g->OH);
        }
    }
}

static void
warp_cg_run(const ty_warp_geom *g, const void *x, const void *dy, double *gc, int f64)
{
    warp_cg_ctx c = {.g = g, .x = x, .dy = dy, .gc = gc, .f64 = f64};
    if (g->OW == 0) {
        return;
    }
    int64_t per = g->OW * (g->C * 40 + 40) + 1;
    ty_parallel_for(g->ON * g->OH, MIN_CHUNK_WORK / per + 1, warp_cg_range, &c);
}

void
ty_warp_coord_grad_f32(const ty_warp_geom *g, const float *x, const float *dy, double *gc)
{
    warp_cg_run(g, x, dy, gc, 0);
}

void
ty_warp_coord_grad_f64(const ty_warp_geom *g, const double *x, const double *dy, double *gc)
{
    warp_cg_run(g, x, dy, gc, 1);
}

typedef struct warp_mat_ctx {
    const ty_warp_geom *g;
    const double *gc;
    double *dmat;
} warp_mat_ctx;

static void
warp_mat_range(void *ctx, int64_t begin, int64_t end)
{
    const warp_mat_ctx *c = ctx;
    const ty_warp_geom *g = c->g;
    for (int64_t n = begin; n < end; n++) {
        const double *M = g->mat + n * 9, *gc = c->gc + n * g->OH * g->OW * 2;
        double acc[9] = {0};
        for (int64_t oh = 0; oh < g->OH; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow++, gc += 2) {
                if (gc[0] == 0.0 && gc[1] == 0.0) {
                    continue; /* no gradient (and no 0 * inf where d vanishes) */
                }
                double u = (double)ow, v = (double)oh, d = M[6] * u + M[7] * v + M[8];
                double sx = (M[0] * u + M[1] * v + M[2]) / d, sy = (M[3] * u + M[4] * v + M[5]) / d;
                double a = gc[0] / d, b = gc[1] / d, e = -(gc[0] * sx + gc[1] * sy) / d;
                double terms[9] = {a * u, a * v, a, b * u, b * v, b, e * u, e * v, e};
                for (int i = 0; i < 9; i++) {
                    acc[i] += terms[i];
                }
            }
        }
        memcpy(c->dmat + n * 9, acc, sizeof acc);
    }
}

void
ty_warp_mat_grad(const ty_warp_geom *g, const double *gc, double *dmat)
{
    warp_mat_ctx c = {.g = g, .gc = gc, .dmat = dmat};
    int64_t per = g->OH * g->OW * 30 + 1;
    ty_parallel_for(g->ON, MIN_CHUNK_WORK / per + 1, warp_mat_range, &c);
}

/* ===================== correlation ===================== */
typedef struct corr_ctx {
    const ty_corr_geom *g;
    const void *a, *b, *dy, *u, *v; /* u, v: the signed form's weights */
    void *y, *grad; /* forward: y; backward: the gradient being written */
    int f64, of_b;  /* backward: writing db (else da) */
} corr_ctx;

/* -1, 0 or 1, NaN for NaN (numpy's sign). */
static double
sign_of(double d)
{
    return d > 0 ? 1.0 : (d < 0 ? -1.0 : d);
}

/* f(a, b): a * b or |a - b|; the signed form (u, v given) is (u - v) sign(a - b), the
 * derivative of the |a - b| form's backward w.r.t. its output gradient. */
static double
corr_term(int multiply, double va, double vb, const double *uv)
{
    if (uv) {
        return (uv[0] - uv[1]) * sign_of(va - vb);
    }
    return multiply ? va * vb : fabs(va - vb);
}

/* d f / d a (of_b 0) or d f / d b (of_b 1) at (va, vb). */
static double
corr_deriv(int multiply, int of_b, double va, double vb)
{
    if (multiply) {
        return of_b ? va : vb;
    }
    double s = sign_of(va - vb);
    return of_b ? -s : s;
}

static int
inside(const ty_corr_geom *g, int64_t y, int64_t x)
{
    return y >= 0 && y < g->H && x >= 0 && x < g->W;
}

#define DEFINE_CORR(T, SFX)                                                                        \
    static void corr_fwd_plane_##SFX(const corr_ctx *c, int64_t n, int64_t d)                     \
    {                                                                                              \
        const ty_corr_geom *g = c->g;                                                              \
        int64_t D = 2 * g->radius + 1, plane = g->H * g->W;                                        \
        int64_t oy = (d / D - g->radius) * g->stride2, ox = (d % D - g->radius) * g->stride2;      \
        const T *a = (const T *)c->a + n * g->C * plane, *b = (const T *)c->b + n * g->C * plane;  \
        const T *u = c->u ? (const T *)c->u + n * g->C * plane : NULL;                             \
        const T *v = c->v ? (const T *)c->v + n * g->C * plane : NULL;                             \
        T *y = (T *)c->y + (n * D * D + d) * g->OH * g->OW;                                        \
        double inv = 1.0 / (double)(g->k * g->k * g->C);                                           \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                int64_t y1 = oh * g->stride1 + g->max_disp - g->pad;                               \
                int64_t x1 = ow * g->stride1 + g->max_disp - g->pad;                               \
                double s = 0;                                                                      \
                for (int64_t ch = 0; ch < g->C; ch++) {                                            \
                    for (int64_t j = 0; j < g->k; j++) {                                           \
                        for (int64_t i = 0; i < g->k; i++) {                                       \
                            int64_t ya = y1 + j, xa = x1 + i, yb = ya + oy, xb = xa + ox;          \
                            double va = inside(g, ya, xa) ? (double)a[ch * plane + ya * g->W + xa] \
                                                          : 0.0;                                   \
                            double vb = inside(g, yb, xb) ? (double)b[ch * plane + yb * g->W + xb] \
                                                          : 0.0;                                   \
                            double uv[2] = {0, 0};                                                 \
                            if (u && inside(g, ya, xa)) {                                          \
                                uv[0] = (double)u[ch * plane + ya * g->W + xa];                    \
                            }                                                                      \
                            if (v && inside(g, yb, xb)) {                                          \
                                uv[1] = (double)v[ch * plane + yb * g->W + xb];                    \
                            }                                                                      \
                            s += corr_term(g->multiply, va, vb, u ? uv : NULL);                    \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                y[oh * g->OW + ow] = (T)(s * inv);                                                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void corr_bwd_plane_##SFX(const corr_ctx *c, int64_t n, int64_t ch)                    \
    {                                                                                              \
        const ty_corr_geom *g = c->g;                                                              \
        int64_t D = 2 * g->radius + 1, plane = g->H * g->W;                                        \
        const T *a = (const T *)c->a + (n * g->C + ch) * plane;                                    \
        const T *b = (const T *)c->b + (n * g->C + ch) * plane;                                    \
        T *out = (T *)c->grad + (n * g->C + ch) * plane;                                           \
        double inv = 1.0 / (double)(g->k * g->k * g->C);                                           \
        for (int64_t p = 0; p < plane; p++) {                                                      \
            out[p] = 0;                                                                            \
        }                                                                                          \
        for (int64_t d = 0; d < D * D; d++) {                                                      \
            int64_t oy = (d / D - g->radius) * g->stride2, ox = (d % D - g->radius) * g->stride2;  \
            const T *gy = (const T *)c->dy + (n * D * D + d) * g->OH * g->OW;                      \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    double gv = (double)gy[oh * g->OW + ow] * inv;                                 \
                    int64_t y1 = oh * g->stride1 + g->max_disp - g->pad;                           \
                    int64_t x1 = ow * g->stride1 + g->max_disp - g->pad;                           \
                    for (int64_t j = 0; j < g->k; j++) {                                           \
                        for (int64_t i = 0; i < g->k; i++) {                                       \
                            int64_t ya = y1 + j, xa = x1 + i, yb = ya + oy, xb = xa + ox;          \
                            int ia = inside(g, ya, xa), ib = inside(g, yb, xb);                    \
                            if (!(c->of_b ? ib : ia)) {                                            \
                                continue;                                                          \
                            }                                                                      \
                            double va = ia ? (double)a[ya * g->W + xa] : 0.0;                      \
                            double vb = ib ? (double)b[yb * g->W + xb] : 0.0;                      \
                            int64_t at = c->of_b ? yb * g->W + xb : ya * g->W + xa;                \
                            out[at] = (T)((double)out[at] +                                        \
                                          gv * corr_deriv(g->multiply, c->of_b, va, vb));          \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_CORR(float, f32)
DEFINE_CORR(double, f64)

static void
corr_range(void *ctx, int64_t begin, int64_t end)
{
    const corr_ctx *c = ctx;
    int64_t per = c->y ? (2 * c->g->radius + 1) * (2 * c->g->radius + 1) : c->g->C;
    for (int64_t p = begin; p < end; p++) {
        int64_t n = p / per, q = p % per;
        if (c->y) {
            if (c->f64) {
                corr_fwd_plane_f64(c, n, q);
            } else {
                corr_fwd_plane_f32(c, n, q);
            }
        } else if (c->f64) {
            corr_bwd_plane_f64(c, n, q);
        } else {
            corr_bwd_plane_f32(c, n, q);
        }
    }
}

static void
corr_run(const ty_corr_geom *g, const void *a, const void *b, const void *dy, void *y,
         void *da, void *db, int f64, const void *u, const void *v)
{
    int64_t D = 2 * g->radius + 1;
    int64_t work = g->OH * g->OW * g->k * g->k + 1;
    if (y) {
        corr_ctx c = {.g = g, .a = a, .b = b, .y = y, .f64 = f64, .u = u, .v = v};
        ty_parallel_for(g->N * D * D, MIN_CHUNK_WORK / (work * g->C + 1) + 1, corr_range, &c);
        return;
    }
    for (int of_b = 0; of_b < 2; of_b++) {
        corr_ctx c = {.g = g, .a = a, .b = b, .dy = dy, .grad = of_b ? db : da, .f64 = f64,
                      .of_b = of_b};
        ty_parallel_for(g->N * g->C, MIN_CHUNK_WORK / (work * D * D + 1) + 1, corr_range, &c);
    }
}

void
ty_corr_fwd_f32(const ty_corr_geom *g, const float *a, const float *b, float *y)
{
    corr_run(g, a, b, NULL, y, NULL, NULL, 0, NULL, NULL);
}

void
ty_corr_fwd_f64(const ty_corr_geom *g, const double *a, const double *b, double *y)
{
    corr_run(g, a, b, NULL, y, NULL, NULL, 1, NULL, NULL);
}

void
ty_corr_bwd_f32(const ty_corr_geom *g, const float *a, const float *b, const float *dy,
                float *da, float *db)
{
    corr_run(g, a, b, dy, NULL, da, db, 0, NULL, NULL);
}

void
ty_corr_bwd_f64(const ty_corr_geom *g, const double *a, const double *b, const double *dy,
                double *da, double *db)
{
    corr_run(g, a, b, dy, NULL, da, db, 1, NULL, NULL);
}

void
ty_corr_signed_f32(const ty_corr_geom *g, const float *a, const float *b, const float *u,
                   const float *v, float *y)
{
    corr_run(g, a, b, NULL, y, NULL, NULL, 0, u, v);
}

void
ty_corr_signed_f64(const ty_corr_geom *g, const double *a, const double *b, const double *u,
                   const double *v, double *y)
{
    corr_run(g, a, b, NULL, y, NULL, NULL, 1, u, v);
}

/* ===================== deformable PS RoI pooling ===================== */
typedef struct dps_bin {
    int64_t batch;
    double h0, w0, sub_h, sub_w;
    double rw, rh; /* the box size, which scales the offsets */
} dps_bin;

static void
dps_bin_of(const ty_dpsroi_geom *g, const double *rois, const double *trans, int64_t k,
           int64_t ch, int64_t oh, int64_t ow, dps_bin *b)
{
    const double *r = rois + k * 5;
    b->batch = (int64_t)r[0];
    double wl = round(r[1]) * g->scale - 0.5, hl = round(r[2]) * g->scale - 0.5;
    double wr = (round(r[3]) + 1.0) * g->scale - 0.5, hr = (round(r[4]) + 1.0) * g->scale - 0.5;
    double rw = fmax(wr - wl, 0.1), rh = fmax(hr - hl, 0.1); /* a tiny box is 0.1 wide */
    double bh = rh / (double)g->OH, bw = rw / (double)g->OW;
    b->rw = rw;
    b->rh = rh;
    b->sub_h = bh / (double)g->spp;
    b->sub_w = bw / (double)g->spp;
    b->w0 = (double)ow * bw + wl;
    b->h0 = (double)oh * bh + hl;
    if (!g->no_trans) {
        int64_t cls = ch / (g->C / g->ncls);
        int64_t ph = (int64_t)floor((double)oh / (double)g->OH * (double)g->part);
        int64_t pw = (int64_t)floor((double)ow / (double)g->OW * (double)g->part);
        const double *t = trans + ((k * g->ncls + cls) * 2) * g->part * g->part;
        b->w0 += t[ph * g->part + pw] * g->trans_std * rw;
        b->h0 += t[g->part * g->part + ph * g->part + pw] * g->trans_std * rh;
    }
}

/* The samples of bin b: cells and weights of each in-range sample, each sample weighing
 * 1 / count; returns count. Visits add w * v[cell] (dx NULL) or w * d into dx[cell]. */
#define DEFINE_DPS(T, SFX)                                                                         \
    static double dps_visit_##SFX(const ty_dpsroi_geom *g, const dps_bin *b, const T *v, T *dx,   \
                                  double d)                                                        \
    {                                                                                              \
        int64_t count = 0;                                                                         \
        if (g->H == 0 || g->W == 0) {                                                              \
            return 0;                                                                              \
        }                                                                                          \
        for (int pass = 0; pass < 2; pass++) {                                                     \
            double s = 0;                                                                          \
            for (int64_t ih = 0; ih < g->spp; ih++) {                                              \
                for (int64_t iw = 0; iw < g->spp; iw++) {                                          \
                    double w = b->w0 + (double)iw * b->sub_w, h = b->h0 + (double)ih * b->sub_h;   \
                    if (!(w >= -0.5 && w <= (double)g->W - 0.5 && h >= -0.5 &&                     \
                          h <= (double)g->H - 0.5)) {                                              \
                        continue;                                                                  \
                    }                                                                              \
                    if (pass == 0) {                                                               \
                        count++;                                                                   \
                        continue;                                                                  \
                    }                                                                              \
                    w = fmin(fmax(w, 0.0), (double)g->W - 1);                                      \
                    h = fmin(fmax(h, 0.0), (double)g->H - 1);                                      \
                    int64_t y0 = (int64_t)floor(h), y1 = (int64_t)ceil(h);                         \
                    int64_t x0 = (int64_t)floor(w), x1 = (int64_t)ceil(w);                         \
                    double dh = h - (double)y0, dw = w - (double)x0;                               \
                    int64_t idx[4] = {y0 * g->W + x0, y1 * g->W + x0, y0 * g->W + x1,              \
                                      y1 * g->W + x1};                                             \
                    double wt[4] = {(1 - dw) * (1 - dh), (1 - dw) * dh, dw * (1 - dh), dw * dh};   \
                    for (int q = 0; q < 4; q++) {                                                  \
                        double c = wt[q] / (double)count;                                          \
                        if (dx) {                                                                  \
                            dx[idx[q]] = (T)((double)dx[idx[q]] + c * d);                          \
                        } else {                                                                   \
                            s += c * (double)v[idx[q]];                                            \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            if (pass == 1 || count == 0) {                                                         \
                return s;                                                                          \
            }                                                                                      \
        }                                                                                          \
        return 0;                                                                                  \
    }                                                                                              \
    static void dps_fwd_plane_##SFX(const dps_ctx *c, int64_t k, int64_t ch)                      \
    {                                                                                              \
        const ty_dpsroi_geom *g = c->g;                                                            \
        T *y = (T *)c->y + (k * g->C + ch) * g->OH * g->OW;                                        \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                dps_bin b;                                                                         \
                dps_bin_of(g, c->rois, c->trans, k, ch, oh, ow, &b);                               \
                const T *xp = (const T *)c->x + (b.batch * g->C + ch) * g->H * g->W;               \
                y[oh * g->OW + ow] = (T)dps_visit_##SFX(g, &b, xp, NULL, 0);                       \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void dps_bwd_plane_##SFX(const dps_ctx *c, int64_t bt, int64_t ch)                     \
    {                                                                                              \
        const ty_dpsroi_geom *g = c->g;                                                            \
        T *dx = (T *)c->y + (bt * g->C + ch) * g->H * g->W;                                        \
        for (int64_t k = 0; k < g->K; k++) {                                                       \
            if ((int64_t)c->rois[k * 5] != bt) {                                                   \
                continue;                                                                          \
            }                                                                                      \
            const T *dy = (const T *)c->x + (k * g->C + ch) * g->OH * g->OW;                       \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    dps_bin b;                                                                     \
                    dps_bin_of(g, c->rois, c->trans, k, ch, oh, ow, &b);                           \
                    dps_visit_##SFX(g, &b, NULL, dx, (double)dy[oh * g->OW + ow]);                 \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

typedef struct dps_ctx {
    const ty_dpsroi_geom *g;
    const double *rois, *trans;
    const void *x; /* forward, trans gradient: the image; backward: dy */
    void *y;       /* forward: the output; backward: dx */
    const void *dy;  /* trans gradient: the output gradient, */
    double *dtrans;  /* and the result */
    int f64, bwd;
} dps_ctx;

DEFINE_DPS(float, f32)
DEFINE_DPS(double, f64)

static void
dps_range(void *ctx, int64_t begin, int64_t end)
{
    const dps_ctx *c = ctx;
    for (int64_t p = begin; p < end; p++) {
        int64_t a = p / c->g->C, ch = p % c->g->C;
        if (c->bwd) {
            if (c->f64) {
                dps_bwd_plane_f64(c, a, ch);
            } else {
                dps_bwd_plane_f32(c, a, ch);
            }
        } else if (c->f64) {
            dps_fwd_plane_f64(c, a, ch);
        } else {
            dps_fwd_plane_f32(c, a, ch);
        }
    }
}

static void
dps_run(const ty_dpsroi_geom *g, const double *rois, const double *trans, const void *x,
        void *y, int f64, int bwd)
{
    dps_ctx c = {.g = g, .rois = rois, .trans = trans, .x = x, .y = y, .f64 = f64, .bwd = bwd};
    int64_t per = g->OH * g->OW * (g->spp * g->spp * 8 + 8) *
                      (bwd ? (g->K / (g->N ? g->N : 1) + 1) : 1) + 1;
    ty_parallel_for((bwd ? g->N : g->K) * g->C, MIN_CHUNK_WORK / per + 1, dps_range, &c);
}

void
ty_dpsroi_fwd_f32(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                  const float *x, float *y)
{
    dps_run(g, rois, trans, x, y, 0, 0);
}

void
ty_dpsroi_fwd_f64(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                  const double *x, double *y)
{
    dps_run(g, rois, trans, x, y, 1, 0);
}

void
ty_dpsroi_bwd_f32(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                  const float *dy, float *dx)
{
    dps_run(g, rois, trans, dy, dx, 0, 1);
}

void
ty_dpsroi_bwd_f64(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                  const double *dy, double *dx)
{
    dps_run(g, rois, trans, dy, dx, 1, 1);
}

/* ---- gradient w.r.t. trans ---- */
/* The slopes (gw, gh) of bin b's average w.r.t. its start (w0, h0): every in-range sample's
 * bilinear slope, 0 along an axis where the sample was clamped onto the image. */
#define DEFINE_DPS_SLOPE(T, SFX)                                                                   \
    static void dps_slope_##SFX(const ty_dpsroi_geom *g, const dps_bin *b, const T *xp,           \
                                double *gw, double *gh)                                            \
    {                                                                                              \
        int64_t count = 0;                                                                         \
        double sw = 0, sh = 0;                                                                     \
        for (int64_t ih = 0; ih < g->spp; ih++) {                                                  \
            for (int64_t iw = 0; iw < g->spp; iw++) {                                              \
                double w = b->w0 + (double)iw * b->sub_w, h = b->h0 + (double)ih * b->sub_h;       \
                if (!(w >= -0.5 && w <= (double)g->W - 0.5 && h >= -0.5 &&                         \
                      h <= (double)g->H - 0.5)) {                                                  \
                    continue;                                                                      \
                }                                                                                  \
                count++;                                                                           \
                double mw = w >= 0.0 && w <= (double)g->W - 1 ? 1.0 : 0.0;                         \
                double mh = h >= 0.0 && h <= (double)g->H - 1 ? 1.0 : 0.0;                         \
                w = fmin(fmax(w, 0.0), (double)g->W - 1);                                          \
                h = fmin(fmax(h, 0.0), (double)g->H - 1);                                          \
                int64_t y0 = (int64_t)floor(h), y1 = (int64_t)ceil(h);                             \
                int64_t x0 = (int64_t)floor(w), x1 = (int64_t)ceil(w);                             \
                double dh = h - (double)y0, dw = w - (double)x0;                                   \
                double v00 = (double)xp[y0 * g->W + x0], v10 = (double)xp[y1 * g->W + x0];         \
                double v01 = (double)xp[y0 * g->W + x1], v11 = (double)xp[y1 * g->W + x1];         \
                sw += mw * ((1 - dh) * (v01 - v00) + dh * (v11 - v10));                            \
                sh += mh * ((1 - dw) * (v10 - v00) + dw * (v11 - v01));                            \
            }                                                                                      \
        }                                                                                          \
        *gw = count ? sw / (double)count : 0.0;                                                    \
        *gh = count ? sh / (double)count : 0.0;                                                    \
    }                                                                                              \
    static void dps_trans_box_##SFX(const dps_ctx *c, int64_t k)                                  \
    {                                                                                              \
        const ty_dpsroi_geom *g = c->g;                                                            \
        int64_t pp = g->part * g->part, cpc = g->C / g->ncls;                                      \
        double *dt = c->dtrans + k * 2 * g->ncls * pp;                                             \
        memset(dt, 0, sizeof(double) * (size_t)(2 * g->ncls * pp));                               \
        if (g->no_trans || g->H == 0 || g->W == 0) {                                               \
            return;                                                                                \
        }                                                                                          \
        for (int64_t ch = 0; ch < g->C; ch++) {                                                    \
            const T *dy = (const T *)c->dy + (k * g->C + ch) * g->OH * g->OW;                      \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                int64_t ph = (int64_t)floor((double)oh / (double)g->OH * (double)g->part);         \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    int64_t pw = (int64_t)floor((double)ow / (double)g->OW * (double)g->part);     \
                    dps_bin b;                                                                     \
                    double gw, gh, d = (double)dy[oh * g->OW + ow];                                \
                    dps_bin_of(g, c->rois, c->trans, k, ch, oh, ow, &b);                           \
                    dps_slope_##SFX(g, &b, (const T *)c->x + (b.batch * g->C + ch) * g->H * g->W,  \
                                    &gw, &gh);                                                     \
                    double *at = dt + (ch / cpc) * 2 * pp + ph * g->part + pw;                     \
                    at[0] += d * gw * g->trans_std * b.rw;                                         \
                    at[pp] += d * gh * g->trans_std * b.rh;                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_DPS_SLOPE(float, f32)
DEFINE_DPS_SLOPE(double, f64)

static void
dps_trans_range(void *ctx, int64_t begin, int64_t end)
{
    const dps_ctx *c = ctx;
    for (int64_t k = begin; k < end; k++) {
        if (c->f64) {
            dps_trans_box_f64(c, k);
        } else {
            dps_trans_box_f32(c, k);
        }
    }
}

static void
dps_trans_run(const ty_dpsroi_geom *g, const double *rois, const double *trans, const void *x,
              const void *dy, double *dtrans, int f64)
{
    dps_ctx c = {.g = g, .rois = rois, .trans = trans, .x = x, .dy = dy,
                 .dtrans = dtrans, .f64 = f64};
    int64_t per = g->C * g->OH * g->OW * (g->spp * g->spp * 12 + 8) + 1;
    ty_parallel_for(g->K, MIN_CHUNK_WORK / per + 1, dps_trans_range, &c);
}

void
ty_dpsroi_trans_grad_f32(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                         const float *x, const float *dy, double *dtrans)
{
    dps_trans_run(g, rois, trans, x, dy, dtrans, 0);
}

void
ty_dpsroi_trans_grad_f64(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                         const double *x, const double *dy, double *dtrans)
{
    dps_trans_run(g, rois, trans, x, dy, dtrans, 1);
}
