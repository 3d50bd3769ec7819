/* Hand-vectorized float32 loops for the elementwise ops whose generated loops were scalar libm
 * calls: exp, sigmoid (1 / (1 + exp(-x))) and silu (x / (1 + exp(-x))) with vmath.h's exp,
 * tanh and log with its tanh and log.
 * The AVX-512, AVX2 and generic paths do the same operations per element (the generic one
 * with fmaf), so every path, stride and split gives the same bits; they are scalar.def's
 * expressions with the libm calls replaced by those recipes (measured against float64: exp
 * 0.86 ulp, sigmoid 2.04, silu 2.21, tanh 2.91, log 0.76; tests/python/test_elemw_vexp.py). Same signature as
 * ty_elemw_loop. */
#ifndef TY_KERNELS_CPU_ELEMW_VEC_H
#define TY_KERNELS_CPU_ELEMW_VEC_H

#include <stdint.h>

#include "base/isa.h"

void ty_ew_exp_f32(int64_t n, char *const *p, const int64_t *s, const double *pv);
void ty_ew_sigmoid_f32(int64_t n, char *const *p, const int64_t *s, const double *pv);
void ty_ew_silu_f32(int64_t n, char *const *p, const int64_t *s, const double *pv);
void ty_ew_tanh_f32(int64_t n, char *const *p, const int64_t *s, const double *pv);
void ty_ew_log_f32(int64_t n, char *const *p, const int64_t *s, const double *pv);

/* Forces the instruction set of the loops above for later calls (tests); one the CPU cannot
 * run, or TY_ISA_AUTO, falls back to the best it can (TY_ISA caps it). Returns the set now
 * in use. */
ty_isa ty_ew_vec_set_isa(ty_isa isa);

#endif
