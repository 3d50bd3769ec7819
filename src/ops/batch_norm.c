/* batch_norm_train(x, w, b) -> (y, mean, var): batch normalisation with the batch statistics,
 * fused (kernels/cpu/batch_norm.h), and batch_norm_train_backward(g, x, mean, var, w) ->
 * (dx, dw, db), its gradient in one kernel. x is (N, C, ...); w and b hold one value per channel,
 * shaped (1, C, 1, ...) like x's rank; mean and var (the biased variance) come out in that
 * shape. y = (x - mean) / sqrt(var + eps) * w + b.
 *
 * Fused because the composite form (mean, sub, square, mean, add, sqrt, div, mul, add) makes
 * seven passes and six temporaries over x forward, and about twice that backward; here a
 * channel is read twice and written once. The gradient, dx = w r (g - sum(g)/M - xhat
 * sum(g xhat)/M) with r = 1/sqrt(var + eps), xhat = (x - mean) r and M the values per channel,
 * is the fused backward op; when the backward is itself recorded (a higher-order gradient),
 * it is written with ops instead, which are twice differentiable (the fused op has no
 * gradient). Gradients reaching mean (1/M each) or var (2 (x - mean)/M) are added with ops. */
#include <string.h>

#include "kernels/cpu/batch_norm.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

static const char *const bn_names[] = {"weight", "bias"};
static const char *const bnb_names[] = {"output gradient", "mean", "variance", "weight"};

/* x (N, C, S...) and inputs c->in[first + i] named names[i], i < n, of x's float dtype: the
 * first nfull of x's shape, the others per channel, (1, C, 1, ...). */
static ty_status
check_inputs(const ty_call *c, const ty_tensor *x, int first, int n, int nfull,
             const char *const *names)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(x->ndim >= 2, TY_ERR_SHAPE, "expects an (N, C, ...) input, got shape %s",
             ty_shape_str(x->ndim, x->shape, b1, sizeof b1));
    TY_CHECK(x->dtype == TY_FLOAT32 || x->dtype == TY_FLOAT64, TY_ERR_DTYPE,
             "input must be float32 or float64, got %s", ty_dtype_name(x->dtype));
    for (int i = 0; i < n; i++) {
        const ty_tensor *t = c->in[first + i];
        int full = i < nfull;
        int ok = t->ndim == x->ndim && t->dtype == x->dtype;
        for (int d = 0; ok && d < t->ndim; d++) {
            ok = t->shape[d] == (full || d == 1 ? x->shape[d] : 1);
        }
        TY_CHECK(ok || !full, TY_ERR_SHAPE, "%s must be a %s tensor of the input's shape %s, got "
                 "%s %s", names[i], ty_dtype_name(x->dtype),
                 ty_shape_str(x->ndim, x->shape, b1, sizeof b1), ty_dtype_name(t->dtype),
                 ty_shape_str(t->ndim, t->shape, b2, sizeof b2));
        TY_CHECK(ok, TY_ERR_SHAPE, "%s must be a %s tensor of shape (1, %lld, 1, ...) for input "
                 "%s, got %s %s", names[i], ty_dtype_name(x->dtype), (long long)x->shape[1],
                 ty_shape_str(x->ndim, x->shape, b1, sizeof b1), ty_dtype_name(t->dtype),
                 ty_shape_str(t->ndim, t->shape, b2, sizeof b2));
    }
    return TY_OK;
}

/* (N, C, S) of x, S the product of the dims past 1; fails when a channel has no values. */
static ty_status
channel_dims(const ty_tensor *x, int64_t *N, int64_t *C, int64_t *S)
{
    *N = x->shape[0];
    *C = x->shape[1];
    *S = 1;
    for (int d = 2; d < x->ndim; d++) {
        *S *= x->shape[d];
    }
    TY_CHECK(*N * *S > 0 || *C == 0, TY_ERR_SHAPE,
             "needs at least one value per channel, got %lld", (long long)(*N * *S));
    return TY_OK;
}

ty_status
ty_batch_norm_train_infer(const ty_call *c, ty_meta *out)
{
    TY_TRY(check_inputs(c, c->in[0], 1, 2, 0, bn_names));
    ty_meta_of(c->in[0], &out[0]);
    ty_meta_of(c->in[1], &out[1]);
    ty_meta_of(c->in[1], &out[2]);
    return TY_OK;
}

