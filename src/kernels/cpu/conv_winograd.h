/* Winograd F(m x m, 3 x 3) convolution of a batch of images (stride 1, dilation 1, one group),
 * float32, for m = 2 or 4.
 *
 * Each m x m output tile comes from an (m+2)^2 input tile d: Y = A^T [(G g G^T) . (B^T d B)] A.
 * The (m+2)^2 elementwise products summed over channels are as many GEMMs
 * (OC x C) @ (C x tiles), so a 3x3 convolution takes 16/36 (m = 2) or 36/144 (m = 4) of the
 * direct method's multiply-adds, plus the transforms.
 * Every transform is a fixed expression per element and the GEMMs are deterministic
 * (kernels/cpu/gemm.h), so the bits depend on the shapes (and the GEMM's ISA) only, never on
 * the thread count. The results differ from im2col + GEMM by rounding (the transforms add and
 * subtract before multiplying). Geometry is trusted (callers validate). */
#ifndef TY_KERNELS_CPU_CONV_WINOGRAD_H
#define TY_KERNELS_CPU_CONV_WINOGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/gemm.h"

typedef struct ty_wino_geom {
    int64_t N;         /* images */
    int64_t C, H, W;   /* each input image (C, H, W) contiguous, xstride elements apart */
    int64_t OC;        /* weight (OC, C, 3, 3) contiguous */
    int64_t ph, pw;    /* padding */
    int64_t OH, OW;    /* output (OC, OH, OW): H + 2*ph - 2, W + 2*pw - 2, both >= 1 */
    int64_t xstride, ystride; /* elements between images in x and in y */
} ty_wino_geom;

/* Floats of workspace ty_conv_wino_f32 needs for tile size m (the transformed weights, input
 * and products); 0 when the count overflows. */
size_t ty_conv_wino_ws_floats(const ty_wino_geom *g, int m);

/* Whether tile size m takes the fused path: the weights transformed and multiplied block by
 * block of output channels, never whole (all the images fit one chunk and the whole transformed
 * weight would be larger than 1 MiB). Shapes only; the bits are the same either way. */
int ty_conv_wino_fuses(const ty_wino_geom *g, int m);

/* y = conv(x, w) with m x m output tiles, through ws (ty_conv_wino_ws_floats(g, m) floats),
 * then epi (NULL: none) over each output row as it is written (i0 = output channel, j0 = the
 * row's first pixel, one image's plane as the matrix). Returns 0, or -1 when scratch memory
 * could not be allocated (y is then incomplete). Inputs with infinities or NaNs give NaN
 * across their tiles (the transforms subtract). */
int ty_conv_wino_f32(const ty_wino_geom *g, int m, const float *x, const float *w, float *y,
                     float *ws, const ty_gemm_epilogue_f32 *epi);

/* The transformed weight of the unfused path, computed once and kept (a deployed model's
 * constant weight): its floats, the transform (threaded over output channels; 0, or -1 without
 * scratch memory), and ty_conv_wino_f32 from it, for layers ty_conv_wino_fuses declines. The
 * same values as the transform inside ty_conv_wino_f32, so the same bits. */
size_t ty_conv_wino_u_floats(const ty_wino_geom *g, int m);
int ty_conv_wino_weights_f32(const ty_wino_geom *g, int m, const float *w, float *U);
int ty_conv_wino_f32_u(const ty_wino_geom *g, int m, const float *x, const float *U, float *y,
                       float *ws, const ty_gemm_epilogue_f32 *epi);

#endif
