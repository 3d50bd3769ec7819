/* 2-D convolution (NCHW, grouped, strided, padded, dilated) as im2col + GEMM, its two
 * backward ops, and the transposed convolution (whose forward is the backward-data math).
 *
 * Layouts: x (N, C, H, W), w (OC, C/G, KH, KW), y (N, OC, OH, OW). Per image n and group g,
 * y[n, g] (OC/G, OH*OW) = w[g] (OC/G, C/G*KH*KW) @ col(x[n, g]) (C/G*KH*KW, OH*OW).
 * The float32 forward packs col's GEMM panels straight from the image (no col buffer), reads
 * 1x1 stride-1 images as they lie, puts small images side by side in one GEMM, and takes
 * Winograd for 3x3 stride-1 layers where a cost model says it saves work, and a direct kernel
 * (kernels/cpu/conv_direct.h) for strided layers with short window sums and for small planes:
 * conv_fwd_algo_for() is the heuristic, and fastrun (ops/fastrun.h) chooses between it and
 * profiling. Backward-data is w^T @ dy then col2im, or, for a stride-1 layer whose flipped
 * forward takes Winograd, that forward of dy. Backward-filter sums over image ranges fixed
 * by the shape, each one GEMM of dy against col packed from a pixel-major copy of the images
 * (filter_range_f32; with few input channels, a GEMM per image reading dy in place:
 * filter_range_small_f32). Every choice depends on the shapes only (and, for the flip, on the
 * weight being finite). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/conv1x1.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/conv_filter.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/depthwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/im2col.h"
#include "ops/batch_tree.h"
#include "ops/conv.h"
#include "ops/fastrun.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

enum { PARAM_MAX = 1 << 30 };
/* Below this many multiply-adds per (image, group) item, items run in parallel. */
#define SMALL_ITEM_FMAS (1 << 20)
/* Small images are put side by side until one GEMM has about this many columns (forward,
 * backward-data): a product 16 columns wide (ResNet's 4x4 layers) runs at a fraction of the
 * speed of a wide one. The filter gradient's image ranges sum at least this many pixels. */
enum { BATCH_COLS = 512 };

typedef struct conv_geom {
    int64_t N, C, H, W;       /* convolution input */
    int64_t OC, KH, KW;       /* weight (OC, C/G, KH, KW) */
    int64_t OH, OW;           /* convolution output */
    int64_t G, Cg, OCg;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t kc;               /* Cg*KH*KW: rows of the column matrix */
    int64_t ohw;              /* OH*OW: its columns */
    int direct;               /* 1x1, stride 1, no padding: the image is its own col */
    int subsampled;           /* 1x1, strided, no padding: direct_1x1 subsamples the image */
} conv_geom;

static ty_status
check_params(const ty_p_conv *p)
{
    TY_CHECK(p->stride_h >= 1 && p->stride_w >= 1 && p->stride_h <= PARAM_MAX &&
                 p->stride_w <= PARAM_MAX,
             TY_ERR_INVALID_ARG, "stride must be in [1, 2^30], got (%lld, %lld)",
             (long long)p->stride_h, (long long)p->stride_w);
    TY_CHECK(p->dilate_h >= 1 && p->dilate_w >= 1 && p->dilate_h <= PARAM_MAX &&
                 p->dilate_w <= PARAM_MAX,
             TY_ERR_INVALID_ARG, "dilation must be in [1, 2^30], got (%lld, %lld)",
             (long long)p->dilate_h, (long long)p->dilate_w);
    TY_CHECK(p->pad_h >= 0 && p->pad_w >= 0 && p->pad_h <= PARAM_MAX && p->pad_w <= PARAM_MAX,
             TY_ERR_INVALID_ARG, "padding must be in [0, 2^30], got (%lld, %lld)",
             (long long)p->pad_h, (long long)p->pad_w);
    TY_CHECK(p->groups >= 1 && p->groups <= PARAM_MAX, TY_ERR_INVALID_ARG,
             "groups must be >= 1, got %lld", (long long)p->groups);
    return TY_OK;
}

/* Output extent of one spatial dim; 0 when the dilated kernel does not fit. */
static int
out_extent(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d, int64_t *out)
{
    int64_t span, padded;
    if (__builtin_mul_overflow(d, k - 1, &span) || __builtin_add_overflow(in, 2 * pad, &padded) ||
        padded <= span) {
        return 0;
    }
    *out = (padded - span - 1) / s + 1;
    return 1;
}

static ty_status
check_rank4(const ty_tensor *t, const char *what)
{
    char b[TY_SHAPE_BUF];
    TY_CHECK(t->ndim == 4, TY_ERR_SHAPE, "%s must be 4-d, got shape %s", what,
             ty_shape_str(t->ndim, t->shape, b, sizeof b));
    return TY_OK;
}

/* Geometry of conv(x of xshape, w of wshape) with every check the ops share. */
static ty_status
geom_init(const ty_p_conv *p, const int64_t *xs, const int64_t *ws, conv_geom *g)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(check_params(p));
    *g = (conv_geom){.N = xs[0], .C = xs[1], .H = xs[2], .W = xs[3], .OC = ws[0], .KH = ws[2],
                     .KW = ws[3], .G = p->groups, .sh = p->stride_h, .sw = p->stride_w,
                     .ph = p->pad_h, .pw = p->pad_w, .dh = p->dilate_h, .dw = p->dilate_w};
    TY_CHECK(g->C % g->G == 0 && g->OC % g->G == 0, TY_ERR_SHAPE,
             "groups=%lld must divide the input channels and the output channels: input %s, "
             "weight %s", (long long)g->G, ty_shape_str(4, xs, b1, sizeof b1),
             ty_shape_str(4, ws, b2, sizeof b2));
    g->Cg = g->C / g->G;
    g->OCg = g->OC / g->G;
    TY_CHECK(ws[1] == g->Cg, TY_ERR_SHAPE,
             "weight %s expects %lld input channels per group, input %s has %lld (groups=%lld)",
             ty_shape_str(4, ws, b2, sizeof b2), (long long)ws[1],
             ty_shape_str(4, xs, b1, sizeof b1), (long long)g->Cg, (long long)g->G);
    TY_CHECK(g->KH >= 1 && g->KW >= 1, TY_ERR_SHAPE, "weight %s has an empty kernel",
             ty_shape_str(4, ws, b2, sizeof b2));
    TY_CHECK(out_extent(g->H, g->KH, g->sh, g->ph, g->dh, &g->OH) &&
                 out_extent(g->W, g->KW, g->sw, g->pw, g->dw, &g->OW),
             TY_ERR_SHAPE,
             "kernel %lldx%lld with dilation (%lld, %lld) does not fit input %s padded by "
             "(%lld, %lld)", (long long)g->KH, (long long)g->KW, (long long)g->dh,
             (long long)g->dw, ty_shape_str(4, xs, b1, sizeof b1), (long long)g->ph,
             (long long)g->pw);
    int64_t kdims[3] = {g->Cg, g->KH, g->KW}, odims[2] = {g->OH, g->OW};
    TY_TRY(ty_shape_numel(3, kdims, &g->kc));
    TY_TRY(ty_shape_numel(2, odims, &g->ohw));
    int one = g->KH == 1 && g->KW == 1 && g->ph == 0 && g->pw == 0;
    g->direct = one && g->sh == 1 && g->sw == 1;
    g->subsampled = one && !g->direct;
    return TY_OK;
}

static void
geom_yshape(const conv_geom *g, int64_t *ys)
{
    ys[0] = g->N;
    ys[1] = g->OC;
    ys[2] = g->OH;
    ys[3] = g->OW;
}

/* The float result dtype of two operands (half types are computed in float32). */
static ty_status
float_dtype(const ty_tensor *a, const ty_tensor *b, ty_dtype *out)
{
    ty_dtype dt = ty_promote(a->dtype, b->dtype);
    TY_CHECK(ty_dtype_is_float(dt), TY_ERR_DTYPE, "operands must be floating point, got %s and %s",
             ty_dtype_name(a->dtype), ty_dtype_name(b->dtype));
    *out = dt;
    return TY_OK;
}

/* dy must have the shape the convolution of g produces. */
static ty_status
check_dy(const conv_geom *g, const ty_tensor *dy, const int64_t *xs, const int64_t *ws)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF], b3[TY_SHAPE_BUF], b4[TY_SHAPE_BUF];
    int64_t ys[4];
    geom_yshape(g, ys);
    TY_TRY(check_rank4(dy, "output gradient"));
    TY_CHECK(memcmp(dy->shape, ys, sizeof ys) == 0, TY_ERR_SHAPE,
             "output gradient has shape %s, expected %s for input %s and weight %s",
             ty_shape_str(4, dy->shape, b1, sizeof b1), ty_shape_str(4, ys, b2, sizeof b2),
             ty_shape_str(4, xs, b3, sizeof b3), ty_shape_str(4, ws, b4, sizeof b4));
    return TY_OK;
}

/* ---- the kernels, shared by all four ops ---- */
typedef enum conv_kind { CONV_FWD, CONV_BWD_DATA, CONV_BWD_FILTER } conv_kind;

/* How the forward convolution is computed. Per (image, group): y (OCg, OH*OW) = w @ col with
 * col (kc, OH*OW) the im2col matrix. The three im2col forms sum each output over k in order
 * with the GEMM's K blocking, so they give the same bits; Winograd rounds differently (its
 * transforms add before multiplying) and is chosen by shape like the others. */
typedef enum conv_fwd_algo {
    FWD_GEMM_1X1,      /* 1x1, stride 1, no padding: the image is its own col */
    FWD_IM2COL,        /* col written to a buffer first (float64) */
    FWD_IMPLICIT,      /* col's GEMM panels packed straight from the image */
    FWD_WINO_F23,      /* 3x3 stride 1: Winograd F(2x2, 3x3) (other bits: see its header) */
    FWD_WINO_F43,      /* 3x3 stride 1: Winograd F(4x4, 3x3) */
    FWD_DIRECT,        /* direct, over the padded image split by stride (conv_direct.h) */
    FWD_DIRECT_1X1,    /* 1x1 without padding, one group, float32: unpacked tiles (conv1x1.h;
                        * its own bits: one chain over all input channels); a strided layer's
                        * image subsampled first */
} conv_fwd_algo;

static ty_wino_geom
wino_geom(const conv_geom *g)
{
    return (ty_wino_geom){.N = g->N, .C = g->Cg, .H = g->H, .W = g->W, .OC = g->OCg,
                          .ph = g->ph, .pw = g->pw, .OH = g->OH, .OW = g->OW,
                          .xstride = g->C * g->H * g->W, .ystride = g->OC * g->ohw};
}

/* Costs in GEMM multiply-adds, measured on AVX-512 (the transforms are memory-bound passes):
 * transforming one input or product element costs about 48; one weight element about 16 while
 * the transformed weights stay in cache (up to about 4 MiB), about 24 where the kernel
 * transforms them block by block (ty_conv_wino_fuses: CIFAR's 512-channel 4x4 layer at batch
 * 32, F(4,3) 14 ms against F(2,3) 16 and im2col 19.5, one thread), about 96 beyond (ResNet's
 * 512 x 512 3x3 layer took 2.5 times as long with Winograd as with im2col at batch 1). */
enum {
    WINO_ACT_COST = 48,
    WINO_W_COST_CACHED = 16,
    WINO_W_COST_FUSED = 24,
    WINO_W_COST_MEMORY = 96,
    WINO_W_CACHED_FLOATS = 1 << 20,
    WINO_MAX_WS_BYTES = 1 << 30, /* larger workspaces: im2col + GEMM */
};

/* The transform passes' costs above in GEMM multiply-adds of this ISA: memory-bound passes
 * take the same time on AVX2, where a multiply-add of the GEMM takes twice as long, so they
 * cost half as many. On a Zen 3 (AVX2) with the AVX-512 costs, ResNet-18's 256-channel 14x14
 * layer took F(2,3) at 1.47 ms where F(4,3) ran in 0.85 (fast-run's pick), and the 512-channel
 * 7x7 layer the direct kernel at 6.1 ms where F(2,3) ran in 2.4. */
static double
wino_pass_scale(void)
{
    return ty_cpu_isa() == TY_ISA_AVX2 ? 0.5 : 1.0;
}

/* n rounded up to whole 16-lane vectors: what a GEMM computes for n columns. */
static double
lanes16(double n)
{
    return ceil(n / 16) * 16;
}

/* Estimated cost, in GEMM multiply-adds, of Winograd F(m x m, 3 x 3) for one group of all
 * the images (the weights are transformed once); -1 when its workspace would be too large. */
static double
wino_cost(const conv_geom *g, int m)
{
    ty_wino_geom wg = wino_geom(g);
    size_t ws = ty_conv_wino_ws_floats(&wg, m);
    if (ws == 0 || ws > WINO_MAX_WS_BYTES / sizeof(float)) {
        return -1;
    }
    double a2 = (double)((m + 2) * (m + 2));
    double T = (double)((g->OH + m - 1) / m) * (double)((g->OW + m - 1) / m);
    double oc = (double)g->OCg, c = (double)g->Cg, n = (double)g->N;
    double wcost = a2 * oc * c <= WINO_W_CACHED_FLOATS ? WINO_W_COST_CACHED
                   : ty_conv_wino_fuses(&wg, m)        ? WINO_W_COST_FUSED
                                                       : WINO_W_COST_MEMORY;
    double cols = n > 1 ? n * T : lanes16(T); /* several images share the GEMMs' columns */
    double passes = wcost * a2 * oc * c + WINO_ACT_COST * a2 * n * T * (c + oc);
    return a2 * oc * c * cols + passes * wino_pass_scale();
}

static ty_direct_geom
direct_geom(const conv_geom *g)
{
    return (ty_direct_geom){.C = g->Cg, .H = g->H, .W = g->W, .OC = g->OCg, .KH = g->KH,
                            .KW = g->KW, .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw,
                            .dh = g->dh, .dw = g->dw, .OH = g->OH, .OW = g->OW};
}

/* Whether the direct kernel takes the layer: float32, a real window (on 1x1 layers it
 * measured 1.1-2.4x slower than the GEMM) and a workspace of bounded size. */
static int
direct_usable(const conv_geom *g, int f64)
{
    ty_direct_geom dg = direct_geom(g);
    size_t ws = f64 || g->KH * g->KW < 2 ? 0 : ty_conv_direct_ws_floats(&dg);
    return ws > 0 && ws <= WINO_MAX_WS_BYTES / sizeof(float);
}

