/* CPU GEMM: packed, cache-blocked, register-tiled; AVX-512 / AVX2+FMA / generic micro-kernels
 * chosen at run time, plus in-place f32 kernels for matrix-vector products (M == 1 or N == 1)
 * and for small products.
 *
 * Determinism: for a given ISA, every C element is computed by the same operations whatever
 * M, N, the strides, the thread count or the timing: K is cut into equal blocks that depend
 * only on K, each block is summed in k order (one fused multiply-add chain, or separate
 * multiply and add in the generic kernels), and the block sums are added to C in order. So
 * repeated calls give the same bits, a product computed row by row gives the bits of the whole
 * product, and transposed views give the bits of contiguous copies. The work is split over
 * blocks of M and N only. */
#ifndef TY_KERNELS_CPU_GEMM_H
#define TY_KERNELS_CPU_GEMM_H

#include <stdint.h>

#include "base/isa.h"

/* C[M,N] = A @ B, or C += A @ B when accumulate != 0.
 * A(i,k) = A[i*rsa + k*csa]; B(k,j) = B[k*rsb + j*csb] (general strides, so transposed views
 * need no copy); C(i,j) = C[i*ldc + j]. Any of M, N, K may be 0 (K == 0: C = 0, or unchanged
 * when accumulating). C must not overlap A or B. Arguments are trusted (callers validate);
 * the functions cannot fail: without memory for packing buffers they take a slower path that
 * gives the same bits. */
void ty_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                 const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc, int accumulate);
void ty_gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
                 const double *B, int64_t rsb, int64_t csb, double *C, int64_t ldc,
                 int accumulate);

/* An operand whose panels are produced on demand instead of read from a matrix (a convolution
 * packs its column matrix straight from the image). pack(ctx, i0, len, k0, kc, width, dst)
 * writes dst[p*width + i] = X(i0 + i, k0 + p) for p < kc and i < len, and 0 for
 * len <= i < width; X is the operand with its free index first: A(i, k) for A, B(k, j)
 * indexed (j, k) for B. It is called concurrently from several threads on disjoint dst. */
typedef void (*ty_gemm_pack_f32)(const void *ctx, int64_t i0, int64_t len, int64_t k0,
                                 int64_t kc, int width, float *dst);
typedef struct ty_gemm_operand_f32 {
    const float *m;      /* A(i, k) = m[i*rs + k*cs]; B(k, j) = m[k*rs + j*cs] */
    int64_t rs, cs;
    ty_gemm_pack_f32 pack; /* non-NULL: the panels come from pack(ctx, ...) and m is unused */
    const void *ctx;
} ty_gemm_operand_f32;

/* An inference batch norm chain, described so that a kernel can run it on its accumulators
 * in registers before the one store instead of a pass over the stored block. Element e of
 * the whole output (index in (N, rows, cols) order, i its row) becomes out[e] =
 * act(v + res[e] (res_order 1), res[e] + v (2) or v (0)), v = ((c - mean[i]) * scale[i]) +
 * beta[i], each operation rounded alone; act 1: relu as max(+0, v) + 0, 2: relu6 as
 * min(6, max(+0, v) + 0) (the relu and relu6 ops' values); where out is not the output
 * itself, the output keeps the product. */
typedef struct ty_epi_bn_f32 {
    const float *mean, *scale, *beta;
    const float *res; /* NULL where res_order is 0 */
    float *out;
    int res_order, act;
} ty_epi_bn_f32;

/* A pass over finished elements of C (a bias and an activation, say), run on each block of C
 * right after its last K block, while it is in cache: rows [i0, i0 + rows), columns
 * [j0, j0 + cols), at c with row stride ldc. Called concurrently on disjoint blocks. */
typedef struct ty_gemm_epilogue_f32 {
    void (*fn)(const void *ctx, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float *c,
               int64_t ldc);
    const void *ctx;
    /* NULL, or exactly what fn does to a block: a kernel may apply it itself and skip fn for
     * that block (conv1x1's AVX2 tiles do; every other kernel ignores it and calls fn) */
    const ty_epi_bn_f32 *bn;
} ty_gemm_epilogue_f32;

/* C[M,N] = A @ B (or +=) like ty_gemm_f32, with either operand given by a pack function, then
 * the epilogue (NULL: none) over every element. The products' bits equal ty_gemm_f32's for
 * the same values. */
void ty_gemm_f32_operands(int64_t M, int64_t N, int64_t K, const ty_gemm_operand_f32 *a,
                          const ty_gemm_operand_f32 *b, float *C, int64_t ldc, int accumulate,
                          const ty_gemm_epilogue_f32 *epi);

/* Forces the micro-kernels of an instruction set for later calls (tests, benchmarks); one the
 * CPU cannot run, or TY_ISA_AUTO, falls back to the best one it can. Returns the set now in
 * use. Calls already running keep the set they started with. */
ty_isa ty_gemm_set_isa(ty_isa isa);
/* The instruction set used by the next call. */
ty_isa ty_gemm_get_isa(void);

/* Tests only: while on != 0, GEMM behaves as if its packing workspace could not be allocated,
 * which exercises the allocation-free path (same bits, slower). */
void ty_gemm_set_no_workspace(int on);

/* Tests only: M and N cache blocks of at least mc rows and nc columns (rounded up to whole
 * micro-tiles), and chunks of B micro-panels of half an N block, instead of the ones fitted to
 * the detected caches; 0 restores those. The blocks never change the bits. */
void ty_gemm_set_blocks(int mc, int nc);

/* Tests and benchmarks only: while on == 0, f32 products that would take the unpacked
 * small-product path take the packed path instead (same bits; default on). */
void ty_gemm_set_small_path(int on);

#endif
