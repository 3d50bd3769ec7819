/* Float32 1x1 convolution throughput per layer shape from C: the direct kernel
 * (ty_conv1x1_f32) beside the GEMM the conv op would call (w @ x), on ResNet-50's and
 * MobileNetV2's 1x1 layers at batch 1. The weights rotate through copies larger than the
 * caches (in a network each layer's weight comes cold from memory); the image stays warm (the
 * previous layer just wrote it; WARM=1 in the environment keeps one weight copy, warm too).
 * Columns: the direct kernel on the image as it lies, on the image first copied to rows that
 * start on cache lines (the copy timed too, as conv2d does for planes like 7x7), and the GEMM.
 * Timed by the process's CPU time with one thread, else by the wall clock (best of many
 * samples).
 *
 *   cmake --build build --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/conv1x1_shapes.c build/libtianyuan.a -lpthread -lm \
 *      -o build/conv1x1_shapes && build/conv1x1_shapes [threads [seconds per shape [name]]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_c.h"
#include "kernels/cpu/conv1x1.h"
#include "kernels/cpu/gemm.h"
#include "tianyuan/tianyuan.h"

typedef struct shape {
    const char *name;
    int64_t C, OC, P;
} shape;

static const shape SHAPES[] = {
    {"r50 64-256@56", 64, 256, 3136},   {"r50 256-64@56", 256, 64, 3136},
    {"r50 64-64@56", 64, 64, 3136},     {"r50 512-256@28", 512, 256, 784},
    {"r50 512-128@28", 512, 128, 784},  {"r50 128-512@28", 128, 512, 784},
    {"r50 256-512@28", 256, 512, 784},
    {"r50 256-1024@14", 256, 1024, 196}, {"r50 1024-256@14", 1024, 256, 196},
    {"r50 1024-512@14", 1024, 512, 196}, {"r50 512-2048@7", 512, 2048, 49},
    {"r50 2048-512@7", 2048, 512, 49},  {"mb 384-64@14", 384, 64, 196},
    {"mb 576-96@14", 576, 96, 196},     {"mb 64-384@14", 64, 384, 196},
    {"mb 96-576@14", 96, 576, 196},     {"mb 960-320@7", 960, 320, 49},
    {"mb 320-1280@7", 320, 1280, 49},   {"mb 960-160@7", 960, 160, 49},
    {"r18 256-512@7", 256, 512, 49},    {"r18 128-256@14", 128, 256, 196},
    {"r18 64-128@28", 64, 128, 784},
    {"mb 32-16@112", 32, 16, 12544},    {"mb 16-96@112", 16, 96, 12544},
    {"mb 96-24@56", 96, 24, 3136},      {"mb 24-144@56", 24, 144, 3136},
    {"mb 144-24@56", 144, 24, 3136},    {"mb 144-32@28", 144, 32, 784},
    {"mb 32-192@28", 32, 192, 784},     {"mb 192-32@28", 192, 32, 784},
    {"mb 192-64@14", 192, 64, 196},     {"mb 384-96@14", 384, 96, 196},
    {"mb 576-160@7", 576, 160, 49},     {"mb 160-960@7", 160, 960, 49},
    {"sn 24-58@56", 24, 58, 3136},      {"sn 58-58@28", 58, 58, 784},
    {"sn 116-116@14", 116, 116, 196},   {"sn 232-232@7", 232, 232, 49},
    {"sn 464-1024@7", 464, 1024, 49},
};

enum { WEIGHT_ROTATION_BYTES = 64 << 20 };

static float *padded; /* x copied to rows of ty_conv1x1_ldx(P) floats, as conv2d does */

/* gemm: 0 the direct kernel on x as it lies, 1 the GEMM, 2 the direct kernel on x copied to
 * rows that start on cache lines first (the copy timed too) */
static void
run_one(const shape *s, int gemm, const float *x, const float *w, float *y)
{
    ty_c1x1_geom g = {.N = 1, .C = s->C, .OC = s->OC, .P = s->P};
    if (gemm == 1) {
        ty_gemm_f32(s->OC, s->P, s->C, w, s->C, 1, x, s->P, 1, y, s->P, 0);
    } else if (gemm == 2) {
        g.ldx = ty_conv1x1_ldx(s->C, s->P);
        ty_conv1x1_gather_f32(x, s->C, 1, s->P, 1, 1, 1, s->P, padded, g.ldx);
        ty_conv1x1_f32(&g, padded, w, y, NULL);
    } else {
        ty_conv1x1_f32(&g, x, w, y, NULL);
    }
}

typedef struct c1x1_call {
    const shape *s;
    int gemm;
    const float *x;
    float **ws;
    int nw, at;
    float *y;
} c1x1_call;

/* One call, on the next weight copy of the rotation. */
static void
call_next(void *ctx)
{
    c1x1_call *c = ctx;
    run_one(c->s, c->gemm, c->x, c->ws[c->at++ % c->nw], c->y);
}

static double
best_call(const shape *s, int gemm, const float *x, float **ws, int nw, float *y, int cpu,
          double budget)
{
    c1x1_call c = {s, gemm, x, ws, nw, 0, y};
    return best_call_s(call_next, &c, cpu, budget);
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
    printf("%d thread(s), %s time, ms per call (GFLOP/s)\n", a.threads, cpu ? "CPU" : "wall");
    for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
        const shape *s = &SHAPES[i];
        if (!bench_wants(&a, s->name)) {
            continue;
        }
        int64_t wn = s->OC * s->C;
        int nw = getenv("WARM") ? 1 : (int)(WEIGHT_ROTATION_BYTES / (wn * (int64_t)sizeof(float)) + 1);
        float **ws = calloc((size_t)nw, sizeof *ws);
        float *x = random_matrix(s->C * s->P), *y = random_matrix(s->OC * s->P);
        for (int k = 0; ws && k < nw; k++) {
            ws[k] = random_matrix(wn);
        }
        if (!ws || !x || !y) {
            return 1;
        }
        double flop = 2.0 * (double)s->C * (double)s->OC * (double)s->P;
        double td = best_call(s, 0, x, ws, nw, y, cpu, budget);
        double tg = best_call(s, 1, x, ws, nw, y, cpu, budget);
        padded = random_matrix(s->C * ty_conv1x1_ldx(s->C, s->P));
        double tp = padded ? best_call(s, 2, x, ws, nw, y, cpu, budget) : 0;
        free(padded);
        printf("%-16s direct %7.3f (%6.1f)  aligned %7.3f (%6.1f)  gemm %7.3f (%6.1f)\n",
               s->name, td * 1e3, flop / td * 1e-9, tp * 1e3, flop / tp * 1e-9, tg * 1e3,
               flop / tg * 1e-9);
        fflush(stdout);
        for (int k = 0; k < nw; k++) {
            free(ws[k]);
        }
        free(ws), free(x), free(y);
    }
    return 0;
}
