/* The direct 1x1 convolution kernel (kernels/cpu/conv1x1.h) on shapes that hit its edges:
 * planes of one pixel, of a partial vector, of whole vectors, of one vector more than a chunk,
 * of 13 vectors (shared out 4 + 3 + 3 + 3), of more chunks than one unit takes; output
 * channels off the register tile and units of one, two and four tiles; input channels in one,
 * two and three blocks, one channel and none; one and three images; image rows further apart
 * than a plane (ldx); on AVX-512, panels of 16 output channels and their tails, planes cut
 * into groups and chunks, the most input channels; on AVX2, image panels of 16 pixels and
 * their tails (a vector, a part of one), tiles of 6 rows and their tails, blocks of output
 * channels, strips of panels, channel blocks of at most 512, last panels of at most 4 pixels
 * with the output channels in the lanes (8 rows at a time where C is a multiple of 512).
 * Under every instruction set the
 * CPU runs and with 1, 2 and 3 threads, every output must be the documented chain, fma over
 * the input channels in order from +0 (computed here with fmaf), which also puts it within
 * rounding of a float64 reference; the epilogue must see each final output once. The gather that
 * subsamples (and pads) images for the kernel must copy exactly the sampled pixels. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/conv1x1.h"
#include "tianyuan/tianyuan.h"

/* The chain of conv1x1.h, one output at a time, and a float64 sum with its magnitude. */
static void
reference(const ty_c1x1_geom *g, const float *x, const float *w, float *chain, double *ref,
          double *mag)
{
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t o = 0; o < g->OC; o++) {
            for (int64_t p = 0; p < g->P; p++) {
                float acc = 0.0f;
                double s = 0, m = 0;
                for (int64_t c = 0; c < g->C; c++) {
                    float xv = x[(n * g->C + c) * g->ldx + p], wv = w[o * g->C + c];
                    acc = fmaf(wv, xv, acc);
                    s += (double)wv * xv;
                    m += fabs((double)wv * xv);
                }
                int64_t at = (n * g->OC + o) * g->P + p;
                chain[at] = acc;
                ref[at] = s;
                mag[at] = m;
            }
        }
    }
}

