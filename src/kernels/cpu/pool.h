/* 2-D pooling on NCHW-contiguous data: planes = N*C planes of H x W in, OH x OW out.
 * Work is split over planes with ty_parallel_for; each plane is computed by one thread in a
 * fixed order, so results are bitwise deterministic. Geometry is trusted (callers validate;
 * strides >= 1, sizes >= 0). Backward functions ADD into dx (caller zeroes it), except
 * ty_maxpool2d_2x2_bwd_*, which stores.
 *
 * Strided windows: output (oh, ow) covers rows oh*sh - ph + [0, kh) and columns
 * ow*sw - pw + [0, kw), clipped to the input; cells outside the input are padding.
 * Adaptive windows (PyTorch's rule): rows [floor(oh*H/OH), ceil((oh+1)*H/OH)), same for columns.
 *
 * Max: padding never wins (it counts as -inf); the first maximum in row-major window order
 * wins, and a NaN beats any number (the first NaN wins). A window with no input cell gives
 * -inf and no gradient. Backward recomputes that argmax from x.
 * Avg: sum / divisor; with count_include_pad the divisor also counts the padding cells inside
 * the padded input (window clipped to [-ph, H + ph) x [-pw, W + pw)), otherwise only input
 * cells. A window whose divisor is 0 gives 0. Backward spreads dy / divisor over the input
 * cells of the window. */
#ifndef TY_KERNELS_CPU_POOL_H
#define TY_KERNELS_CPU_POOL_H

#include <stdint.h>

#include "base/isa.h"

void ty_maxpool2d_f32(const float *x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                      int64_t OW, float *y);
void ty_maxpool2d_f64(const double *x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                      int64_t OW, double *y);
void ty_maxpool2d_bwd_f32(const float *x, const float *dy, int64_t planes, int64_t H, int64_t W,
                          int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                          int64_t OH, int64_t OW, float *dx);
void ty_maxpool2d_bwd_f64(const double *x, const double *dy, int64_t planes, int64_t H,
                          int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                          int64_t pw, int64_t OH, int64_t OW, double *dx);
/* The max backward for 2x2 windows, stride 2, no padding (2*OH <= H, 2*OW <= W) that STORES
 * dx instead of adding: every cell is written, cells in no window get 0, so dx need not be
 * zeroed first. Same bits as zeroing dx and calling ty_maxpool2d_bwd_*. */
void ty_maxpool2d_2x2_bwd_f32(const float *x, const float *dy, int64_t planes, int64_t H,
                              int64_t W, int64_t OH, int64_t OW, float *dx);
void ty_maxpool2d_2x2_bwd_f64(const double *x, const double *dy, int64_t planes, int64_t H,
                              int64_t W, int64_t OH, int64_t OW, double *dx);

/* Tests and benchmarks: the instruction set of the max-pool kernels written with intrinsics
 * (2x2 stride-2 unpadded; f32 windows 3 columns wide at column stride 2, as ResNet's 3x3/2)
 * and of the global average pool (TY_ISA_AUTO for the best available); one the CPU cannot
 * run falls back to the best. Returns the set now in use. All give the same bits. */
ty_isa ty_pool_set_isa(ty_isa isa);

void ty_avgpool2d_f32(const float *x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                      int64_t OW, int count_include_pad, float *y);
void ty_avgpool2d_f64(const double *x, int64_t planes, int64_t H, int64_t W, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                      int64_t OW, int count_include_pad, double *y);
void ty_avgpool2d_bwd_f32(const float *dy, int64_t planes, int64_t H, int64_t W, int64_t kh,
                          int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                          int64_t OW, int count_include_pad, float *dx);
void ty_avgpool2d_bwd_f64(const double *dy, int64_t planes, int64_t H, int64_t W, int64_t kh,
                          int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t OH,
                          int64_t OW, int count_include_pad, double *dx);

void ty_adaptive_pool2d_f32(const float *x, int64_t planes, int64_t H, int64_t W, int64_t OH,
                            int64_t OW, int is_max, float *y);
void ty_adaptive_pool2d_f64(const double *x, int64_t planes, int64_t H, int64_t W, int64_t OH,
                            int64_t OW, int is_max, double *y);
/* x is read only when is_max (it may be NULL otherwise). */
void ty_adaptive_pool2d_bwd_f32(const float *x, const float *dy, int64_t planes, int64_t H,
                                int64_t W, int64_t OH, int64_t OW, int is_max, float *dx);
void ty_adaptive_pool2d_bwd_f64(const double *x, const double *dy, int64_t planes, int64_t H,
                                int64_t W, int64_t OH, int64_t OW, int is_max, double *dx);

#endif
