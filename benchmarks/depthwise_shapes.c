/* Float32 depthwise 3x3 forward (padding 1) per layer shape from C, batch 1: every distinct
 * depthwise layer of MobileNetV2 and ShuffleNetV2 1.0x at 224x224 (benchmarks/depthwise.py's
 * list), input and weights warm (the previous layer just wrote them). Milliseconds per call,
 * by the process's CPU time with one thread, else by the wall clock (best of many samples),
 * for the plane-by-plane kernels (ty_depthwise_set_planes_only) and the default dispatch, in 5
 * alternating rounds (the shared machine has bursts of other load). For an A/B of two builds,
 * build it against both libraries and run them in alternating rounds.
 *
 *   cmake --build build --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/depthwise_shapes.c build/libtianyuan.a -lpthread -lm \
 *      -o build/depthwise_shapes && build/depthwise_shapes [threads [seconds per shape [name]]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_c.h"
#include "kernels/cpu/depthwise.h"

typedef struct shape {
    const char *name;
    int64_t C, H, S;
} shape;

static const shape SHAPES[] = {
    {"mbv2_32@112s1", 32, 112, 1}, {"mbv2_96@112s2", 96, 112, 2}, {"mbv2_144@56s1", 144, 56, 1},
    {"mbv2_144@56s2", 144, 56, 2}, {"mbv2_192@28s1", 192, 28, 1}, {"mbv2_192@28s2", 192, 28, 2},
    {"mbv2_384@14s1", 384, 14, 1}, {"mbv2_576@14s1", 576, 14, 1}, {"mbv2_576@14s2", 576, 14, 2},
    {"mbv2_960@7s1", 960, 7, 1},   {"shv2_24@56s2", 24, 56, 2},   {"shv2_58@56s2", 58, 56, 2},
    {"shv2_58@28s1", 58, 28, 1},   {"shv2_116@28s2", 116, 28, 2}, {"shv2_116@14s1", 116, 14, 1},
    {"shv2_232@14s2", 232, 14, 2}, {"shv2_232@7s1", 232, 7, 1},
};

typedef struct call_ctx {
    ty_dw_geom g;
    const float *x, *w;
    float *y;
} call_ctx;

static void
call(void *p)
{
    call_ctx *c = p;
    if (ty_depthwise_f32(TY_DW_FWD, &c->g, c->x, c->w, c->y) != TY_OK) {
        fprintf(stderr, "depthwise failed\n");
        exit(1);
    }
}

int
main(int argc, char **argv)
{
    bench_args a;
    if (!bench_parse(argc, argv, &a)) {
        return 1;
    }
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const shape *s = &SHAPES[i];
        if (!bench_wants(&a, s->name)) {
            continue;
        }
        int64_t O = (s->H - 1) / s->S + 1;
        call_ctx c = {{1, s->C, s->H, s->H, 1, 3, 3, O, O, s->S, s->S, 1, 1, 1, 1}, 0, 0, 0};
        float *x = random_matrix(s->C * s->H * s->H), *w = random_matrix(s->C * 9);
        c.x = x;
        c.w = w;
        c.y = random_matrix(s->C * O * O);
        if (!x || !w || !c.y) {
            return 1;
        }
        double planes = 1e30, dflt = 1e30;
        for (int round = 0; round < 5; round++) {
            ty_depthwise_set_planes_only(1);
            double t = best_call_s(call, &c, a.cpu, a.budget / 10);
            planes = t < planes ? t : planes;
            ty_depthwise_set_planes_only(0);
            t = best_call_s(call, &c, a.cpu, a.budget / 10);
            dflt = t < dflt ? t : dflt;
        }
        printf("%-16s planes %8.4f  default %8.4f ms  %.2fx\n", s->name, 1e3 * planes,
               1e3 * dflt, planes / dflt);
        fflush(stdout);
        free(x);
        free(w);
        free(c.y);
    }
    return 0;
}
