/* Naive reference kernels: the test oracle. Slow on purpose, written for obviousness. */
#ifndef TY_KERNELS_REF_H
#define TY_KERNELS_REF_H

#include <stdint.h>

/* Same contract as ty_gemm_f32/f64 (kernels/cpu/gemm.h): C[M,N] = A @ B, or C += A @ B when
 * accumulate != 0, with A(i,k) = A[i*rsa + k*csa], B(k,j) = B[k*rsb + j*csb],
 * C(i,j) = C[i*ldc + j]. Each element is summed in k order in the element type. */
void ty_ref_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                     const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc,
                     int accumulate);
void ty_ref_gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa,
                     int64_t csa, const double *B, int64_t rsb, int64_t csb, double *C,
                     int64_t ldc, int accumulate);

#endif