/* The direct kernel on AVX-512 where it measured faster than im2col + GEMM (one thread,
 * batch 1): a strided layer with a short window sum (ResNet's 7x7/2 stem,
 * Cg*KH*KW = 147: 2.2 ms against 2.5), where packing the gathered columns costs about as much
 * as the product, and outputs of at most 64 wide pixels (7x7: 512 -> 512 3x3, 2.1 ms against
 * 2.45), which fill whole vectors where the GEMM splits 49 columns into 32 + 16 + 1. On larger
 * planes with many channels (3x3/2 at 56x56) it re-reads the image from L2 for every block of
 * output channels and measured up to 1.2x slower. Strided layers take it at batch 1 only: at
 * batch 8 the stem (12 ms against 10.5) and 256 -> 512 3x3/2 at 14x14 (4.7 against 3.8)
 * measured slower than im2col. Grouped layers keep im2col, whose items (image, group) run in
 * parallel. AVX2: see direct_pays_avx2. */
enum { DIRECT_MAX_KC_STRIDED = 256, DIRECT_MAX_WIDE = 64 };

/* On AVX-512 the direct kernel runs 3x3 windows with 16 output channels in the vector lanes
 * (conv_direct.h), no lane wasted on the plane's shape: at batch 1, on planes of at most
 * DIRECT_LANES_MAX_PIXELS outputs, it measured faster than Winograd (ResNet's 256-channel
 * 14x14 layer: 1.55 ms against F(2,3)'s 1.59 on one thread, 0.79 against 0.81-0.85 on two;
 * at 28x28, F(2,3) stays faster: 1.4 against 1.7). */
enum { DIRECT_LANES_MAX_PIXELS = 196, DIRECT_LANES_MIN_OC = 16 };

/* On AVX2 the lanes tiles (16 channels x 6 pixels, conv_direct.c; sums of 64+ terms) take
 * strided 3x3 layers with outputs of at least DIRECT_LANES_AVX2_MIN_STRIDED pixels at batch 1.
 * One thread, Zen 3, conv_stem_shapes, weights packed once, against implicit GEMM: 64->128
 * 3x3/2 at 56 1.47-1.50 ms against 1.72, 128->128 at 56 2.94-2.97 against 3.39-3.44,
 * 128->256 at 28 1.41-1.42 against 1.55, 256->256 at 28 2.89-2.99 against 3.06-3.10 (at 14
 * they were even); in the deployed ResNet-18 (the two layers forced through a fast-run cache,
 * their share of the conv time, 4 alternating rounds) 0.097-0.107 against 0.113-0.123 on one
 * thread, 0.089-0.095 against 0.056-0.123 on two. ResNet's 512-channel 7x7 layers (stride 1)
 * keep Winograd: the lanes ran them at 3.05 against implicit GEMM's 3.40 ms with warm weights,
 * but in the model (9.4 MB of cold weights a layer) their share was 0.443-0.459 against
 * F(2,3)'s 0.433-0.496 (two threads). Down to 7x7 outputs (the 14x14 inputs) since the lanes
 * tiles split 49 pixels 4 x 6 + 5 x 5 and prefetch the packed weights in step: one thread,
 * conv_stem_shapes, 3 runs, 256->512 3x3/2 at 14 packed 1.40-1.41 ms against implicit
 * GEMM's 1.55 (unpacked 1.55-1.63: even), 512->512 2.78-2.93 against 3.33-3.80 (unpacked
 * 3.29-3.73); in the deployed models, two threads,
 * --profile, 20th percentile of 24-40 runs: ResNet-18's 1.06 -> 0.89 ms, ResNet-50's 2.13 ->
 * 1.79 (its outputs move by up to 5e-5 of 131: the direct kernel's chains, not the GEMM's). */
enum {
    DIRECT_LANES_AVX2_MIN_STRIDED = 49,
    DIRECT_LANES_AVX2_MIN_KC = 64, /* conv_direct.c's lanes_take */
};

static int
direct_lanes_avx2(const conv_geom *g)
{
    return g->G == 1 && g->N == 1 && g->KH == 3 && g->KW == 3 && (g->sh > 1 || g->sw > 1) &&
           g->OCg >= DIRECT_LANES_MIN_OC && g->kc >= DIRECT_LANES_AVX2_MIN_KC &&
           g->ohw >= DIRECT_LANES_AVX2_MIN_STRIDED && direct_usable(g, 0);
}

static int
direct_lanes_pay(const conv_geom *g)
{
    return ty_cpu_isa() >= TY_ISA_AVX512 && g->G == 1 && g->N == 1 && g->KH == 3 &&
           g->KW == 3 && g->OCg >= DIRECT_LANES_MIN_OC && g->ohw <= DIRECT_LANES_MAX_PIXELS &&
           direct_usable(g, 0);
}

/* On AVX2 the direct kernel takes strided layers whose window sum fits one pass over its
 * tiles (conv_direct.c's whole-row tiles, Cg*KH*KW <= 160: the stems), at any batch (image by
 * image): Zen 3, one thread, conv_stem_shapes, against implicit GEMM: 3x3/2 3->32 at 224 0.32
 * against 0.60 ms, 3->24 0.26 against 0.50, 7x7/2 3->64 2.8 against 4.3; two threads, best
 * of 3 alternating processes, 7x7/2 3->64 at batch 4 6.2 against 9.1 ms, batch 32 54 against
 * 76, 3x3/2 3->32 at batch 4 0.82 against 1.48, batch 32 12.1 against 15.7. And the strided
 * 3x3 layers its lanes tiles run faster at batch 1 (direct_lanes_avx2; at batches of 2 to 32
 * ResNet's layers measured 0.72-1.43x implicit GEMM's time, differing more from run to run
 * than from layer to layer: no rule). */
enum { DIRECT_AVX2_MAX_KC = 160 };

static int
direct_pays_avx2(const conv_geom *g)
{
    return g->G == 1 && (g->sh > 1 || g->sw > 1) &&
           (g->kc <= DIRECT_AVX2_MAX_KC || direct_lanes_avx2(g)) && direct_usable(g, 0);
}

static int
direct_pays(const conv_geom *g)
{
    if (ty_cpu_isa() == TY_ISA_AVX2) {
        return direct_pays_avx2(g);
    }
    if (ty_cpu_isa() < TY_ISA_AVX512 || g->G != 1 || !direct_usable(g, 0)) {
        return 0;
    }
    int strided = g->sh > 1 || g->sw > 1;
    if (strided && g->N > 1) {
        return 0;
    }
    int64_t sq = (g->W + 2 * g->pw + g->sw - 1) / g->sw; /* conv_direct.h's wide pixels */
    int64_t wide = (g->OH - 1) * sq + g->OW;
    return (strided && g->kc <= DIRECT_MAX_KC_STRIDED) ||
           lanes16((double)wide) <= DIRECT_MAX_WIDE;
}

/* The unpacked 1x1 kernel where it measured faster than the GEMM: planes of at most
 * DIRECT_1X1_MAX_P pixels, where the GEMM splits 49 columns into 32 + 16 + 1 and packs the
 * whole weight (read cold from memory in a network) for a short product, and narrowing layers
 * of few output channels on planes up to DIRECT_1X1_MAX_P_NARROW, where the GEMM's packing
 * of the image is shared by few rows. One thread, AVX-512, the weight cold: 7x7 320 -> 1280
 * 0.42 ms against 0.62, 2048 -> 512 1.0 against 1.2; 14x14 384 -> 64 0.084 against 0.082-0.089;
 * but 1024 -> 256 at 14x14 0.82-0.91 against the GEMM's 0.75-0.80 (and 1024 -> 512 1.65-1.71
 * against 1.57-1.68), so wider narrowing layers keep the GEMM. A strided layer is the
 * stride-1 layer of its subsampled image and is chosen like it. */
enum { DIRECT_1X1_MAX_P = 64, DIRECT_1X1_MAX_P_NARROW = 256, DIRECT_1X1_MAX_OC_NARROW = 128 };

static int
direct_1x1_usable(const conv_geom *g, int f64)
{
    return !f64 && (g->direct || g->subsampled) && g->G == 1;
}

static int
direct_1x1_pays(const conv_geom *g)
{
    /* AVX2 (no AVX-512): the kernel copies the image in panels of 16 pixels and runs 6 x 16
     * register tiles over them (conv1x1.c). Zen 3, deployed MobileNetV2, 2 threads, per layer
     * (5th percentile of 12 alternating runs) against the GEMM or the 4 x 24 tiles of
     * a7c4e1a: 112x112 1.10-1.61x, 56x56 1.23-1.69x, 28x28 1.61-2.04x, 14x14 1.20-1.81x;
     * 1x1 layers 7.0 against 8.9 ms in all. On planes of at most DIRECT_1X1_MAX_P pixels a
     * layer that does not widen takes the kernel only from 512 input channels: with the
     * plane's last pixel in the lanes and the rows shared evenly between threads, deployed
     * MobileNetV2 and ShuffleNetV2, 2 threads, 20th percentile of 5 alternating rounds,
     * kernel / GEMM ms 576->160 0.072 / 0.087, 960->160 0.111 / 0.119, 960->320 0.213 /
     * 0.222-0.228, but ShuffleNetV2's 232->232 0.060-0.064 / 0.046-0.051. */
    if (ty_cpu_isa() == TY_ISA_AVX2) {
        return direct_1x1_usable(g, 0) &&
               (g->ohw > DIRECT_1X1_MAX_P || g->OC > g->C || g->C >= 512);
    }
    int narrow = g->ohw <= DIRECT_1X1_MAX_P_NARROW && g->OC < g->C &&
                 g->OC <= DIRECT_1X1_MAX_OC_NARROW;
    return ty_cpu_isa() >= TY_ISA_AVX2 && direct_1x1_usable(g, 0) &&
           (g->ohw <= DIRECT_1X1_MAX_P || narrow);
}

/* The one place that chooses the forward algorithm: from the geometry and dtype only (never
 * the thread count), so eager, traced and deployed runs compute the same bits. */
static conv_fwd_algo
conv_fwd_algo_for(const conv_geom *g, int f64)
{
    if (f64) {
        return g->direct ? FWD_GEMM_1X1 : FWD_IM2COL;
    }
    if (g->direct) {
        return direct_1x1_pays(g) ? FWD_DIRECT_1X1 : FWD_GEMM_1X1;
    }
    if (g->subsampled && direct_1x1_pays(g)) {
        return FWD_DIRECT_1X1;
    }
    if (direct_lanes_pay(g) && g->sh == 1 && g->sw == 1) {
        return FWD_DIRECT;
    }
    if (g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1) {
        /* Winograd where it saves at least 10% of im2col + GEMM's multiply-adds */
        double best = 0.9 * (double)g->OCg * (double)g->kc * lanes16((double)g->ohw) *
                      (double)g->N;
        double f23 = wino_cost(g, 2), f43 = wino_cost(g, 4);
        conv_fwd_algo algo = FWD_IMPLICIT;
        if (f23 >= 0 && f23 < best) {
            best = f23;
            algo = FWD_WINO_F23;
        }
        if (f43 >= 0 && f43 < best) {
            algo = FWD_WINO_F43;
        }
        return algo == FWD_IMPLICIT && direct_pays(g) ? FWD_DIRECT : algo;
    }
    return direct_pays(g) ? FWD_DIRECT : FWD_IMPLICIT;
}

typedef struct conv_run {
    const conv_geom *g;
    conv_kind kind;
    int f64;                  /* compute in float64 (else float32) */
    int64_t es;
    const char *a, *b;        /* FWD: x, w; BWD_DATA: w, dy; BWD_FILTER: x, dy */
    char *out;
    conv_fwd_algo algo;       /* FWD only */
    int algo_fixed;           /* FWD only: algo is set (a profiling run), do not choose */
    const char *bias;         /* FWD only: NULL, or OC values of the compute dtype */
    ty_conv_act act;          /* FWD only */
    ty_conv_tile_fn hook;     /* FWD float32 only: ops/conv.h's tile hook, or NULL */
    void *hook_ctx;
    const ty_epi_bn_f32 *bn;  /* what hook does, as ty_conv_set_tile_bn said; or NULL */
    int64_t nb;               /* images per item (a chunk); 1 unless batched (images_per_item) */
    ty_storage *wconst;       /* FWD: the weight's storage when it is constant, else NULL */
    _Atomic int oom;
} conv_run;

static void
gemm_any(const conv_run *r, int64_t M, int64_t N, int64_t K, const char *A, int64_t rsa,
         int64_t csa, const char *B, int64_t rsb, int64_t csb, char *Cm, int64_t ldc, int acc)
{
    if (r->f64) {
        ty_gemm_f64(M, N, K, (const double *)A, rsa, csa, (const double *)B, rsb, csb,
                    (double *)Cm, ldc, acc);
    } else {
        ty_gemm_f32(M, N, K, (const float *)A, rsa, csa, (const float *)B, rsb, csb, (float *)Cm,
                    ldc, acc);
    }
}

static void
im2col_any(const conv_run *r, const char *x, char *col)
{
    const conv_geom *g = r->g;
    if (r->f64) {
        ty_im2col_f64((const double *)x, g->Cg, g->H, g->W, g->KH, g->KW, g->sh, g->sw, g->ph,
                      g->pw, g->dh, g->dw, g->OH, g->OW, (double *)col);
    } else {
        ty_im2col_f32((const float *)x, g->Cg, g->H, g->W, g->KH, g->KW, g->sh, g->sw, g->ph,
                      g->pw, g->dh, g->dw, g->OH, g->OW, (float *)col);
    }
}

/* im2col by ranges of channels (pure copies of disjoint rows: any split, the same col), in
 * parallel where the call is not inside a parallel region already. */
typedef struct im2col_job {
    const conv_run *r;
    const char *x;
    char *col;
} im2col_job;

static void
im2col_channels(void *ctx, int64_t c0, int64_t c1)
{
    const im2col_job *j = ctx;
    const conv_run *r = j->r;
    const conv_geom *g = r->g;
    const char *x = j->x + c0 * g->H * g->W * r->es;
    char *col = j->col + c0 * g->KH * g->KW * g->ohw * r->es;
    if (r->f64) {
        ty_im2col_f64((const double *)x, c1 - c0, g->H, g->W, g->KH, g->KW, g->sh, g->sw,
                      g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, (double *)col);
    } else {
        ty_im2col_f32((const float *)x, c1 - c0, g->H, g->W, g->KH, g->KW, g->sh, g->sw,
                      g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, (float *)col);
    }
}

/* Channels of about this many col entries make a parallel piece of im2col or col2im. */
enum { COL_PIECE = 1 << 15 };

