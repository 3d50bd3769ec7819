/* Data movement for the convolution's filter gradient (ops/conv.c): images turned
 * pixel-major, and GEMM panels of the column matrix packed from them with the rows tap-major.
 * Pure copies, so every ISA path gives the same bits. */
#ifndef TY_KERNELS_CPU_CONV_FILTER_H
#define TY_KERNELS_CPU_CONV_FILTER_H

#include <stdint.h>

#include "base/isa.h"

/* dst (cols, rows) = src (rows, cols), both contiguous and not overlapping. */
void ty_transpose_f32(const float *src, int64_t rows, int64_t cols, float *dst);

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

/* Forces the instruction set of the two above for later calls (tests); one the CPU cannot
 * run, or TY_ISA_AUTO, falls back to the best it can. Returns the set now in use. */
ty_isa ty_conv_filter_set_isa(ty_isa isa);

#endif
