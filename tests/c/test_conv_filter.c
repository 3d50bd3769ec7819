/* The filter gradient's data movement (kernels/cpu/conv_filter.h) against naive definitions,
 * under every instruction set the CPU runs: the transpose at tile edges, and the tap-major
 * panels with padding, strides, dilation, channel counts that split panels across taps (and
 * beyond the 16-float moves), images side by side, every entry of a panel written. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/cpu/conv_filter.h"

static float *
rand_floats(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        p[i] = (float)((double)ty_test_rand_bits() / (double)(1ull << 52) - 1.0);
    }
    return p;
}

static const ty_isa isas[] = {TY_ISA_GENERIC, TY_ISA_AVX2, TY_ISA_AVX512};

TEST(conv_filter_transpose_matches_naive)
{
    /* the last two are cut into column pieces (16384 floats, whole 16-column tiles) */
    static const int64_t dims[][2] = {{1, 1},  {3, 40},    {16, 16},  {33, 17},
                                      {64, 50}, {20, 5}, {33, 1100}, {5, 5000}};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int64_t rows = dims[t][0], cols = dims[t][1];
        float *src = rand_floats(rows * cols), *dst = rand_floats(rows * cols);
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (ty_conv_filter_set_isa(isas[k]) != isas[k]) {
                continue;
            }
            ty_transpose_f32(src, rows, cols, dst);
            int ok = 1;
            for (int64_t i = 0; i < rows; i++) {
                for (int64_t j = 0; j < cols; j++) {
                    ok &= dst[j * rows + i] == src[i * cols + j];
                }
            }
            CHECK(ok);
        }
        free(src);
        free(dst);
    }
    ty_conv_filter_set_isa(TY_ISA_AUTO);
}

TEST(conv_filter_sampled_pixels_match_naive)
{
    /* C, H, W, sh, sw: channel counts across the 16-channel blocks, strides 2 and 3, unequal */
    static const int64_t cases[][5] = {{3, 9, 11, 2, 2}, {40, 14, 14, 2, 2}, {17, 7, 10, 3, 1},
                                       {1, 1, 1, 2, 2}, {33, 8, 5, 1, 2}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int64_t C = cases[t][0], H = cases[t][1], W = cases[t][2], sh = cases[t][3];
        int64_t sw = cases[t][4], OH = (H - 1) / sh + 1, OW = (W - 1) / sw + 1;
        float *src = rand_floats(C * H * W), *dst = rand_floats(OH * OW * C + 1);
        dst[OH * OW * C] = 7.0f; /* a guard */
        ty_pixel_major_sampled_f32(src, C, H, W, sh, sw, OH, OW, dst);
        int ok = dst[OH * OW * C] == 7.0f;
        for (int64_t q = 0; q < OH * OW; q++) {
            for (int64_t c = 0; c < C; c++) {
                ok &= dst[q * C + c] == src[(c * H + q / OW * sh) * W + q % OW * sw];
            }
        }
        CHECK(ok);
        free(src);
        free(dst);
    }
}

/* col'(row, q) by its definition in conv_filter.h */
static float
tap_col_at(const ty_tap_src_f32 *s, int64_t row, int64_t q)
{
    int64_t tap = row / s->C, c = row % s->C, ki = tap / s->kw, kj = tap % s->kw;
    int64_t img = q / (s->OH * s->OW), pix = q % (s->OH * s->OW);
    int64_t ih = pix / s->OW * s->sh - s->ph + ki * s->dh;
    int64_t iw = pix % s->OW * s->sw - s->pw + kj * s->dw;
    if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) {
        return 0.0f;
    }
    return s->x[((img * s->H + ih) * s->W + iw) * s->C + c];
}

/* C, H, W, kh, kw, sh, sw, ph, pw, dh, dw */
static const int64_t tap_cases[][11] = {
    {3, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1},  {20, 8, 7, 3, 3, 1, 1, 1, 1, 1, 1},
    {5, 12, 10, 3, 2, 2, 1, 2, 0, 2, 1}, {40, 6, 6, 1, 1, 2, 2, 0, 0, 1, 1},
    {1, 5, 9, 2, 3, 1, 3, 3, 1, 1, 2},   {13, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1},
    /* runs across the taps of a kernel row: a stem (21 floats, beyond one 16-float move)
     * cut by the padding at either side, and one channel with a row of 17 taps */
    {3, 15, 13, 7, 7, 2, 2, 3, 3, 1, 1}, {2, 6, 7, 5, 4, 1, 1, 3, 2, 1, 1},
    {1, 5, 20, 3, 17, 1, 1, 1, 8, 1, 1},
};

