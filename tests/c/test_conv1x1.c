/* The direct 1x1 convolution kernel (kernels/cpu/conv1x1.h) on shapes that hit its edges:
 * planes of one pixel, of a partial vector, of whole vectors, of one vector more than a chunk,
 * of 13 vectors (shared out 4 + 3 + 3 + 3), of more chunks than one unit takes; output
 * channels off the register tile and units of one, two and four tiles; input channels in one,
 * two and three blocks, one channel and none; one and three images; image rows further apart
 * than a plane (ldx); on AVX-512, panels of 16 output channels and their tails, planes cut
 * into groups and chunks, the most input channels; on AVX2, image panels of 16 pixels and
 * their tails (a vector, a part of one), tiles of 6 rows and their tails, blocks of output
 * channels, strips of panels, channel blocks of at most 512, whole panels read in place (rows
 * on cache lines, few tiles or an odd number of lines apart), last panels of at most 4 pixels
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
        /* AVX2, whole panels read in place (rows on lines, at most 6 tiles): */
        {2, 144, 24, 784},   /* 28x28: 49 panels in strips, 4 tiles */
        {1, 600, 36, 80, 16}, /* rows 96 apart: two channel blocks of 300, 6 tiles */
        {1, 9, 30, 40, 8},   /* two panels in place, the last 8 pixels copied */
        {1, 20, 37, 64},     /* 7 tiles, rows 4 lines apart: copied */
        {1, 30, 50, 40, 8},  /* 9 tiles, rows 3 lines apart: in place, but the last 8 pixels */
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

/* ---- the batch norm chain of an epilogue (gemm.h's ty_epi_bn_f32) ----
 * The AVX2 tiles run it on their accumulators; the lanes' tail and every other kernel call
 * the epilogue's fn, here the chain one element at a time with the ops' own expressions (the
 * unfused steps: sub, mul, add, the residual add, relu or relu6). Whoever computes an
 * element, it must come out with the bits of the reference: the product, then the steps. */
static float
bn_chain_ref(float y, float mean, float scale, float beta, float r, int res_order, int act)
{
    float v = y - mean;
    v = v * scale;
    v = v + beta;
    v = res_order == 1 ? v + r : res_order == 2 ? r + v : v;
    if (act == 1) {
        v = !(v <= 0) ? v : 0.0f;
    } else if (act == 2) {
        v = !(v <= 0) ? (!(v >= 6) ? v : 6.0f) : 0.0f;
    }
    return v;
}

typedef struct bn_fn_ctx {
    const ty_epi_bn_f32 *bn;
    const float *y;   /* the output's base */
    int64_t OC, P;
    _Atomic int64_t handed; /* elements the kernel handed to fn */
} bn_fn_ctx;

static void
bn_fn(const void *vctx, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float *c,
      int64_t ldc)
{
    bn_fn_ctx *ctx = (bn_fn_ctx *)vctx;
    const ty_epi_bn_f32 *bn = ctx->bn;
    (void)j0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t o = i0 + i;
        for (int64_t j = 0; j < cols; j++) {
            int64_t e = c + i * ldc + j - ctx->y;
            float r = bn->res_order ? bn->res[e] : 0.0f;
            bn->out[e] = bn_chain_ref(c[i * ldc + j], bn->mean[o], bn->scale[o], bn->beta[o], r,
                                      bn->res_order, bn->act);
        }
    }
    atomic_fetch_add(&ctx->handed, rows * cols);
}

static float
nan_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Channel constants that reach the chain's edges: NaN, infinities, products that overflow,
 * exact 6 and signed zeros before the activation (a zero scale), and ordinary values. */
static void
bn_constants(int64_t OC, float *mean, float *scale, float *beta)
{
    for (int64_t o = 0; o < OC; o++) {
        mean[o] = ty_test_rand_f32();
        scale[o] = 4.0f * ty_test_rand_f32();
        beta[o] = 3.0f * ty_test_rand_f32();
        switch (o % 9) {
        case 1: scale[o] = 0.0f, beta[o] = 6.0f; break;   /* exactly 6 */
        case 2: scale[o] = 0.0f, beta[o] = -0.0f; break;  /* +0 or -0 */
        case 3: mean[o] = nan_bits(0x7fc54321u); break;
        case 4: scale[o] = INFINITY; break;
        case 5: beta[o] = -INFINITY; break;
        case 6: scale[o] = -1.0f, beta[o] = 6.000001f; break;
        case 7: scale[o] = 1e38f; break;                  /* overflows to infinities */
        default: break;
        }
    }
}

enum { BN_OUT_IN_PLACE, BN_OUT_APART, BN_OUT_ON_RES };

