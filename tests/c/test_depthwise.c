/* The direct depthwise kernels (kernels/cpu/depthwise.h): forward, backward-data and
 * backward-filter against float64 loops over the taps, on geometries with row tails, odd
 * widths, strides 1-3, padding wider than the kernel, dilation, channel multipliers, 1x1 and
 * single-pixel planes, groups of 16 small planes, wide stride-1 rows read straight from the
 * input; then every ISA the CPU runs, at 1, 2 and 3 threads, bitwise against the
 * portable path. Outputs start as garbage and end in guard bytes, so a cell left unwritten or
 * a store past the end shows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/depthwise.h"

enum { GUARD = 64 }; /* floats of a sentinel after each output */
#define SENTINEL 12345.0f

/* N, C, H, W, M, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw (OH, OW filled in) */
static const ty_dw_geom cases[] = {
    {1, 3, 7, 9, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {2, 4, 17, 33, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 2, 9, 67, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 3, 16, 16, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {2, 2, 15, 21, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 11, 70, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 4, 12, 13, 1, 5, 5, 0, 0, 1, 1, 2, 2, 1, 1},
    {1, 3, 13, 18, 1, 5, 5, 0, 0, 2, 2, 2, 2, 1, 1},
    {1, 2, 9, 11, 3, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {2, 3, 10, 8, 2, 5, 5, 0, 0, 2, 2, 2, 2, 1, 1},
    {1, 2, 11, 12, 1, 3, 3, 0, 0, 1, 1, 2, 2, 2, 2},
    {1, 2, 10, 10, 1, 3, 2, 0, 0, 1, 3, 0, 4, 2, 1},
    {1, 2, 3, 4, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1},
    {1, 1, 1, 1, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 2, 6, 7, 1, 4, 3, 0, 0, 3, 3, 0, 0, 1, 1},
    {1, 2, 5, 1, 2, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {3, 5, 14, 14, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    /* first layers: one input channel, its filter gradient split into 4 blocks of the 11
     * outputs (2 or 3 each); two channels, 2 blocks each of 3 outputs (1 and 2) */
    {3, 1, 12, 20, 11, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {2, 2, 9, 13, 3, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    /* 16 planes or more with small outputs: the 16-plane AVX-512 forward, and its leftovers */
    {3, 7, 7, 7, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {2, 10, 14, 14, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 17, 9, 9, 1, 5, 5, 0, 0, 1, 1, 2, 2, 1, 1},
    {1, 16, 9, 9, 1, 3, 3, 0, 0, 1, 1, 2, 2, 2, 2},
    {1, 18, 5, 6, 1, 3, 2, 0, 0, 1, 2, 0, 1, 1, 1},
    {2, 9, 16, 16, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 16, 31, 31, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1}, /* input rows of two 16-column pieces */
    {1, 16, 6, 6, 1, 3, 3, 0, 0, 1, 1, 3, 3, 1, 1},   /* padding wider than the kernel */
    /* stride 1, rows of 32 or more: straight from the input (AVX-512, also stride 2 below): row blocks of 4 with a
     * tail, 64-column steps with tails, zero rows and columns, dilation, multipliers */
    {1, 2, 6, 40, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 2, 11, 45, 2, 5, 5, 0, 0, 1, 1, 2, 2, 2, 2},
    {1, 1, 2, 64, 1, 3, 3, 0, 0, 1, 1, 3, 3, 1, 1},
    {1, 1, 4, 10, 1, 3, 3, 0, 0, 1, 1, 1, 12, 1, 1},
    {1, 1, 7, 130, 1, 1, 3, 0, 0, 1, 1, 0, 0, 1, 1},
    {1, 2, 5, 36, 1, 3, 9, 0, 0, 1, 1, 1, 4, 1, 1},
    /* rows of 16 to 32 outputs (8 rows x 32 columns a step), stride 2 (the even cells of
     * two loads), dilation, odd widths */
    {1, 3, 19, 20, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 2, 9, 50, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 12, 41, 2, 5, 5, 0, 0, 2, 2, 2, 2, 2, 2},
    {1, 1, 7, 33, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 21, 131, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 9, 40, 2, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},   /* 3x3/2 in place, multiplier 2 */
    {2, 3, 8, 32, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},   /* 3x3/2, even width */
    /* AVX2's 3x3 padding-1 kernels: 8-column blocks, interior ones just fitting (17 wide at
     * stride 1, 32 at stride 2), row counts off the 8 (stride 1) and 4 (stride 2) row
     * steps, one-row and one-column planes, tails of 1 to 7 columns */
    {1, 3, 23, 17, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 2, 13, 32, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 10, 33, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 9, 8, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 3, 1, 19, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {1, 2, 19, 1, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 2, 6, 2, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
    {2, 3, 11, 31, 2, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
    {1, 3, 12, 29, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},
};

static int64_t
extent(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static double
rnd(void)
{
    return (double)(int64_t)(ty_test_rand_bits() % 2001) / 1000.0 - 1.0;
}

/* Input cell read by output (oh, ow) at tap (kh, kw), or -1 for padding. */
static int64_t
src_of(const ty_dw_geom *g, int64_t oh, int64_t ow, int64_t kh, int64_t kw)
{
    int64_t ih = oh * g->sh - g->ph + kh * g->dh, iw = ow * g->sw - g->pw + kw * g->dw;
    return ih < 0 || ih >= g->H || iw < 0 || iw >= g->W ? -1 : ih * g->W + iw;
}

/* The three results in float64 and the sums of |terms| (for the tolerance). */
static void
reference(const ty_dw_geom *g, const float *x, const float *w, const float *dy, double *y,
          double *ya, double *dx, double *dxa, double *dw, double *dwa)
{
    int64_t taps = g->KH * g->KW, hw = g->H * g->W, ohw = g->OH * g->OW;
    memset(dx, 0, sizeof(double) * (size_t)(g->N * g->C * hw));
    memset(dxa, 0, sizeof(double) * (size_t)(g->N * g->C * hw));
    memset(dw, 0, sizeof(double) * (size_t)(g->C * g->M * taps));
    memset(dwa, 0, sizeof(double) * (size_t)(g->C * g->M * taps));
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t oc = 0; oc < g->C * g->M; oc++) {
            int64_t c = oc / g->M;
            const float *xp = x + (n * g->C + c) * hw;
            for (int64_t o = 0; o < ohw; o++) {
                int64_t yi = (n * g->C * g->M + oc) * ohw + o;
                y[yi] = ya[yi] = 0;
                for (int64_t t = 0; t < taps; t++) {
                    int64_t s = src_of(g, o / g->OW, o % g->OW, t / g->KW, t % g->KW);
                    double xv = s < 0 ? 0.0 : xp[s], wv = w[oc * taps + t];
                    y[yi] += wv * xv;
                    ya[yi] += fabs(wv * xv);
                    dw[oc * taps + t] += (double)dy[yi] * xv;
                    dwa[oc * taps + t] += fabs((double)dy[yi] * xv);
                    if (s >= 0) {
                        dx[(n * g->C + c) * hw + s] += wv * dy[yi];
                        dxa[(n * g->C + c) * hw + s] += fabs(wv * dy[yi]);
                    }
                }
            }
        }
    }
}

static int
close_to(const float *got, const double *want, const double *absum, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (!(fabs(got[i] - want[i]) <= 1e-6 * absum[i] + 1e-7)) {
            fprintf(stderr, "  element %lld: %.9g vs %.9g\n", (long long)i, got[i], want[i]);
            return 0;
        }
    }
    return 1;
}

static int
guards_intact(const float *p, int64_t n)
{
    for (int64_t i = n; i < n + GUARD; i++) {
        if (p[i] != SENTINEL) {
            return 0;
        }
    }
    return 1;
}

static float *
garbage(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n + GUARD));
    for (int64_t i = 0; i < n + GUARD; i++) {
        p[i] = i < n ? NAN : SENTINEL;
    }
    return p;
}

typedef struct outs {
    float *y, *dx, *dw;
} outs;

static int
run_all(const ty_dw_geom *g, const float *x, const float *w, const float *dy, outs *o)
{
    int64_t ny = g->N * g->C * g->M * g->OH * g->OW, nx = g->N * g->C * g->H * g->W;
    int64_t nw = g->C * g->M * g->KH * g->KW;
    o->y = garbage(ny);
    o->dx = garbage(nx);
    o->dw = garbage(nw);
    return ty_depthwise_f32(TY_DW_FWD, g, x, w, o->y) == TY_OK &&
           ty_depthwise_f32(TY_DW_BWD_DATA, g, w, dy, o->dx) == TY_OK &&
           ty_depthwise_f32(TY_DW_BWD_FILTER, g, x, dy, o->dw) == TY_OK &&
           guards_intact(o->y, ny) && guards_intact(o->dx, nx) && guards_intact(o->dw, nw);
}

static void
free_outs(outs *o)
{
    free(o->y);
    free(o->dx);
    free(o->dw);
}

static int
same_bits(const outs *a, const outs *b, const ty_dw_geom *g)
{
    size_t ny = (size_t)(g->N * g->C * g->M * g->OH * g->OW), nx = (size_t)(g->N * g->C * g->H * g->W);
    size_t nw = (size_t)(g->C * g->M * g->KH * g->KW);
    return !memcmp(a->y, b->y, ny * 4) && !memcmp(a->dx, b->dx, nx * 4) &&
           !memcmp(a->dw, b->dw, nw * 4);
}

static void
check_case(ty_dw_geom g, int *failures_)
{
    g.OH = extent(g.H, g.KH, g.sh, g.ph, g.dh);
    g.OW = extent(g.W, g.KW, g.sw, g.pw, g.dw);
    REQUIRE(ty_depthwise_fits(&g));
    int64_t ny = g.N * g.C * g.M * g.OH * g.OW, nx = g.N * g.C * g.H * g.W;
    int64_t nw = g.C * g.M * g.KH * g.KW;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *dy = malloc(sizeof(float) * (size_t)ny);
    double *r = malloc(sizeof(double) * (size_t)(2 * (ny + nx + nw)));
    for (int64_t i = 0; i < nx; i++) x[i] = (float)rnd();
    for (int64_t i = 0; i < nw; i++) w[i] = (float)rnd();
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)rnd();
    reference(&g, x, w, dy, r, r + ny, r + 2 * ny, r + 2 * ny + nx, r + 2 * (ny + nx),
              r + 2 * (ny + nx) + nw);

    int threads = ty_get_num_threads();
    outs base = {0};
    ty_depthwise_set_isa(TY_ISA_GENERIC);
    CHECK_OK(ty_set_num_threads(1));
    CHECK(run_all(&g, x, w, dy, &base));
    CHECK(close_to(base.y, r, r + ny, ny));
    CHECK(close_to(base.dx, r + 2 * ny, r + 2 * ny + nx, nx));
    CHECK(close_to(base.dw, r + 2 * (ny + nx), r + 2 * (ny + nx) + nw, nw));
    float *dx_exact = garbage(nx);
    ty_depthwise_set_exact_backward(1);
    CHECK_OK(ty_depthwise_f32(TY_DW_BWD_DATA, &g, w, dy, dx_exact));
    ty_depthwise_set_exact_backward(0);
    CHECK(!memcmp(dx_exact, base.dx, sizeof(float) * (size_t)nx)); /* the two paths agree */
    free(dx_exact);
    for (ty_isa isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_depthwise_set_isa(isa) != isa) {
            continue; /* the CPU cannot run it */
        }
        for (int t = 1; t <= 3; t++) {
            outs o = {0};
            CHECK_OK(ty_set_num_threads(t));
            CHECK(run_all(&g, x, w, dy, &o));
            if (!same_bits(&o, &base, &g)) {
                fprintf(stderr, "  isa %d, %d threads, case %lldx%lldx%lldx%lld M%lld k%lldx%lld "
                        "s%lld,%lld: differs from the portable path\n", isa, t, (long long)g.N,
                        (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.M,
                        (long long)g.KH, (long long)g.KW, (long long)g.sh, (long long)g.sw);
                (*failures_)++;
            }
            free_outs(&o);
        }
    }
    ty_depthwise_set_isa(TY_ISA_AUTO);
    CHECK_OK(ty_set_num_threads(threads));
    free_outs(&base);
    free(x);
    free(w);
    free(dy);
    free(r);
}

TEST(depthwise_matches_reference_and_every_isa_bitwise)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(cases[i], failures_);
    }
}

TEST(depthwise_f64_matches_reference)
{
    ty_dw_geom g = {2, 3, 9, 13, 2, 3, 3, 0, 0, 2, 1, 1, 2, 1, 2};
    g.OH = extent(g.H, g.KH, g.sh, g.ph, g.dh);
    g.OW = extent(g.W, g.KW, g.sw, g.pw, g.dw);
    int64_t ny = g.N * g.C * g.M * g.OH * g.OW, nx = g.N * g.C * g.H * g.W, nw = g.C * g.M * 9;
    float *xf = malloc(sizeof(float) * (size_t)(nx + nw + ny));
    double *in = malloc(sizeof(double) * (size_t)(nx + nw + ny));
    double *out = malloc(sizeof(double) * (size_t)(ny + nx + nw));
    double *r = malloc(sizeof(double) * (size_t)(2 * (ny + nx + nw)));
    for (int64_t i = 0; i < nx + nw + ny; i++) {
        xf[i] = (float)rnd();
        in[i] = xf[i];
    }
    const float *x = xf, *w = xf + nx, *dy = xf + nx + nw;
    reference(&g, x, w, dy, r, r + ny, r + 2 * ny, r + 2 * ny + nx, r + 2 * (ny + nx),
              r + 2 * (ny + nx) + nw);
    CHECK_OK(ty_depthwise_f64(TY_DW_FWD, &g, in, in + nx, out));
    CHECK_OK(ty_depthwise_f64(TY_DW_BWD_DATA, &g, in + nx, in + nx + nw, out + ny));
    CHECK_OK(ty_depthwise_f64(TY_DW_BWD_FILTER, &g, in, in + nx + nw, out + ny + nx));
    for (int64_t i = 0; i < ny; i++) CHECK_NEAR(out[i], r[i], 1e-12);
    for (int64_t i = 0; i < nx; i++) CHECK_NEAR(out[ny + i], r[2 * ny + i], 1e-12);
    for (int64_t i = 0; i < nw; i++) CHECK_NEAR(out[ny + nx + i], r[2 * (ny + nx) + i], 1e-12);
    free(xf);
    free(in);
    free(out);
    free(r);
}

TEST(depthwise_empty_and_oversized)
{
    ty_dw_geom g = {0, 3, 5, 5, 1, 3, 3, 5, 5, 1, 1, 1, 1, 1, 1};
    float one = 1.0f;
    CHECK_OK(ty_depthwise_f32(TY_DW_FWD, &g, &one, &one, &one)); /* nothing to do */
    CHECK(one == 1.0f);
    g.N = 1;
    g.ph = (int64_t)1 << 40; /* a scratch beyond the limit: conv.c takes im2col instead */
    CHECK(!ty_depthwise_fits(&g));
    CHECK(ty_depthwise_set_isa(TY_ISA_GENERIC) == TY_ISA_GENERIC);
    CHECK(ty_depthwise_set_isa(99) == ty_depthwise_set_isa(TY_ISA_AUTO));
}

/* Non-finite weights: the backward-data gradient has only real products, so infinities and
 * NaNs land where the reference (a scatter of w * dy) puts them, not in every cell a padded or
 * stuffed zero reaches. Each ISA, bitwise against the portable path. */
TEST(depthwise_backward_data_non_finite_weights)
{
    ty_dw_geom g = {1, 17, 9, 10, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1}; /* 16-plane block + 1 */
    g.OH = extent(g.H, g.KH, g.sh, g.ph, g.dh);
    g.OW = extent(g.W, g.KW, g.sw, g.pw, g.dw);
    int64_t ny = g.C * g.OH * g.OW, nx = g.C * g.H * g.W, nw = g.C * 9;
    float *x = calloc((size_t)nx, sizeof(float)), *w = malloc(sizeof(float) * (size_t)nw);
    float *dy = malloc(sizeof(float) * (size_t)ny), *base = garbage(nx), *dx = garbage(nx);
    double *r = malloc(sizeof(double) * (size_t)(2 * (ny + nx + nw)));
    for (int64_t i = 0; i < nw; i++) w[i] = (float)rnd();
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)rnd() + 2.0f; /* no zero dy */
    w[0 * 9 + 4] = INFINITY;
    w[1 * 9 + 0] = NAN;
    w[16 * 9 + 4] = -INFINITY; /* the leftover plane, run by the plane kernels */
    reference(&g, x, w, dy, r, r + ny, r + 2 * ny, r + 2 * ny + nx, r + 2 * (ny + nx),
              r + 2 * (ny + nx) + nw);
    const double *ref = r + 2 * ny;
    ty_depthwise_set_isa(TY_ISA_GENERIC);
    CHECK_OK(ty_depthwise_f32(TY_DW_BWD_DATA, &g, w, dy, base));
    int finite_cells = 0;
    for (int64_t i = 0; i < nx; i++) {
        if (isnan(ref[i])) {
            CHECK(isnan(base[i]));
        } else if (isinf(ref[i])) {
            CHECK(base[i] == ref[i]);
        } else {
            finite_cells += i < 2 * g.H * g.W; /* cells of channels 0 and 1 no bad tap reaches */
            CHECK(fabs(base[i] - ref[i]) <= 1e-5 * fabs(ref[i]) + 1e-5);
        }
    }
    CHECK(finite_cells > 0); /* the case tells the exact path from padding-times-infinity */
    for (ty_isa isa = TY_ISA_AVX2; isa <= TY_ISA_AVX512; isa++) {
        if (ty_depthwise_set_isa(isa) != isa) {
            continue;
        }
        CHECK_OK(ty_depthwise_f32(TY_DW_BWD_DATA, &g, w, dy, dx));
        CHECK(!memcmp(dx, base, sizeof(float) * (size_t)nx));
    }
    ty_depthwise_set_isa(TY_ISA_AUTO);
    free(x);
    free(w);
    free(dy);
    free(base);
    free(dx);
    free(r);
}

/* The AVX2 forward 8 planes at a time (channels in the lanes, small output planes) against
 * the float64 reference and bitwise against the AVX2 plane kernels (ty_depthwise_set_planes_only)
 * and the portable path, at 1, 2 and 3 threads: planes 1x1 to 16x16 and one with 17x17
 * outputs (past the limit), strides 1 and 2, padding 0 and 1, channel counts with leftovers
 * (11, 21) and a multiple of 8 at batch 2 (groups spanning images), 3x3 and a dilated 2x2;
 * stride 2 up to 28x28 outputs (and past it), 3x3 stride 1 up to 28x28. */
static void
check_planes8(ty_dw_geom g, int *failures_)
{
    g.OH = extent(g.H, g.KH, g.sh, g.ph, g.dh);
    g.OW = extent(g.W, g.KW, g.sw, g.pw, g.dw);
    if (g.OH <= 0 || g.OW <= 0) {
        return;
    }
    int64_t ny = g.N * g.C * g.OH * g.OW, nx = g.N * g.C * g.H * g.W, nw = g.C * g.KH * g.KW;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *dy = calloc((size_t)ny, sizeof(float));
    double *r = malloc(sizeof(double) * (size_t)(2 * (ny + nx + nw)));
    for (int64_t i = 0; i < nx; i++) x[i] = (float)rnd();
    for (int64_t i = 0; i < nw; i++) w[i] = (float)rnd();
    reference(&g, x, w, dy, r, r + ny, r + 2 * ny, r + 2 * ny + nx, r + 2 * (ny + nx),
              r + 2 * (ny + nx) + nw);
    float *base = garbage(ny), *planes = garbage(ny);
    ty_depthwise_set_isa(TY_ISA_GENERIC);
    CHECK_OK(ty_depthwise_f32(TY_DW_FWD, &g, x, w, base));
    CHECK(close_to(base, r, r + ny, ny));
    ty_depthwise_set_isa(TY_ISA_AVX2);
    ty_depthwise_set_planes_only(1);
    CHECK_OK(ty_depthwise_f32(TY_DW_FWD, &g, x, w, planes));
    ty_depthwise_set_planes_only(0);
    CHECK(!memcmp(planes, base, sizeof(float) * (size_t)ny));
    for (int t = 1; t <= 3; t++) {
        float *y = garbage(ny);
        CHECK_OK(ty_set_num_threads(t));
        CHECK_OK(ty_depthwise_f32(TY_DW_FWD, &g, x, w, y));
        CHECK(guards_intact(y, ny));
        if (memcmp(y, planes, sizeof(float) * (size_t)ny)) {
            fprintf(stderr, "  %d threads, %lldx%lldx%lldx%lld k%lldx%lld s%lld p%lld d%lld: "
                    "8 planes differ from the plane kernels\n", t, (long long)g.N,
                    (long long)g.C, (long long)g.H, (long long)g.W, (long long)g.KH,
                    (long long)g.KW, (long long)g.sh, (long long)g.ph, (long long)g.dh);
            (*failures_)++;
        }
        free(y);
    }
    free(base);
    free(planes);
    free(x);
    free(w);
    free(dy);
    free(r);
}

TEST(depthwise_avx2_8_planes_bitwise_against_planes)
{
    if (ty_depthwise_set_isa(TY_ISA_AVX2) != TY_ISA_AVX2) {
        ty_depthwise_set_isa(TY_ISA_AUTO);
        return; /* the CPU has no AVX2 */
    }
    int threads = ty_get_num_threads();
    static const int64_t chans[][2] = {{1, 11}, {1, 21}, {2, 8}}; /* N, C */
    for (int64_t s = 1; s <= 2; s++) {
        for (int64_t p = 0; p <= 1; p++) {
            for (int64_t h = 1; h <= 17 * s; h += s == 1 ? 1 : 3) {
                ty_dw_geom g = {1, 11, h, h, 1, 3, 3, 0, 0, s, s, p, p, 1, 1};
                g.W = h + (h % 3 == 0); /* some planes wider than tall */
                g.N = chans[h % 3][0];
                g.C = chans[h % 3][1];
                check_planes8(g, failures_);
            }
        }
    }
    check_planes8((ty_dw_geom){2, 9, 9, 10, 1, 2, 2, 0, 0, 1, 1, 1, 1, 2, 2}, failures_);
    check_planes8((ty_dw_geom){1, 16, 7, 7, 1, 5, 5, 0, 0, 2, 1, 2, 2, 1, 1}, failures_);
    /* stride 2 with up to 28x28 outputs and 32 planes or more; 31 planes, 57x57 outputs */
    check_planes8((ty_dw_geom){1, 33, 45, 47, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1}, failures_);
    check_planes8((ty_dw_geom){2, 16, 40, 40, 1, 3, 3, 0, 0, 2, 2, 0, 0, 1, 1}, failures_);
    check_planes8((ty_dw_geom){1, 32, 56, 56, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1}, failures_);
    check_planes8((ty_dw_geom){1, 31, 30, 30, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1}, failures_);
    check_planes8((ty_dw_geom){1, 40, 113, 113, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1}, failures_);
    /* 3x3 stride 1 up to 28x28 outputs with 64 planes or more (rows of 8 outputs, tails of 3
     * and 4); 63 planes; padding 0 */
    check_planes8((ty_dw_geom){1, 64, 28, 28, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1}, failures_);
    check_planes8((ty_dw_geom){1, 65, 20, 27, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1}, failures_);
    check_planes8((ty_dw_geom){2, 32, 19, 21, 1, 3, 3, 0, 0, 1, 1, 0, 0, 1, 1}, failures_);
    check_planes8((ty_dw_geom){1, 63, 28, 28, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1}, failures_);
    ty_depthwise_set_isa(TY_ISA_AUTO);
    CHECK_OK(ty_set_num_threads(threads));
}

/* ---- the batch norm chain applied by the forward kernels (ty_depthwise_fwd_f32_hook's bn) */

typedef struct chain_ref {
    ty_epi_bn_f32 bn;
    const float *y0; /* the output the hook's ranges lie in */
    int64_t ohw, OC;
} chain_ref;

/* What fuse_chain.c's loop does to finished planes, one element at a time: sub, mul, add, the
 * residual in its order, relu as max(+0, v) + 0 (vmaxps: a NaN passes), relu6 then min(6, v). */
static void
chain_planes(void *vctx, float *y, int64_t len)
{
    const chain_ref *c = vctx;
    for (int64_t i = 0; i < len; i++) {
        int64_t e = y - c->y0 + i, oc = e / c->ohw % c->OC;
        float v = (y[i] - c->bn.mean[oc]) * c->bn.scale[oc] + c->bn.beta[oc];
        if (c->bn.res_order) {
            v = c->bn.res_order == 1 ? v + c->bn.res[e] : c->bn.res[e] + v;
        }
        if (c->bn.act) {
            v = (0.0f > v ? 0.0f : v) + 0.0f;
        }
        if (c->bn.act == 2) {
            v = 6.0f < v ? 6.0f : v;
        }
        c->bn.out[e] = v;
    }
}

/* The forward with the chain given as bn (the kernel may apply it and skip the hook) against
 * the forward whose hook applies it, bitwise: act 0-2, at 1-3 threads; with a residual or
 * another output buffer, bn must be left to the hook. Some outputs are NaN. */
static void
check_chain(ty_dw_geom g, int res_order, int other_out, int *failures_)
{
    g.OH = extent(g.H, g.KH, g.sh, g.ph, g.dh);
    g.OW = extent(g.W, g.KW, g.sw, g.pw, g.dw);
    int64_t OC = g.C * g.M, ohw = g.OH * g.OW, ny = g.N * OC * ohw, nx = g.N * g.C * g.H * g.W;
    int64_t nw = OC * g.KH * g.KW;
    float *x = malloc(sizeof(float) * (size_t)nx), *w = malloc(sizeof(float) * (size_t)nw);
    float *k = malloc(sizeof(float) * (size_t)(3 * OC)), *res = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < nx; i++) x[i] = i % 97 == 5 ? NAN : (float)(4 * rnd());
    for (int64_t i = 0; i < nw; i++) w[i] = (float)rnd();
    for (int64_t i = 0; i < 3 * OC; i++) k[i] = (float)(2 * rnd());
    for (int64_t i = 0; i < ny; i++) res[i] = (float)rnd();
    for (int act = 0; act <= 2; act++) {
        float *want = garbage(ny), *want_out = other_out ? garbage(ny) : want;
        chain_ref c = {{k, k + OC, k + 2 * OC, res_order ? res : NULL, want_out, res_order, act},
                       want, ohw, OC};
        CHECK_OK(ty_set_num_threads(1));
        CHECK_OK(ty_depthwise_fwd_f32_hook(&g, x, w, want, chain_planes, &c, NULL));
        for (int t = 1; t <= 3; t++) {
            float *y = garbage(ny), *out = other_out ? garbage(ny) : y;
            chain_ref cy = c;
            cy.y0 = y;
            cy.bn.out = out;
            CHECK_OK(ty_set_num_threads(t));
            CHECK_OK(ty_depthwise_fwd_f32_hook(&g, x, w, y, chain_planes, &cy, &cy.bn));
            CHECK(guards_intact(y, ny) && guards_intact(out, ny));
            if (memcmp(out, want_out, sizeof(float) * (size_t)ny) ||
                memcmp(y, want, sizeof(float) * (size_t)ny)) {
                fprintf(stderr, "  act %d res %d, %d threads, %lldx%lldx%lldx%lld M%lld k%lld "
                        "s%lld: the chain in the kernel differs from the hook's\n", act, res_order,
                        t, (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W,
                        (long long)g.M, (long long)g.KH, (long long)g.sh);
                (*failures_)++;
            }
            if (other_out) {
                free(out);
            }
            free(y);
        }
        if (other_out) {
            free(want_out);
        }
        free(want);
    }
    free(x);
    free(w);
    free(k);
    free(res);
}

TEST(depthwise_batch_norm_chain_in_the_kernel_equals_the_hook_bitwise)
{
    int threads = ty_get_num_threads();
    static const ty_dw_geom gs[] = {
        {1, 5, 30, 33, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},   /* planes of 3x3 s1 (range_k3) */
        {2, 3, 37, 35, 2, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},   /* s2, channel multiplier 2 */
        {1, 21, 14, 14, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},  /* 8 planes at a time, 5 left */
        {2, 12, 14, 13, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},  /* groups spanning images */
        {1, 16, 7, 7, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},
        {1, 33, 56, 56, 1, 3, 3, 0, 0, 2, 2, 1, 1, 1, 1},  /* 28x28 s2, 8 planes */
        {1, 65, 28, 28, 1, 3, 3, 0, 0, 1, 1, 1, 1, 1, 1},  /* 28x28 s1, rows of 8 outputs */
        {1, 11, 9, 9, 1, 5, 5, 0, 0, 1, 1, 2, 2, 1, 1},    /* 5x5: the rest by range_f32 */
        {1, 4, 20, 20, 1, 3, 3, 0, 0, 1, 1, 2, 2, 2, 2},   /* dilated: range_f32 */
    };
    static const ty_isa isas[] = {TY_ISA_AUTO, TY_ISA_AVX2, TY_ISA_GENERIC};
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        ty_depthwise_set_isa(isas[i]);
        for (size_t j = 0; j < sizeof gs / sizeof gs[0]; j++) {
            check_chain(gs[j], 0, 0, failures_);
        }
        check_chain(gs[0], 1, 0, failures_);
        check_chain(gs[2], 2, 0, failures_);
        check_chain(gs[3], 0, 1, failures_);
    }
    ty_depthwise_set_isa(TY_ISA_AUTO);
    CHECK_OK(ty_set_num_threads(threads));
}
