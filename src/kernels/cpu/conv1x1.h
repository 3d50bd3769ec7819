/* Direct float32 1x1 stride-1 convolution (no padding, one group) for small planes, without
 * packing either operand: y[n] (OC, P) = w (OC, C) @ x[n] (C, P), P = H*W.
 *
 * The GEMM packs the weight (a transposing copy of all OC*C values) on every call and splits
 * 49 columns into 32 + 16 + 1; here each register tile (up to 6 output channels by up to 64
 * pixels) reads the weight rows where they lie (broadcasts) and the image rows as vectors, so
 * the weight is read once per call and only a partial last vector is wasted. On AVX-512, planes
 * of up to 64 pixels that the tiles fill badly (7x7, 4x4; see ol_takes in conv1x1.c) put 16
 * output channels in the lanes instead (their weights transposed per call) and broadcast the
 * pixels, so a 7x7 plane wastes no lane. On AVX2 the image is copied in panels of 16 pixels
 * (kept in L1; large planes read where they lie evict their own rows) under 6 x 16 tiles;
 * a plane's last panel of at most 4 pixels (7x7: 1, 14x14: 4) puts the output channels in
 * the lanes instead (the GEMM's ra_cols kernel), over all the input channels at once.
 *
 * Every output is one fused multiply-add chain over c = 0 .. C-1 in order, starting from +0:
 *   y[n, o, p] = fma(w[o, C-1], x[n, C-1, p], ... fma(w[o, 0], x[n, 0, p], +0)).
 * A chain is cut into blocks of c only by storing and reloading its float value, so the
 * AVX-512, AVX2 and portable paths give the same bits, and the work is split into blocks of
 * (image, pixels, output channels) fixed by the shape, so the thread count never matters. */
#ifndef TY_KERNELS_CPU_CONV1X1_H
#define TY_KERNELS_CPU_CONV1X1_H

#include <stdint.h>

#include "base/isa.h"
#include "kernels/cpu/gemm.h"

typedef struct ty_c1x1_geom {
    int64_t N, C, OC, P; /* images, input channels, output channels, pixels per plane */
    int64_t ldx;         /* floats between x's rows (>= P; 0: P): see ty_conv1x1_ldx */
} ty_c1x1_geom;

/* y = w @ x image by image (x (N, C, ldx) holding P pixels a row, w (OC, C), y (N, OC, P),
 * contiguous); then epi (NULL: none) on each finished block of one image, rows
 * [i0, i0 + rows) of OC and columns [j0, j0 + cols) of P at c = y_n + i0*P + j0 with
 * ldc = P, while it is in cache (blocks are disjoint and may run concurrently). Arguments
 * are trusted (conv.c validates them); cannot fail (no scratch beyond about 70 KiB of stack).
 */
void ty_conv1x1_f32(const ty_c1x1_geom *g, const float *x, const float *w, float *y,
                    const ty_gemm_epilogue_f32 *epi);

/* The row stride for x that the kernel reads fastest for C input channels of P pixels: P
 * rounded up to whole cache lines (16 floats) for the register tiles, where rows that start
 * inside a line make every vector load span two lines (ResNet-50's 1024 -> 256 layer at 14x14,
 * P = 196, one thread, AVX-512, 140 GFLOP/s at P = 192 and 103 at P = 196); P itself where the
 * kernel puts output channels in the lanes and reads pixels one at a time, and on AVX2, which
 * copies the image in panels (see conv1x1.c). */
int64_t ty_conv1x1_ldx(int64_t C, int64_t P);

/* dst (C, ldx) = x's planes (C, H, W) sampled every sh rows and sw columns from the top left
 * (OH x OW pixels a plane, row-major; a stride-1 plane is copied whole), in parallel over
 * channels; the ldx - OH*OW floats after each row are left as they are. */
void ty_conv1x1_gather_f32(const float *x, int64_t C, int64_t H, int64_t W, int64_t sh,
                           int64_t sw, int64_t OH, int64_t OW, float *dst, int64_t ldx);

/* Tests and benchmarks: the instruction set of the kernel (TY_ISA_AUTO for the best); one
 * the CPU cannot run falls back to the best. Returns the set now in use. */
ty_isa ty_conv1x1_set_isa(ty_isa isa);

#endif