/* One shape, residual order, activation and output place, at 1..3 threads under each ISA. */
static int
bn_case(const ty_c1x1_geom *g, int res_order, int act, int place)
{
    int64_t nx = g->N * g->C * g->ldx, nw = g->OC * g->C, ny = g->N * g->OC * g->P;
    float *x = ty_test_rand_buf_f32(nx), *w = ty_test_rand_buf_f32(nw);
    float *res0 = ty_test_rand_buf_f32(ny), *res = malloc(sizeof(float) * (size_t)ny);
    float *y0 = malloc(sizeof(float) * (size_t)ny), *want = malloc(sizeof(float) * (size_t)ny);
    float *y = malloc(sizeof(float) * (size_t)ny), *apart = malloc(sizeof(float) * (size_t)ny);
    size_t nc = sizeof(float) * (size_t)g->OC;
    float *mean = malloc(nc), *scale = malloc(nc), *beta = malloc(nc);
    /* a NaN of its own payload: NaN + NaN keeps the first operand's, so the order shows */
    const float special[] = {nan_bits(0x7fc12345u), -0.0f, 0.0f, INFINITY, -INFINITY, 6.0f,
                             -6.0f, 1e-40f};
    for (int64_t i = 0; i < ny; i += 7) {
        res0[i] = special[i / 7 % 8];
    }
    if (nx > 3 * g->ldx) { /* an image pixel of NaN, one of an infinity */
        x[g->ldx + g->P / 2] = NAN;
        x[2 * g->ldx + g->P - 1] = INFINITY;
    }
    bn_constants(g->OC, mean, scale, beta);
    ty_conv1x1_set_isa(TY_ISA_AUTO);
    ty_conv1x1_f32(g, x, w, y0, NULL); /* every ISA's product has these bits */
    for (int64_t i = 0; i < ny; i++) {
        int64_t o = i / g->P % g->OC;
        want[i] = bn_chain_ref(y0[i], mean[o], scale[o], beta[o], res0[i], res_order, act);
    }
    int ok = 1;
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_conv1x1_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        for (int threads = 1; threads <= 3; threads++) {
            ok &= ty_set_num_threads(threads) == TY_OK;
            memcpy(res, res0, sizeof(float) * (size_t)ny);
            for (int64_t i = 0; i < ny; i++) {
                y[i] = apart[i] = NAN;
            }
            float *out = place == BN_OUT_IN_PLACE ? y : place == BN_OUT_APART ? apart : res;
            ty_epi_bn_f32 bn = {mean, scale, beta, res_order ? res : NULL, out, res_order, act};
            bn_fn_ctx ctx = {.bn = &bn, .y = y, .OC = g->OC, .P = g->P};
            atomic_init(&ctx.handed, 0);
            ty_gemm_epilogue_f32 epi = {.fn = bn_fn, .ctx = &ctx, .bn = &bn};
            ty_conv1x1_f32(g, x, w, y, &epi);
            int bits = memcmp(out, want, sizeof(float) * (size_t)ny) == 0;
            /* apart: y keeps the product */
            int kept = place == BN_OUT_IN_PLACE || memcmp(y, y0, sizeof(float) * (size_t)ny) == 0;
            /* AVX2 runs the chain in its tiles, and fn sees at most a plane's last 4 pixels
             * (a plane of 4 or fewer: all of it); other kernels hand fn everything */
            int64_t handed = atomic_load(&ctx.handed);
            int all = isa != TY_ISA_AVX2 || g->C == 0 || g->P <= 4;
            int regs = all ? handed == ny : handed <= g->N * g->OC * 4;
            if (!(bits && kept && regs)) {
                fprintf(stderr, "  conv1x1 chain N=%lld C=%lld OC=%lld P=%lld res %d act %d "
                        "place %d isa %d threads %d: bits %d kept %d handed %lld\n",
                        (long long)g->N, (long long)g->C, (long long)g->OC, (long long)g->P,
                        res_order, act, place, isa, threads, bits, kept, (long long)handed);
                ok = 0;
            }
        }
    }
    ty_conv1x1_set_isa(TY_ISA_AUTO);
    free(x);
    free(w);
    free(res0);
    free(res);
    free(y0);
    free(want);
    free(y);
    free(apart);
    free(mean);
    free(scale);
    free(beta);
    return ok;
}

TEST(conv1x1_runs_the_batch_norm_chain_with_the_steps_bits)
{
    int saved = ty_get_num_threads();
    /* N, C, OC, P: pixel tails of every panel length (1..16 alone, 17..20 the lanes' tail
     * after a panel, 21..36 a masked second panel); tiles of 1..6 rows and blocks of them;
     * two channel blocks (of 350); two images (channels restart) */
    static const int64_t shapes[][4] = {
        {1, 5, 1, 1},   {1, 3, 2, 2},   {1, 9, 3, 3},   {1, 4, 4, 4},   {1, 7, 5, 5},
        {1, 6, 6, 6},   {1, 5, 7, 7},   {1, 8, 8, 8},   {1, 3, 9, 9},   {1, 2, 10, 10},
        {1, 5, 11, 11}, {1, 6, 12, 12}, {1, 7, 13, 13}, {1, 9, 14, 14}, {1, 1, 15, 15},
        {1, 5, 16, 16}, {2, 4, 17, 17}, {1, 6, 18, 18}, {1, 3, 19, 19}, {1, 7, 6, 20},
        {1, 5, 5, 21},  {2, 6, 4, 24},  {1, 8, 3, 25},  {1, 9, 2, 29},  {1, 4, 1, 32},
        {1, 3, 7, 33},  {2, 7, 13, 36}, {1, 37, 25, 49}, {2, 700, 19, 41}, {1, 0, 5, 20},
        {1, 5, 40, 196}, {1, 3, 200, 16},
    };
    for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
        ty_c1x1_geom g = {.N = shapes[t][0], .C = shapes[t][1], .OC = shapes[t][2],
                          .P = shapes[t][3], .ldx = shapes[t][3]};
        for (int res = 0; res < 3; res++) {
            for (int act = 0; act < 3; act++) {
                for (int place = 0; place < 3; place++) {
                    if (place != BN_OUT_ON_RES || res) {
                        CHECK(bn_case(&g, res, act, place));
                    }
                }
            }
        }
    }
    CHECK(ty_set_num_threads(saved) == TY_OK);
}
