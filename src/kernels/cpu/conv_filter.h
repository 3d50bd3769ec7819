/* Data movement for the convolution's filter gradient (ops/conv.c): images turned
 * pixel-major, and GEMM panels of the column matrix packed from them with the rows tap-major.
 * Pure copies, so every ISA path gives the same bits. The transpose, the Winograd transforms
 * and the weight flip run on the thread pool in pieces fixed by the shape, each writing its
 * own outputs (serially when called inside a parallel region): the same bits at any thread
 * count. */
#ifndef TY_KERNELS_CPU_CONV_FILTER_H
#define TY_KERNELS_CPU_CONV_FILTER_H

#include <stdint.h>

#include "base/isa.h"

/* dst (cols, rows) = src (rows, cols), both contiguous and not overlapping. */
void ty_transpose_f32(const float *src, int64_t rows, int64_t cols, float *dst);

/* dst (OH*OW, C) = the pixels (oh*sh, ow*sw) of the image src (C, H, W): what an unpadded 1x1
 * layer with strides reads, pixel-major (a quarter of the image at stride 2). */
void ty_pixel_major_sampled_f32(const float *src, int64_t C, int64_t H, int64_t W, int64_t sh,
                                int64_t sw, int64_t OH, int64_t OW, float *dst);

/* Images stored pixel-major, (H, W, C) one after the other, and a convolution over them:
 * kernel (kh, kw), stride, padding, dilation, output (OH, OW). */
typedef struct ty_tap_src_f32 {
    const float *x;
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW;
} ty_tap_src_f32;

/* A ty_gemm_pack_f32 (kernels/cpu/gemm.h) over the column matrix with its rows tap-major,
 * col'(tap * C + c, q) = x[img][ih][iw][c] for the tap (ki, kj) = (tap / kw, tap % kw) and
 * output pixel q = img * OH * OW + oh * OW + ow (zero in the padding), with the rows as the
 * free index: dst[p*width + i] = col'(i0 + i, k0 + p) for i < len, p < kc, and 0 for
 * len <= i < width. ctx is a ty_tap_src_f32. */
void ty_tap_pack_f32(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc,
                     int width, float *dst);

/* Winograd F(2x2, 3x3) for the filter gradient of a 3x3 stride-1 convolution, in three steps:
 * the 4x4 input tile of each 2x2 output tile transformed, V = B^T d B; the output gradient's
 * tile, U = A e A^T; then, after M_xi (OC, C) = sum over tiles of U_xi V_xi^T (16 GEMMs, one
 * per point xi of the 4x4 tile), dw = G^T M G. The tiles of nimg pixel-major images (H, W, C)
 * whose convolution output is (OH, OW) with padding (ph, pw) are TH x TW per image,
 * TH = ceil(OH / 2), TW = ceil(OW / 2), numbered t = (img * TH + ty) * TW + tx; values past
 * the image or the output are zeros. */
typedef struct ty_wino_filter_geom {
    int64_t nimg, C, OC, H, W, OH, OW, ph, pw, TH, TW;
    int64_t plane; /* tiles between the xi planes of V and U: nimg * TH * TW, or more */
} ty_wino_filter_geom;

/* V[xi][t][c] (16 x plane x C) from the pixel-major images x. */
void ty_wino_filter_x_f32(const ty_wino_filter_geom *g, const float *x, float *V);
/* U[xi][t][o] (16 x plane x OC) from the pixel-major output gradient dy (OH, OW, OC) per image. */
void ty_wino_filter_dy_f32(const ty_wino_filter_geom *g, const float *dy, float *U);
/* dw (OC, C, 3, 3) = G^T M G for M[xi][o][c] (16 x OC x C), rows o0 <= o < o1 of it. */
void ty_wino_filter_out_f32(const float *M, int64_t OC, int64_t C, int64_t o0, int64_t o1,
                            float *dw);

/* The backward-data weight: wt (G, Cg, OCg, kk) = w (G, OCg, Cg, kk) with the channel axes
 * swapped and each kernel's kk taps reversed. Returns 1 if any value of w is an infinity or
 * a NaN (wt is then written all the same), else 0. */
int ty_flip_weight_f32(const float *w, int64_t G, int64_t OCg, int64_t Cg, int64_t kk,
                       float *wt);

/* Winograd F(2x2, 3x3) for the input gradient of a 3x3 stride-1 convolution, which is the
 * forward convolution of dy (padded by 2 - p) with the flipped weight: V from dy's tiles
 * with ty_wino_filter_x_f32 (dy as the images, OC as C, the input as the output), then
 * W[xi][o][c] (16 x OC x C) = G w'[c][o] G^T of the flipped weight, M_xi (T, C) = V_xi W_xi
 * (16 GEMMs), and here the 2x2 output tiles A^T M A into pixel-major dx (H, W, C) per image;
 * g describes the forward of dy (H, W: dy's; OH, OW: dx's; C: OC). The weight's transform
 * (threaded over output channels, which write disjoint parts) returns 1 if w holds an infinity or a NaN (which the transforms would smear), else 0. */
int ty_wino_data_weight_f32(const float *w, int64_t OC, int64_t C, float *Wt);
void ty_wino_data_out_f32(const ty_wino_filter_geom *g, const float *M, int64_t C, float *dx);

/* Forces the instruction set of the two above for later calls (tests); one the CPU cannot
 * run, or TY_ISA_AUTO, falls back to the best it can. Returns the set now in use. */
ty_isa ty_conv_filter_set_isa(ty_isa isa);

#endif
