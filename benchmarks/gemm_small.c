/* Small f32 GEMM: microseconds per ty_gemm_f32 call for the three products of a Linear layer's
 * training step (forward, dX, dW) at MLP sizes, with the unpacked small-product path off
 * (packed path) and on. Best of many samples; the two paths alternate so noise hits both.
 * Arguments: thread count (1), samples (200), micro-kernel family (0: best; see ty_isa).
 *
 *   cmake --build build-gemm --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/gemm_small.c build-gemm/libtianyuan.a -lpthread -lm \
 *      -o build-gemm/gemm_small && build-gemm/gemm_small [threads [samples [isa]]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu/gemm.h"
#include "tianyuan/tianyuan.h"

typedef struct shape {
    const char *name;
    int64_t M, N, K, rsa, csa, rsb, csb;
} shape;

static double
now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static double
time_once(const shape *s, const float *A, const float *B, float *C, int reps)
{
    double t0 = now_us();
    for (int r = 0; r < reps; r++) {
        ty_gemm_f32(s->M, s->N, s->K, A, s->rsa, s->csa, B, s->rsb, s->csb, C, s->N, 0);
    }
    return (now_us() - t0) / reps;
}

static int samples = 200;

/* 64-byte aligned, as tensor storage is */
static float *
alloc_f32(int64_t n)
{
    return aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
}

static void
bench(const shape *s)
{
    float *A = alloc_f32(s->M * s->K), *B = alloc_f32(s->K * s->N), *C = alloc_f32(s->M * s->N);
    for (int64_t i = 0; i < s->M * s->K; i++) {
        A[i] = (float)(i % 13) * 0.1f;
    }
    for (int64_t i = 0; i < s->K * s->N; i++) {
        B[i] = (float)(i % 7) * 0.1f;
    }
    double fmas = (double)s->M * (double)s->N * (double)s->K;
    int reps = (int)(5e5 / fmas) + 1;
    double best[2] = {1e30, 1e30};
    for (int sample = 0; sample < samples; sample++) {
        for (int on = 0; on < 2; on++) {
            ty_gemm_set_small_path(on);
            double t = time_once(s, A, B, C, reps);
            best[on] = t < best[on] ? t : best[on];
        }
    }
    ty_gemm_set_small_path(1);
    printf("%-22s %4lld %4lld %4lld  %9.3f %9.3f  %5.2fx\n", s->name, (long long)s->M,
           (long long)s->N, (long long)s->K, best[0], best[1], best[0] / best[1]);
    free(A);
    free(B);
    free(C);
}

int
main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    samples = argc > 2 ? atoi(argv[2]) : samples;
    ty_isa isa = ty_gemm_set_isa(argc > 3 ? (ty_isa)atoi(argv[3]) : TY_ISA_AUTO);
    if (ty_set_num_threads(threads) != TY_OK) {
        return 1;
    }
    /* Linear layer, batch b, width w, W (w x w) row-major: y = x @ W^T (B contiguous along k),
     * dX = dY @ W (B row-major), dW = dY^T @ X (A transposed, K = batch). */
    static const int64_t sizes[][2] = {{8, 64}, {16, 128}, {32, 256}};
    printf("us per call, best of %d samples, %d thread(s), family %d\n", samples, threads,
           (int)isa);
    printf("%-22s %4s %4s %4s  %9s %9s  %s\n", "product", "M", "N", "K", "packed", "small",
           "speedup");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int64_t b = sizes[i][0], w = sizes[i][1];
        char names[3][32];
        snprintf(names[0], 32, "fwd  x@W^T  b%lld w%lld", (long long)b, (long long)w);
        snprintf(names[1], 32, "dX   dY@W   b%lld w%lld", (long long)b, (long long)w);
        snprintf(names[2], 32, "dW   dY^T@X b%lld w%lld", (long long)b, (long long)w);
        shape s[3] = {
            {names[0], b, w, w, w, 1, 1, w},
            {names[1], b, w, w, w, 1, w, 1},
            {names[2], w, w, b, 1, w, w, 1},
        };
        for (int j = 0; j < 3; j++) {
            bench(&s[j]);
        }
    }
    return 0;
}
