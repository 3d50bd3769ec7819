/* The direct convolution kernel (kernels/cpu/conv_direct.h) against a float64 reference on
 * geometries that hit its edges: strides 1-3 and unequal, padding wider than the window,
 * dilation, output widths off the vector and tile widths, output channels off the register
 * tile, one-pixel outputs, single channels, the 7x7/2 stem, and the output channels in the
 * lanes (AVX-512 and AVX2: channel tails, pixel tails and chunks, channel passes; AVX2's
 * 16-channel weight slices, with 8-channel halves past OC; the image read in place, the border
 * outputs' windows copied), AVX-512's 8-row tiles;
 * under every instruction set the CPU runs, with 1, 2 and 3 threads (the same bits), AVX2 and
 * AVX-512 giving the same bits, the lanes path's weights packed once
 * (ty_conv_direct_pack_f32) giving the bits of the per-call transposes; and the epilogue
 * called once over every output, after it is final; AVX2's whole-row tiles for stems (row
 * tails, channel tails, one-row tasks). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/gemm.h"
#include "tianyuan/tianyuan.h"

static void
reference(const ty_direct_geom *g, const float *x, const float *w, double *y, double *mag)
{
    for (int64_t o = 0; o < g->OC; o++) {
        for (int64_t oh = 0; oh < g->OH; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow++) {
                double acc = 0, m = 0;
                for (int64_t c = 0; c < g->C; c++) {
                    for (int64_t i = 0; i < g->KH; i++) {
                        for (int64_t j = 0; j < g->KW; j++) {
                            int64_t ih = oh * g->sh - g->ph + i * g->dh;
                            int64_t iw = ow * g->sw - g->pw + j * g->dw;
                            if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) {
                                double p = (double)x[(c * g->H + ih) * g->W + iw] *
                                           (double)w[((o * g->C + c) * g->KH + i) * g->KW + j];
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

/* The chain the AVX2 and AVX-512 kernels compute (conv_direct.h): per output, from +0,
 * acc = fma(w, x, acc) over (c, kh, kw) in that order, padding cells read as 0. */
static void
fma_chain(const ty_direct_geom *g, const float *x, const float *w, float *y)
{
    for (int64_t o = 0; o < g->OC; o++) {
        for (int64_t oh = 0; oh < g->OH; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow++) {
                float acc = 0.0f;
                for (int64_t c = 0; c < g->C; c++) {
                    for (int64_t i = 0; i < g->KH; i++) {
                        for (int64_t j = 0; j < g->KW; j++) {
                            int64_t ih = oh * g->sh - g->ph + i * g->dh;
                            int64_t iw = ow * g->sw - g->pw + j * g->dw;
                            int in = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W;
                            float xv = in ? x[(c * g->H + ih) * g->W + iw] : 0.0f;
                            acc = fmaf(w[((o * g->C + c) * g->KH + i) * g->KW + j], xv, acc);
                        }
                    }
                }
                y[(o * g->OH + oh) * g->OW + ow] = acc;
            }
        }
    }
}