static int
tap_pack_ok(const ty_tap_src_f32 *s, int64_t nimg)
{
    static const int widths[] = {4, 6, 12, 16, 32};
    int64_t rows = s->C * s->kh * s->kw, npix = nimg * s->OH * s->OW;
    float dst[40 * 32];
    int ok = 1;
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int width = widths[wi];
        for (int64_t i0 = 0; i0 < rows; i0 += width - 1) { /* panels straddling taps */
            int64_t len = rows - i0 < width ? rows - i0 : width;
            for (int64_t k0 = 0; k0 < npix; k0 += 11) { /* and rows, and images */
                int64_t kc = npix - k0 < 40 ? npix - k0 : 40;
                for (size_t q = 0; q < sizeof dst / sizeof dst[0]; q++) {
                    dst[q] = NAN;
                }
                ty_tap_pack_f32(s, i0, len, k0, kc, width, dst);
                for (int64_t p = 0; p < kc; p++) {
                    for (int i = 0; i < width; i++) {
                        float want = i < len ? tap_col_at(s, i0 + i, k0 + p) : 0.0f;
                        ok &= memcmp(&dst[p * width + i], &want, sizeof want) == 0;
                    }
                }
            }
        }
    }
    return ok;
}

TEST(conv_filter_tap_pack_matches_naive_columns)
{
    const int64_t nimg = 2;
    for (size_t t = 0; t < sizeof tap_cases / sizeof tap_cases[0]; t++) {
        const int64_t *g = tap_cases[t];
        float *x = rand_floats(nimg * g[0] * g[1] * g[2]);
        ty_tap_src_f32 s = {x, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9],
                            g[10], 0, 0};
        s.OH = (s.H + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
        s.OW = (s.W + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (ty_conv_filter_set_isa(isas[k]) == isas[k]) {
                CHECK(tap_pack_ok(&s, nimg));
            }
        }
        free(x);
    }
    ty_conv_filter_set_isa(TY_ISA_AUTO);
}

/* The flipped weight against its definition, on every ISA, and the nonfinite flag. */
TEST(conv_filter_flip_weight_matches_naive_and_flags_nonfinite)
{
    /* the last: 6 pieces of 16 output channels, run as parallel chunks */
    static const int64_t shapes[][4] = {{1, 5, 3, 9},  {2, 17, 20, 9}, {1, 33, 4, 1},
                                        {3, 4, 6, 4},  {1, 3, 2, 25},  {2, 40, 48, 9}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t G = shapes[t][0], OCg = shapes[t][1], Cg = shapes[t][2], kk = shapes[t][3];
        int64_t n = G * OCg * Cg * kk;
        float *w = rand_floats(n), *wt = rand_floats(n);
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (ty_conv_filter_set_isa(isas[k]) != isas[k]) {
                continue;
            }
            CHECK(ty_flip_weight_f32(w, G, OCg, Cg, kk, wt) == 0);
            int ok = 1;
            for (int64_t gi = 0; gi < G; gi++) {
                for (int64_t o = 0; o < OCg; o++) {
                    for (int64_t c = 0; c < Cg; c++) {
                        for (int64_t q = 0; q < kk; q++) {
                            ok &= wt[((gi * Cg + c) * OCg + o) * kk + kk - 1 - q] ==
                                  w[((gi * OCg + o) * Cg + c) * kk + q];
                        }
                    }
                }
            }
            CHECK(ok);
            float keep = w[n - 1];
            w[n - 1] = INFINITY;
            CHECK(ty_flip_weight_f32(w, G, OCg, Cg, kk, wt) == 1);
            w[n - 1] = NAN;
            CHECK(ty_flip_weight_f32(w, G, OCg, Cg, kk, wt) == 1);
            w[n - 1] = keep;
        }
        free(w);
        free(wt);
    }
    ty_conv_filter_set_isa(TY_ISA_AUTO);
}
