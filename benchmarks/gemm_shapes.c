/* f32 GEMM throughput per shape from C, without Python or a peer: GFLOP/s of ty_gemm_f32 on the
 * square sizes and ResNet-18's convolutions as GEMMs, timed by the process's CPU time (one
 * thread: the compute a call costs however busy the shared machine is) or by the wall clock
 * (several threads; best of many samples). Useful to compare blockings and kernels in the same
 * run; benchmarks/gemm.py gives the figures beside PyTorch.
 *
 *   cmake --build build --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/gemm_shapes.c build/libtianyuan.a -lpthread -lm \
 *      -o build/gemm_shapes && build/gemm_shapes [threads [seconds per shape [name]]]
 * (name: only the shapes whose name starts with it)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/gemm.h"
#include "tianyuan/tianyuan.h"

typedef struct shape {
    const char *name;
    int64_t M, K, N;
} shape;

static const shape SHAPES[] = {
    {"256", 256, 256, 256},          {"512", 512, 512, 512},
    {"1024", 1024, 1024, 1024},      {"2048", 2048, 2048, 2048},
    {"r18 conv1", 64, 147, 12544},   {"r18 l1", 64, 576, 3136},
    {"r18 l2/2", 128, 576, 784},     {"r18 l2", 128, 1152, 784},
    {"r18 l3/2", 256, 1152, 196},    {"r18 l3", 256, 2304, 196},
    {"r18 l4/2", 512, 2304, 49},     {"r18 l4", 512, 4608, 49},
};

static double
now_s(int cpu)
{
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *
random_matrix(int64_t n)
{
    /* 64-byte aligned, as Tianyuan allocates tensors */
    float *m = aligned_alloc(64, (sizeof(float) * (size_t)n + 63) / 64 * 64);
    for (int64_t i = 0; m && i < n; i++) {
        m[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    return m;
}

/* Best seconds per call over samples of about 20 ms within `budget` seconds. */
static double
best_call_s(const shape *s, const float *A, const float *B, float *C, int cpu, double budget)
{
    ty_gemm_f32(s->M, s->N, s->K, A, s->K, 1, B, s->N, 1, C, s->N, 0);
    double t0 = now_s(cpu);
    ty_gemm_f32(s->M, s->N, s->K, A, s->K, 1, B, s->N, 1, C, s->N, 0);
    double one = now_s(cpu) - t0;
    int reps = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    double best = 1e30, start = now_s(0);
    while (now_s(0) - start < budget) {
        t0 = now_s(cpu);
        for (int r = 0; r < reps; r++) {
            ty_gemm_f32(s->M, s->N, s->K, A, s->K, 1, B, s->N, 1, C, s->N, 0);
        }
        double t = (now_s(cpu) - t0) / reps;
        best = t < best ? t : best;
    }
    return best;
}

int
main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    double budget = argc > 2 ? atof(argv[2]) : 1.0;
    const char *only = argc > 3 ? argv[3] : "";
    if (ty_set_num_threads(threads) != TY_OK) {
        return 1;
    }
    int cpu = threads == 1;
    printf("%d thread(s), %s time, GFLOP/s\n", threads, cpu ? "CPU" : "wall");
    for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
        const shape *s = &SHAPES[i];
        if (strncmp(s->name, only, strlen(only)) != 0) {
            continue;
        }
        float *A = random_matrix(s->M * s->K), *B = random_matrix(s->K * s->N);
        float *C = random_matrix(s->M * s->N);
        if (!A || !B || !C) {
            return 1;
        }
        double t = best_call_s(s, A, B, C, cpu, budget);
        printf("%-10s %5lld %5lld %6lld  %7.1f\n", s->name, (long long)s->M, (long long)s->K,
               (long long)s->N, 2.0 * (double)s->M * (double)s->N * (double)s->K / t * 1e-9);
        fflush(stdout);
        free(A), free(B), free(C);
    }
    return 0;
}