TEST(direct_conv_matches_float64_with_fixed_bits_on_every_isa_and_thread_count)
{
    int saved = ty_get_num_threads(), packed_runs = 0, avx512 = 0;
    /* C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw */
    static const int64_t cases[][12] = {
        {3, 40, 38, 16, 7, 7, 2, 2, 3, 3, 1, 1},  /* a 7x7/2 stem */
        {5, 9, 10, 7, 3, 3, 2, 2, 1, 1, 1, 1},    /* channels off the tile */
        {16, 14, 14, 13, 3, 3, 2, 2, 1, 1, 1, 1}, /* 14 -> 7 */
        {9, 7, 7, 25, 3, 3, 1, 1, 1, 1, 1, 1},    /* a 7x7 plane, wide 63 */
        {4, 6, 5, 5, 3, 3, 3, 1, 0, 2, 1, 1},     /* unequal strides */
        {3, 11, 13, 9, 3, 3, 2, 2, 2, 2, 2, 2},   /* dilation */
        {2, 4, 4, 2, 4, 4, 1, 1, 3, 3, 1, 1},     /* padding wider than the window */
        {1, 1, 1, 1, 3, 3, 2, 2, 1, 1, 1, 1},     /* one pixel, all padding */
        {7, 17, 4, 11, 5, 5, 2, 2, 2, 2, 1, 1},   /* narrow image */
        {2, 30, 3, 3, 1, 9, 1, 2, 0, 4, 1, 1},    /* window wider than tall */
        {1, 35, 70, 8, 3, 3, 1, 1, 1, 1, 1, 1},   /* several row chunks and tiles */
        {0, 5, 5, 3, 3, 3, 1, 1, 0, 0, 1, 1},     /* no input channels: zeros */
        {40, 9, 9, 7, 3, 3, 1, 1, 1, 1, 1, 1},    /* channel blocks of 16: 16 + 16 + 8 */
        /* output channels in the lanes (3x3 windows, 16 channels or more; AVX2: 64+ terms) */
        {20, 15, 15, 77, 3, 3, 1, 1, 1, 1, 1, 1}, /* 64 + 13 channels, 2 pixel chunks, 16 + 4 */
        {9, 7, 7, 40, 3, 3, 2, 2, 1, 1, 1, 1},    /* 16 + 16 + 8 channels, stride 2 */
        {5, 11, 9, 33, 3, 3, 1, 1, 2, 2, 2, 2},   /* dilation, one lane of a third vector */
        {50, 6, 7, 16, 1, 3, 1, 2, 0, 1, 1, 1},   /* a 1x3 window: passes of 48 + 2 channels */
        {17, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1}, /* 196 pixels, one chunk of whole tiles + 4 */
        {3, 4, 4, 20, 3, 3, 1, 1, 0, 0, 1, 1},    /* 4 pixels: one short tile */
        {0, 5, 5, 20, 3, 3, 1, 1, 1, 1, 1, 1},    /* no input channels: zeros */
        {18, 9, 11, 24, 3, 3, 2, 2, 0, 0, 1, 1},  /* stride 2, no padding, odd widths */
        {16, 10, 9, 20, 3, 3, 2, 2, 2, 2, 2, 2},  /* stride 2, dilation, padding 2 */
        {8, 6, 30, 16, 3, 3, 2, 2, 1, 1, 1, 1},   /* stride 2, sub-plane rows of 16 cells */
        /* AVX2's lanes: tiles of 6 and 5 pixels, passes of 8 channels, 8 x 8 stores */
        {20, 14, 14, 24, 3, 3, 2, 2, 1, 1, 1, 1}, /* 7x7: 4 x 6 + 5 x 5, passes 8 + 8 + 4 */
        {9, 10, 10, 20, 3, 3, 2, 2, 1, 1, 1, 1},  /* 5x5: 5 tiles of 5, passes 8 + 1 */
        {8, 1, 26, 16, 3, 3, 2, 2, 1, 1, 1, 1},   /* 1x13: 6 + 6 + 1 (too few for fives) */
        {8, 56, 56, 20, 3, 3, 2, 2, 1, 1, 1, 1},  /* 4 chunks of 31 x 6 + 2 x 5 */
        {33, 13, 15, 17, 3, 3, 2, 2, 1, 1, 1, 1}, /* odd: 7x8 = 6 x 6 + 4 x 5, OC 16 + 1 */
        {8, 9, 2, 16, 3, 3, 1, 1, 1, 1, 1, 1},    /* no column inside: all border patches */
        {9, 3, 3, 16, 3, 3, 1, 1, 2, 2, 1, 1},    /* padding 2: 1 output inside, 24 border */
        {8, 12, 13, 16, 3, 3, 2, 3, 2, 1, 2, 1},  /* unequal strides, dilation: both borders */
        /* ... but not a 3-channel stem on a large plane: wide pixels (few taps per output) */
        {3, 70, 66, 20, 3, 3, 2, 2, 1, 1, 1, 1},  /* 35 x 33 outputs, 20 channels */
        /* AVX-512's 8-row tiles (8 divides the channels better than 6; 1024 wide pixels) */
        {3, 70, 66, 15, 3, 3, 2, 2, 1, 1, 1, 1},  /* 8 + 7 channels, 15 < 16: no lanes */
        {3, 76, 70, 40, 7, 7, 2, 2, 3, 3, 1, 1},  /* 5 blocks: groups of 4 + 1 */
        {20, 40, 30, 32, 5, 5, 1, 1, 2, 2, 1, 1}, /* passes of 5 channels through buf */
        /* AVX2's whole-row tiles (all channels in one pass: stems), stored straight to y */
        {3, 50, 61, 10, 3, 3, 2, 2, 1, 1, 1, 1},  /* rows of 24 + 7, channels 4 + 4 + 2 */
        {4, 23, 97, 6, 5, 5, 1, 1, 2, 2, 1, 1},   /* stride 1, rows of 4 x 24 + 1 */
        {3, 13, 130, 37, 7, 7, 2, 2, 3, 3, 1, 1}, /* 65 wide, 3 channel groups, one row */
        {1, 9, 16, 5, 3, 3, 2, 2, 0, 0, 1, 1},    /* one channel, no padding, 7 wide */
        {3, 17, 224, 24, 3, 3, 2, 2, 1, 1, 1, 1}, /* 112 wide, several rows a task */
    };
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        const int64_t *c = cases[t];
        ty_direct_geom g = {.C = c[0], .H = c[1], .W = c[2], .OC = c[3], .KH = c[4],
                            .KW = c[5], .sh = c[6], .sw = c[7], .ph = c[8], .pw = c[9],
                            .dh = c[10], .dw = c[11]};
        g.OH = (g.H + 2 * g.ph - g.dh * (g.KH - 1) - 1) / g.sh + 1;
        g.OW = (g.W + 2 * g.pw - g.dw * (g.KW - 1) - 1) / g.sw + 1;
        REQUIRE(g.OH >= 1 && g.OW >= 1);
        int64_t ny = g.OC * g.OH * g.OW;
        float *x = ty_test_rand_buf_f32(g.C * g.H * g.W), *w = ty_test_rand_buf_f32(g.OC * g.C * g.KH * g.KW);
        double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
        reference(&g, x, w, ref, mag);
        size_t wsn = ty_conv_direct_ws_floats(&g);
        REQUIRE(wsn > 0);
        float *ws = malloc(sizeof(float) * wsn);
        float *y = malloc(sizeof(float) * (size_t)ny), *first = malloc(sizeof(float) * (size_t)ny);
        float *fused = malloc(sizeof(float) * (size_t)ny);
        unsigned char *seen = malloc((size_t)ny);
        int have_fma = 0;
        float *fma_bits = malloc(sizeof(float) * (size_t)ny);
        float *chain = malloc(sizeof(float) * (size_t)ny);
        fma_chain(&g, x, w, chain);
        for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
            if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {
                continue;
            }
            avx512 |= isa == TY_ISA_AVX512;
            size_t npk = ty_conv_direct_packed_floats(&g); /* 0: the kernel takes no packing */
            float *packed = npk ? aligned_alloc(64, (npk * sizeof(float) + 63) / 64 * 64) : NULL;
            if (packed) {
                ty_conv_direct_pack_f32(&g, w, packed);
            }
            for (int threads = 1; threads <= 3; threads++) {
                REQUIRE(ty_set_num_threads(threads) == TY_OK);
                for (int64_t i = 0; i < ny; i++) {
                    y[i] = NAN; /* every output must be written */
                }
                for (size_t i = 0; i < wsn; i++) {
                    ws[i] = NAN; /* and every scratch cell it reads (the padding zeroed) */
                }
                ty_conv_direct_f32(&g, x, w, NULL, y, ws, NULL);
                int ok = 1;
                for (int64_t i = 0; i < ny; i++) {
                    ok &= fabs((double)y[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6;
                }
                if (!ok) {
                    fprintf(stderr, "  direct case %zu isa %d threads %d\n", t, isa, threads);
                }
                CHECK(ok);
                if (threads == 1) {
                    memcpy(first, y, sizeof(float) * (size_t)ny);
                } else {
                    CHECK(memcmp(y, first, sizeof(float) * (size_t)ny) == 0);
                }
                /* the epilogue sees each final element once */
                memset(seen, 0, (size_t)ny);
                ty_test_epi_probe pr = {fused, g.OH * g.OW, ny, seen};
                ty_gemm_epilogue_f32 epi = {.fn = ty_test_probe_epi, .ctx = &pr};
                ty_conv_direct_f32(&g, x, w, packed, fused, ws, &epi); /* packed: its bits too */
                int once = 1;
                for (int64_t i = 0; i < ny; i++) {
                    once &= seen[i] == 1 && fused[i] == y[i] + 1000.0f;
                }
                CHECK(once);
                if (packed) { /* the packed weights give the per-call transposes' bits */
                    ty_conv_direct_f32(&g, x, w, packed, fused, ws, NULL);
                    CHECK(memcmp(fused, y, sizeof(float) * (size_t)ny) == 0);
                    packed_runs++;
                }
            }
            free(packed);
            if (isa >= TY_ISA_AVX2) { /* exactly the chains of conv_direct.h */
                int same = memcmp(first, chain, sizeof(float) * (size_t)ny) == 0;
                if (!same) {
                    fprintf(stderr, "  direct case %zu isa %d: not the fma chains\n", t, isa);
                }
                CHECK(same);
            }
            if (isa >= TY_ISA_AVX2 && have_fma) { /* one fma chain: AVX2 = AVX-512 */
                CHECK(memcmp(first, fma_bits, sizeof(float) * (size_t)ny) == 0);
            } else if (isa >= TY_ISA_AVX2) {
                memcpy(fma_bits, first, sizeof(float) * (size_t)ny);
                have_fma = 1;
            }
        }
        free(x);
        free(w);
        free(ref);
        free(mag);
        free(ws);
        free(y);
        free(first);
        free(fused);
        free(seen);
        free(fma_bits);
        free(chain);
    }
    CHECK(!avx512 || packed_runs > 0); /* AVX-512's lanes cases read a packing */
    ty_gemm_set_isa(TY_ISA_AUTO);
    CHECK(ty_set_num_threads(saved) == TY_OK);
}
