/* Float32 stem and strided 3x3 convolution throughput per layer shape from C, batch 1: the
 * direct kernel (ty_conv_direct_f32, which on AVX2 runs 3-channel stems by output rows) beside
 * implicit im2col + GEMM (what conv2d otherwise runs); "packed": the direct kernel on weights
 * packed once (a deployed model's constant weights), where it reads a packing. Timed by the
 * process's CPU time with one thread, else by the wall clock (best of many samples).
 * TY_ISA=avx2 forces the AVX2 path.
 *
 *   cmake --build build --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/conv_stem_shapes.c build/libtianyuan.a -lpthread -lm \
 *      -o build/conv_stem_shapes && build/conv_stem_shapes [threads [seconds per shape [name]]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_c.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/im2col.h"

typedef struct shape {
    const char *name;
    int64_t C, H, OC, K, s, p;
} shape;

static const shape SHAPES[] = {
    {"mb2 stem 3-32 k3s2@224", 3, 224, 32, 3, 2, 1},
    {"shuf stem 3-24 k3s2@224", 3, 224, 24, 3, 2, 1},
    {"r50 stem 3-64 k7s2@224", 3, 224, 64, 7, 2, 3},
    {"r18 64-128 k3s2@56", 64, 56, 128, 3, 2, 1},
    {"r18 128-256 k3s2@28", 128, 28, 256, 3, 2, 1},
    {"r18 256-512 k3s2@14", 256, 14, 512, 3, 2, 1},
    {"r18 512-512 k3s1@7", 512, 7, 512, 3, 1, 1},
    {"r50 128-128 k3s2@56", 128, 56, 128, 3, 2, 1},
    {"r50 256-256 k3s2@28", 256, 28, 256, 3, 2, 1},
    {"r50 512-512 k3s2@14", 512, 14, 512, 3, 2, 1},
};

typedef struct conv_call {
    ty_direct_geom g;
    int gemm;
    const float *x, *w, *packed;
    float *y, *ws;
} conv_call;

static void
call_one(void *ctx)
{
    conv_call *c = ctx;
    const ty_direct_geom *g = &c->g;
    if (!c->gemm) {
        ty_conv_direct_f32(g, c->x, c->w, c->packed, c->y, c->ws, NULL);
        return;
    }
    ty_im2col_src_f32 src = {.x = c->x, .C = g->C, .H = g->H, .W = g->W, .kh = g->KH,
                             .kw = g->KW, .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw,
                             .dh = 1, .dw = 1, .OH = g->OH, .OW = g->OW};
    int64_t kc = g->C * g->KH * g->KW;
    ty_gemm_operand_f32 a = {.m = c->w, .rs = kc, .cs = 1};
    ty_gemm_operand_f32 b = {.pack = ty_im2col_pack_f32, .ctx = &src};
    ty_gemm_f32_operands(g->OC, g->OH * g->OW, kc, &a, &b, c->y, g->OH * g->OW, 0, NULL);
}

int
main(int argc, char **argv)
{
    bench_args a;
    if (!bench_parse(argc, argv, &a)) {
        return 1;
    }
    printf("%d thread(s), %s time, ms per call (GFLOP/s)\n", a.threads, a.cpu ? "CPU" : "wall");
    for (size_t i = 0; i < sizeof(SHAPES) / sizeof(SHAPES[0]); i++) {
        const shape *s = &SHAPES[i];
        if (!bench_wants(&a, s->name)) {
            continue;
        }
        int64_t O = (s->H + 2 * s->p - s->K) / s->s + 1;
        conv_call c = {.g = {.C = s->C, .H = s->H, .W = s->H, .OC = s->OC, .KH = s->K,
                             .KW = s->K, .sh = s->s, .sw = s->s, .ph = s->p, .pw = s->p,
                             .dh = 1, .dw = 1, .OH = O, .OW = O}};
        size_t wsn = ty_conv_direct_ws_floats(&c.g);
        float *x = random_matrix(s->C * s->H * s->H), *y = random_matrix(s->OC * O * O);
        float *w = random_matrix(s->OC * s->C * s->K * s->K), *ws = random_matrix((int64_t)wsn);
        if (!x || !y || !w || !ws) {
            return 1;
        }
        c.x = x, c.w = w, c.y = y, c.ws = ws;
        double flop = 2.0 * (double)(s->C * s->K * s->K) * (double)s->OC * (double)(O * O);
        double td = best_call_s(call_one, &c, a.cpu, a.budget);
        size_t npk = ty_conv_direct_packed_floats(&c.g); /* a deployed model's weights */
        float *packed = npk ? random_matrix((int64_t)npk) : NULL;
        double tp = 0;
        if (packed) {
            ty_conv_direct_pack_f32(&c.g, w, packed);
            c.packed = packed;
            tp = best_call_s(call_one, &c, a.cpu, a.budget);
            c.packed = NULL;
        }
        c.gemm = 1;
        double tg = best_call_s(call_one, &c, a.cpu, a.budget);
        printf("%-24s direct %7.3f (%6.1f)  packed %7.3f  implicit gemm %7.3f (%6.1f)\n", s->name,
               td * 1e3, flop / td * 1e-9, tp * 1e3, tg * 1e3, flop / tg * 1e-9);
        fflush(stdout);
        free(x), free(y), free(w), free(ws), free(packed);
    }
    return 0;
}
