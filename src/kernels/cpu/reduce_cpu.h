/* Fast reductions over contiguous float data viewed as (A, R, B): out[a, b] = op over r of
 * x[a, r, b]. Deterministic: each output is produced by one thread in a fixed order. */
#ifndef TY_REDUCE_CPU_H
#define TY_REDUCE_CPU_H

#include <stdint.h>

enum ty_red_kind { TY_RED_SUM = 0, TY_RED_MAX = 1, TY_RED_MIN = 2 };

void ty_cpu_reduce_arb_f32(int kind, int64_t A, int64_t R, int64_t B, const float *x, float *out);
void ty_cpu_reduce_arb_f64(int kind, int64_t A, int64_t R, int64_t B, const double *x,
                           double *out);

#endif
