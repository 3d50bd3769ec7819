/* Float32 matrix-vector product with the matrix contiguous along k (a linear layer at batch 1:
 * y = x @ W^T, W (N, K) row-major), with the bits of ty_gemm_f32 for the same product.
 *
 * The GEMM's arithmetic for one output (gemm.h): K cut into equal blocks of at most KC (512
 * on AVX-512, 256 on AVX2: the GEMM's per-ISA constant), each block one fused multiply-add
 * chain in k order from +0, the block sums stored then added in order. Vectorising across
 * outputs keeps each chain whole, so W must be read transposed: here 8 x 8 blocks at a time,
 * rows paired into 256-bit halves as they load and the rest transposed in lane (shuffles
 * that two ports execute), one group of 8 outputs at a time (fewer rows streaming from
 * memory at once: see gemv.c's BLOCK_OUT). The GEMM's own matrix-vector kernel transposes
 * 16 x 16 blocks with shuffles one port executes and keeps one chain in flight. */
#ifndef TY_KERNELS_CPU_GEMV_H
#define TY_KERNELS_CPU_GEMV_H

#include <stdint.h>

#include "base/isa.h"

/* y[j] = sum_k x[k*incx] * W[j*ldw + k] for j < N (y contiguous), on the GEMM's instruction
 * set (ty_gemm_get_isa). Returns 0, doing nothing, where that set has no kernel here (the
 * portable GEMM: its chains multiply and add separately). ty_gemm_f32 calls it for a one-row
 * product whose B is contiguous along k, and otherwise runs its own paths.
 * Threaded over blocks of outputs fixed by N. Arguments are trusted. */
int ty_gemv_t_f32(int64_t N, int64_t K, const float *x, int64_t incx, const float *W,
                  int64_t ldw, float *y);

#endif
