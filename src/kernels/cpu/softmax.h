/* float32 softmax / log_softmax along one axis of a contiguous tensor seen as
 * (outer, n, inner).
 *
 * The AVX-512 and AVX2 paths run 16 / 8 lanes: along the row when inner == 1, across inner
 * positions (one row per lane) when inner > 1. Their exp is our own (kernels/cpu/vmath.h:
 * range reduction and a polynomial, at most 2 ulp; inf, NaN and underflow as expf), and the
 * sum of a row's exps is kept
 * in double per lane, the lanes added in a fixed order. The generic path is the scalar loop with
 * libm's expf and one double sum per row. Rows are independent, so the bits depend on the shape
 * and the instruction set only, never on the thread count. */
#ifndef TY_KERNELS_CPU_SOFTMAX_H
#define TY_KERNELS_CPU_SOFTMAX_H

#include <stdint.h>

#include "base/isa.h"

/* y = softmax(x) (log_out 0) or log_softmax(x) (log_out 1) over the n axis; x and y hold
 * outer * n * inner floats, n > 0. Runs on the thread pool. */
void ty_softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                    int log_out);

/* softmax's gradient dx = y * (g - sum(g * y)) over the n axis, y the softmax output: the sum
 * of the (exact) products in double, per lane on the vector paths, as above. With log_in,
 * log_softmax's: dx = g - exp(y) * sum(g), y the log_softmax output, exp vmath.h's on every
 * path. n > 0. */
void ty_softmax_backward_f32(const float *y, const float *g, float *dx, int64_t outer, int64_t n,
                             int64_t inner, int log_in);

/* Forces the instruction set for later calls (tests); one the CPU cannot run, or
 * TY_ISA_AUTO, falls back to the best it can. Returns the set now in use. */
ty_isa ty_softmax_set_isa(ty_isa isa);

#endif
