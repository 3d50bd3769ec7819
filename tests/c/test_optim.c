/* ty_sgd_fused_update: the same bits as the SGD update applied op by op. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

enum { SGD_N = 40001 }; /* odd, and more than one chunk of the thread pool */

static ty_tensor *
random_vec(void)
{
    static float v[SGD_N];
    int64_t n = SGD_N;
    for (int i = 0; i < SGD_N; i++) {
        v[i] = (float)((double)ty_test_rand_bits() / 9007199254740992.0 * 4.0 - 2.0);
    }
    ty_tensor *t = NULL;
    return ty_tensor_from_data(TY_FLOAT32, 1, &n, v, sizeof v, &t) == TY_OK ? t : NULL;
}

static ty_tensor *
scalar(double v)
{
    ty_tensor *t = NULL;
    return ty_tensor_full(TY_FLOAT32, 0, NULL, v, &t) == TY_OK ? t : NULL;
}

enum { REL_A = 1, REL_B = 2 };

/* a op b, releasing the inputs named in `release` (the reference's temporaries) */
static ty_tensor *
op2(ty_op op, ty_tensor *a, ty_tensor *b, int release)
{
    ty_tensor *in[2] = {a, b}, *out = NULL;
    if (ty_apply(op, NULL, 2, in, 1, &out) != TY_OK) {
        out = NULL;
    }
    if (release & REL_A) {
        ty_tensor_release(a);
    }
    if (release & REL_B) {
        ty_tensor_release(b);
    }
    return out;
}

static int
same_bits(const ty_tensor *a, const ty_tensor *b)
{
    return a && b && memcmp(ty_tensor_data(a), ty_tensor_data(b), sizeof(float) * SGD_N) == 0;
}

TEST(sgd_fused_update_matches_the_ops_bitwise)
{
    ty_tensor *lr = scalar(0.0123), *wd = scalar(5e-4), *mom = scalar(0.9);
    ty_tensor *p = random_vec(), *g = random_vec(), *buf = NULL, *zeros = NULL;
    int64_t n = SGD_N;
    REQUIRE(lr && wd && mom && p && g);
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 1, &n, 0.0, &buf));
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 1, &n, 0.0, &zeros));
    ty_tensor *ref_p = op2(TY_OP_ADD, p, zeros, 0), *ref_v = op2(TY_OP_ADD, zeros, zeros, 0);
    ty_ad_suspend(1);
    for (int step = 0; step < 3; step++) {
        int nesterov = step == 2, done = 0;
        CHECK_OK(ty_sgd_fused_update(p, g, buf, lr, wd, mom, nesterov, &done));
        CHECK(done);
        ty_tensor *d = op2(TY_OP_ADD, g, op2(TY_OP_MUL, ref_p, wd, 0), REL_B);
        ref_v = op2(TY_OP_ADD, op2(TY_OP_MUL, ref_v, mom, REL_A), d, REL_A);
        ty_tensor *upd =
            nesterov ? op2(TY_OP_ADD, d, op2(TY_OP_MUL, ref_v, mom, 0), REL_B) : ref_v;
        ref_p = op2(TY_OP_SUB, ref_p, op2(TY_OP_MUL, lr, upd, 0), REL_A | REL_B);
        if (upd != ref_v) {
            ty_tensor_release(upd);
        }
        ty_tensor_release(d);
        CHECK(same_bits(p, ref_p));
        CHECK(same_bits(buf, ref_v));
    }
    ty_ad_suspend(0);
    ty_tensor *all[] = {lr, wd, mom, p, g, buf, zeros, ref_p, ref_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        ty_tensor_release(all[i]);
    }
}

TEST(sgd_fused_update_declines_what_it_does_not_cover)
{
    int64_t n = 4;
    ty_tensor *lr = scalar(0.1), *mom = scalar(0.9), *p = NULL, *g = NULL;
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 1, &n, 1.0, &p));
    CHECK_OK(ty_tensor_full(TY_FLOAT64, 1, &n, 1.0, &g));
    int done = 1;
    CHECK_OK(ty_sgd_fused_update(p, g, NULL, lr, NULL, mom, 0, &done));
    CHECK(!done);
    CHECK(((const float *)ty_tensor_data(p))[0] == 1.0f);
    CHECK(ty_sgd_fused_update(p, NULL, NULL, lr, NULL, mom, 0, &done) == TY_ERR_INVALID_ARG);
    ty_tensor_release(lr);
    ty_tensor_release(mom);
    ty_tensor_release(p);
    ty_tensor_release(g);
}
