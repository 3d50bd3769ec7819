/* Dense convolution kernels: implicit im2col panels against a naive im2col, the GEMM with a
 * packing callback against the GEMM on the explicit column matrix (bit for bit), and Winograd
 * F(2,3) / F(4,3) against a float64 direct convolution, under every GEMM family the CPU runs
 * and with 1 and 2 threads (same bits); the fused forward (bias, relu) against conv2d then the
 * same expressions; the packs over several images side by side. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/im2col.h"
#include "ops/conv.h"
#include "tianyuan/tianyuan.h"

typedef struct cgeom {
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw;
} cgeom;

static ty_im2col_src_f32
src_of(const cgeom *g, const float *x)
{
    ty_im2col_src_f32 s = {x, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                           g->dh, g->dw, 0, 0, 0};
    s.OH = (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1;
    s.OW = (g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
    return s;
}

/* col(k, pix), the definition in im2col.h */
static float
col_at(const ty_im2col_src_f32 *s, int64_t k, int64_t pix)
{
    int64_t c = k / (s->kh * s->kw), i = k / s->kw % s->kh, j = k % s->kw;
    int64_t ih = pix / s->OW * s->sh - s->ph + i * s->dh;
    int64_t iw = pix % s->OW * s->sw - s->pw + j * s->dw;
    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) {
        return 0.0f;
    }
    return s->x[(c * s->H + ih) * s->W + iw];
}

/* odd channels, strides, dilations, padding wider than the kernel, one-pixel outputs, a
 * kernel wider than the range table (9) */
static const cgeom conv_cases[] = {
    {3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1}, {2, 8, 9, 3, 2, 2, 2, 1, 0, 1, 1},
    {3, 12, 10, 5, 3, 1, 2, 2, 1, 1, 3}, {1, 4, 4, 4, 4, 1, 1, 3, 3, 1, 1},
    {2, 7, 5, 2, 3, 3, 1, 0, 2, 3, 1},  {5, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},
    {3, 16, 16, 7, 7, 2, 2, 3, 3, 1, 1}, {2, 6, 30, 1, 9, 1, 2, 0, 4, 1, 1},
    {4, 14, 14, 1, 1, 2, 2, 0, 0, 1, 1},
};

TEST(im2col_pack_matches_naive_columns)
{
    static const int widths[] = {4, 8, 12, 16, 32};
    for (size_t t = 0; t < sizeof(conv_cases) / sizeof(conv_cases[0]); t++) {
        const cgeom *g = &conv_cases[t];
        float *x = ty_test_rand_buf_f32(g->C * g->H * g->W);
        ty_im2col_src_f32 s = src_of(g, x);
        int64_t K = g->C * g->kh * g->kw, npix = s.OH * s.OW;
        int ok = 1;
        for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++) {
            int width = widths[wi];
            float dst[40 * 32];
            for (int64_t i0 = 0; i0 < npix; i0 += width - 1) { /* panels straddling rows */
                int64_t len = npix - i0 < width ? npix - i0 : width;
                for (int64_t k0 = 0; k0 < K; k0 += 7) {
                    int64_t kc = K - k0 < 40 ? K - k0 : 40;
                    for (size_t q = 0; q < sizeof dst / sizeof dst[0]; q++) {
                        dst[q] = NAN; /* every entry, padding lanes too, must be written */
                    }
                    ty_im2col_pack_f32(&s, i0, len, k0, kc, width, dst);
                    for (int64_t p = 0; p < kc; p++) {
                        for (int i = 0; i < width; i++) {
                            float want = i < len ? col_at(&s, k0 + p, i0 + i) : 0.0f;
                            ok &= memcmp(&dst[p * width + i], &want, sizeof want) == 0;
                        }
                    }
                }
            }
        }
        CHECK(ok);
        free(x);
    }
}

/* col(k, q) of images side by side: q = n*OH*OW + pix reads image n at x + n*img_stride. */
static float
batch_col_at(const ty_im2col_src_f32 *s, int64_t k, int64_t q)
{
    int64_t npix = s->OH * s->OW;
    ty_im2col_src_f32 one = *s;
    one.x = s->x + q / npix * s->img_stride;
    return col_at(&one, k, q % npix);
}

/* Both packs over 3 images side by side (the batched forward's and the filter gradient's
 * panels, with the column-matrix row first in the transposed one), panels straddling image
 * boundaries, every entry written. */