ty_status
ty_batch_norm_train_forward(const ty_call *c, ty_tensor **out)
{
    int64_t N, C, S;
    TY_TRY(channel_dims(c->in[0], &N, &C, &S));
    if (C == 0) {
        return TY_OK;
    }
    ty_tensor *x = NULL, *w = NULL, *b = NULL;
    ty_status status = TY_OK;
    double eps = ((const ty_p_batch_norm *)c->params)->eps;
    TY_TRY_GOTO(ty_contiguous(c->in[0], &x));
    TY_TRY_GOTO(ty_contiguous(c->in[1], &w));
    TY_TRY_GOTO(ty_contiguous(c->in[2], &b));
    if (x->dtype == TY_FLOAT32) {
        ty_batch_norm_train_f32((const float *)ty_tensor_ptr(x), N, C, S,
                                (const float *)ty_tensor_ptr(w), (const float *)ty_tensor_ptr(b),
                                eps, (float *)ty_tensor_ptr(out[0]), (float *)ty_tensor_ptr(out[1]),
                                (float *)ty_tensor_ptr(out[2]));
    } else {
        ty_batch_norm_train_f64((const double *)ty_tensor_ptr(x), N, C, S,
                                (const double *)ty_tensor_ptr(w),
                                (const double *)ty_tensor_ptr(b), eps,
                                (double *)ty_tensor_ptr(out[0]), (double *)ty_tensor_ptr(out[1]),
                                (double *)ty_tensor_ptr(out[2]));
    }
fail:
    ty_tensor_release(x);
    ty_tensor_release(w);
    ty_tensor_release(b);
    return status;
}

/* sum of t over every axis but 1, kept as (1, C, 1, ...) */
static ty_tensor *
channel_sum(ty_gk *k, ty_tensor *t)
{
    ty_p_reduce rp = {.keepdims = 1};
    if (!t) {
        return NULL;
    }
    for (int d = 0; d < t->ndim; d++) {
        if (d != 1) {
            rp.axes.v[rp.axes.n++] = d;
        }
    }
    return gk_apply(k, TY_OP_SUM, &rp, 1, t, NULL, NULL);
}

ty_status
ty_grad_batch_norm_train(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                         ty_tensor **gin)
{
    ty_gk k = {0};
    ty_tensor *x = c->in[0], *w = c->in[1], *mean = out[1], *var = out[2];
    ty_tensor *g = gout[0], *gmean = gout[1], *gvar = gout[2];
    ty_tensor *dx = NULL, *dw = NULL, *db = NULL;
    double eps = ((const ty_p_batch_norm *)c->params)->eps;
    double m = x->shape[1] > 0 ? (double)ty_tensor_numel(x) / (double)x->shape[1] : 1.0;
    ty_tensor *d = NULL;
    if (g && !ty_grad_recorded()) {
        ty_p_batch_norm p = {.eps = eps};
        ty_tensor *in[5] = {g, x, mean, var, w}, *res[3] = {NULL, NULL, NULL};
        k.st = ty_apply(TY_OP_BATCH_NORM_TRAIN_BACKWARD, &p, 5, in, 3, res);
        for (int i = 0; i < 3 && k.st == TY_OK; i++) {
            k.tmp[k.n++] = res[i]; /* released by gk_finish */
        }
        dx = res[0];
        dw = res[1];
        db = res[2];
        g = NULL; /* done */
    }
    if (gmean || gvar || g) {
        d = SUB(x, mean);
    }
    if (g && ty_grad_wanted(0)) {
        ty_tensor *r = DIV(C(var, 1.0), GK1(SQRT, ADD(var, C(var, eps))));
        ty_tensor *xhat = MUL(d, r);
        db = channel_sum(&k, g);
        dw = channel_sum(&k, MUL(g, xhat));
        ty_tensor *centred = SUB(SUB(g, MUL(db, C(db, 1.0 / m))),
                                 MUL(xhat, MUL(dw, C(dw, 1.0 / m))));
        dx = MUL(MUL(w, r), centred);
    } else if (g) { /* only the affine parameters' gradients */
        ty_tensor *r = DIV(C(var, 1.0), GK1(SQRT, ADD(var, C(var, eps))));
        db = channel_sum(&k, g);
        dw = channel_sum(&k, MUL(g, MUL(d, r)));
    }
    if (gmean) {
        ty_tensor *t = MUL(gmean, C(gmean, 1.0 / m));
        dx = dx ? ADD(dx, t) : ADD(MUL(d, C(d, 0.0)), t); /* broadcast to x's shape */
    }
    if (gvar) {
        ty_tensor *t = MUL(d, MUL(gvar, C(gvar, 2.0 / m)));
        dx = dx ? ADD(dx, t) : t;
    }
    gin[0] = gin[1] = gin[2] = NULL;
    if (k.st == TY_OK) {
        ty_tensor *res[3] = {ty_grad_wanted(0) ? dx : NULL, ty_grad_wanted(1) ? dw : NULL,
                             ty_grad_wanted(2) ? db : NULL};
        for (int i = 0; i < 3; i++) {
            if (res[i]) {
                ty_tensor_retain(res[i]);
                gin[i] = res[i];
            }
        }
    }
    return gk_finish(&k, NULL, &gin[0]);
}

