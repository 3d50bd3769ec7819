/* The float32 softmax kernels (kernels/cpu/softmax.h) on every instruction set the CPU runs,
 * against double references: rows along the last axis of every length 1..40 and a long one
 * (tails of each size), rows across inner positions 1..20 (partial lane blocks), the exp over
 * the whole range where it feeds a result (down to the subnormals), and the gradient. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"
#include "kernels/cpu/softmax.h"

static const ty_isa all_isas[] = {TY_ISA_GENERIC, TY_ISA_AVX2, TY_ISA_AVX512};

static float *
rand_floats(int64_t n, double scale)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        p[i] = (float)(((double)ty_test_rand_bits() / (double)(1ull << 52) - 1.0) * scale);
    }
    return p;
}

/* softmax (log_out 0) or log_softmax of row o, position j of an (outer, n, inner) x, element
 * k, in double */
static double
ref_at(const float *x, int64_t n, int64_t inner, int64_t o, int64_t j, int64_t k, int log_out)
{
    const float *r = x + o * n * inner + j;
    double m = r[0], sum = 0.0;
    for (int64_t i = 1; i < n; i++) {
        m = r[i * inner] > m ? r[i * inner] : m;
    }
    for (int64_t i = 0; i < n; i++) {
        sum += exp((double)r[i * inner] - m);
    }
    double l = (double)r[k * inner] - m - log(sum);
    return log_out ? l : exp(l);
}

/* every element of softmax, log_softmax and the gradient of one shape against the references */
static int
shape_ok(int64_t outer, int64_t n, int64_t inner)
{
    int64_t total = outer * n * inner;
    float *x = rand_floats(total, 8.0), *g = rand_floats(total, 1.0);
    float *y = malloc(sizeof(float) * (size_t)total), *dx = malloc(sizeof(float) * (size_t)total);
    int ok = 1;
    for (int log_out = 0; log_out < 2; log_out++) {
        ty_softmax_f32(x, y, outer, n, inner, log_out);
        for (int64_t i = 0; i < total && ok; i++) {
            int64_t o = i / (n * inner), k = i / inner % n, j = i % inner;
            double want = ref_at(x, n, inner, o, j, k, log_out);
            ok = fabs(y[i] - want) <= (log_out ? 2e-6 * (1 + fabs(want)) : 4e-6 * want + 1e-37);
        }
    }
    for (int log_in = 0; log_in < 2; log_in++) { /* softmax's gradient, log_softmax's */
        ty_softmax_f32(x, y, outer, n, inner, log_in);
        ty_softmax_backward_f32(y, g, dx, outer, n, inner, log_in);
        for (int64_t i = 0; i < total && ok; i++) {
            int64_t row = i / (n * inner) * n * inner + i % inner;
            double dot = 0.0;
            for (int64_t k = 0; k < n; k++) {
                dot += (double)g[row + k * inner] * (log_in ? 1.0 : y[row + k * inner]);
            }
            double want = log_in ? (double)g[i] - exp((double)y[i]) * dot
                                 : y[i] * ((double)g[i] - dot);
            double scale = log_in ? exp((double)y[i]) : 1.0;
            ok = fabs(dx[i] - want) <= 2e-6 * (fabs(g[i]) + scale * fabs(dot)) + 1e-37;
        }
    }
    free(x);
    free(g);
    free(y);
    free(dx);
    return ok;
}

TEST(softmax_f32_matches_double_on_every_isa)
{
    for (size_t s = 0; s < sizeof all_isas / sizeof all_isas[0]; s++) {
        if (ty_softmax_set_isa(all_isas[s]) != all_isas[s]) {
            continue;
        }
        for (int64_t n = 1; n <= 40; n++) {
            CHECK(shape_ok(3, n, 1));
        }
        CHECK(shape_ok(2, 1000, 1));
        for (int64_t inner = 2; inner <= 20; inner++) {
            CHECK(shape_ok(2, 7, inner));
        }
    }
    ty_softmax_set_isa(TY_ISA_AUTO);
}

/* rows (0, t): y[1] = exp(t) / (1 + exp(t)), which is exp(t) itself once exp(t) < 2^-25;
 * within 3 ulps of the double value (one subnormal step below the normals) */
TEST(softmax_f32_exp_is_accurate_down_to_subnormals)
{
    enum { ROWS = 20000 };
    float *x = malloc(sizeof(float) * 2 * ROWS), *y = malloc(sizeof(float) * 2 * ROWS);
    for (int i = 0; i < ROWS; i++) {
        x[2 * i] = 0.0f;
        x[2 * i + 1] = (float)(-110.0 * i / (ROWS - 1));
    }
    for (size_t s = 0; s < sizeof all_isas / sizeof all_isas[0]; s++) {
        if (ty_softmax_set_isa(all_isas[s]) != all_isas[s]) {
            continue;
        }
        ty_softmax_f32(x, y, ROWS, 2, 1, 0);
        int ok = 1;
        for (int i = 0; i < ROWS && ok; i++) {
            double e = exp((double)x[2 * i + 1]), want = e / (1.0 + e);
            double ulp = fmax(ldexp(1.0, ilogb(want) - 23), ldexp(1.0, -149));
            ok = fabs(y[2 * i + 1] - want) <= 3 * ulp;
        }
        CHECK(ok);
    }
    ty_softmax_set_isa(TY_ISA_AUTO);
    free(x);
    free(y);
}

/* -inf entries take 0; a row of -inf, or with +inf or NaN, gives NaN everywhere (as the
 * float64 reference's max shift does) */
TEST(softmax_f32_special_rows_on_every_isa)
{
    float x[4 * 5] = {0.0f, -INFINITY, 1.0f, -INFINITY, 2.0f,
                      -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                      1.0f, INFINITY, 0.0f, 2.0f, 3.0f,
                      1.0f, 2.0f, NAN, 0.0f, 1.0f};
    float y[4 * 5];
    for (size_t s = 0; s < sizeof all_isas / sizeof all_isas[0]; s++) {
        if (ty_softmax_set_isa(all_isas[s]) != all_isas[s]) {
            continue;
        }
        ty_softmax_f32(x, y, 4, 5, 1, 0);
        CHECK(y[1] == 0.0f && y[3] == 0.0f && fabs(y[4] - 0.66524096) < 1e-6);
        for (int i = 5; i < 20; i++) {
            CHECK(isnan(y[i]));
        }
        ty_softmax_f32(x, y, 4, 5, 1, 1);
        CHECK(isinf(y[1]) && y[1] < 0 && fabs(y[4] + 0.40760596) < 1e-6);
    }
    ty_softmax_set_isa(TY_ISA_AUTO);
}