TEST(im2col_packs_over_several_images_match_naive_columns)
{
    static const int widths[] = {5, 12, 32};
    enum { NIMG = 3 };
    for (size_t t = 0; t < sizeof(conv_cases) / sizeof(conv_cases[0]); t++) {
        const cgeom *g = &conv_cases[t];
        int64_t img = g->C * g->H * g->W + 3; /* images not back to back */
        float *x = ty_test_rand_buf_f32(NIMG * img);
        ty_im2col_src_f32 s = src_of(g, x);
        s.img_stride = img;
        int64_t K = g->C * g->kh * g->kw, npix = NIMG * s.OH * s.OW;
        int ok = 1;
        for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++) {
            int width = widths[wi];
            float dst[300 * 32];
            for (int64_t i0 = 0; i0 < npix; i0 += width - 1) { /* pixel-first panels */
                int64_t len = npix - i0 < width ? npix - i0 : width;
                for (int64_t k0 = 0; k0 < K; k0 += 7) {
                    int64_t kc = K - k0 < 40 ? K - k0 : 40;
                    for (size_t q = 0; q < sizeof dst / sizeof dst[0]; q++) {
                        dst[q] = NAN;
                    }
                    ty_im2col_pack_f32(&s, i0, len, k0, kc, width, dst);
                    for (int64_t p = 0; p < kc; p++) {
                        for (int i = 0; i < width; i++) {
                            float want = i < len ? batch_col_at(&s, k0 + p, i0 + i) : 0.0f;
                            ok &= memcmp(&dst[p * width + i], &want, sizeof want) == 0;
                        }
                    }
                }
            }
            for (int64_t i0 = 0; i0 < K; i0 += width - 2) { /* row-first panels */
                int64_t len = K - i0 < width ? K - i0 : width;
                for (int64_t k0 = 0; k0 < npix; k0 += 97) {
                    int64_t kc = npix - k0 < 300 ? npix - k0 : 300; /* past 256 pixels */
                    for (size_t q = 0; q < sizeof dst / sizeof dst[0]; q++) {
                        dst[q] = NAN;
                    }
                    ty_im2col_pack_t_f32(&s, i0, len, k0, kc, width, dst);
                    for (int64_t p = 0; p < kc; p++) {
                        for (int i = 0; i < width; i++) {
                            float want = i < len ? batch_col_at(&s, i0 + i, k0 + p) : 0.0f;
                            ok &= memcmp(&dst[p * width + i], &want, sizeof want) == 0;
                        }
                    }
                }
            }
        }
        CHECK(ok);
        free(x);
    }
}

/* Runs body once per GEMM family the CPU has and per thread count 1, 2. */
#define FOR_ISA_AND_THREADS(isa, threads)                                                          \
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++)                                    \
        if (ty_gemm_set_isa((ty_isa)isa) == (ty_isa)isa)                                           \
            for (int threads = 1; threads <= 2; threads++)                                         \
                if (ty_set_num_threads(threads) == TY_OK)

