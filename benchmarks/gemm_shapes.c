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

#include "bench_c.h"
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

typedef struct gemm_call {
    const shape *s;
    const float *A, *B;
    float *C;
} gemm_call;

static void
call_gemm(void *ctx)
{
    const gemm_call *g = ctx;
    const shape *s = g->s;
    ty_gemm_f32(s->M, s->N, s->K, g->A, s->K, 1, g->B, s->N, 1, g->C, s->N, 0);
}

int
main(int argc, char **argv)
{
    bench_args a;
    if (!bench_parse(argc, argv, &a)) {
        return 1;
    }
    int cpu = a.cpu;
    double budget = a.budget;
    printf("%d thread(s), %s time, GFLOP/s\n", a.threads, cpu ? "CPU" : "wall");
    for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
        const shape *s = &SHAPES[i];
        if (!bench_wants(&a, s->name)) {
            continue;
        }
        float *A = random_matrix(s->M * s->K), *B = random_matrix(s->K * s->N);
        float *C = random_matrix(s->M * s->N);
        if (!A || !B || !C) {
            return 1;
        }
        gemm_call call = {s, A, B, C};
        double t = best_call_s(call_gemm, &call, cpu, budget);
        printf("%-10s %5lld %5lld %6lld  %7.1f\n", s->name, (long long)s->M, (long long)s->K,
               (long long)s->N, 2.0 * (double)s->M * (double)s->N * (double)s->K / t * 1e-9);
        fflush(stdout);
        free(A), free(B), free(C);
    }
    return 0;
}
