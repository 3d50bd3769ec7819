/* im2col / col2im for one image (C, H, W contiguous), the lowering behind convolution as GEMM.
 *
 * col has (C*kh*kw) rows and (OH*OW) columns, row r = (c*kh + i)*kw + j holding
 *     x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]  at column oh*OW + ow, or 0 where that is padding.
 * Geometry is trusted (callers validate): all sizes >= 0, strides and dilations >= 1. */
#ifndef TY_KERNELS_CPU_IM2COL_H
#define TY_KERNELS_CPU_IM2COL_H

#include <stdint.h>

void ty_im2col_f32(const float *x, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                   int64_t OH, int64_t OW, float *col);
void ty_im2col_f64(const double *x, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                   int64_t OH, int64_t OW, double *col);

/* The adjoint: ADDS every col entry into the x cell it was read from (caller zeroes x). Padded
 * entries are dropped. Each x cell receives its terms in the same order on every call. */
void ty_col2im_f32(const float *col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                   int64_t OH, int64_t OW, float *x);
void ty_col2im_f64(const double *col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                   int64_t OH, int64_t OW, double *x);

/* ty_col2im_f32 with the column matrix's rows ld elements apart (ld >= OH*OW): one image's
 * columns within a wider matrix of several images side by side. */
void ty_col2im_ld_f32(const float *col, int64_t ld, int64_t C, int64_t H, int64_t W, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                      int64_t dw, int64_t OH, int64_t OW, float *x);

/* The column matrices of one image, or of several images side by side, as a GEMM operand whose
 * panels are packed straight from the images (implicit im2col: no col buffer). x is (C, H, W)
 * contiguous; with img_stride > 0, pixel index q = n*OH*OW + pix of a wider matrix reads image
 * n at x + n*img_stride (a batch of small images makes one GEMM of useful width). */
typedef struct ty_im2col_src_f32 {
    const float *x;
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW;
    int64_t img_stride; /* 0: one image */
} ty_im2col_src_f32;

enum { TY_IM2COL_PACK_MAX_WIDTH = 64 };

/* A ty_gemm_pack_f32 (kernels/cpu/gemm.h) over col with the pixel index first:
 * dst[p*width + i] = col(k0 + p, i0 + i) for p < kc, i < len, and 0 for len <= i < width, where
 * col(k, pix) is the im2col entry above. ctx is a ty_im2col_src_f32; width <=
 * TY_IM2COL_PACK_MAX_WIDTH (the GEMM's panels are at most 32 wide). */
void ty_im2col_pack_f32(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc,
                        int width, float *dst);

/* The same column matrix with its rows as the free index (the filter gradient's A and B):
 * dst[p*width + i] = col(i0 + i, k0 + p) for i < len, p < kc, and 0 for len <= i < width.
 * Any width. */
void ty_im2col_pack_t_f32(const void *ctx, int64_t i0, int64_t len, int64_t k0, int64_t kc,
                          int width, float *dst);

#endif