static int64_t
col_grain(const conv_geom *g)
{
    int64_t per = g->KH * g->KW * g->ohw;
    return per >= COL_PIECE ? 1 : COL_PIECE / (per > 0 ? per : 1);
}

static void
im2col_threaded(const conv_run *r, const char *x, char *col)
{
    im2col_job j = {r, x, col};
    ty_parallel_for(r->g->Cg, col_grain(r->g), im2col_channels, &j);
}

/* Byte offsets of image n, group gi in x (C, H, W) and in y (OC, OH, OW); of group gi in w. */
static int64_t
x_off(const conv_run *r, int64_t n, int64_t gi)
{
    const conv_geom *g = r->g;
    return ((n * g->C + gi * g->Cg) * g->H * g->W) * r->es;
}

static int64_t
y_off(const conv_run *r, int64_t n, int64_t gi)
{
    const conv_geom *g = r->g;
    return (n * g->OC + gi * g->OCg) * g->ohw * r->es;
}

static int64_t
w_off(const conv_run *r, int64_t gi)
{
    return gi * r->g->OCg * r->g->kc * r->es;
}

/* ---- the fused epilogue: y = act(y + bias[oc]), with the add and relu ops' expressions ---- */
typedef struct conv_epi {
    const float *bias; /* this group's OCg values, or NULL */
    ty_conv_act act;
    ty_conv_tile_fn hook; /* run on the rows after them (c in y), or NULL */
    void *hook_ctx;
} conv_epi;

/* The tile hook over rows of cols elements at c (row stride ldc): one call for a tile, in
 * parallel pieces of about HOOK_PIECE elements where the area is large (a 1x1 product's
 * whole output comes in one call; inside a parallel region they run serially). Up to
 * HOOK_SERIAL elements the caller runs it alone: a region of a few microseconds costs about
 * what it saves, and every region is one more point where a preempted worker stalls the
 * caller (ShuffleNetV2 at batch 1 had 25 such regions a run). From the shape alone. */
enum { HOOK_PIECE = 4096, HOOK_SERIAL = 16 * HOOK_PIECE };

typedef struct hook_area {
    ty_conv_tile_fn fn;
    void *ctx;
    float *c;
    int64_t rows, cols, ldc;
} hook_area;

static void
hook_area_range(void *ctx, int64_t begin, int64_t end)
{
    const hook_area *h = ctx;
    int64_t total = h->rows * h->cols;
    if (h->ldc != h->cols && h->rows != 1) {
        h->fn(h->ctx, h->c + begin * h->ldc, end - begin, h->cols, h->ldc);
        return;
    }
    for (int64_t i = begin; i < end; i++) {
        int64_t at = i * HOOK_PIECE, len = total - at < HOOK_PIECE ? total - at : HOOK_PIECE;
        h->fn(h->ctx, h->c + at, 1, len, len);
    }
}

static void
hook_rows(const conv_epi *e, int64_t rows, int64_t cols, float *c, int64_t ldc)
{
    hook_area h = {e->hook, e->hook_ctx, c, rows, cols, ldc};
    if (rows * cols <= HOOK_SERIAL) {
        e->hook(e->hook_ctx, c, rows, cols, ldc);
    } else if (ldc == cols || rows == 1) {
        ty_parallel_for((rows * cols + HOOK_PIECE - 1) / HOOK_PIECE, 1, hook_area_range, &h);
    } else {
        ty_parallel_for(rows, cols >= HOOK_PIECE ? 1 : HOOK_PIECE / cols, hook_area_range, &h);
    }
}

/* row = act(row + b) over n elements, one pass (vectorized per ISA: the same element
 * operations, so the same bits as the add and activation ops' loops). */
TY_CLONES static void
bias_act_row(float *row, int64_t n, int has_bias, float b, ty_conv_act act)
{
    if (act == TY_CONV_ACT_RELU6) { /* the relu6 op's expression */
        for (int64_t j = 0; j < n; j++) {
            float v = has_bias ? row[j] + b : row[j];
            row[j] = !(v <= 0) ? (!(v >= 6) ? v : 6.0f) : 0.0f;
        }
    } else if (act == TY_CONV_ACT_RELU) {
        for (int64_t j = 0; j < n; j++) {
            float v = has_bias ? row[j] + b : row[j];
            row[j] = !(v <= 0) ? v : 0.0f;
        }
    } else if (has_bias) {
        for (int64_t j = 0; j < n; j++) {
            row[j] = row[j] + b;
        }
    }
}

static void
epilogue_f32(const void *ctx, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float *c,
             int64_t ldc)
{
    const conv_epi *e = ctx;
    (void)j0;
    for (int64_t i = 0; i < rows && (e->bias || e->act != TY_CONV_ACT_NONE); i++) {
        bias_act_row(c + i * ldc, cols, e->bias != NULL, e->bias ? e->bias[i0 + i] : 0.0f,
                     e->act);
    }
    if (e->hook) {
        hook_rows(e, rows, cols, c, ldc);
    }
}

static void
epilogue_f64(const conv_epi *e, const double *bias, int64_t rows, int64_t cols, double *c)
{
    for (int64_t i = 0; i < rows; i++) {
        double *row = c + i * cols;
        for (int64_t j = 0; bias && j < cols; j++) {
            row[j] = row[j] + bias[i];
        }
        for (int64_t j = 0; e->act == TY_CONV_ACT_RELU && j < cols; j++) {
            row[j] = !(row[j] <= 0) ? row[j] : 0.0;
        }
        for (int64_t j = 0; e->act == TY_CONV_ACT_RELU6 && j < cols; j++) {
            row[j] = !(row[j] <= 0) ? (!(row[j] >= 6) ? row[j] : 6.0) : 0.0;
        }
    }
}

/* The epilogue of group gi, or NULL when there is nothing to apply. */
static const ty_gemm_epilogue_f32 *
group_epilogue(const conv_run *r, int64_t gi, conv_epi *e, ty_gemm_epilogue_f32 *out)
{
    if (!r->bias && r->act == TY_CONV_ACT_NONE && !r->hook) {
        return NULL;
    }
    e->bias = r->bias ? (const float *)r->bias + gi * r->g->OCg : NULL;
    e->act = r->act;
    e->hook = r->hook;
    e->hook_ctx = r->hook_ctx;
    /* the chain alone is the epilogue only without a bias and activation before it */
    int chain = r->bn && !r->bias && r->act == TY_CONV_ACT_NONE;
    *out = (ty_gemm_epilogue_f32){.fn = epilogue_f32, .ctx = e, .bn = chain ? r->bn : NULL};
    return out;
}

/* float32 y[n, g] = w[g] @ col(x[n, g]) without a col buffer. (Subsampling a strided 1x1
 * layer's image into a buffer for the GEMM first measured 5% faster on one thread but up to
 * 10% slower on two: ResNet-18's downsample layers.) */
static void
fwd_item_f32(const conv_run *r, int64_t n, int64_t gi)
{
    const conv_geom *g = r->g;
    const float *x = (const float *)(r->a + x_off(r, n, gi));
    const float *w = (const float *)(r->b + w_off(r, gi));
    float *y = (float *)(r->out + y_off(r, n, gi));
    ty_im2col_src_f32 src = {x, g->Cg, g->H, g->W, g->KH, g->KW, g->sh, g->sw,
                             g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, 0};
    /* col(k, pix) with the pixel index first, which serves as B (k, pix) and as A (pix, k) */
    ty_gemm_operand_f32 col = {.pack = ty_im2col_pack_f32, .ctx = &src};
    if (g->direct) {
        col = (ty_gemm_operand_f32){.m = x, .rs = g->ohw, .cs = 1};
    }
    ty_gemm_operand_f32 wa = {.m = w, .rs = g->kc, .cs = 1};
    conv_epi e;
    ty_gemm_epilogue_f32 epi;
    ty_gemm_f32_operands(g->OCg, g->ohw, g->kc, &wa, &col, y, g->ohw, 0,
                         group_epilogue(r, gi, &e, &epi));
}

/* Images [n0, n0 + nb) of group gi side by side: tmp (OCg, nb*OH*OW) = w[g] @ col, each
 * finished block of tmp copied to y (after the bias and activation) while in cache. A GEMM's
 * element bits do not depend on N, so they are the per-image products' bits. */
typedef struct chunk_out {
    const conv_run *r;
    int64_t n0, gi;
    conv_epi e;
} chunk_out;

static void
scatter_to_y(const void *ctx, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float *c,
             int64_t ldc)
{
    const chunk_out *co = ctx;
    const conv_run *r = co->r;
    const int64_t ohw = r->g->ohw;
    if (co->e.bias || co->e.act != TY_CONV_ACT_NONE) {
        epilogue_f32(&co->e, i0, j0, rows, cols, c, ldc);
    }
    for (int64_t j = 0; j < cols;) {
        int64_t n = (j0 + j) / ohw, pix = (j0 + j) % ohw;
        int64_t len = ohw - pix < cols - j ? ohw - pix : cols - j;
        float *y = (float *)(r->out + y_off(r, co->n0 + n, co->gi)) + i0 * ohw + pix;
        for (int64_t i = 0; i < rows; i++) {
            memcpy(y + i * ohw, c + i * ldc + j, sizeof(float) * (size_t)len);
        }
        if (r->hook) {
            conv_epi h = {.hook = r->hook, .hook_ctx = r->hook_ctx};
            hook_rows(&h, rows, len, y, ohw);
        }
        j += len;
    }
}

static void
fwd_chunk_f32(const conv_run *r, int64_t n0, int64_t gi, float *tmp)
{
    const conv_geom *g = r->g;
    int64_t nb = g->N - n0 < r->nb ? g->N - n0 : r->nb;
    if (nb == 1) {
        fwd_item_f32(r, n0, gi);
        return;
    }
    ty_im2col_src_f32 src = {(const float *)(r->a + x_off(r, n0, gi)), g->Cg, g->H, g->W,
                             g->KH, g->KW, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->OH,
                             g->OW, g->C * g->H * g->W};
    ty_gemm_operand_f32 col = {.pack = ty_im2col_pack_f32, .ctx = &src};
    ty_gemm_operand_f32 wa = {.m = (const float *)(r->b + w_off(r, gi)), .rs = g->kc, .cs = 1};
    chunk_out co = {.r = r, .n0 = n0, .gi = gi,
                    .e = {.bias = r->bias ? (const float *)r->bias + gi * g->OCg : NULL,
                          .act = r->act}};
    ty_gemm_epilogue_f32 epi = {.fn = scatter_to_y, .ctx = &co};
    ty_gemm_f32_operands(g->OCg, nb * g->ohw, g->kc, &wa, &col, tmp, nb * g->ohw, 0, &epi);
}

/* y[n, g] = w[g] @ col(x[n, g]) */
static void
fwd_item(conv_run *r, int64_t n, int64_t gi, char *col)
{
    const conv_geom *g = r->g;
    const char *src = r->a + x_off(r, n, gi);
    if (r->algo == FWD_IMPLICIT || (r->algo == FWD_GEMM_1X1 && !r->f64)) {
        fwd_item_f32(r, n, gi);
        return;
    }
    if (!g->direct) {
        im2col_any(r, src, col);
        src = col;
    }
    gemm_any(r, g->OCg, g->ohw, g->kc, r->b + w_off(r, gi), g->kc, 1, src, g->ohw, 1,
             r->out + y_off(r, n, gi), g->ohw, 0);
    if (r->bias || r->act != TY_CONV_ACT_NONE) { /* float64: a pass after */
        conv_epi e = {.act = r->act};
        epilogue_f64(&e, r->bias ? (const double *)r->bias + gi * g->OCg : NULL, g->OCg, g->ohw,
                     (double *)(r->out + y_off(r, n, gi)));
    }
    if (r->hook) {
        conv_epi e = {.hook = r->hook, .hook_ctx = r->hook_ctx};
        hook_rows(&e, 1, g->OCg * g->ohw, (float *)(r->out + y_off(r, n, gi)), 0);
    }
}

/* col2im of one image by ranges of channels: a channel's col rows add into that channel of
 * dx alone, so each range is the whole col2im's work on its channels, with the same bits. */
typedef struct col2im_job {
    const conv_run *r;
    const char *col;
    char *dx;
} col2im_job;

static void
col2im_channels(void *ctx, int64_t c0, int64_t c1)
{
    const col2im_job *j = ctx;
    const conv_run *r = j->r;
    const conv_geom *g = r->g;
    const char *col = j->col + c0 * g->KH * g->KW * g->ohw * r->es;
    char *dx = j->dx + c0 * g->H * g->W * r->es;
    memset(dx, 0, (size_t)((c1 - c0) * g->H * g->W * r->es));
    if (r->f64) {
        ty_col2im_f64((const double *)col, c1 - c0, g->H, g->W, g->KH, g->KW, g->sh, g->sw,
                      g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, (double *)dx);
    } else {
        ty_col2im_f32((const float *)col, c1 - c0, g->H, g->W, g->KH, g->KW, g->sh, g->sw,
                      g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, (float *)dx);
    }
}

/* Whether one image's float32 col (kc, OH*OW) = w^T @ dy (dx itself for a 1x1 stride-1
 * layer) is computed transposed, col^T = dy^T @ w, then turned back: on small images the
 * weight is the large operand, and the GEMM packs its rows (w as B) faster than its columns
 * (w^T as A) where they are long (OCg >= kc). Batch 1, one thread: ResNet's 1x1/2 256->512
 * 0.16 -> 0.11 ms, MobileNetV2's 1x1 320->1280 at 7x7 0.52 -> 0.36 (0.68-0.73x on its
 * expanding 1x1 layers at 14x14 and 7x7); two threads agree there. Not taken: 28x28 images
 * (784 pixels) and larger, slower; more rows than output channels (ResNet's 7x7 512-channel
 * 3x3 layer: 0.72x on one thread but 1.05-1.3x on two; MobileNetV2's 576->96). Each col
 * element is the same sum either way. From the shape alone. */
enum { BWD_DATA_SWAP_MAX_PIXELS = 256 };

static int
bwd_data_swaps(const conv_run *r)
{
    const conv_geom *g = r->g;
    return !r->f64 && r->nb == 1 && g->ohw <= BWD_DATA_SWAP_MAX_PIXELS && g->OCg >= g->kc;
}

/* dx[n, g] = col2im(w[g]^T @ dy[n, g]); the col2im threaded by channels when the item runs
 * alone (a nested call runs serially). col: item_buffer_bytes. */
