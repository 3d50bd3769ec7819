/* Batch normalisation with batch statistics (training), fused: per channel of an (N, C, S)
 * contiguous input, the mean and the biased variance over the N*S values, then
 * y = (x - mean) * (w / sqrt(var + eps)) + b.
 *
 * Each channel is computed by one thread, its sums in double over 8 lanes in a fixed order
 * (lane j takes the elements at positions j mod 8 of each row, the lanes are then added in
 * order), so the bits depend on the shape alone, never on the thread count or the ISA. The
 * variance is a second pass over (x - mean)^2 (no cancellation), and a channel's N rows stay
 * in cache between the passes when they fit. */
#ifndef TY_KERNELS_CPU_BATCH_NORM_H
#define TY_KERNELS_CPU_BATCH_NORM_H

#include <stdint.h>

#include "base/isa.h"

/* mean, var: C values each (outputs); w, b: C values. N*S > 0. */
void ty_batch_norm_train_f32(const float *x, int64_t N, int64_t C, int64_t S, const float *w,
                             const float *b, double eps, float *y, float *mean, float *var);
void ty_batch_norm_train_f64(const double *x, int64_t N, int64_t C, int64_t S, const double *w,
                             const double *b, double eps, double *y, double *mean, double *var);

/* Its gradient from the output gradient g: with r = 1/sqrt(var + eps), sums per channel
 * db = sum(g), dw = r sum(g (x - mean)), then dx = (g - db/M - (x - mean) r dw/M) w r, M the
 * values per channel. Two passes over a channel, the sums as above. */
void ty_batch_norm_train_backward_f32(const float *g, const float *x, int64_t N, int64_t C,
                                      int64_t S, const float *mean, const float *var,
                                      const float *w, double eps, float *dx, float *dw,
                                      float *db);
void ty_batch_norm_train_backward_f64(const double *g, const double *x, int64_t N, int64_t C,
                                      int64_t S, const double *mean, const double *var,
                                      const double *w, double eps, double *dx, double *dw,
                                      double *db);

/* The same from the gradient of relu(batch_norm(x)): g is the relu output's gradient and
 * relu_y the relu output; the pass uses relu_backward(relu_y, g) (g where relu_y > 0, else +0)
 * in place of g, so it gives the bits of relu_backward followed by the function above. */
void ty_batch_norm_train_relu_backward_f32(const float *g, const float *relu_y, const float *x,
                                           int64_t N, int64_t C, int64_t S, const float *mean,
                                           const float *var, const float *w, double eps,
                                           float *dx, float *dw, float *db);
void ty_batch_norm_train_relu_backward_f64(const double *g, const double *relu_y,
                                           const double *x, int64_t N, int64_t C, int64_t S,
                                           const double *mean, const double *var,
                                           const double *w, double eps, double *dx, double *dw,
                                           double *db);

/* Forces the instruction set of the float32 passes for later calls (tests); one the CPU
 * cannot run, or TY_ISA_AUTO, falls back to the best it can. Returns the set now in use. */
ty_isa ty_batch_norm_set_isa(ty_isa isa);

#endif
