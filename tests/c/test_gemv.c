/* The matrix-vector kernel (kernels/cpu/gemv.h), which ty_gemm_f32 takes for a row times a
 * matrix contiguous along k, gives the bits of the GEMM's other paths (row 0 of the same
 * product with two rows) on every instruction set it has a kernel for (and declines the
 * others), and so does ty_gemm_f32 itself for the one row, at 1, 2 and 3
 * threads: outputs in whole groups of 8 and blocks of 32 and past them, k in whole steps of 8
 * and past them, one K block and several (the GEMM's K blocking), a strided x, a matrix with
 * rows padded past K. Each product is also checked against a float64 sum. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemv.h"
#include "tianyuan/tianyuan.h"

/* N, K, incx, ldw - K (row padding) */
static const int64_t cases[][4] = {
    {1000, 1280, 1, 0}, /* MobileNetV2's classifier: three K blocks on AVX-512, five on AVX2 */
    {32, 8, 1, 0},      /* one block of outputs, one step of k */
    {41, 13, 1, 3},     /* a group tail of 1 past a block, a k tail of 5, padded rows */
    {7, 300, 2, 0},     /* no whole group; strided x */
    {64, 513, 1, 1},    /* two K blocks of 257 and 256 on AVX-512 */
    {1, 1, 1, 0},
    {1000, 1024, 1, 0}, /* ShuffleNetV2's classifier: rows 4 KiB apart (the skewed groups) */
    {64, 1000, 2, 24},  /* rows 4 KiB apart, K blocks of 250 on AVX2: 15 steps of 16, one of
                           * 8, a tail of 2 */
    {100, 1025, 3, 5},  /* three K blocks on AVX-512 */
};

static int
run_case(const int64_t *c)
{
    int64_t N = c[0], K = c[1], incx = c[2], ldw = K + c[3];
    float *x = ty_test_rand_buf_f32(K * incx), *W = ty_test_rand_buf_f32(N * ldw);
    float *want = malloc(sizeof(float) * (size_t)N * 2), *got = malloc(sizeof(float) * (size_t)N);
    float *one = malloc(sizeof(float) * (size_t)N), *x2 = malloc(sizeof(float) * (size_t)(2 * K * incx));
    memcpy(x2, x, sizeof(float) * (size_t)(K * incx));
    memcpy(x2 + K * incx, x, sizeof(float) * (size_t)(K * incx));
    int ok = 1, ran = 0;
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        /* the GEMM with two rows of x (no matrix-vector path): A = x2 (2 x K, csa = incx),
         * B(k, j) = W[j*ldw + k]; row 0 is the reference */
        ty_gemm_f32(2, N, K, x2, K * incx, incx, W, 1, ldw, want, N, 0);
        for (int threads = 1; threads <= 3; threads++) {
            ok &= ty_set_num_threads(threads) == TY_OK;
            for (int64_t j = 0; j < N; j++) {
                got[j] = NAN;
            }
            int took = ty_gemv_t_f32(N, K, x, incx, W, ldw, got);
            ran |= took;
            if (isa == TY_ISA_GENERIC) {
                ok &= !took; /* the portable GEMM multiplies and adds separately */
                continue;
            }
            int bits = took && memcmp(got, want, sizeof(float) * (size_t)N) == 0, near = 1;
            ty_gemm_f32(1, N, K, x, K * incx, incx, W, 1, ldw, one, N, 0);
            bits &= memcmp(one, want, sizeof(float) * (size_t)N) == 0;
            for (int64_t j = 0; j < N; j++) {
                double s = 0, m = 0;
                for (int64_t k = 0; k < K; k++) {
                    s += (double)x[k * incx] * W[j * ldw + k];
                    m += fabs((double)x[k * incx] * W[j * ldw + k]);
                }
                near &= fabs(got[j] - s) <= 1e-5 * m + 1e-6;
            }
            if (!(bits && near)) {
                fprintf(stderr, "  gemv N=%lld K=%lld isa %d threads %d: bits %d near %d\n",
                        (long long)N, (long long)K, isa, threads, bits, near);
                ok = 0;
            }
        }
    }
    ty_gemm_set_isa(TY_ISA_AUTO);
    free(x);
    free(W);
    free(want);
    free(got);
    free(x2);
    free(one);
    return ok && (ran || ty_cpu_isa() < TY_ISA_AVX2);
}

TEST(gemv_has_the_gemm_bits_on_every_isa_and_thread_count)
{
    int saved = ty_get_num_threads();
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        CHECK(run_case(cases[t]));
    }
    CHECK(ty_set_num_threads(saved) == TY_OK);
}