static void
bwd_data_item(const conv_run *r, int64_t n, int64_t gi, char *col)
{
    const conv_geom *g = r->g;
    char *dx = r->out + x_off(r, n, gi);
    char *dst = g->direct ? dx : col;
    if (bwd_data_swaps(r)) {
        float *colt = (float *)col + (g->direct ? 0 : g->kc * g->ohw);
        ty_gemm_f32(g->ohw, g->kc, g->OCg, (const float *)(r->b + y_off(r, n, gi)), 1, g->ohw,
                    (const float *)(r->a + w_off(r, gi)), g->kc, 1, colt, g->kc, 0);
        ty_transpose_f32(colt, g->ohw, g->kc, (float *)dst);
    } else {
        gemm_any(r, g->kc, g->ohw, g->OCg, r->a + w_off(r, gi), 1, g->kc,
                 r->b + y_off(r, n, gi), g->ohw, 1, dst, g->ohw, 0);
    }
    if (!g->direct) {
        /* threaded: run serially, col2im was a quarter of ResNet's 7x7 stem's backward-data
         * at batch 1 */
        col2im_job j = {r, col, dx};
        ty_parallel_for(g->Cg, col_grain(g), col2im_channels, &j);
    }
}

/* Images [n0, n0 + nb) of group gi side by side: col (kc, nb*OH*OW) = w[g]^T @ dy, then
 * col2im per image. The col entries are the per-image products' bits (a GEMM's element bits
 * do not depend on N) and col2im adds them in the same order, so the bits are bwd_data_item's. */
static void
bwd_data_chunk_f32(const conv_run *r, int64_t n0, int64_t gi, float *col)
{
    const conv_geom *g = r->g;
    int64_t nb = g->N - n0 < r->nb ? g->N - n0 : r->nb, ld = nb * g->ohw;
    /* dy's images as one (OCg, nb*OH*OW) operand: a 1x1 "im2col" of dy */
    ty_im2col_src_f32 src = {(const float *)(r->b + y_off(r, n0, gi)), g->OCg, g->OH, g->OW,
                             1, 1, 1, 1, 0, 0, 1, 1, g->OH, g->OW, g->OC * g->ohw};
    ty_gemm_operand_f32 dy = {.pack = ty_im2col_pack_f32, .ctx = &src};
    ty_gemm_operand_f32 wt = {.m = (const float *)(r->a + w_off(r, gi)), .rs = 1, .cs = g->kc};
    ty_gemm_f32_operands(g->kc, ld, g->OCg, &wt, &dy, col, ld, 0, NULL);
    for (int64_t n = 0; n < nb; n++) {
        float *dx = (float *)(r->out + x_off(r, n0 + n, gi));
        memset(dx, 0, sizeof(float) * (size_t)(g->Cg * g->H * g->W));
        ty_col2im_ld_f32(col + n * g->ohw, ld, g->Cg, g->H, g->W, g->KH, g->KW, g->sh, g->sw,
                         g->ph, g->pw, g->dh, g->dw, g->OH, g->OW, dx);
    }
}

/* Whether the float32 1x1 stride-1 filter gradient is computed transposed, x @ dy^T (kc,
 * OCg) instead of dy @ x^T (OCg, kc): the GEMM reads the first operand in place and packs
 * the transposed second, the smaller one then (MobileNetV2 at batch 1, one thread: 144 -> 24
 * at 56x56 0.36 -> 0.21 ms, 192 -> 32 at 28x28 0.118 -> 0.063). Taken where the floats it
 * saves packing outweigh the transpose of the result four times over (960 -> 160 at 7x7
 * measured 0.12 -> 0.14 ms). Each element is the same sum of the same products in the same
 * order either way. From the shape alone. */
static int
filter_1x1_swaps(const conv_run *r)
{
    const conv_geom *g = r->g;
    return !r->f64 && g->direct && g->OCg < g->kc &&
           (double)(g->kc - g->OCg) * (double)g->N * (double)g->ohw >=
               4.0 * (double)g->kc * (double)g->OCg;
}

/* dwp += the 1x1 stride-1 filter gradient of image n, group gi (float32), transposed when
 * filter_1x1_swaps. */
static void
filter_1x1_image(const conv_run *r, int64_t n, int64_t gi, float *dwp, int acc)
{
    const conv_geom *g = r->g;
    const float *x = (const float *)(r->a + x_off(r, n, gi));
    const float *dy = (const float *)(r->b + y_off(r, n, gi));
    if (filter_1x1_swaps(r)) {
        ty_gemm_f32(g->kc, g->OCg, g->ohw, x, g->ohw, 1, dy, 1, g->ohw, dwp, g->OCg, acc);
    } else {
        ty_gemm_f32(g->OCg, g->kc, g->ohw, dy, g->ohw, 1, x, 1, g->ohw, dwp, g->kc, acc);
    }
}

/* dw[g] = sum over n (in order) of dy[n, g] @ col(x[n, g])^T (col: the buffer of
 * item_buffer_bytes, which holds the transposed sum when filter_1x1_swaps) */
static void
bwd_filter_group(const conv_run *r, int64_t gi, char *col)
{
    const conv_geom *g = r->g;
    char *dw = r->out + w_off(r, gi);
    if (!r->f64 && g->direct) {
        float *sum = filter_1x1_swaps(r) ? (float *)col : (float *)dw;
        memset(sum, 0, sizeof(float) * (size_t)(g->OCg * g->kc));
        for (int64_t n = 0; n < g->N; n++) {
            filter_1x1_image(r, n, gi, sum, 1);
        }
        if (filter_1x1_swaps(r)) {
            ty_transpose_f32(sum, g->kc, g->OCg, (float *)dw);
        }
        return;
    }
    memset(dw, 0, (size_t)(g->OCg * g->kc * r->es));
    for (int64_t n = 0; n < g->N; n++) {
        const char *src = r->a + x_off(r, n, gi);
        if (!g->direct) {
            im2col_threaded(r, src, col);
            src = col;
        }
        gemm_any(r, g->OCg, g->kc, g->ohw, r->b + y_off(r, n, gi), g->ohw, 1, src, 1, g->ohw,
                 dw, g->kc, 1);
    }
}

/* The filter gradient of one group split over image ranges: range c accumulates its images
 * (in order) into partial[c]; the partials are then added in range order. The ranges depend
 * on the shape alone (never the thread count), so every thread count gives the same bits. */
#define FILTER_PARTS 4
typedef struct filter_split {
    conv_run *r;
    int64_t gi, nparts;
    int wino;      /* the partials are Winograd's M (filter_range_wino) */
    int64_t psize; /* elements of one partial */
    char *partial; /* nparts x (OCg x kc) */
    float *xt;     /* the small-channel path's images pixel-major when they are fewer than the
                    * ranges (filter_range_small_f32), else NULL */
} filter_split;

/* Images [begin, end) of x and of dy (unless dyt is NULL) turned pixel-major: (Cg, H*W) ->
 * (H*W, Cg) and (OCg, OH*OW) -> (OH*OW, OCg), one after the other (pure copies: any split,
 * same bits). */
typedef struct pixel_major {
    const conv_run *r;
    int64_t gi, n0;
    float *xt, *dyt;
    int sampled; /* x: only the pixels filter_samples_x keeps, (OH*OW, Cg) per image */
} pixel_major;

/* Whether the filter gradient reads only some pixels of x, each once: an unpadded 1x1 layer
 * with strides (ResNet's downsampling layers read a quarter of their input). Turning just
 * those pixel-major and packing as a 1x1 stride-1 layer over them gives the same panels, so
 * the same bits, for a quarter of the copy (one thread, ResNet-18's 256 -> 512 1x1/2 at 14x14,
 * batch 32: the whole image's transpose was 27% of the call). */
static int
filter_samples_x(const conv_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->ph == 0 && g->pw == 0 && (g->sh > 1 || g->sw > 1);
}

static void
pixel_major_range(void *ctx, int64_t begin, int64_t end)
{
    const pixel_major *pm = ctx;
    const conv_run *r = pm->r;
    const conv_geom *g = r->g;
    for (int64_t n = begin; n < end; n++) {
        const float *x = (const float *)(r->a + x_off(r, pm->n0 + n, pm->gi));
        if (pm->sampled) {
            ty_pixel_major_sampled_f32(x, g->Cg, g->H, g->W, g->sh, g->sw, g->OH, g->OW,
                                       pm->xt + n * g->ohw * g->Cg);
        } else {
            ty_transpose_f32(x, g->Cg, g->H * g->W, pm->xt + n * g->H * g->W * g->Cg);
        }
        if (pm->dyt) {
            ty_transpose_f32((const float *)(r->b + y_off(r, pm->n0 + n, pm->gi)), g->OCg,
                             g->ohw, pm->dyt + n * g->ohw * g->OCg);
        }
    }
}

/* dw' (OCg, kc) = dy @ col'^T over images [n0, n1) side by side (float32), one product whose
 * sum runs over all their pixels. The images are first turned pixel-major (H, W, Cg), dy
 * (OH*OW, OCg), and col's rows taken tap-major (col' row tap * Cg + c): a panel of col' then
 * holds neighbouring channels of one input pixel, contiguous in the pixel-major copy, so it
 * is packed with a short copy per pixel instead of a gather and a transpose (1.1-1.2x faster
 * on ResNet's 3x3 layers at 64-512 channels than col @ dy^T with both packed from NCHW).
 * Each element's sum runs over the same pixels in the same order whatever the row order or
 * operand order, so the bits are those of that product; untap_rows puts the columns back.
 * Returns 0 without memory for the copies. */
static int
filter_range_f32(const conv_run *r, int64_t gi, int64_t n0, int64_t n1, float *dwp)
{
    const conv_geom *g = r->g;
    int sampled = filter_samples_x(g);
    int64_t nimg = n1 - n0, dysz = nimg * g->ohw * g->OCg;
    int64_t xsz = nimg * (sampled ? g->ohw : g->H * g->W) * g->Cg;
    size_t bytes = sizeof(float) * (size_t)(xsz + dysz);
    float *xt = NULL;
    if (ty_mem_scratch_alloc(bytes ? bytes : 1, (void **)&xt) != TY_OK) {
        return 0;
    }
    float *dyt = xt + xsz;
    pixel_major pm = {r, gi, n0, xt, dyt, sampled};
    ty_parallel_for(nimg, 1, pixel_major_range, &pm); /* threaded when one range takes all */
    ty_tap_src_f32 src = {xt, g->Cg, g->H, g->W, g->KH, g->KW, g->sh, g->sw, g->ph, g->pw,
                          g->dh, g->dw, g->OH, g->OW};
    if (sampled) { /* a 1x1 stride-1 layer over the sampled pixels: the same panels */
        src = (ty_tap_src_f32){xt, g->Cg, g->OH, g->OW, 1, 1, 1, 1, 0, 0, 1, 1, g->OH, g->OW};
    }
    ty_gemm_operand_f32 cols = {.pack = ty_tap_pack_f32, .ctx = &src};
    ty_gemm_operand_f32 dys = {.m = dyt, .rs = 1, .cs = g->OCg};
    ty_gemm_f32_operands(g->OCg, g->kc, nimg * g->ohw, &dys, &cols, dwp, g->kc, 0, NULL);
    ty_mem_scratch_free(xt, bytes ? bytes : 1);
    return 1;
}

/* Few input channels (a network's stem: 3) and a narrow column matrix: per image,
 * dw' += dy @ col'^T with dy read where it lies (NCHW rows are A's rows, and a product this
 * narrow reads A in place: no pixel-major copy of dy, the other path's largest cost here),
 * col' packed tap-major from a pixel-major copy of the image, one copy per run of taps in a
 * kernel row. One thread: ResNet's 7x7/2 stem at batch 1 3.4 -> 2.3 ms, MobileNetV2's 3x3/2
 * stem 0.89 -> 0.41, the CIFAR stem (3x3, 32x32) at batch 32 3.2 -> 1.5. Its ranges cut the
 * flat pixel index (image * OH*OW + output pixel), so a stem at batch 1 splits its one image
 * between the ranges and runs on several threads; each range adds its image pieces in order.
 * From the shape alone. */
enum { SMALL_FILTER_MAX_CHANNELS = 8, SMALL_FILTER_MAX_ROWS = 256 };

static int
filter_small_channels(const conv_run *r)
{
    const conv_geom *g = r->g;
    return !r->f64 && !g->direct && g->Cg <= SMALL_FILTER_MAX_CHANNELS &&
           g->kc <= SMALL_FILTER_MAX_ROWS;
}

/* ty_tap_pack_f32 over the output pixels from q0 on. */
typedef struct tap_from {
    ty_tap_src_f32 src;
    int64_t q0;
} tap_from;

static void
tap_pack_from(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc, int width,
              float *dst)
{
    const tap_from *t = ctx;
    ty_tap_pack_f32(&t->src, i0, len, t->q0 + k0, kc, width, dst);
}

/* dwp (OCg, kc, tap-major) = the sum over the flat pixels [q0, q1), image by image, each
 * piece one product. xt: every image of group gi pixel-major (H, W, Cg) one after the other,
 * or NULL: each image is turned pixel-major here. Returns 0 without memory for the copy. */
static int
filter_range_small_f32(const conv_run *r, int64_t gi, int64_t q0, int64_t q1,
                       const float *xt, float *dwp)
{
    const conv_geom *g = r->g;
    size_t bytes = sizeof(float) * (size_t)(g->H * g->W * g->Cg);
    float *own = NULL;
    if (!xt && ty_mem_scratch_alloc(bytes ? bytes : 1, (void **)&own) != TY_OK) {
        return 0;
    }
    memset(dwp, 0, sizeof(float) * (size_t)(g->OCg * g->kc));
    for (int64_t n = g->ohw > 0 ? q0 / g->ohw : 0; n * g->ohw < q1; n++) {
        int64_t a = q0 > n * g->ohw ? q0 - n * g->ohw : 0;
        int64_t b = q1 < (n + 1) * g->ohw ? q1 - n * g->ohw : g->ohw;
        const float *img = xt ? xt + n * g->H * g->W * g->Cg : own;
        if (!xt) {
            ty_transpose_f32((const float *)(r->a + x_off(r, n, gi)), g->Cg, g->H * g->W, own);
        }
        tap_from src = {{img, g->Cg, g->H, g->W, g->KH, g->KW, g->sh, g->sw, g->ph, g->pw,
                         g->dh, g->dw, g->OH, g->OW},
                        a};
        ty_gemm_operand_f32 cols = {.pack = tap_pack_from, .ctx = &src};
        ty_gemm_operand_f32 dy = {.m = (const float *)(r->b + y_off(r, n, gi)) + a,
                                  .rs = g->ohw, .cs = 1};
        ty_gemm_f32_operands(g->OCg, g->kc, b - a, &dy, &cols, dwp, g->kc, 1, NULL);
    }
    if (own) {
        ty_mem_scratch_free(own, bytes ? bytes : 1);
    }
    return 1;
}

