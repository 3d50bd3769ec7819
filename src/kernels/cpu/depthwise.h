/* Direct depthwise convolution (groups == input channels) on NCHW-contiguous data: forward,
 * backward-data and backward-filter, without im2col.
 *
 * Layouts: x (N, C, H, W), w (C*M, 1, KH, KW), y (N, C*M, OH, OW); output channel c*M + m reads
 * input channel c (M is the channel multiplier). Geometry is trusted (conv.c validates it):
 * sizes >= 0, strides and dilations >= 1, OH and OW what the convolution gives.
 *
 * Every result is a sum of products, each term added by one fused multiply-add (fmaf in the
 * portable path), starting from +0, in a fixed order:
 *   forward         y[n, c*M+m, oh, ow] = sum over taps t = (kh, kw) in row-major order of
 *                   w[c*M+m, t] * xpad[n, c, oh*sh + kh*dh, ow*sw + kw*dw] (xpad: zero-padded x);
 *   backward-data   dx[n, c, ih, iw] = sum over (m, kh, kw) in order of w[c*M+m, kh, kw] * dy
 *                   for the dy cell that tap reaches (only real products: no padding terms);
 *   backward-filter dw[c*M+m, t] = pairwise sum of 16 lane sums, lane j taking the positions
 *                   ow = 16*b + j over (n, oh, b) in that order.
 * The AVX-512, AVX2 and portable paths run exactly these operations, so all give the same bits,
 * and the work is split over whole planes (or channels), so the thread count never matters. */
#ifndef TY_KERNELS_CPU_DEPTHWISE_H
#define TY_KERNELS_CPU_DEPTHWISE_H

#include <stdint.h>

#include "base/base.h"
#include "base/isa.h"
#include "kernels/cpu/gemm.h"

typedef struct ty_dw_geom {
    int64_t N, C, H, W; /* input */
    int64_t M;          /* channel multiplier (output channels C*M) */
    int64_t KH, KW, OH, OW;
    int64_t sh, sw, ph, pw, dh, dw;
} ty_dw_geom;

typedef enum ty_dw_kind {
    TY_DW_FWD,        /* (x, w) -> y */
    TY_DW_BWD_DATA,   /* (w, dy) -> dx, stored (dx need not be zeroed) */
    TY_DW_BWD_FILTER, /* (x, dy) -> dw, stored */
} ty_dw_kind;

/* Nonzero when the direct kernels take this geometry: the per-plane scratch stays small
 * (huge padding or dilation goes to im2col instead). A function of the geometry alone. */
int ty_depthwise_fits(const ty_dw_geom *g);

/* Runs one kernel; a, b are the two inputs in the order of ty_dw_kind. Fails only with
 * TY_ERR_OOM (scratch). */
ty_status ty_depthwise_f32(ty_dw_kind kind, const ty_dw_geom *g, const float *a, const float *b,
                           float *out) TY_NODISCARD;
ty_status ty_depthwise_f64(ty_dw_kind kind, const ty_dw_geom *g, const double *a,
                           const double *b, double *out) TY_NODISCARD;

/* The float32 forward with fn(ctx, y, len) run on each finished range of output planes
 * (concurrently, on disjoint ranges), while they are in cache. bn: NULL, or exactly what fn
 * does (gemm.h's batch norm chain, indexed by output channel): the AVX2 kernels apply it in
 * their registers before the one store and skip fn for those planes, when it writes y in
 * place with no residual; every other path calls fn. */
typedef void (*ty_dw_done_fn)(void *ctx, float *y, int64_t len);
ty_status ty_depthwise_fwd_f32_hook(const ty_dw_geom *g, const float *x, const float *w,
                                    float *y, ty_dw_done_fn fn, void *ctx,
                                    const ty_epi_bn_f32 *bn) TY_NODISCARD;

/* Tests and benchmarks: the instruction set of the f32 kernels (TY_ISA_AUTO for the best);
 * one the CPU cannot run falls back to the best. Returns the set now in use. */
ty_isa ty_depthwise_set_isa(ty_isa isa);

/* Tests only: while on != 0, backward-data takes its exact path for every channel (by default
 * channels whose weights are all finite take a faster one with the same bits). */
void ty_depthwise_set_exact_backward(int on);

/* Tests and benchmarks: while on != 0, the AVX2 forward runs plane by plane (its plane
 * kernels), never 8 planes at a time; the bits are the same either way. */
void ty_depthwise_set_planes_only(int on);

#endif