/* ---- batch_norm_train_backward(g, x, mean, var, w) -> (dx, dw, db) and
 * batch_norm_train_relu_backward(g, relu_y, x, mean, var, w), its form that first masks g
 * where the relu output relu_y is not > 0. `full` is the number of inputs of x's shape before
 * mean (2 or 3). ---- */
static const char *const bnrb_names[] = {"output gradient", "relu output"};

static ty_status
bn_backward_infer(const ty_call *c, int full, ty_meta *out)
{
    const ty_tensor *x = c->in[full - 1];
    TY_TRY(check_inputs(c, x, 0, full - 1, full - 1, full == 2 ? bnb_names : bnrb_names));
    TY_TRY(check_inputs(c, x, full, 3, 0, bnb_names + 1));
    ty_meta_of(x, &out[0]);
    ty_meta_of(c->in[full + 2], &out[1]);
    ty_meta_of(c->in[full + 2], &out[2]);
    return TY_OK;
}

ty_status
ty_batch_norm_train_backward_infer(const ty_call *c, ty_meta *out)
{
    return bn_backward_infer(c, 2, out);
}

ty_status
ty_batch_norm_train_relu_backward_infer(const ty_call *c, ty_meta *out)
{
    return bn_backward_infer(c, 3, out);
}

#define BN_PTR(T, t) ((const T *)((t) ? ty_tensor_ptr(t) : NULL))

static ty_status
bn_backward_forward(const ty_call *c, int full, ty_tensor **out)
{
    int64_t N, C, S;
    TY_TRY(channel_dims(c->in[full - 1], &N, &C, &S));
    if (C == 0) {
        return TY_OK;
    }
    ty_tensor *t[6] = {NULL};
    ty_status status = TY_OK;
    double eps = ((const ty_p_batch_norm *)c->params)->eps;
    for (int i = 0; i < full + 3; i++) {
        TY_TRY_GOTO(ty_contiguous(c->in[i], &t[i]));
    }
    ty_tensor *g = t[0], *relu_y = full == 3 ? t[1] : NULL, *x = t[full - 1];
    ty_tensor *mean = t[full], *var = t[full + 1], *w = t[full + 2];
    if (x->dtype == TY_FLOAT32) {
        ty_batch_norm_train_relu_backward_f32(
            BN_PTR(float, g), BN_PTR(float, relu_y), BN_PTR(float, x), N, C, S,
            BN_PTR(float, mean), BN_PTR(float, var), BN_PTR(float, w), eps,
            (float *)ty_tensor_ptr(out[0]), (float *)ty_tensor_ptr(out[1]),
            (float *)ty_tensor_ptr(out[2]));
    } else {
        ty_batch_norm_train_relu_backward_f64(
            BN_PTR(double, g), BN_PTR(double, relu_y), BN_PTR(double, x), N, C, S,
            BN_PTR(double, mean), BN_PTR(double, var), BN_PTR(double, w), eps,
            (double *)ty_tensor_ptr(out[0]), (double *)ty_tensor_ptr(out[1]),
            (double *)ty_tensor_ptr(out[2]));
    }
fail:
    for (int i = 0; i < 6; i++) {
        ty_tensor_release(t[i]);
    }
    return status;
}

ty_status
ty_batch_norm_train_backward_forward(const ty_call *c, ty_tensor **out)
{
    return bn_backward_forward(c, 2, out);
}

ty_status
ty_batch_norm_train_relu_backward_forward(const ty_call *c, ty_tensor **out)
{
    return bn_backward_forward(c, 3, out);
}
