/* Float32 Winograd 3x3 convolution time per layer shape from C (ty_conv_wino_f32), on ResNet-18's
 * and ResNet-50's 3x3 layers at batch 1, both tile sizes. The weights rotate through copies
 * larger than the caches, as in a deployed network where each layer's weights come cold from
 * memory (WARM=1 in the environment keeps one copy); at batch 1 these layers take the fused
 * path, which transforms the weights at every call. Timed by the process's CPU time with one
 * thread, else by the wall clock (best of many samples).
 *
 *   cmake --build build --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/wino_shapes.c build/libtianyuan.a -lpthread -lm \
 *      -o build/wino_shapes && build/wino_shapes [threads [seconds per shape [name]]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_c.h"
#include "kernels/cpu/conv_winograd.h"

typedef struct shape {
    const char *name;
    int64_t C, OC, HW;
    int m;
} shape;

static const shape SHAPES[] = {
    {"r18 64@56 m2", 64, 64, 56, 2},     {"r18 64@56 m4", 64, 64, 56, 4},
    {"r18 128@28 m2", 128, 128, 28, 2},  {"r18 128@28 m4", 128, 128, 28, 4},
    {"r18 256@14 m2", 256, 256, 14, 2},  {"r18 256@14 m4", 256, 256, 14, 4},
    {"r18 512@7 m2", 512, 512, 7, 2},    {"r18 512@7 m4", 512, 512, 7, 4},
};

enum { WEIGHT_ROTATION_BYTES = 64 << 20 };

typedef struct wino_call {
    ty_wino_geom g;
    int m;
    const float *x;
    float **ws, *y, *work;
    int nw, at;
} wino_call;

static void
call_wino(void *ctx)
{
    wino_call *c = ctx;
    const float *w = c->ws[c->at];
    c->at = (c->at + 1) % c->nw;
    if (ty_conv_wino_f32(&c->g, c->m, c->x, w, c->y, c->work, NULL) != 0) {
        fprintf(stderr, "out of memory\n");
    }
}

static void
run_shape(const shape *s, const bench_args *a)
{
    int64_t H = s->HW;
    ty_wino_geom g = {.N = 1, .C = s->C, .H = H, .W = H, .OC = s->OC, .ph = 1, .pw = 1,
                      .OH = H, .OW = H, .xstride = s->C * H * H, .ystride = s->OC * H * H};
    int64_t wn = s->OC * s->C * 9;
    int nw = getenv("WARM") ? 1 : (int)(WEIGHT_ROTATION_BYTES / (wn * 4) + 1);
    wino_call c = {.g = g, .m = s->m, .nw = nw, .ws = calloc((size_t)nw, sizeof(float *))};
    float *x = random_matrix(g.xstride);
    c.x = x;
    c.y = random_matrix(g.ystride);
    c.work = random_matrix((int64_t)ty_conv_wino_ws_floats(&g, s->m));
    for (int i = 0; c.ws && i < nw; i++) {
        c.ws[i] = random_matrix(wn);
    }
    if (c.ws && c.x && c.y && c.work) {
        double t = best_call_s(call_wino, &c, a->cpu, a->budget);
        printf("%-16s fused %d  %8.1f us\n", s->name, ty_conv_wino_fuses(&g, s->m), t * 1e6);
    }
    for (int i = 0; c.ws && i < nw; i++) {
        free(c.ws[i]);
    }
    free(c.ws);
    free(x);
    free(c.y);
    free(c.work);
}

int
main(int argc, char **argv)
{
    bench_args a;
    if (!bench_parse(argc, argv, &a)) {
        return 1;
    }
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        if (bench_wants(&a, SHAPES[i].name)) {
            run_shape(&SHAPES[i], &a);
        }
    }
    return 0;
}
