/* Reference GEMM: one dot product per output element, no blocking. */
#include "kernels/ref/ref.h"

void
ty_ref_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc, int accumulate)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                s += A[i * rsa + k * csa] * B[k * rsb + j * csb];
            }
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
        }
    }
}

void
ty_ref_gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
                const double *B, int64_t rsb, int64_t csb, double *C, int64_t ldc,
                int accumulate)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) {
                s += A[i * rsa + k * csa] * B[k * rsb + j * csb];
            }
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
        }
    }
}