/* Whether the float32 filter gradient takes Winograd F(2x2, 3x3) (kernels/cpu/conv_filter.h):
 * 3x3 stride 1 without dilation, where the GEMMs over the tiles do 16 multiply-adds per 2x2
 * output tile and channel pair instead of 36. The transforms cost per channel what the GEMMs
 * cost per channel pair, so it takes 128 channels or more on both sides (ResNet's 3x3 layers,
 * one thread: 128 at 16x16 22 -> 15 ms, 256 at 8x8 23 -> 16, 512 at 4x4 25 -> 14; 64 at
 * 32x32 27 -> 33, slower). From the shape alone. */
enum { WINO_FILTER_MIN_CHANNELS = 128 };

static int
filter_takes_wino(const conv_run *r)
{
    const conv_geom *g = r->g;
    return !r->f64 && g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
           g->dw == 1 && g->Cg >= WINO_FILTER_MIN_CHANNELS &&
           g->OCg >= WINO_FILTER_MIN_CHANNELS;
}

/* M[xi] (OCg, Cg) = sum over the tiles of images [n0, n1) of U_xi V_xi^T, 16 GEMMs over the
 * transformed tiles of pixel-major copies. Returns 0 without memory. */
static int
filter_range_wino(const conv_run *r, int64_t gi, int64_t n0, int64_t n1, float *M)
{
    const conv_geom *g = r->g;
    ty_wino_filter_geom wg = {n1 - n0, g->Cg, g->OCg, g->H, g->W, g->OH, g->OW, g->ph, g->pw,
                              (g->OH + 1) / 2, (g->OW + 1) / 2, 0};
    wg.plane = wg.nimg * wg.TH * wg.TW;
    int64_t T = wg.plane, xsz = wg.nimg * g->H * g->W * g->Cg;
    int64_t dysz = wg.nimg * g->ohw * g->OCg, vsz = 16 * T * g->Cg, usz = 16 * T * g->OCg;
    size_t bytes = sizeof(float) * (size_t)(xsz + dysz + vsz + usz);
    float *xt = NULL;
    if (ty_mem_scratch_alloc(bytes ? bytes : 1, (void **)&xt) != TY_OK) {
        return 0;
    }
    float *dyt = xt + xsz, *V = dyt + dysz, *U = V + vsz;
    pixel_major pm = {r, gi, n0, xt, dyt, 0};
    ty_parallel_for(wg.nimg, 1, pixel_major_range, &pm);
    ty_wino_filter_x_f32(&wg, xt, V);
    ty_wino_filter_dy_f32(&wg, dyt, U);
    for (int64_t xi = 0; xi < 16; xi++) {
        ty_gemm_f32(g->OCg, g->Cg, T, U + xi * T * g->OCg, 1, g->OCg, V + xi * T * g->Cg, g->Cg,
                    1, M + xi * g->OCg * g->Cg, g->Cg, 0);
    }
    ty_mem_scratch_free(xt, bytes ? bytes : 1);
    return 1;
}

static void
filter_part(void *ctx, int64_t begin, int64_t end)
{
    filter_split *fs = ctx;
    conv_run *r = fs->r;
    const conv_geom *g = r->g;
    int64_t wsz = fs->psize * r->es;
    for (int64_t c = begin; c < end && fs->wino; c++) {
        if (!filter_range_wino(r, fs->gi, c * g->N / fs->nparts, (c + 1) * g->N / fs->nparts,
                               (float *)(fs->partial + c * wsz))) {
            atomic_store(&r->oom, 1);
        }
    }
    if (fs->wino) {
        return;
    }
    if (!r->f64 && !g->direct) {
        int small = filter_small_channels(r);
        int64_t pixels = g->N * g->ohw;
        for (int64_t c = begin; c < end; c++) {
            int64_t n0 = c * g->N / fs->nparts, n1 = (c + 1) * g->N / fs->nparts;
            float *dwp = (float *)(fs->partial + c * wsz);
            if (!(small ? filter_range_small_f32(r, fs->gi, c * pixels / fs->nparts,
                                                 (c + 1) * pixels / fs->nparts, fs->xt, dwp)
                        : filter_range_f32(r, fs->gi, n0, n1, dwp))) {
                atomic_store(&r->oom, 1);
            }
        }
        return;
    }
    if (!r->f64) { /* 1x1 stride 1: x is col; dw += dy @ x^T image by image */
        for (int64_t c = begin; c < end; c++) {
            float *dwp = (float *)(fs->partial + c * wsz);
            for (int64_t n = c * g->N / fs->nparts; n < (c + 1) * g->N / fs->nparts; n++) {
                filter_1x1_image(r, n, fs->gi, dwp, n > c * g->N / fs->nparts);
            }
        }
        return;
    }
    size_t colb = (size_t)(g->kc * g->ohw * r->es);
    char *col = NULL;
    if (!g->direct && ty_mem_scratch_alloc(colb, (void **)&col) != TY_OK) {
        atomic_store(&r->oom, 1);
        return;
    }
    for (int64_t c = begin; c < end; c++) {
        char *dw = fs->partial + c * wsz;
        memset(dw, 0, (size_t)wsz);
        for (int64_t n = c * g->N / fs->nparts; n < (c + 1) * g->N / fs->nparts; n++) {
            const char *src = r->a + x_off(r, n, fs->gi);
            if (!g->direct) {
                im2col_any(r, src, col);
                src = col;
            }
            gemm_any(r, g->OCg, g->kc, g->ohw, r->b + y_off(r, n, fs->gi), g->ohw, 1, src, 1,
                     g->ohw, dw, g->kc, 1);
        }
    }
    if (col) {
        ty_mem_scratch_free(col, colb);
    }
}

/* dw rows [o0, o1) (OCg, Cg, KH, KW) from the float32 sum whose rows have their columns
 * tap-major (tap * Cg + c, filter_range_f32). */
static void
untap_rows(const float *sum, const conv_geom *g, int64_t o0, int64_t o1, float *dw)
{
    const int64_t kk = g->KH * g->KW;
    for (int64_t o = o0; o < o1; o++) {
        const float *src = sum + o * g->kc;
        float *dst = dw + o * g->kc;
        for (int64_t t = 0; t < kk; t++) {
            for (int64_t c = 0; c < g->Cg; c++) {
                dst[c * kk + t] = src[t * g->Cg + c];
            }
        }
    }
}

/* The float32 partials are added element by element in range order, then turned into dw,
 * both in parallel pieces (of SUM_PIECE elements, then of output channels) that each write
 * their own elements: any split gives the same bits. (Serial, they were about 5% of
 * ResNet's 7x7 512-channel filter gradient at batch 32 on one thread.) */
enum { SUM_PIECE = 1 << 14 };

typedef struct partials_job {
    const filter_split *fs;
    float *dw;
} partials_job;

TY_CLONES static void
add_into_f32(float *restrict sum, const float *restrict p, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        sum[i] = sum[i] + p[i];
    }
}

static void
partials_sum_range(void *ctx, int64_t begin, int64_t end)
{
    const filter_split *fs = ((const partials_job *)ctx)->fs;
    float *sum = (float *)fs->partial;
    for (int64_t piece = begin; piece < end; piece++) {
        int64_t at = piece * SUM_PIECE;
        int64_t len = fs->psize - at < SUM_PIECE ? fs->psize - at : SUM_PIECE;
        for (int64_t c = 1; c < fs->nparts; c++) {
            add_into_f32(sum + at, sum + c * fs->psize + at, len);
        }
    }
}

static void
partials_out_range(void *ctx, int64_t o0, int64_t o1)
{
    const partials_job *j = ctx;
    const conv_geom *g = j->fs->r->g;
    const float *sum = (const float *)j->fs->partial;
    if (j->fs->wino) {
        ty_wino_filter_out_f32(sum, g->OCg, g->Cg, o0, o1, j->dw);
    } else {
        untap_rows(sum, g, o0, o1, j->dw);
    }
}

static void
add_partials(const filter_split *fs, char *dw)
{
    const conv_geom *g = fs->r->g;
    int64_t n = fs->psize;
    if (!fs->r->f64) {
        partials_job j = {fs, (float *)dw};
        int64_t row = fs->wino ? 16 * g->Cg : g->kc; /* sum elements per output channel */
        if (fs->nparts > 1) {
            ty_parallel_for((n + SUM_PIECE - 1) / SUM_PIECE, 1, partials_sum_range, &j);
        }
        if (filter_1x1_swaps(fs->r)) {
            ty_transpose_f32((const float *)fs->partial, g->kc, g->OCg, (float *)dw);
        } else {
            ty_parallel_for(g->OCg, row >= SUM_PIECE ? 1 : SUM_PIECE / (row > 0 ? row : 1),
                            partials_out_range, &j);
        }
        return;
    }
    for (int64_t c = 0; c < fs->nparts; c++) {
        const double *p = (const double *)fs->partial + c * n;
        for (int64_t i = 0; i < n; i++) {
            ((double *)dw)[i] = c ? ((double *)dw)[i] + p[i] : p[i];
        }
    }
}

static ty_status
bwd_filter_split(conv_run *r)
{
    const conv_geom *g = r->g;
    /* up to FILTER_PARTS ranges of at least BATCH_COLS pixels each: a range of fewer makes a
     * short product that reads and writes its whole partial (ResNet's 4x4 layers at batch 32
     * take one range, and one GEMM threaded inside) */
    double pixels = (double)g->N * (double)g->ohw;
    int small = filter_small_channels(r); /* its ranges may cut an image */
    int64_t nparts = g->N < FILTER_PARTS && !small ? g->N : FILTER_PARTS;
    if (!r->f64 && pixels / BATCH_COLS < (double)nparts) {
        nparts = pixels / BATCH_COLS >= 1 ? (int64_t)(pixels / BATCH_COLS) : 1;
    }
    filter_split fs = {.r = r, .nparts = nparts, .wino = filter_takes_wino(r)};
    fs.psize = fs.wino ? 16 * g->OCg * g->Cg : g->OCg * g->kc;
    size_t bytes = (size_t)(nparts * fs.psize * r->es);
    size_t xbytes = small && g->N < nparts ? sizeof(float) * (size_t)(g->N * g->H * g->W * g->Cg)
                                           : 0;
    TY_TRY(ty_mem_scratch_alloc(bytes + xbytes ? bytes + xbytes : 1, (void **)&fs.partial));
    for (int64_t gi = 0; gi < g->G && !atomic_load(&r->oom); gi++) {
        fs.gi = gi;
        if (xbytes) { /* each image once, for the ranges that share it */
            fs.xt = (float *)(fs.partial + bytes);
            pixel_major pm = {r, gi, 0, fs.xt, NULL, 0};
            ty_parallel_for(g->N, 1, pixel_major_range, &pm);
        }
        if (nparts == 1) {
            filter_part(&fs, 0, 1); /* its GEMM and im2col take the threads */
        } else {
            ty_parallel_for(nparts, 1, filter_part, &fs);
        }
        add_partials(&fs, r->out + w_off(r, gi));
    }
    ty_mem_scratch_free(fs.partial, bytes + xbytes ? bytes + xbytes : 1);
    TY_CHECK(!atomic_load(&r->oom), TY_ERR_OOM, "out of memory for a column buffer");
    return TY_OK;
}

/* Bytes of the buffer one chunk of items needs: the col matrix, the output of a batch of
 * images, or none. */
static size_t
item_buffer_bytes(const conv_run *r)
{
    const conv_geom *g = r->g;
    if (r->kind == CONV_FWD && r->nb > 1) {
        return (size_t)(g->OCg * r->nb * g->ohw * r->es);
    }
    if (r->kind == CONV_BWD_DATA && r->nb > 1) {
        return (size_t)(g->kc * r->nb * g->ohw * r->es);
    }
    if (r->kind == CONV_BWD_FILTER && filter_1x1_swaps(r)) {
        return (size_t)(g->kc * g->OCg * r->es);
    }
    if (r->kind == CONV_BWD_DATA && bwd_data_swaps(r)) { /* col (unless direct), col^T */
        return (size_t)((g->direct ? 1 : 2) * g->kc * g->ohw * r->es);
    }
    if (g->direct || (r->kind == CONV_FWD && r->algo != FWD_IM2COL)) {
        return 0;
    }
    return (size_t)(g->kc * g->ohw * r->es);
}

/* Images per item for the float32 forward and backward-data GEMMs: enough small images side
 * by side that one GEMM has about BATCH_COLS columns; one for large images and for the other
 * paths. It never changes the bits (a GEMM's element bits do not depend on N). */
static int64_t
images_per_item(const conv_run *r)
{
    const conv_geom *g = r->g;
    int batched = !r->f64 && g->ohw > 0 && g->ohw < BATCH_COLS && r->kind != CONV_BWD_FILTER &&
                  (r->kind != CONV_FWD || r->algo == FWD_IMPLICIT || r->algo == FWD_GEMM_1X1);
    if (!batched) {
        return 1;
    }
    int64_t nb = (BATCH_COLS + g->ohw - 1) / g->ohw;
    return nb < g->N ? nb : (g->N > 1 ? g->N : 1);
}

/* Items: (image, group) pairs, or groups for the filter gradient. Each chunk owns a work
 * buffer; items write disjoint outputs, so the split never changes the bits. */
static void
conv_range(void *ctx, int64_t begin, int64_t end)
{
    conv_run *r = ctx;
    const conv_geom *g = r->g;
    char *col = NULL;
    size_t nbytes = item_buffer_bytes(r);
    if (nbytes > 0 && ty_mem_scratch_alloc(nbytes, (void **)&col) != TY_OK) {
        atomic_store(&r->oom, 1);
        return;
    }
    for (int64_t i = begin; i < end; i++) {
        if (r->kind == CONV_FWD && r->nb > 1) {
            fwd_chunk_f32(r, i / g->G * r->nb, i % g->G, (float *)col);
        } else if (r->kind == CONV_FWD) {
            fwd_item(r, i / g->G, i % g->G, col);
        } else if (r->kind == CONV_BWD_DATA && r->nb > 1) {
            bwd_data_chunk_f32(r, i / g->G * r->nb, i % g->G, (float *)col);
        } else if (r->kind == CONV_BWD_DATA) {
            bwd_data_item(r, i / g->G, i % g->G, col);
        } else {
            bwd_filter_group(r, i, col);
        }
    }
    if (col) {
        ty_mem_scratch_free(col, nbytes);
    }
}

