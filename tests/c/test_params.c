/* ty_apply checks arity and every params field against its params.def range before any
 * family code runs: C callers get the same protection as Python. */
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

static int
err_has(const char *needle)
{
    return strstr(ty_last_error(), needle) != NULL;
}

static ty_tensor *
make23(void)
{
    int64_t s[2] = {2, 3};
    ty_tensor *t = NULL;
    return ty_tensor_full(TY_FLOAT32, 2, s, 1, &t) == TY_OK ? t : NULL;
}

TEST(params_list_length_is_checked)
{
    ty_tensor *a = make23(), *r = NULL;
    REQUIRE(a);
    ty_p_reduce rp = {0};
    rp.axes.n = TY_LIST_MAX + 1; /* a C caller overrunning the list */
    CHECK(ty_apply(TY_OP_SUM, &rp, 1, &a, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("sum: ") && err_has("'axes' has 17 entries"));
    rp.axes.n = -5;
    CHECK(ty_apply(TY_OP_SUM, &rp, 1, &a, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("'axes' has -5 entries"));
    CHECK(r == NULL);
    ty_tensor_release(a);
}

TEST(params_ranges_are_checked)
{
    ty_tensor *a = make23(), *r = NULL;
    REQUIRE(a);
    ty_p_reduce rp = {0};
    rp.axes.n = 1;
    rp.axes.v[0] = INT64_MIN;
    CHECK(ty_apply(TY_OP_SUM, &rp, 1, &a, 1, &r) == TY_ERR_INDEX);
    CHECK(err_has("out of range"));
    rp.axes.v[0] = 0;
    rp.keepdims = 7;
    CHECK(ty_apply(TY_OP_SUM, &rp, 1, &a, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("'keepdims' must be in [0, 1], got 7"));
    ty_p_astype tp = {.dtype = 1000};
    CHECK(ty_apply(TY_OP_ASTYPE, &tp, 1, &a, 1, &r) == TY_ERR_DTYPE);
    CHECK(err_has("astype: invalid dtype code 1000"));
    ty_p_shape sp = {0};
    sp.shape.n = 2;
    sp.shape.v[0] = -7;
    sp.shape.v[1] = 3;
    CHECK(ty_apply(TY_OP_RESHAPE, &sp, 1, &a, 1, &r) == TY_ERR_SHAPE);
    CHECK(err_has("negative dimension -7") && err_has("(-7, 3)"));
    CHECK(r == NULL);
    ty_tensor_release(a);
}

TEST(params_conv_and_pool_geometry_is_checked)
{
    int64_t xs[4] = {1, 1, 4, 4}, ws[4] = {1, 1, 3, 3};
    ty_tensor *in[2] = {NULL, NULL}, *r = NULL;
    REQUIRE(ty_tensor_full(TY_FLOAT32, 4, xs, 1, &in[0]) == TY_OK);
    REQUIRE(ty_tensor_full(TY_FLOAT32, 4, ws, 1, &in[1]) == TY_OK);
    ty_p_conv cp = {.stride_h = 0, .stride_w = 1, .dilate_h = 1, .dilate_w = 1, .groups = 1};
    CHECK(ty_apply(TY_OP_CONV2D, &cp, 2, in, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("conv2d: param 'stride_h' must be >= 1, got 0"));
    cp.stride_h = 1;
    cp.groups = -2;
    CHECK(ty_apply(TY_OP_CONV2D, &cp, 2, in, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("'groups'"));
    ty_p_pool pp = {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2, .pad_h = -1};
    CHECK(ty_apply(TY_OP_MAX_POOL2D, &pp, 1, in, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("max_pool2d: param 'pad_h'"));
    pp.pad_h = 0;
    pp.mode = 9;
    CHECK(ty_apply(TY_OP_AVG_POOL2D, &pp, 1, in, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("'mode' must be in [0, 1], got 9"));
    CHECK(r == NULL);
    ty_tensor_release(in[0]);
    ty_tensor_release(in[1]);
}

TEST(params_floats_are_checked)
{
    ty_tensor *r = NULL;
    ty_p_arange ap = {.start = 0, .stop = NAN, .step = 1, .dtype = TY_FLOAT32};
    CHECK(ty_apply(TY_OP_ARANGE, &ap, 0, NULL, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("arange: param 'stop' is NaN"));
    ap.stop = INFINITY;
    CHECK(ty_apply(TY_OP_ARANGE, &ap, 0, NULL, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("'stop' is inf"));
    /* NaN is a meaningful fill value: an unbounded range allows it */
    ty_p_fill fp = {.value = NAN, .dtype = TY_FLOAT32};
    fp.shape.n = 1;
    fp.shape.v[0] = 2;
    REQUIRE(ty_apply(TY_OP_FILL, &fp, 0, NULL, 1, &r) == TY_OK);
    CHECK(isnan(((float *)ty_tensor_data(r))[1]));
    ty_tensor_release(r);
    r = NULL;
    /* an integer fill value the dtype cannot hold is refused, never saturated */
    fp.value = 1e12;
    fp.dtype = TY_INT32;
    CHECK(ty_apply(TY_OP_FILL, &fp, 0, NULL, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("fill: value 1000000000000 does not fit int32"));
    fp.value = -129;
    fp.dtype = TY_INT8;
    CHECK(ty_apply(TY_OP_FILL, &fp, 0, NULL, 1, &r) == TY_ERR_INVALID_ARG);
    fp.value = 255;
    fp.dtype = TY_UINT8;
    REQUIRE(ty_apply(TY_OP_FILL, &fp, 0, NULL, 1, &r) == TY_OK);
    CHECK(((uint8_t *)ty_tensor_data(r))[0] == 255);
    ty_tensor_release(r);
}

TEST(apply_checks_arity)
{
    ty_tensor *a = make23(), *r = NULL, *outs[2] = {NULL, NULL};
    REQUIRE(a);
    ty_tensor *in2[2] = {a, a};
    CHECK(ty_apply(TY_OP_NEG, NULL, 2, in2, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(err_has("neg: expected 1 inputs, got 2"));
    CHECK(ty_apply(TY_OP_NEG, NULL, -1, in2, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(ty_apply(TY_OP_CONCAT, NULL, 0, in2, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(ty_apply(TY_OP_NEG, NULL, 1, &a, 2, outs) == TY_ERR_INVALID_ARG);
    CHECK(ty_apply(TY_OP_SPLIT, NULL, 1, &a, 100000, outs) == TY_ERR_INVALID_ARG);
    CHECK(ty_apply(TY_OP_SPLIT, NULL, 1, &a, -3, outs) == TY_ERR_INVALID_ARG);
    CHECK(ty_apply((ty_op)TY_OP_COUNT, NULL, 1, &a, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(ty_apply(TY_OP_NEG, NULL, 1, NULL, 1, &r) == TY_ERR_INVALID_ARG);
    CHECK(r == NULL && outs[0] == NULL && outs[1] == NULL);
    ty_tensor_release(a);
}