static int
run_case(const ty_c1x1_geom *g)
{
    int64_t nx = g->N * g->C * g->ldx, nw = g->OC * g->C, ny = g->N * g->OC * g->P;
    if (ny <= 0 || g->ldx < g->P) {
        return 0; /* every case has outputs and whole rows */
    }
    float *x = ty_test_rand_buf_f32(nx ? nx : 1), *w = ty_test_rand_buf_f32(nw ? nw : 1);
    for (int64_t i = 0; i < nx; i++) {
        x[i] = i % g->ldx < g->P ? x[i] : NAN; /* between rows: never part of an output */
    }
    float *chain = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    float *fused = malloc(sizeof(float) * (size_t)ny);
    double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
    unsigned char *seen = malloc((size_t)ny);
    reference(g, x, w, chain, ref, mag);
    int ok = 1;
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_conv1x1_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        for (int threads = 1; threads <= 3; threads++) {
            ok &= ty_set_num_threads(threads) == TY_OK;
            for (int64_t i = 0; i < ny; i++) {
                y[i] = NAN; /* every output must be written */
            }
            ty_conv1x1_f32(g, x, w, y, NULL);
            int bits = memcmp(y, chain, sizeof(float) * (size_t)ny) == 0, near = 1;
            for (int64_t i = 0; i < ny; i++) {
                near &= fabs((double)y[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6;
            }
            memset(seen, 0, (size_t)ny);
            ty_test_epi_probe pr = {fused, g->P, g->OC * g->P, seen};
            ty_gemm_epilogue_f32 epi = {.fn = ty_test_probe_epi, .ctx = &pr};
            ty_conv1x1_f32(g, x, w, fused, &epi);
            int once = 1;
            for (int64_t i = 0; i < ny; i++) {
                once &= seen[i] == 1 && fused[i] == y[i] + 1000.0f;
            }
            if (!(bits && near && once)) {
                fprintf(stderr, "  conv1x1 N=%lld C=%lld OC=%lld P=%lld isa %d threads %d: "
                        "bits %d near %d epilogue %d\n", (long long)g->N, (long long)g->C,
                        (long long)g->OC, (long long)g->P, isa, threads, bits, near, once);
                ok = 0;
            }
        }
    }
    ty_conv1x1_set_isa(TY_ISA_AUTO);
    free(x);
    free(w);
    free(chain);
    free(y);
    free(fused);
    free(ref);
    free(mag);
    free(seen);
    return ok;
}

TEST(conv1x1_is_the_documented_chain_on_every_isa_and_thread_count)
{
    int saved = ty_get_num_threads();
    /* N, C, OC, P, ldx - P */
    static const int64_t cases[][5] = {
        {1, 96, 25, 49},  /* 7x7: 3 vectors + 1 lane; channels off the tile and unit */
        {1, 13, 7, 1},    /* one pixel */
        {1, 5, 6, 16},    /* one whole vector */
        {2, 9, 13, 17},   /* a vector and one lane, two images */
        {1, 3, 4, 24},    /* AVX2: three whole vectors */
        {1, 20, 9, 65},   /* one lane past a chunk of 4 vectors */
        {3, 7, 50, 196},  /* 13 vectors: 4 + 3 + 3 + 3; units of 12 rows and the tail */
        {1, 2100, 11, 36}, /* three channel blocks of 700 */
        {1, 1025, 6, 10},  /* two channel blocks of 513 and 512 */
        {1, 1, 1, 3},     /* one channel */
        {1, 0, 5, 20},    /* no input channels: zeros */
        {1, 33, 400, 49}, /* units of 24 rows (AVX-512) */
        {1, 8, 200, 20},  /* units of two tiles */
        {2, 17, 70, 300, 0}, /* 19 vectors: two groups of chunks a unit (AVX-512, AVX2) */
        {2, 21, 13, 49, 15}, /* rows 64 floats apart, as conv2d pads 7x7 planes */
        {1, 9, 8, 196, 3},   /* rows 199 floats apart: every row's start shifts */
        /* AVX-512, channels in the lanes (P <= 64 off whole vectors, or 16; C <= 1024): */
        {1, 1024, 20, 30},   /* the most channels; panels of 16 and 4; chunks of 15 */
        {3, 5, 16, 63},      /* one panel an image: planes cut into groups of 21 */
        {1, 40, 48, 29},     /* a pixel past a chunk of 28 */
        {3, 30, 40, 16},     /* three panels, each over three images */
        /* AVX2, panels of 16 pixels copied, tiles of 6 rows, blocks of up to 48 rows: */
        {1, 11, 13, 8},      /* one whole vector; a tile of one row */
        {1, 12, 5, 3},       /* a partial vector, fewer rows than a tile */
        {2, 7, 97, 25},      /* a panel and a vector and a lane; blocks of 32, 32, 33 rows */
        {1, 700, 19, 41},    /* two channel blocks of 350; rows of 1, 6 */
        {1, 1025, 8, 16},    /* three channel blocks of 342, 342, 341 */
        {1, 5, 20, 4100, 4}, /* 257 panels: strips of 16 and the tail; rows shifted */
        {1, 3, 200, 16},     /* one panel: blocks cut to make units */
        /* AVX2, a last panel of at most 4 pixels in the lanes (the GEMM's ra_cols), its
         * chain over all C at once: */
        {1, 1100, 40, 50},   /* 2 pixels after 3 panels, over 3 channel blocks; 40 rows */
        {2, 37, 70, 19},     /* 3 pixels, two images; rows 64 + 6 */
        {1, 5, 3, 2},        /* the whole plane one tail of 2 pixels; 3 rows */
        {3, 520, 13, 36, 5}, /* 4 pixels after 2 panels, two channel blocks; rows shifted */
        {1, 7, 116, 196},    /* 2 blocks of 58 rows; 12 strips, the last with the 4 pixels */
        /* ... with C a multiple of 512 (rows 2 KiB apart), 8 rows at a time: */
        {1, 512, 45, 49},    /* 1 pixel after 3 panels; 8-row groups and one of 5 */
        {2, 1024, 61, 20, 3}, /* 4 pixels, two images, rows shifted; blocks of 30 and 31 */
        {1, 512, 300, 3},    /* the whole plane a tail of 3 pixels; blocks of 23, 24 rows */
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        ty_c1x1_geom g = {.N = cases[t][0], .C = cases[t][1], .OC = cases[t][2],
                          .P = cases[t][3], .ldx = cases[t][3] + cases[t][4]};
        CHECK(run_case(&g));
    }
    CHECK(ty_set_num_threads(saved) == TY_OK);
}

/* The gather: every sampled pixel where the kernel reads it, the floats between rows kept. */
static int
gather_case(int64_t C, int64_t H, int64_t W, int64_t sh, int64_t sw, int64_t pad)
{
    int64_t OH = (H - 1) / sh + 1, OW = (W - 1) / sw + 1, ldx = OH * OW + pad;
    float *x = ty_test_rand_buf_f32(C * H * W), *dst = malloc(sizeof(float) * (size_t)(C * ldx));
    for (int64_t i = 0; i < C * ldx; i++) {
        dst[i] = -7.0f;
    }
    ty_conv1x1_gather_f32(x, C, H, W, sh, sw, OH, OW, dst, ldx);
    int ok = 1;
    for (int64_t c = 0; c < C; c++) {
        for (int64_t i = 0; i < ldx; i++) {
            int64_t oh = i / OW, ow = i % OW;
            float want = i < OH * OW ? x[(c * H + oh * sh) * W + ow * sw] : -7.0f;
            ok &= memcmp(&dst[c * ldx + i], &want, sizeof want) == 0;
        }
    }
    free(x);
    free(dst);
    return ok;
}

TEST(conv1x1_gather_samples_and_pads_the_planes)
{
    int saved = ty_get_num_threads();
    for (int threads = 1; threads <= 2; threads++) {
        CHECK(ty_set_num_threads(threads) == TY_OK);
        CHECK(gather_case(3, 56, 56, 2, 2, 0));   /* ResNet's downsample */
        CHECK(gather_case(5, 7, 7, 1, 1, 15));    /* a copy into rows of 64 */
        CHECK(gather_case(4, 9, 10, 3, 2, 5));    /* uneven strides, odd sizes */
        CHECK(gather_case(700, 14, 14, 2, 2, 3)); /* channels over several pieces */
        /* AVX2 copies panels of pixels and reads rows as they lie; whole lines for the
         * AVX-512 register tiles (14x14 planes), which read 7x7 planes pixel by pixel where
         * they lie (up to 1024 channels) */
        ty_isa best = ty_conv1x1_set_isa(TY_ISA_AVX2);
        CHECK(best != TY_ISA_AVX2 ||
              (ty_conv1x1_ldx(9, 49) == 49 && ty_conv1x1_ldx(9, 196) == 196));
        best = ty_conv1x1_set_isa(TY_ISA_AVX512);
        CHECK(best != TY_ISA_AVX512 || (ty_conv1x1_ldx(1024, 49) == 49 &&
                                        ty_conv1x1_ldx(1025, 49) == 64 &&
                                        ty_conv1x1_ldx(96, 196) == 208));
        best = ty_conv1x1_set_isa(TY_ISA_GENERIC);
        CHECK(ty_conv1x1_ldx(9, 64) == 64 && ty_conv1x1_ldx(9, 196) == 208 &&
              ty_conv1x1_ldx(9, 48) == 48 && ty_conv1x1_ldx(9, 1) == 16);
        ty_conv1x1_set_isa(TY_ISA_AUTO);
    }
    CHECK(ty_set_num_threads(saved) == TY_OK);
}
