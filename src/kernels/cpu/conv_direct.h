/* Direct dense convolution (float32, NCHW, one image and one group at a time) for layers where
 * im2col + GEMM does poorly: strided layers with short window sums (ResNet's 7x7/2 stem, whose
 * columns are a gather to pack) and small planes (7x7, which the GEMM splits into 32 + 16 + 1
 * columns); ops/conv.c's heuristic says which.
 *
 * The image is first copied into a zero-padded scratch split into sh*sw sub-planes (the
 * depthwise kernels' layout): sub-plane (a, b) holds the padded cells (u*sh + a, v*sw + b) at
 * u*Sq + v. The output is then computed as one long row of "wide" pixels q = oh*Sq + ow
 * (columns ow >= OW are junk, dropped on store): for every tap the inputs of consecutive wide
 * pixels are consecutive in one sub-plane, so a vector of wide pixels is one unaligned load
 * per tap, whatever the stride, padding or dilation, and small planes (7x7, 14x14) still run
 * full vectors. A register tile holds several output channels times several vectors of wide
 * pixels; the weights are broadcast where they lie (no packing). Per register tile the input
 * channels go in blocks whose image window stays in L1 while four blocks of output channels
 * read it.
 *
 * On AVX-512, 3x3 (or smaller) windows with 16 output channels or more take another register
 * tile instead: 16 output channels in the lanes, any 6 output pixels' inputs broadcast, the
 * weights transposed per task into blocks of 64 channels (no lane is lost to the plane's shape:
 * a 7x7 output fills 49 of 64 lanes as wide pixels), or read in that order from a copy packed
 * once (ty_conv_direct_pack_f32: a deployed model's constant weights). It computes the same
 * chains. AVX2 takes it too (16 channels in two vectors x 6 pixels) where the window sum has
 * 64 terms or more, reading the image in place (no split copy) but for the outputs whose
 * windows cross its edge, whose windows it copies into the workspace with the padding's
 * zeros; a shorter sum (a stem: 3 channels) runs AVX2's 4-channel x 24-pixel tiles over whole
 * output rows, stored straight into y.
 *
 * Bits: every output is one chain over (c, kh, kw) in that order, starting from 0, of
 * acc = fma(w, x, acc) (AVX2 and AVX-512, which therefore agree) or acc = acc + w*x (generic).
 * No output depends on how the work is split, so the thread count never changes the result.
 * The chain differs from im2col + GEMM's (which sums K in blocks), so it is an algorithm of
 * its own, chosen by shape. Geometry is trusted (callers validate). */
#ifndef TY_KERNELS_CPU_CONV_DIRECT_H
#define TY_KERNELS_CPU_CONV_DIRECT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/gemm.h"

typedef struct ty_direct_geom {
    int64_t C, H, W;      /* the image (C, H, W), contiguous */
    int64_t OC, KH, KW;   /* the weight (OC, C, KH, KW), contiguous */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t OH, OW;       /* the output (OC, OH, OW), contiguous; both >= 1 */
} ty_direct_geom;

/* Floats of workspace ty_conv_direct_f32 needs (the padded, split image); 0 when the count
 * overflows or exceeds what the kernel addresses. */
size_t ty_conv_direct_ws_floats(const ty_direct_geom *g);

/* Floats of w packed for the output-channels-in-lanes tile (AVX-512, 3x3 or smaller, OC >= 16
 * on the ISA in use), or 0 where the kernel would not read a packing. */
size_t ty_conv_direct_packed_floats(const ty_direct_geom *g);

/* packed (ty_conv_direct_packed_floats(g) floats, 64-byte aligned) = w in the lanes tile's
 * order, threaded: what ty_conv_direct_f32 otherwise transposes block by block on every call.
 * A constant weight (a deployed model's) is packed once and kept. */
void ty_conv_direct_pack_f32(const ty_direct_geom *g, const float *w, float *packed);

/* y = conv(x, w) through ws (ty_conv_direct_ws_floats(g) floats), threaded, then epi (NULL:
 * none) over each finished block: rows [i0, i0 + rows) of output channels, the pixels
 * [j0, j0 + cols) of their planes (y as an (OC, OH*OW) matrix). packed: w packed by
 * ty_conv_direct_pack_f32 on the same ISA, or NULL; the same bits either way. */
void ty_conv_direct_f32(const ty_direct_geom *g, const float *x, const float *w,
                        const float *packed, float *y, float *ws,
                        const ty_gemm_epilogue_f32 *epi);

#endif