TEST(gemm_with_packed_columns_equals_gemm_on_im2col)
{
    int saved = ty_get_num_threads();
    static const int64_t ocs[] = {1, 13, 64};
    for (size_t t = 0; t < sizeof(conv_cases) / sizeof(conv_cases[0]); t++) {
        const cgeom *g = &conv_cases[t];
        float *x = ty_test_rand_buf_f32(g->C * g->H * g->W);
        ty_im2col_src_f32 s = src_of(g, x);
        int64_t K = g->C * g->kh * g->kw, npix = s.OH * s.OW;
        float *col = malloc(sizeof(float) * (size_t)(K * npix));
        ty_im2col_f32(x, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh,
                      g->dw, s.OH, s.OW, col);
        for (size_t oi = 0; oi < sizeof(ocs) / sizeof(ocs[0]); oi++) {
            int64_t OC = ocs[oi];
            float *w = ty_test_rand_buf_f32(OC * K);
            float *want = malloc(sizeof(float) * (size_t)(OC * npix));
            float *got = malloc(sizeof(float) * (size_t)(OC * npix));
            FOR_ISA_AND_THREADS(isa, threads)
            {
                ty_gemm_f32(OC, npix, K, w, K, 1, col, npix, 1, want, npix, 0);
                ty_gemm_operand_f32 a = {.m = w, .rs = K, .cs = 1};
                ty_gemm_operand_f32 b = {.pack = ty_im2col_pack_f32, .ctx = &s};
                ty_gemm_f32_operands(OC, npix, K, &a, &b, got, npix, 0, NULL);
                CHECK(memcmp(got, want, sizeof(float) * (size_t)(OC * npix)) == 0);
                /* the columns as A (pixels as rows): C^T, the same bits */
                ty_gemm_operand_f32 at = {.pack = ty_im2col_pack_f32, .ctx = &s};
                ty_gemm_operand_f32 bt = {.m = w, .rs = 1, .cs = K};
                float *gt = malloc(sizeof(float) * (size_t)(OC * npix));
                ty_gemm_f32_operands(npix, OC, K, &at, &bt, gt, OC, 0, NULL);
                int ok = 1;
                for (int64_t i = 0; i < OC; i++) {
                    for (int64_t j = 0; j < npix; j++) {
                        ok &= memcmp(&gt[j * OC + i], &want[i * npix + j], sizeof(float)) == 0;
                    }
                }
                CHECK(ok);
                free(gt);
            }
            free(w);
            free(want);
            free(got);
        }
        free(col);
        free(x);
    }
    ty_gemm_set_isa(TY_ISA_AUTO);
    CHECK(ty_set_num_threads(saved) == TY_OK);
}

/* ---- Winograd ---- */

/* One image: x (C, H, W), y (OC, OH, OW). */
static void
direct_f64(const ty_wino_geom *g, const float *x, const float *w, double *y, double *mag)
{
    for (int64_t o = 0; o < g->OC; o++) {
        for (int64_t oh = 0; oh < g->OH; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow++) {
                double acc = 0, m = 0;
                for (int64_t c = 0; c < g->C; c++) {
                    for (int64_t i = 0; i < 3; i++) {
                        for (int64_t j = 0; j < 3; j++) {
                            int64_t ih = oh - g->ph + i, iw = ow - g->pw + j;
                            if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) {
                                double p = (double)x[(c * g->H + ih) * g->W + iw] *
                                           (double)w[((o * g->C + c) * 3 + i) * 3 + j];
                                acc += p;
                                m += fabs(p);
                            }
                        }
                    }
                }
                y[(o * g->OH + oh) * g->OW + ow] = acc;
                mag[(o * g->OH + oh) * g->OW + ow] = m;
            }
        }
    }
}

