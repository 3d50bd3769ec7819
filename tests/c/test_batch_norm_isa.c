/* The fused batch-norm kernels (kernels/cpu/batch_norm.h) give the same bits on every
 * instruction set the CPU runs: forward (y, mean, var), backward (dx, dw, db) and the backward
 * through a relu (its mask from y with zeros, -0 and NaN planted), with rows whose length
 * leaves tails of every size (S = 1..19) and a wide one. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/cpu/batch_norm.h"

static float *
rand_floats(int64_t n, double scale, double offset)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        p[i] = (float)(((double)ty_test_rand_bits() / (double)(1ull << 52) - 1.0) * scale + offset);
    }
    return p;
}

enum { BN_OUT_ARRAYS = 3, BN_OUT_CHANNELS = 6 }; /* per shape: y, dx, relu dx; 6 per channel */

/* y, mean, var, dx, dw, db, then dx, dw, db through a relu of y (y with zeros, -0 and NaN
 * planted as its relu output) of one shape at the instruction set now forced */
static float *
bn_outputs(const float *x, const float *g, const float *w, const float *b, int64_t N, int64_t C,
           int64_t S)
{
    int64_t n = N * C * S;
    float *o = malloc(sizeof(float) * (size_t)(BN_OUT_ARRAYS * n + BN_OUT_CHANNELS * C));
    float *relu_y = malloc(sizeof(float) * (size_t)n);
    float *y = o, *mean = y + n, *var = mean + C, *dx = var + C, *dw = dx + n, *db = dw + C;
    float *rdx = db + C, *rdw = rdx + n, *rdb = rdw + C;
    ty_batch_norm_train_f32(x, N, C, S, w, b, 1e-5, y, mean, var);
    ty_batch_norm_train_backward_f32(g, x, N, C, S, mean, var, w, 1e-5, dx, dw, db);
    for (int64_t i = 0; i < n; i++) {
        relu_y[i] = i % 7 == 3 ? NAN : i % 5 == 1 ? 0.0f : i % 11 == 2 ? -0.0f : y[i];
    }
    ty_batch_norm_train_relu_backward_f32(g, relu_y, x, N, C, S, mean, var, w, 1e-5, rdx, rdw,
                                          rdb);
    free(relu_y);
    return o;
}

TEST(batch_norm_f32_same_bits_on_every_isa)
{
    static const ty_isa isas[] = {TY_ISA_AVX2, TY_ISA_AVX512};
    for (int64_t S = 1; S <= 20; S++) {
        int64_t N = 3, C = 5, n = N * C * (S == 20 ? 300 : S);
        int64_t s = S == 20 ? 300 : S;
        float *x = rand_floats(n, 3.0, 1.5), *g = rand_floats(n, 1.0, 0.0);
        float *w = rand_floats(C, 1.0, 0.5), *b = rand_floats(C, 1.0, 0.0);
        ty_batch_norm_set_isa(TY_ISA_GENERIC);
        float *want = bn_outputs(x, g, w, b, N, C, s);
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (ty_batch_norm_set_isa(isas[k]) != isas[k]) {
                continue;
            }
            float *got = bn_outputs(x, g, w, b, N, C, s);
            CHECK(memcmp(got, want,
                         sizeof(float) * (size_t)(BN_OUT_ARRAYS * n + BN_OUT_CHANNELS * C)) == 0);
            free(got);
        }
        free(want);
        free(x);
        free(g);
        free(w);
        free(b);
    }
    ty_batch_norm_set_isa(TY_ISA_AUTO);
}
