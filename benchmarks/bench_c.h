/* The timing harness the C benchmarks share (gemm_shapes.c, conv1x1_shapes.c,
 * conv_stem_shapes.c): a clock, a random 64-byte aligned matrix, the best time per call of a
 * function, and the command line (which prints the CPU first). Header only: each benchmark is
 * one `cc` line (see its header). */
#ifndef TY_BENCH_C_H
#define TY_BENCH_C_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tianyuan/tianyuan.h"

/* Seconds on the process's CPU clock (one thread: the compute a call costs however busy the
 * shared machine is) or on the wall clock (several threads). */
static double
now_s(int cpu)
{
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* n floats uniform in [-0.5, 0.5], 64-byte aligned as Tianyuan allocates tensors; NULL when
 * out of memory. */
static float *
random_matrix(int64_t n)
{
    float *m = aligned_alloc(64, (sizeof(float) * (size_t)n + 63) / 64 * 64);
    for (int64_t i = 0; m && i < n; i++) {
        m[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    return m;
}

/* Best seconds per call of call(ctx) over samples of about 20 ms within `budget` seconds
 * (one warm-up call first). */
static double
best_call_s(void (*call)(void *), void *ctx, int cpu, double budget)
{
    call(ctx);
    double t0 = now_s(cpu);
    call(ctx);
    double one = now_s(cpu) - t0;
    int reps = one > 0.02 ? 1 : (int)(0.02 / (one > 1e-7 ? one : 1e-7)) + 1;
    double best = 1e30, start = now_s(0);
    while (now_s(0) - start < budget) {
        t0 = now_s(cpu);
        for (int r = 0; r < reps; r++) {
            call(ctx);
        }
        double t = (now_s(cpu) - t0) / reps;
        best = t < best ? t : best;
    }
    return best;
}

/* The command line every such benchmark takes: [threads [seconds per shape [name prefix]]].
 * Sets the thread count; cpu: time by the CPU clock (one thread), else the wall clock. */
typedef struct bench_args {
    int threads, cpu;
    double budget;
    const char *only;
} bench_args;

/* The CPU's model name from /proc/cpuinfo (every benchmark names the machine it ran on). */
static void
bench_print_cpu(void)
{
    char line[256], model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(model, sizeof model, "%s", colon + 2);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    printf("CPU: %s\n", model);
}

static int
bench_parse(int argc, char **argv, bench_args *a)
{
    bench_print_cpu();
    a->threads = argc > 1 ? atoi(argv[1]) : 1;
    a->budget = argc > 2 ? atof(argv[2]) : 1.0;
    a->only = argc > 3 ? argv[3] : "";
    a->cpu = a->threads == 1;
    return ty_set_num_threads(a->threads) == TY_OK;
}

/* Whether the shape named name is one the command line asked for. */
static int
bench_wants(const bench_args *a, const char *name)
{
    return strncmp(name, a->only, strlen(a->only)) == 0;
}

#endif
