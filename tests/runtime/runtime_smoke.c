/* Links libtianyuan_runtime alone (no autodiff, no Python) and runs a small network through
 * the dispatcher: conv2d -> relu -> max_pool2d -> reshape -> matmul. Prints the output, one
 * value a line, for tests/python/test_runtime_lib.py to compare with NumPy. */
#include <stdio.h>

#include "tianyuan/tianyuan.h"

/* (i * step + start) for i in 0..numel-1, in the given shape: deterministic test data. */
static ty_status
ramp(int ndim, const int64_t *shape, double start, double step, ty_tensor **out)
{
    ty_p_arange ap = {.start = 0, .stop = 1, .step = 1, .dtype = TY_FLOAT32};
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    ap.stop = (double)n;
    ty_tensor *a = NULL, *s = NULL, *m = NULL, *b = NULL, *mb = NULL;
    ty_status st = ty_apply(TY_OP_ARANGE, &ap, 0, NULL, 1, &a);
    ty_p_fill fp = {.value = step, .dtype = TY_FLOAT32};
    ty_p_fill bp = {.value = start, .dtype = TY_FLOAT32};
    if (st == TY_OK) {
        st = ty_apply(TY_OP_FILL, &fp, 0, NULL, 1, &s);
    }
    if (st == TY_OK) {
        st = ty_apply(TY_OP_FILL, &bp, 0, NULL, 1, &b);
    }
    if (st == TY_OK) {
        ty_tensor *in[2] = {a, s};
        st = ty_apply(TY_OP_MUL, NULL, 2, in, 1, &m);
    }
    if (st == TY_OK) {
        ty_tensor *in[2] = {m, b};
        st = ty_apply(TY_OP_ADD, NULL, 2, in, 1, &mb);
    }
    ty_p_shape sp = {0};
    sp.shape.n = ndim;
    for (int i = 0; i < ndim; i++) {
        sp.shape.v[i] = shape[i];
    }
    if (st == TY_OK) {
        st = ty_apply(TY_OP_RESHAPE, &sp, 1, &mb, 1, out);
    }
    ty_tensor_release(a);
    ty_tensor_release(s);
    ty_tensor_release(b);
    ty_tensor_release(m);
    ty_tensor_release(mb);
    return st;
}

static ty_status
network(ty_tensor **out)
{
    int64_t xs[4] = {2, 1, 6, 6}, ws[4] = {3, 1, 3, 3}, w2s[2] = {12, 4};
    ty_tensor *x = NULL, *w = NULL, *w2 = NULL, *c = NULL, *r = NULL, *p = NULL, *f = NULL;
    ty_status st = ramp(4, xs, -0.3, 0.01, &x);
    if (st == TY_OK) {
        st = ramp(4, ws, 0.4, -0.03, &w);
    }
    if (st == TY_OK) {
        st = ramp(2, w2s, -0.5, 0.02, &w2);
    }
    ty_p_conv cp = {.stride_h = 1, .stride_w = 1, .dilate_h = 1, .dilate_w = 1, .groups = 1};
    ty_tensor *cin[2] = {x, w};
    if (st == TY_OK) {
        st = ty_apply(TY_OP_CONV2D, &cp, 2, cin, 1, &c); /* (2, 3, 4, 4) */
    }
    if (st == TY_OK) {
        st = ty_apply(TY_OP_RELU, NULL, 1, &c, 1, &r);
    }
    ty_p_pool pp = {.kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2};
    if (st == TY_OK) {
        st = ty_apply(TY_OP_MAX_POOL2D, &pp, 1, &r, 1, &p); /* (2, 3, 2, 2) */
    }
    ty_p_shape sp = {0};
    sp.shape.n = 2;
    sp.shape.v[0] = 2;
    sp.shape.v[1] = 12;
    if (st == TY_OK) {
        st = ty_apply(TY_OP_RESHAPE, &sp, 1, &p, 1, &f);
    }
    ty_tensor *min[2] = {f, w2};
    if (st == TY_OK) {
        st = ty_apply(TY_OP_MATMUL, NULL, 2, min, 1, out); /* (2, 4) */
    }
    ty_tensor *all[7] = {x, w, w2, c, r, p, f};
    for (int i = 0; i < 7; i++) {
        ty_tensor_release(all[i]);
    }
    return st;
}

int
main(void)
{
    ty_tensor *y = NULL;
    ty_status st = network(&y);
    if (st != TY_OK) {
        fprintf(stderr, "runtime_smoke: %s\n", ty_last_error());
        return 1;
    }
    float v[8];
    st = ty_tensor_copy_to(y, v, sizeof v);
    ty_tensor_release(y);
    if (st != TY_OK) {
        fprintf(stderr, "runtime_smoke: %s\n", ty_last_error());
        return 1;
    }
    for (int i = 0; i < 8; i++) {
        printf("%.9g\n", (double)v[i]);
    }
    return 0;
}
