/* The f32 AVX-512 GEMM micro-kernels alone, on panels that stay in cache: GFLOP/s of the
 * calling thread's CPU time (the compute a call costs however busy the shared machine is), for
 * the full 12 x 32 tile, its M-edge (8, 4 rows) and N-edge (12 x 16) variants, and the 12 x 32
 * tile reading A in place (ra12: rows 2304 floats apart, ResNet-18's l3 weights; gemm.c's path
 * for products of at most 8 B panels), in three working sets:
 *   l1     kc 128, one A panel and one B panel (22 KiB: all in L1),
 *   sweep  kc 512, one A panel over 16 B panels (1 MiB: B streams from L2, as in gemm.c's
 *          chunks),
 *   block  kc 512, 23 A panels over the same 16 B panels (the A block of a 2048 product too).
 * This is the ceiling of the packed path: a product adds packing and edges to it. Beside
 * `fma_peak 1` (benchmarks/fma_peak.c; pass its figure as the last argument for a share
 * column) it says how far a GEMM target in % of the FMA peak can go with these kernels.
 *
 *   cmake --build build --target tianyuan_static
 *   cc -O2 -Isrc -Iinclude benchmarks/gemm_ukernel.c build/libtianyuan.a -lpthread -lm \
 *      -o build/gemm_ukernel && build/gemm_ukernel [1 [seconds per case [tile [peak]]]]
 * (tile: only the tiles whose name starts with it, "" for all; peak: FMA GFLOP/s of one
 * thread). The kernels run on the calling thread whatever the first argument says.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_c.h"
#include "kernels/cpu/gemm_ukernel.h"

#ifdef TY_GEMM_X86
typedef struct variant {
    const char *name;
    ty_cpu_gemm_ukernel fn; /* A packed; NULL: ra (A read in place) */
    ty_cpu_gemm_ukernel_ra ra;
    int rows, cols; /* of the tile it computes */
} variant;

static const variant VARIANTS[] = {
    {"12x32", ty_cpu_gemm_ukernel_f32_avx512, NULL, 12, 32},
    {"8x32", ty_cpu_gemm_ukernel_f32_avx512_8, NULL, 8, 32},
    {"4x32", ty_cpu_gemm_ukernel_f32_avx512_4, NULL, 4, 32},
    {"12x16", ty_cpu_gemm_ukernel_f32_avx512_h12, NULL, 12, 16},
    {"ra12", NULL, NULL, 12, 32}, /* main sets ra */
};

typedef struct working_set {
    const char *name;
    int64_t kc;
    int a_panels, b_panels;
} working_set;

static const working_set SETS[] = {
    {"l1", 128, 1, 1},
    {"sweep", 512, 1, 16},
    {"block", 512, 23, 16},
};

enum { MR = 12, NR = 32, RA_LDA = 2304 };

typedef struct sweep {
    const variant *v;
    const working_set *w;
    const float *a, *b;
    float *c;
    int64_t ldc;
} sweep;

/* Floats of A per A panel: a packed MR x kc panel, or MR rows RA_LDA apart read in place. */
static int64_t
a_panel_floats(const variant *v, int64_t kc)
{
    return v->ra ? MR * RA_LDA : MR * kc;
}

/* Every A panel over every B panel, A panel by A panel (gemm.c's compute_block order), each
 * tile added to its own place in C. */
static void
run_sweep(void *ctx)
{
    const sweep *s = ctx;
    const int64_t kc = s->w->kc;
    for (int i = 0; i < s->w->a_panels; i++) {
        const float *a = s->a + (size_t)(i * a_panel_floats(s->v, kc));
        for (int q = 0; q < s->w->b_panels; q++) {
            const float *b = s->b + (size_t)q * NR * kc;
            float *c = s->c + (i * MR) * s->ldc + q * NR;
            if (s->v->ra) {
                s->v->ra(kc, a, RA_LDA, b, c, s->ldc, 1);
            } else {
                s->v->fn(kc, a, b, c, s->ldc, 1);
            }
        }
    }
}

int
main(int argc, char **argv)
{
    bench_args args;
    if (!bench_parse(argc, argv, &args)) {
        return 1;
    }
    double peak = argc > 4 ? atof(argv[4]) : 0.0;
    variant variants[sizeof(VARIANTS) / sizeof(VARIANTS[0])];
    memcpy(variants, VARIANTS, sizeof(VARIANTS));
    for (size_t k = 0; k < sizeof(variants) / sizeof(variants[0]); k++) {
        if (!variants[k].fn) { /* an extern table's entry is no constant for VARIANTS */
            variants[k].ra = ty_cpu_gemm_ukernel_f32_avx512_ra[12];
        }
    }
    if (!__builtin_cpu_supports("avx512f")) {
        printf("no AVX-512 on this CPU: nothing to time\n");
        return 0;
    }
    printf("f32 AVX-512 micro-kernels, 1 thread, GFLOP/s of CPU time%s\n",
           peak > 0 ? " (and % of the given peak)" : "");
    printf("%-8s", "tile");
    for (size_t w = 0; w < sizeof(SETS) / sizeof(SETS[0]); w++) {
        printf("%*s", peak > 0 ? 16 : 10, SETS[w].name);
    }
    printf("\n");
    for (size_t k = 0; k < sizeof(variants) / sizeof(variants[0]); k++) {
        const variant *v = &variants[k];
        if (!bench_wants(&args, v->name)) {
            continue;
        }
        printf("%-8s", v->name);
        for (size_t w = 0; w < sizeof(SETS) / sizeof(SETS[0]); w++) {
            const working_set *ws = &SETS[w];
            int64_t ldc = (int64_t)ws->b_panels * NR;
            float *a = random_matrix(ws->a_panels * a_panel_floats(v, ws->kc));
            float *b = random_matrix((int64_t)ws->b_panels * NR * ws->kc);
            float *c = random_matrix((int64_t)ws->a_panels * MR * ldc);
            if (!a || !b || !c) {
                return 1;
            }
            sweep s = {v, ws, a, b, c, ldc};
            double t = best_call_s(run_sweep, &s, 1, args.budget);
            double gf = 2.0 * v->rows * v->cols * (double)ws->kc * ws->a_panels * ws->b_panels /
                        t * 1e-9;
            if (peak > 0) {
                printf("%9.1f (%3.0f%%)", gf, 100.0 * gf / peak);
            } else {
                printf("%10.1f", gf);
            }
            fflush(stdout);
            free(a), free(b), free(c);
        }
        printf("\n");
    }
    return 0;
}
#else
int
main(void)
{
    printf("not an x86-64 build: nothing to time\n");
    return 0;
}
#endif