/* Fills the per floats derived from one group's weight w (0, or -1 on failure). */
typedef int (*weight_memo_fill)(const void *ctx, const float *w, float *per_group);

/* Data derived once from every group of a constant weight (per floats a group), kept on its
 * storage as a memo under the kind, the shape words k (the weight's offset and per are added)
 * and the storage's version; filled group by group on the first call. NULL when w is not
 * constant or memory is short (the kernel then derives it per call): the same values either
 * way, so the same bits. */
static const float *
weight_memo(const conv_run *r, int64_t kind, const int64_t k[4], size_t per,
            weight_memo_fill fill, const void *ctx)
{
    ty_storage *s = r->wconst;
    size_t floats, bytes;
    if (!s || per == 0 || __builtin_mul_overflow(per, (size_t)r->g->G, &floats) ||
        __builtin_mul_overflow(floats, sizeof(float), &bytes)) {
        return NULL;
    }
    ty_memo_key key = {{kind, k[0], k[1], k[2], k[3], (int64_t)ty_gemm_get_isa(),
                        (int64_t)(r->b - (const char *)s->data), (int64_t)per}};
    uint32_t version = atomic_load_explicit(&s->version, memory_order_relaxed);
    const void *data = ty_storage_memo_find(s, &key, version);
    float *fresh = NULL;
    if (data || ty_mem_alloc(bytes, (void **)&fresh) != TY_OK) {
        ty_clear_error(); /* the kernel still works without it */
        return data;
    }
    int failed = 0;
    for (int64_t gi = 0; gi < r->g->G && !failed; gi++) {
        failed = fill(ctx, (const float *)(r->b + w_off(r, gi)), fresh + gi * per) != 0;
    }
    if (failed || !ty_storage_memo_put(s, &key, version, fresh, bytes, &data)) {
        ty_mem_free(fresh, bytes);
        return NULL;
    }
    return data;
}

enum {
    MEMO_WINO_U = 0x57494E55, /* the memo kind of Winograd's transformed weight */
    /* Transformed weights kept up to this size (every group): a small model's layers, whose
     * transform per call was most of their time (the Fashion-MNIST CNN's 32 -> 64 at 14x14,
     * 295 KB: 14% of the deployed model's samples, one thread, Zen 3); ResNet's smallest 3x3
     * layer's (590 KB at F(4,3)) and larger stay per call, as 4x the weight in memory. */
    WINO_MEMO_MAX_BYTES = 512 * 1024,
};

typedef struct wino_memo_ctx {
    const ty_wino_geom *wg;
    int m;
} wino_memo_ctx;

static int
wino_transform_group(const void *ctx, const float *w, float *u)
{
    const wino_memo_ctx *c = ctx;
    return ty_conv_wino_weights_f32(c->wg, c->m, w, u);
}

/* Winograd's transformed weight of every group of a small constant weight, kept as a memo
 * (weight_memo); NULL (transformed per call) when the layer takes the fused path or is too
 * large, or as weight_memo says. */
static const float *
wino_memo_u(const conv_run *r, const ty_wino_geom *wg, int m)
{
    size_t per = ty_conv_wino_u_floats(wg, m);
    if (ty_conv_wino_fuses(wg, m) || per > WINO_MEMO_MAX_BYTES / sizeof(float) / (size_t)r->g->G) {
        return NULL;
    }
    const int64_t k[4] = {r->g->G, wg->OC, wg->C, m};
    wino_memo_ctx c = {wg, m};
    return weight_memo(r, MEMO_WINO_U, k, per, wino_transform_group, &c);
}

/* Winograd runs each group over all the images at once (its weights transformed once), with
 * its own threading inside. */
static ty_status
fwd_winograd(conv_run *r)
{
    const conv_geom *g = r->g;
    int m = r->algo == FWD_WINO_F43 ? 4 : 2;
    ty_wino_geom wg = wino_geom(g);
    size_t bytes = ty_conv_wino_ws_floats(&wg, m) * sizeof(float); /* bounded by the chooser */
    float *ws = NULL;
    const float *u = wino_memo_u(r, &wg, m);
    size_t per = u ? ty_conv_wino_u_floats(&wg, m) : 0;
    TY_TRY(ty_mem_scratch_alloc(bytes, (void **)&ws));
    int failed = 0;
    for (int64_t gi = 0; gi < g->G && !failed; gi++) {
        conv_epi e;
        ty_gemm_epilogue_f32 epi;
        const float *x = (const float *)(r->a + x_off(r, 0, gi));
        float *y = (float *)(r->out + y_off(r, 0, gi));
        failed = (u ? ty_conv_wino_f32_u(&wg, m, x, u + gi * per, y, ws,
                                         group_epilogue(r, gi, &e, &epi))
                    : ty_conv_wino_f32(&wg, m, x, (const float *)(r->b + w_off(r, gi)), y, ws,
                                       group_epilogue(r, gi, &e, &epi))) != 0;
    }
    ty_mem_scratch_free(ws, bytes);
    TY_CHECK(!failed, TY_ERR_OOM, "out of memory for Winograd scratch rows");
    return TY_OK;
}

enum { MEMO_DIRECT_PACKED = 0x44495250 }; /* the memo kind of the direct kernel's packing */

static int
direct_pack_group(const void *dg, const float *w, float *packed)
{
    ty_conv_direct_pack_f32(dg, w, packed);
    return 0;
}

/* The direct kernel's packed weights of every group of a constant weight, kept on its storage
 * (a memo) so a deployed model packs them once instead of transposing them block by block on
 * every call; the kernel then streams them in order (one thread, ResNet-18's 512-channel 7x7
 * layer with its weights cold: 2.36 ms against 2.57, warm 1.71 against 1.97). The copy comes
 * from ty_mem_alloc, in huge pages from 2 MiB like the model file's weights, and adds about
 * 40 MB to ResNet-18's 45. NULL (transposes per call) when w is not constant, the kernel takes
 * no packing, or memory is short. The kernel computes the same chains from either, so the
 * bits do not depend on it. */
static const float *
direct_memo_packed(const conv_run *r, const ty_direct_geom *dg)
{
    const int64_t k[4] = {r->g->G, dg->OC, dg->C, dg->KH * dg->KW};
    return weight_memo(r, MEMO_DIRECT_PACKED, k, ty_conv_direct_packed_floats(dg),
                       direct_pack_group, dg);
}

/* The direct kernel, image by image and group by group, each threaded inside. */
static ty_status
fwd_direct(conv_run *r)
{
    const conv_geom *g = r->g;
    ty_direct_geom dg = direct_geom(g);
    size_t bytes = ty_conv_direct_ws_floats(&dg) * sizeof(float); /* bounded by the chooser */
    float *ws = NULL;
    TY_CHECK(bytes > 0, TY_ERR_INTERNAL, "conv2d: the direct algorithm cannot take this layer");
    const float *packed = direct_memo_packed(r, &dg);
    size_t per = packed ? ty_conv_direct_packed_floats(&dg) : 0;
    TY_TRY(ty_mem_scratch_alloc(bytes, (void **)&ws));
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t gi = 0; gi < g->G; gi++) {
            conv_epi e;
            ty_gemm_epilogue_f32 epi;
            ty_conv_direct_f32(&dg, (const float *)(r->a + x_off(r, n, gi)),
                               (const float *)(r->b + w_off(r, gi)),
                               packed ? packed + gi * per : NULL,
                               (float *)(r->out + y_off(r, n, gi)), ws,
                               group_epilogue(r, gi, &e, &epi));
        }
    }
    ty_mem_scratch_free(ws, bytes);
    return TY_OK;
}

/* The float64 fused forward's bias and activation over the whole output, image by image
 * (float32 applies them plane by plane: planes_done). */
static void
depthwise_epilogue(const conv_run *r)
{
    const conv_geom *g = r->g;
    conv_epi e = {.bias = r->f64 ? NULL : (const float *)r->bias, .act = r->act};
    for (int64_t n = 0; n < g->N; n++) {
        char *y = r->out + (size_t)(n * g->OC * g->ohw) * r->es;
        if (r->f64) {
            epilogue_f64(&e, (const double *)r->bias, g->OC, g->ohw, (double *)y);
        } else {
            epilogue_f32(&e, 0, 0, g->OC, g->ohw, (float *)y, g->ohw);
        }
    }
}

/* The unpacked 1x1 kernel over all the images, threaded inside. The images are read where
 * they lie when their rows start on cache lines (ty_conv1x1_ldx) or when few output channels
 * share the copy; otherwise, and for a strided layer (subsampled), they are copied first into
 * rows that do (one thread, the weight cold, 7x7: 320 -> 1280 0.47 -> 0.42 ms, 960 -> 320
 * 0.32 -> 0.30, 960 -> 160 0.16 -> 0.155, but 14x14 384 -> 64 0.085 -> 0.090; in MobileNetV2
 * on two threads the 160-channel 7x7 layers measured slower copied). The copy never changes
 * the bits. AVX-512 reads 7x7 images pixel by pixel, where they lie (ty_conv1x1_ldx). */
enum { DIRECT_1X1_COPY_MIN_OC = 256 };

static ty_status
fwd_direct_1x1(conv_run *r)
{
    const conv_geom *g = r->g;
    TY_CHECK(direct_1x1_usable(g, r->f64), TY_ERR_INTERNAL,
             "conv2d: the direct_1x1 algorithm cannot take this layer");
    conv_epi e;
    ty_gemm_epilogue_f32 epi;
    const ty_gemm_epilogue_f32 *ep = group_epilogue(r, 0, &e, &epi);
    ty_c1x1_geom cg = {.N = g->N, .C = g->C, .OC = g->OC, .P = g->ohw,
                       .ldx = ty_conv1x1_ldx(g->C, g->ohw)};
    if (g->direct && (cg.ldx == g->ohw || g->OC < DIRECT_1X1_COPY_MIN_OC)) {
        cg.ldx = g->ohw;
        ty_conv1x1_f32(&cg, (const float *)r->a, (const float *)r->b, (float *)r->out, ep);
        return TY_OK;
    }
    size_t bytes = (size_t)(g->N * g->C * cg.ldx) * sizeof(float);
    float *xs = NULL;
    TY_TRY(ty_mem_scratch_alloc(bytes ? bytes : 1, (void **)&xs));
    ty_conv1x1_gather_f32((const float *)r->a, g->N * g->C, g->H, g->W, g->sh, g->sw, g->OH,
                          g->OW, xs, cg.ldx);
    ty_conv1x1_f32(&cg, xs, (const float *)r->b, (float *)r->out, ep);
    ty_mem_scratch_free(xs, bytes ? bytes : 1);
    return TY_OK;
}

/* Finished output planes of the float32 depthwise forward: the bias and activation (the
 * epilogue's expressions), then the tile hook, while the planes are in cache. */
static void
planes_done(void *ctx, float *y, int64_t len)
{
    const conv_run *r = ctx;
    const conv_geom *g = r->g;
    if (r->bias || r->act != TY_CONV_ACT_NONE) {
        for (int64_t p = (y - (float *)r->out) / g->ohw, i = 0; i < len; i += g->ohw, p++) {
            conv_epi e = {.bias = r->bias ? (const float *)r->bias + p % g->OC : NULL,
                          .act = r->act};
            epilogue_f32(&e, 0, 0, 1, g->ohw, y + i, g->ohw);
        }
    }
    if (r->hook) {
        r->hook(r->hook_ctx, y, 1, len, len);
    }
}

/* One input channel per group (depthwise): the direct kernels, when their scratch fits.
 * Decided from the geometry alone, so eager, traced and deployed runs agree. */
static int
depthwise_run(const conv_run *r, ty_status *st)
{
    const conv_geom *g = r->g;
    ty_dw_geom d = {g->N, g->C, g->H, g->W, g->OCg, g->KH, g->KW, g->OH, g->OW,
                    g->sh, g->sw, g->ph, g->pw, g->dh, g->dw};
    ty_dw_kind kind = r->kind == CONV_FWD ? TY_DW_FWD
                      : r->kind == CONV_BWD_DATA ? TY_DW_BWD_DATA : TY_DW_BWD_FILTER;
    /* a forward algorithm recorded by a trace or a model file is honoured as it is */
    if (g->Cg != 1 || g->G != g->C || !ty_depthwise_fits(&d) ||
        (r->kind == CONV_FWD && (r->algo_fixed || ty_fastrun_forced() >= 0))) {
        return 0;
    }
    int fused = r->bias || r->act != TY_CONV_ACT_NONE;
    if (kind == TY_DW_FWD && !r->f64 && (fused || r->hook)) { /* planes finished as they come */
        *st = ty_depthwise_fwd_f32_hook(&d, (const float *)r->a, (const float *)r->b,
                                        (float *)r->out, planes_done, (void *)r,
                                        fused ? NULL : r->bn); /* bn: all planes_done does */
        return 1;
    }
    *st = r->f64 ? ty_depthwise_f64(kind, &d, (const double *)r->a, (const double *)r->b,
                                    (double *)r->out)
                 : ty_depthwise_f32(kind, &d, (const float *)r->a, (const float *)r->b,
                                    (float *)r->out);
    if (*st == TY_OK && kind == TY_DW_FWD && fused) {
        depthwise_epilogue(r);
    }
    return 1;
}

static ty_status conv_dispatch(conv_run *r);

/* ---- backward-data of a stride-1 layer as a forward convolution ----
 * With stride 1, dx = conv2d(dy, w'), w' the weight with its channel axes swapped and its
 * kernel turned 180 degrees, padded by d*(k-1) - p: the forward's Winograd then serves the
 * backward pass, with no col buffer and no col2im. */
static int
bwd_data_flips(const conv_run *r)
{
    const conv_geom *g = r->g;
    return !r->f64 && g->sh == 1 && g->sw == 1 && g->ph <= g->dh * (g->KH - 1) &&
           g->pw <= g->dw * (g->KW - 1) && g->N * g->G > 0;
}

/* The forward geometry of dx = conv2d(dy, w'). */
static conv_geom
flipped_geom(const conv_geom *g)
{
    conv_geom f = *g;
    f.C = g->OC;
    f.H = g->OH;
    f.W = g->OW;
    f.OC = g->C;
    f.OH = g->H;
    f.OW = g->W;
    f.Cg = g->OCg;
    f.OCg = g->Cg;
    f.ph = g->dh * (g->KH - 1) - g->ph;
    f.pw = g->dw * (g->KW - 1) - g->pw;
    f.kc = g->OCg * g->KH * g->KW;
    f.ohw = g->H * g->W;
    f.direct = g->KH == 1 && g->KW == 1 && f.ph == 0 && f.pw == 0;
    return f;
}