TEST(winograd_matches_direct_convolution_with_fixed_bits)
{
    int saved = ty_get_num_threads();
    /* N, C, H, W, OC, ph, pw: output sizes that are and are not multiples of 2 and 4,
     * one-pixel outputs, padding 0..2, single channels; batches that take one chunk of images
     * and (about 100 tiles an image) several; 600 channels take the fused path (output
     * channels in blocks, the last one partial); one image with many output channels goes
     * in bands of tile rows (26x26 and 40x22 in 1 or 2 bands, 60x60 with 400 output channels
     * in 8 (F(4,3)) and 15 (F(2,3)) on AVX2, partial tiles in the last); 13 and 600 channels
     * take the vector tap gathers in blocks of 8 (AVX2) or 16 (AVX-512) with and without a
     * scalar tail; every unfused case also from its transformed weight computed apart, bitwise */
    static const int64_t cases[][7] = {
        {1, 3, 9, 11, 5, 1, 1}, {1, 1, 3, 3, 1, 0, 0}, {1, 4, 8, 8, 4, 1, 1},
        {1, 2, 5, 7, 3, 2, 0},  {1, 16, 17, 13, 9, 1, 2}, {1, 1, 1, 1, 2, 1, 1},
        {1, 7, 12, 6, 1, 0, 1}, {3, 2, 6, 7, 3, 1, 1},   {7, 3, 20, 20, 2, 1, 1},
        {3, 600, 4, 5, 30, 1, 1}, {1, 3, 26, 26, 200, 1, 1}, {1, 2, 40, 22, 190, 0, 1},
        {1, 13, 6, 5, 4, 1, 1},  {1, 3, 60, 60, 400, 1, 1},
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        ty_wino_geom g = {.N = cases[t][0], .C = cases[t][1], .H = cases[t][2],
                          .W = cases[t][3], .OC = cases[t][4], .ph = cases[t][5],
                          .pw = cases[t][6]};
        g.OH = g.H + 2 * g.ph - 2;
        g.OW = g.W + 2 * g.pw - 2;
        REQUIRE(g.OH >= 1 && g.OW >= 1);
        g.xstride = g.C * g.H * g.W;
        g.ystride = g.OC * g.OH * g.OW;
        int64_t ny = g.N * g.ystride;
        float *x = ty_test_rand_buf_f32(g.N * g.xstride), *w = ty_test_rand_buf_f32(g.OC * g.C * 9);
        double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
        for (int64_t n = 0; n < g.N; n++) {
            direct_f64(&g, x + n * g.xstride, w, ref + n * g.ystride, mag + n * g.ystride);
        }
        for (int m = 2; m <= 4; m += 2) {
            size_t wsn = ty_conv_wino_ws_floats(&g, m);
            REQUIRE(wsn > 0);
            float *ws = malloc(sizeof(float) * wsn);
            float *y = malloc(sizeof(float) * (size_t)ny), *y1 = malloc(sizeof(float) * (size_t)ny);
            FOR_ISA_AND_THREADS(isa, threads)
            {
                for (int64_t i = 0; i < ny; i++) {
                    y[i] = NAN; /* every output must be written */
                }
                CHECK(ty_conv_wino_f32(&g, m, x, w, y, ws, NULL) == 0);
                int ok = 1;
                for (int64_t i = 0; i < ny; i++) {
                    ok &= fabs((double)y[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6;
                }
                if (!ok) {
                    fprintf(stderr, "  winograd m=%d case %zu isa %d threads %d\n", m, t, isa,
                            threads);
                }
                CHECK(ok);
                if (threads == 1) {
                    memcpy(y1, y, sizeof(float) * (size_t)ny);
                } else {
                    CHECK(memcmp(y, y1, sizeof(float) * (size_t)ny) == 0);
                }
                if (!ty_conv_wino_fuses(&g, m)) { /* from a transformed weight kept aside */
                    float *u = malloc(sizeof(float) * ty_conv_wino_u_floats(&g, m));
                    float *yu = malloc(sizeof(float) * (size_t)ny);
                    for (int64_t i = 0; i < ny; i++) {
                        yu[i] = NAN;
                    }
                    CHECK(ty_conv_wino_weights_f32(&g, m, w, u) == 0);
                    CHECK(ty_conv_wino_f32_u(&g, m, x, u, yu, ws, NULL) == 0);
                    CHECK(memcmp(yu, y, sizeof(float) * (size_t)ny) == 0);
                    free(u);
                    free(yu);
                }
            }
            free(ws);
            free(y);
            free(y1);
        }
        free(x);
        free(w);
        free(ref);
        free(mag);
    }
    ty_gemm_set_isa(TY_ISA_AUTO);
    CHECK(ty_set_num_threads(saved) == TY_OK);
}

TEST(gemm_thread_count_keeps_bits_across_k_blocks)
{
    /* Deep products (several K blocks) split over threads pack B for all of K in one pass;
     * narrow ones read A in place. Either way every element gets its block sums in K order:
     * 1 and 2 threads give the same bits, accumulating or not. */
    int saved = ty_get_num_threads();
    static const int64_t shapes[][3] = {{100, 49, 1100}, {40, 300, 1030}, {37, 200, 1025}};
    for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
        int64_t M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        float *A = ty_test_rand_buf_f32(M * K), *B = ty_test_rand_buf_f32(K * N), *C0 = ty_test_rand_buf_f32(M * N);
        float *c1 = malloc(sizeof(float) * (size_t)(M * N));
        float *c2 = malloc(sizeof(float) * (size_t)(M * N));
        for (int acc = 0; acc <= 1; acc++) {
            FOR_ISA_AND_THREADS(isa, threads)
            {
                float *c = threads == 1 ? c1 : c2;
                memcpy(c, C0, sizeof(float) * (size_t)(M * N));
                ty_gemm_f32(M, N, K, A, K, 1, B, N, 1, c, N, acc);
                if (threads == 2) {
                    CHECK(memcmp(c1, c2, sizeof(float) * (size_t)(M * N)) == 0);
                }
            }
        }
        free(A);
        free(B);
        free(C0);
        free(c1);
        free(c2);
    }
    ty_gemm_set_isa(TY_ISA_AUTO);
    CHECK(ty_set_num_threads(saved) == TY_OK);
}

/* ---- the fused forward: conv2d, then + bias, then relu, bit for bit ---- */

static ty_tensor *
tensor_f(ty_dtype dt, int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    ty_tensor *t = NULL;
    if (ty_tensor_empty(dt, ndim, shape, &t) != TY_OK) {
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (dt == TY_FLOAT64) {
            ((double *)ty_tensor_data(t))[i] = (double)ty_test_rand_f32();
        } else {
            ((float *)ty_tensor_data(t))[i] = ty_test_rand_f32();
        }
    }
    return t;
}

TEST(conv_forward_fused_equals_conv_then_bias_then_relu)
{
    /* x shape, weight shape, stride, pad: implicit im2col, 1x1, Winograd F(4,3), groups */
    static const int64_t cases[][10] = {
        {2, 5, 11, 9, 7, 5, 3, 3, 2, 1},   {1, 9, 7, 6, 11, 9, 1, 1, 1, 0},
        {1, 64, 28, 28, 64, 64, 3, 3, 1, 1}, {2, 6, 9, 9, 4, 3, 3, 3, 1, 1},
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        const int64_t *k = cases[t];
        for (int dt = 0; dt < 2; dt++) {
            ty_dtype dtype = dt ? TY_FLOAT64 : TY_FLOAT32;
            if (dt && k[1] >= 64) {
                continue; /* the Winograd case: float32 only, and slow in float64 debug builds */
            }
            ty_p_conv p = {.stride_h = k[8], .stride_w = k[8], .pad_h = k[9], .pad_w = k[9],
                           .dilate_h = 1, .dilate_w = 1, .groups = k[1] / k[5]};
            int64_t xs[4] = {k[0], k[1], k[2], k[3]}, ws[4] = {k[4], k[5], k[6], k[7]};
            int64_t bs[1] = {k[4]};
            ty_tensor *x = tensor_f(dtype, 4, xs), *w = tensor_f(dtype, 4, ws);
            ty_tensor *b = tensor_f(dtype, 1, bs), *in[2] = {x, w}, *y = NULL, *fused = NULL;
            REQUIRE(x && w && b);
            CHECK_OK(ty_apply(TY_OP_CONV2D, &p, 2, in, 1, &y));
            CHECK_OK(ty_tensor_empty(dtype, 4, y->shape, &fused));
            for (int act = 0; act <= 1; act++) {
                for (int with_bias = 0; with_bias <= 1; with_bias++) {
                    CHECK_OK(ty_conv2d_forward_fused(&p, x, w, with_bias ? b : NULL,
                                                     (ty_conv_act)act, fused));
                    int64_t n = ty_tensor_numel(y), plane = y->shape[2] * y->shape[3];
                    int ok = 1;
                    for (int64_t i = 0; i < n; i++) {
                        int64_t oc = i / plane % y->shape[1];
                        if (dtype == TY_FLOAT32) {
                            float v = ((const float *)ty_tensor_data(y))[i];
                            v = with_bias ? v + ((const float *)ty_tensor_data(b))[oc] : v;
                            v = act ? (!(v <= 0) ? v : 0.0f) : v;
                            ok &= memcmp(&v, (const float *)ty_tensor_data(fused) + i, 4) == 0;
                        } else {
                            double v = ((const double *)ty_tensor_data(y))[i];
                            v = with_bias ? v + ((const double *)ty_tensor_data(b))[oc] : v;
                            v = act ? (!(v <= 0) ? v : 0.0) : v;
                            ok &= memcmp(&v, (const double *)ty_tensor_data(fused) + i, 8) == 0;
                        }
                    }
                    CHECK(ok);
                }
            }
            int64_t bad[1] = {k[4] + 1};
            ty_tensor *b2 = tensor_f(dtype, 1, bad);
            CHECK(ty_conv2d_forward_fused(&p, x, w, b2, TY_CONV_ACT_RELU, fused) == TY_ERR_SHAPE);
            ty_tensor_release(b2);
            ty_tensor_release(x);
            ty_tensor_release(w);
            ty_tensor_release(b);
            ty_tensor_release(y);
            ty_tensor_release(fused);
        }
    }
}