/* ---- backward-data of a 3x3 stride-1 layer as Winograd F(2x2, 3x3) over dy ----
 * (kernels/cpu/conv_filter.h): dy and dx pixel-major, 16 GEMMs of T tiles x OC against the
 * transformed flipped weight. Taken on images of at most 64 pixels with 128 or more channels
 * on both sides (ResNet's 4x4 512-channel layer, one thread: 28-30 -> 14.6 ms; 8x8 256: 20 ->
 * 13.7); at 16x16 128 it measured no faster than the flipped forward. A single image does
 * not repay the weight's transform (16 x C x OC floats written and read back: ResNet's 7x7
 * 512-channel layer, one thread, 3.5-3.9 ms against 3.1 for col2im; at 2 images 4.8 against
 * 5.3), so it takes two or more. From the shape alone. */
enum { WINO_DATA_MAX_PIXELS = 64, WINO_DATA_MIN_IMAGES = 2 };

static int
bwd_data_takes_wino(const conv_run *r)
{
    const conv_geom *g = r->g;
    return !r->f64 && g->G == 1 && g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 &&
           g->dh == 1 && g->dw == 1 && g->ph <= 2 && g->pw <= 2 &&
           g->C >= WINO_FILTER_MIN_CHANNELS && g->OC >= WINO_FILTER_MIN_CHANNELS &&
           g->H * g->W <= WINO_DATA_MAX_PIXELS && g->N >= WINO_DATA_MIN_IMAGES;
}

typedef struct wino_data {
    const conv_run *r;
    ty_wino_filter_geom wg; /* the forward of dy: dy's images in, dx's out */
    float *dyt, *V, *M, *dxt;
} wino_data;

/* images [begin, end): dy pixel-major, then its tiles transformed */
static void
wino_data_in(void *ctx, int64_t begin, int64_t end)
{
    const wino_data *d = ctx;
    const conv_geom *g = d->r->g;
    ty_wino_filter_geom one = d->wg;
    int64_t tiles = one.TH * one.TW;
    one.nimg = 1;
    for (int64_t n = begin; n < end; n++) {
        float *dyt = d->dyt + n * g->ohw * g->OC;
        ty_transpose_f32((const float *)(d->r->b + y_off(d->r, n, 0)), g->OC, g->ohw, dyt);
        ty_wino_filter_x_f32(&one, dyt, d->V + n * tiles * g->OC);
    }
}

/* images [begin, end): the output tiles, then dx back to NCHW */
static void
wino_data_out(void *ctx, int64_t begin, int64_t end)
{
    const wino_data *d = ctx;
    const conv_geom *g = d->r->g;
    ty_wino_filter_geom one = d->wg;
    int64_t tiles = one.TH * one.TW, hw = g->H * g->W;
    one.nimg = 1;
    for (int64_t n = begin; n < end; n++) {
        float *dxt = d->dxt + n * hw * g->C;
        ty_wino_data_out_f32(&one, d->M + n * tiles * g->C, g->C, dxt);
        ty_transpose_f32(dxt, hw, g->C, (float *)(d->r->out + x_off(d->r, n, 0)));
    }
}

/* *done = 0 (and nothing written) for a weight with an infinity or a NaN: the transforms
 * would multiply it by the zeros of the padding, where the scatter of dy makes no such
 * product (bwd_data_flipped's col2im fallback then takes it). */
static ty_status
bwd_data_wino(const conv_run *r, int *done)
{
    const conv_geom *g = r->g;
    wino_data d = {.r = r};
    d.wg = (ty_wino_filter_geom){g->N, g->OC, g->C, g->OH, g->OW, g->H, g->W, 2 - g->ph,
                                 2 - g->pw, (g->H + 1) / 2, (g->W + 1) / 2, 0};
    int64_t T = g->N * d.wg.TH * d.wg.TW, hw = g->H * g->W;
    int64_t sz[5] = {g->N * g->ohw * g->OC, 16 * T * g->OC, 16 * g->OC * g->C, 16 * T * g->C,
                     g->N * hw * g->C};
    d.wg.plane = T;
    size_t bytes = sizeof(float) * (size_t)(sz[0] + sz[1] + sz[2] + sz[3] + sz[4]);
    float *buf = NULL;
    TY_TRY(ty_mem_scratch_alloc(bytes, (void **)&buf));
    d.dyt = buf;
    d.V = d.dyt + sz[0];
    float *Wt = d.V + sz[1];
    d.M = Wt + sz[2];
    d.dxt = d.M + sz[3];
    *done = !ty_wino_data_weight_f32((const float *)r->a, g->OC, g->C, Wt);
    if (!*done) {
        ty_mem_scratch_free(buf, bytes);
        return TY_OK;
    }
    ty_parallel_for(g->N, 1, wino_data_in, &d);
    for (int64_t xi = 0; xi < 16; xi++) {
        ty_gemm_f32(T, g->C, g->OC, d.V + xi * T * g->OC, g->OC, 1, Wt + xi * g->OC * g->C, g->C,
                    1, d.M + xi * T * g->C, g->C, 0);
    }
    ty_parallel_for(g->N, 1, wino_data_out, &d);
    ty_mem_scratch_free(buf, bytes);
    return TY_OK;
}

/* Its algorithm is the forward heuristic's for that geometry, from the shape alone (the
 * backward op has no recorded choice), so eager, traced and deployed runs agree. It is taken
 * (*done = 1) only where that forward takes Winograd: as an implicit GEMM it measured slower
 * than w^T @ dy and col2im (1.5x on a 32 -> 64 layer at 14x14, 2x on 1x1 layers at batch 1).
 * A weight with an infinity or a NaN leaves it to col2im: the forward's zero padding would
 * multiply it (0 * inf is NaN) where the scatter of dy makes no such product. */
static ty_status
bwd_data_flipped(const conv_run *r, int *done)
{
    const conv_geom *g = r->g;
    conv_geom fg = flipped_geom(g);
    size_t bytes = (size_t)(g->OC * g->kc) * sizeof(float);
    float *wt = NULL;
    conv_fwd_algo algo = conv_fwd_algo_for(&fg, 0);
    *done = algo == FWD_WINO_F23 || algo == FWD_WINO_F43;
    if (!*done) {
        return TY_OK;
    }
    TY_TRY(ty_mem_scratch_alloc(bytes ? bytes : 1, (void **)&wt));
    /* w' (C, OCg, KH, KW) per group: the kernels reversed in both dims are their taps
     * reversed; the nonfinite check rides along the same pass over w */
    if (ty_flip_weight_f32((const float *)r->a, g->G, g->OCg, g->Cg, g->KH * g->KW, wt)) {
        ty_mem_scratch_free(wt, bytes ? bytes : 1);
        *done = 0;
        return TY_OK;
    }
    conv_run f = {.g = &fg, .kind = CONV_FWD, .es = r->es, .a = r->b, .b = (const char *)wt,
                  .out = r->out, .algo = algo, .algo_fixed = 1};
    atomic_init(&f.oom, 0);
    ty_status st = conv_dispatch(&f);
    ty_mem_scratch_free(wt, bytes ? bytes : 1);
    return st;
}

static const char *const fwd_algo_names[] = {"gemm_1x1", "im2col", "implicit_gemm",
                                             "winograd_f23", "winograd_f43", "direct",
                                             "direct_1x1"};

int
ty_conv_fwd_algo_count(void)
{
    return (int)(sizeof fwd_algo_names / sizeof fwd_algo_names[0]);
}

/* Fastrun's profiling run: algorithm algo into a scratch output. */
static ty_status
fwd_run_algo(void *ctx, int algo, int scratch)
{
    const conv_run *r = ctx;
    const conv_geom *g = r->g;
    size_t bytes = (size_t)(g->N * g->OC * g->OH * g->OW * r->es);
    conv_run s = {.g = g, .kind = r->kind, .f64 = r->f64, .es = r->es, .a = r->a, .b = r->b,
                  .out = r->out, .algo = (conv_fwd_algo)algo, .algo_fixed = 1, .bias = r->bias,
                  .act = r->act};
    atomic_init(&s.oom, 0);
    if (scratch) {
        TY_TRY(ty_mem_alloc(bytes ? bytes : 1, (void **)&s.out));
    }
    ty_status st = conv_dispatch(&s);
    if (scratch) {
        ty_mem_free(s.out, bytes ? bytes : 1);
    }
    return st;
}

/* Fastrun's key: dtype, shapes and params. */
static void
fwd_key(const void *ctx, char *buf, size_t n)
{
    const conv_run *r = ctx;
    const conv_geom *g = r->g;
    snprintf(buf, n, "%s x=%lld,%lld,%lld,%lld w=%lld,%lld,%lld,%lld s=%lld,%lld p=%lld,%lld "
             "d=%lld,%lld", r->f64 ? "f64" : "f32", (long long)g->N, (long long)g->C,
             (long long)g->H, (long long)g->W, (long long)g->OC, (long long)g->Cg,
             (long long)g->KH, (long long)g->KW, (long long)g->sh, (long long)g->sw,
             (long long)g->ph, (long long)g->pw, (long long)g->dh, (long long)g->dw);
}

/* The forward algorithm through fastrun: the heuristic's pick, a profiled one, or the one a
 * trace or model node recorded. Winograd's rivals are the 3x3 stride-1 float32 layers'. */
static ty_status
conv_fwd_choose(conv_run *r)
{
    const conv_geom *g = r->g;
    conv_fwd_algo h = conv_fwd_algo_for(g, r->f64);
    unsigned usable = 1u << h;
    if (!r->f64 && g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 &&
        g->dw == 1 && !g->direct) {
        usable |= 1u << FWD_IMPLICIT;
        usable |= wino_cost(g, 2) >= 0 ? 1u << FWD_WINO_F23 : 0;
        usable |= wino_cost(g, 4) >= 0 ? 1u << FWD_WINO_F43 : 0;
    }
    if (direct_usable(g, r->f64)) {
        usable |= 1u << FWD_IMPLICIT | 1u << FWD_DIRECT;
    }
    if (direct_1x1_usable(g, r->f64)) {
        usable |= 1u << (g->direct ? FWD_GEMM_1X1 : FWD_IMPLICIT) | 1u << FWD_DIRECT_1X1;
    }
    ty_fastrun_desc d = {.op = "conv2d", .key = fwd_key, .nalgos = ty_conv_fwd_algo_count(),
                         .names = fwd_algo_names, .usable = usable, .heuristic = (int)h,
                         .reproducible = ~0u, /* each: the same bits every run, any threads */
                         .run = fwd_run_algo, .ctx = r};
    int algo;
    TY_TRY(ty_fastrun_choose(&d, &algo));
    r->algo = (conv_fwd_algo)algo;
    return TY_OK;
}

static ty_status
conv_dispatch(conv_run *r)
{
    const conv_geom *g = r->g;
    ty_status dw_status;
    if (depthwise_run(r, &dw_status)) {
        return dw_status;
    }
    if (r->kind == CONV_BWD_DATA && bwd_data_takes_wino(r)) {
        int done;
        TY_TRY(bwd_data_wino(r, &done));
        if (done) {
            return TY_OK;
        }
    }
    if (r->kind == CONV_BWD_DATA && bwd_data_flips(r)) {
        int done;
        TY_TRY(bwd_data_flipped(r, &done));
        if (done) {
            return TY_OK;
        }
    }
    r->nb = 1;
    if (r->kind == CONV_BWD_FILTER && g->G < FILTER_PARTS &&
        (g->N >= 2 || (!r->f64 && !g->direct && g->ohw >= BATCH_COLS))) {
        /* few groups: split the images instead (shape-only); one large image takes the
         * packed-operand GEMM too (ResNet's 56x56 layer at batch 1: 1.5x faster than im2col
         * and a GEMM; below about BATCH_COLS pixels that one is faster) */
        return bwd_filter_split(r);
    }
    int64_t colsz;
    int64_t cdims[3] = {g->kc, g->ohw, r->es};
    if ((r->kind == CONV_BWD_FILTER ? g->G : g->N * g->G) == 0) {
        return TY_OK; /* no images: the filter gradient is still written (zeros) below */
    }
    TY_TRY(ty_shape_numel(3, cdims, &colsz));
    if (r->kind == CONV_FWD) {
        if (!r->algo_fixed) {
            TY_TRY(conv_fwd_choose(r));
        }
        if (r->algo == FWD_WINO_F23 || r->algo == FWD_WINO_F43) {
            return fwd_winograd(r);
        }
        if (r->algo == FWD_DIRECT) {
            return fwd_direct(r);
        }
        if (r->algo == FWD_DIRECT_1X1) {
            return fwd_direct_1x1(r);
        }
    }
    if (r->kind != CONV_BWD_FILTER) {
        r->nb = images_per_item(r);
        colsz = (int64_t)item_buffer_bytes(r);
    }
    int64_t items = r->kind == CONV_BWD_FILTER ? g->G : (g->N + r->nb - 1) / r->nb * g->G;
    double fmas = (double)g->OCg * (double)g->kc * (double)g->ohw * (double)r->nb;
    if (r->kind == CONV_BWD_FILTER) {
        fmas *= (double)g->N;
    }
    /* Many or small items: one serial GEMM per item, in parallel. Otherwise one item at a
     * time, each GEMM threaded. */
    if (items >= ty_get_num_threads() || fmas < SMALL_ITEM_FMAS) {
        ty_parallel_for(items, 1, conv_range, r);
    } else {
        conv_range(r, 0, items);
    }
    TY_CHECK(!atomic_load(&r->oom), TY_ERR_OOM, "out of memory for a %lld-byte work buffer",
             (long long)colsz);
    return TY_OK;
}

/* ---- the tile hook of ops/conv.h: set by the caller, taken by the next forward ---- */
static _Thread_local ty_conv_tile_fn pending_hook;
static _Thread_local void *pending_ctx;
static _Thread_local const float *pending_y;
static _Thread_local ty_epi_bn_f32 pending_bn;
static _Thread_local int pending_has_bn;

void
ty_conv_set_tile_hook(ty_conv_tile_fn fn, void *ctx, const float *y)
{
    pending_hook = fn;
    pending_ctx = ctx;
    pending_y = y;
    pending_has_bn = 0;
}

void
ty_conv_set_tile_bn(const ty_epi_bn_f32 *bn)
{
    pending_bn = *bn;
    pending_has_bn = pending_hook != NULL;
}

int
ty_conv_clear_tile_hook(void)
{
    int was = pending_hook != NULL;
    ty_conv_set_tile_hook(NULL, NULL, NULL);
    return was;
}

/* The hook, and its chain copied into bn. */
static void
take_tile_hook(conv_run *r, ty_epi_bn_f32 *bn)
{
    r->hook = pending_hook;
    r->hook_ctx = pending_ctx;
    *bn = pending_bn;
    r->bn = pending_has_bn ? bn : NULL;
    ty_conv_set_tile_hook(NULL, NULL, NULL);
}

/* Runs one kernel: inputs a, b (and the forward's bias) converted as needed, result written
 * into out. */
static ty_status
conv_exec_fused(conv_kind kind, const conv_geom *g, ty_tensor *a, ty_tensor *b,
                ty_tensor *bias, ty_conv_act act, ty_tensor *out)
{
    ty_dtype cdt = out->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *ca = NULL, *cb = NULL, *cbias = NULL, *y = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(ty_contiguous_as(a, cdt, &ca));
    TY_TRY_GOTO(ty_contiguous_as(b, cdt, &cb));
    if (bias) {
        TY_TRY_GOTO(ty_contiguous_as(bias, cdt, &cbias));
    }
    TY_TRY_GOTO(ty_compute_target(out, cdt, &y));
    conv_run r = {.g = g, .kind = kind, .f64 = cdt == TY_FLOAT64,
                  .es = (int64_t)ty_dtype_size(cdt), .a = ty_tensor_ptr(ca),
                  .b = ty_tensor_ptr(cb), .out = ty_tensor_ptr(y),
                  .bias = cbias ? ty_tensor_ptr(cbias) : NULL, .act = act,
                  .wconst = kind == CONV_FWD && cb->storage->constant ? cb->storage : NULL};
    atomic_init(&r.oom, 0);
    ty_epi_bn_f32 bn;
    if (kind == CONV_FWD && cdt == TY_FLOAT32 && ty_tensor_ptr(y) == ty_tensor_ptr(out) &&
        (const float *)ty_tensor_ptr(out) == pending_y) {
        take_tile_hook(&r, &bn);
    }
    (void)ty_fastrun_take_last(); /* a recorded node takes this call's choice, or none */
    TY_TRY_GOTO(conv_dispatch(&r));
    TY_TRY_GOTO(ty_compute_done(out, y));
fail:
    ty_tensor_release(ca);
    ty_tensor_release(cb);
    ty_tensor_release(cbias);
    ty_tensor_release(y);
    return status;
}

static ty_status
conv_exec(conv_kind kind, const conv_geom *g, ty_tensor *a, ty_tensor *b, ty_tensor *out)
{
    return conv_exec_fused(kind, g, a, b, NULL, TY_CONV_ACT_NONE, out);
}

/* ---- conv2d: (x, w) -> y, and the fused forward of ops/conv.h ---- */
static ty_status
conv2d_geom(const ty_call *c, conv_geom *g)
{
    TY_TRY(check_rank4(c->in[0], "input"));
    TY_TRY(check_rank4(c->in[1], "weight"));
    return geom_init(c->params, c->in[0]->shape, c->in[1]->shape, g);
}

ty_status
ty_conv2d_infer(const ty_call *c, ty_meta *out)
{
    conv_geom g;
    TY_TRY(float_dtype(c->in[0], c->in[1], &out->dtype));
    TY_TRY(conv2d_geom(c, &g));
    out->ndim = 4;
    geom_yshape(&g, out->shape);
    int64_t n;
    return ty_shape_numel(4, out->shape, &n);
}

ty_status
ty_conv2d_forward(const ty_call *c, ty_tensor **out)
{
    conv_geom g;
    TY_TRY(conv2d_geom(c, &g));
    return conv_exec(CONV_FWD, &g, c->in[0], c->in[1], out[0]);
}

ty_status
ty_conv2d_forward_fused(const ty_p_conv *p, ty_tensor *x, ty_tensor *w, ty_tensor *bias,
                        ty_conv_act act, ty_tensor *out)
{
    conv_geom g;
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(check_rank4(x, "input"));
    TY_TRY(check_rank4(w, "weight"));
    TY_TRY(geom_init(p, x->shape, w->shape, &g));
    TY_CHECK(act == TY_CONV_ACT_NONE || act == TY_CONV_ACT_RELU || act == TY_CONV_ACT_RELU6,
             TY_ERR_INVALID_ARG,
             "unknown activation %d", (int)act);
    TY_CHECK(!bias || ty_tensor_numel(bias) == g.OC, TY_ERR_SHAPE,
             "bias %s must have one value per output channel (%lld)",
             bias ? ty_shape_str(bias->ndim, bias->shape, b1, sizeof b1) : "",
             (long long)g.OC);
    int64_t ys[4];
    geom_yshape(&g, ys);
    TY_CHECK(out->ndim == 4 && memcmp(out->shape, ys, sizeof ys) == 0 &&
                 ty_dtype_is_float(out->dtype),
             TY_ERR_SHAPE, "output %s must be a float tensor of shape %s",
             ty_shape_str(out->ndim, out->shape, b1, sizeof b1),
             ty_shape_str(4, ys, b2, sizeof b2));
    return conv_exec_fused(CONV_FWD, &g, x, w, bias, act, out);
}

/* ---- conv2d_backward_data: (w, dy, x_like) -> dx of x_like's shape ---- */
static ty_status
bwd_data_geom(const ty_call *c, conv_geom *g)
{
    const ty_tensor *w = c->in[0], *dy = c->in[1], *xl = c->in[2];
    TY_TRY(check_rank4(w, "weight"));
    TY_TRY(check_rank4(xl, "input (shape reference)"));
    TY_TRY(geom_init(c->params, xl->shape, w->shape, g));
    return check_dy(g, dy, xl->shape, w->shape);
}

ty_status
ty_conv2d_backward_data_infer(const ty_call *c, ty_meta *out)
{
    conv_geom g;
    TY_TRY(float_dtype(c->in[0], c->in[1], &out->dtype));
    TY_TRY(bwd_data_geom(c, &g));
    out->ndim = 4;
    memcpy(out->shape, c->in[2]->shape, sizeof(int64_t) * 4);
    return TY_OK;
}

ty_status
ty_conv2d_backward_data_forward(const ty_call *c, ty_tensor **out)
{
    conv_geom g;
    TY_TRY(bwd_data_geom(c, &g));
    return conv_exec(CONV_BWD_DATA, &g, c->in[0], c->in[1], out[0]);
}

/* ---- conv2d_backward_filter: (x, dy, w_like) -> dw of w_like's shape ---- */
static ty_status
bwd_filter_geom(const ty_call *c, conv_geom *g)
{
    const ty_tensor *x = c->in[0], *dy = c->in[1], *wl = c->in[2];
    TY_TRY(check_rank4(x, "input"));
    TY_TRY(check_rank4(wl, "weight (shape reference)"));
    TY_TRY(geom_init(c->params, x->shape, wl->shape, g));
    return check_dy(g, dy, x->shape, wl->shape);
}

ty_status
ty_conv2d_backward_filter_infer(const ty_call *c, ty_meta *out)
{
    conv_geom g;
    TY_TRY(float_dtype(c->in[0], c->in[1], &out->dtype));
    TY_TRY(bwd_filter_geom(c, &g));
    out->ndim = 4;
    memcpy(out->shape, c->in[2]->shape, sizeof(int64_t) * 4);
    return TY_OK;
}

ty_status
ty_conv2d_backward_filter_forward(const ty_call *c, ty_tensor **out)
{
    conv_geom g;
    TY_TRY(bwd_filter_geom(c, &g));
    return conv_exec(CONV_BWD_FILTER, &g, c->in[0], c->in[1], out[0]);
}

/* ---- conv_transpose2d: (x (N, IC, H, W), w (IC, OC/G, KH, KW)) -> y (N, OC, OH, OW) ----
 * y is the input gradient of conv2d(y-shaped input, w), so the geometry is that convolution's,
 * and out_pad (< stride) picks among the input sizes that give the same output size. */
static ty_status
transposed_extent(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d, int64_t opad,
                  int64_t *out)
{
    int64_t a, b;
    TY_CHECK(opad >= 0 && opad < s, TY_ERR_INVALID_ARG,
             "output_padding must be in [0, stride), got %lld with stride %lld",
             (long long)opad, (long long)s);
    TY_CHECK(!__builtin_mul_overflow(in - 1, s, &a) && !__builtin_mul_overflow(k - 1, d, &b) &&
                 !__builtin_add_overflow(a, b, &a) && !__builtin_add_overflow(a, opad + 1, &a),
             TY_ERR_SHAPE, "output size overflows");
    *out = a - 2 * pad;
    return TY_OK;
}

static ty_status
transpose_geom(const ty_call *c, conv_geom *g)
{
    const ty_p_conv *p = c->params;
    const ty_tensor *x = c->in[0], *w = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(check_rank4(x, "input"));
    TY_TRY(check_rank4(w, "weight"));
    TY_TRY(check_params(p));
    TY_CHECK(x->shape[1] == w->shape[0], TY_ERR_SHAPE,
             "input %s has %lld channels but weight %s expects %lld",
             ty_shape_str(4, x->shape, b1, sizeof b1), (long long)x->shape[1],
             ty_shape_str(4, w->shape, b2, sizeof b2), (long long)w->shape[0]);
    TY_CHECK(x->shape[2] >= 1 && x->shape[3] >= 1, TY_ERR_SHAPE,
             "input %s has an empty spatial dim", ty_shape_str(4, x->shape, b1, sizeof b1));
    int64_t ys[4] = {x->shape[0], 0, 0, 0};
    TY_CHECK(!__builtin_mul_overflow(w->shape[1], p->groups, &ys[1]), TY_ERR_SHAPE,
             "output channels overflow");
    TY_TRY(transposed_extent(x->shape[2], w->shape[2], p->stride_h, p->pad_h, p->dilate_h,
                             p->out_pad_h, &ys[2]));
    TY_TRY(transposed_extent(x->shape[3], w->shape[3], p->stride_w, p->pad_w, p->dilate_w,
                             p->out_pad_w, &ys[3]));
    TY_CHECK(ys[2] >= 1 && ys[3] >= 1, TY_ERR_SHAPE,
             "padding (%lld, %lld) leaves no output for input %s and weight %s",
             (long long)p->pad_h, (long long)p->pad_w, ty_shape_str(4, x->shape, b1, sizeof b1),
             ty_shape_str(4, w->shape, b2, sizeof b2));
    TY_TRY(geom_init(p, ys, w->shape, g));
    return check_dy(g, x, ys, w->shape);
}

ty_status
ty_conv_transpose2d_infer(const ty_call *c, ty_meta *out)
{
    conv_geom g;
    TY_TRY(float_dtype(c->in[0], c->in[1], &out->dtype));
    TY_TRY(transpose_geom(c, &g));
    out->ndim = 4;
    out->shape[0] = g.N;
    out->shape[1] = g.C;
    out->shape[2] = g.H;
    out->shape[3] = g.W;
    int64_t n;
    return ty_shape_numel(4, out->shape, &n);
}

ty_status
ty_conv_transpose2d_forward(const ty_call *c, ty_tensor **out)
{
    conv_geom g;
    TY_TRY(transpose_geom(c, &g));
    return conv_exec(CONV_BWD_DATA, &g, c->in[1], c->in[0], out[0]);
}

/* ---- gradients: every op here is bilinear, so each input gradient is one of the ops ---- */
static ty_tensor *
cv(ty_gk *k, ty_op op, const ty_call *c, ty_tensor *a, ty_tensor *b, ty_tensor *like)
{
    return gk_apply(k, op, c->params, like ? 3 : 2, a, b, like);
}

static ty_status
finish(ty_gk *k, ty_tensor *const *in, ty_tensor *d0, ty_tensor *d1, ty_tensor **gin, int nin)
{
    d0 = gk_fit_dtype(k, d0, in[0]);
    d1 = gk_fit_dtype(k, d1, in[1]);
    if (nin == 3) {
        gin[2] = NULL;
    }
    return gk_finish2(k, d0, &gin[0], d1, &gin[1]);
}

/* y = conv2d(x, w): dx = backward_data(w, g, x), dw = backward_filter(x, g, w) */
ty_status
ty_grad_conv2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *x = c->in[0], *w = c->in[1], *g = gout[0];
    if (!g) {
        return finish(&k, c->in, NULL, NULL, gin, 2);
    }
    ty_tensor *dx = ty_grad_wanted(0) ? cv(&k, TY_OP_CONV2D_BACKWARD_DATA, c, w, g, x) : NULL;
    ty_tensor *dw = ty_grad_wanted(1) ? gk_conv2d_filter_grad(&k, c->params, x, g, w) : NULL;
    return finish(&k, c->in, dx, dw, gin, 2);
}

/* dx = backward_data(w, dy): d/dw = backward_filter(g, dy, w), d/ddy = conv2d(g, w) */
ty_status
ty_grad_conv2d_backward_data(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                             ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *w = c->in[0], *dy = c->in[1], *g = gout[0];
    if (!g) {
        return finish(&k, c->in, NULL, NULL, gin, 3);
    }
    ty_tensor *dw = cv(&k, TY_OP_CONV2D_BACKWARD_FILTER, c, g, dy, w);
    ty_tensor *ddy = cv(&k, TY_OP_CONV2D, c, g, w, NULL);
    return finish(&k, c->in, dw, ddy, gin, 3);
}

/* dw = backward_filter(x, dy): d/dx = backward_data(g, dy, x), d/ddy = conv2d(x, g) */
ty_status
ty_grad_conv2d_backward_filter(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                               ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *x = c->in[0], *dy = c->in[1], *g = gout[0];
    if (!g) {
        return finish(&k, c->in, NULL, NULL, gin, 3);
    }
    ty_tensor *dx = cv(&k, TY_OP_CONV2D_BACKWARD_DATA, c, g, dy, x);
    ty_tensor *ddy = cv(&k, TY_OP_CONV2D, c, x, g, NULL);
    return finish(&k, c->in, dx, ddy, gin, 3);
}

/* y = backward_data(w, x): dx = conv2d(g, w), dw = backward_filter(g, x, w) */
ty_status
ty_grad_conv_transpose2d(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                         ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *x = c->in[0], *w = c->in[1], *g = gout[0];
    if (!g) {
        return finish(&k, c->in, NULL, NULL, gin, 2);
    }
    ty_tensor *dx = cv(&k, TY_OP_CONV2D, c, g, w, NULL);
    ty_tensor *dw = cv(&k, TY_OP_CONV2D_BACKWARD_FILTER, c, g, x, w);
    return finish(&k, c->in, dx, dw, gin, 2);
}
