/* Fused nn ops: softmax and log_softmax along one axis, and softmax's gradient.
 *
 * Fused because the composite form (max, sub, exp, sum, div) makes four passes and three
 * temporaries; here each row is read twice and written once, and the max shift that keeps
 * exp finite is built in. float32 runs the vector kernels of kernels/cpu/softmax.c.
 * Gradients are written with ops, so they stay traceable; the first-order gradients are one
 * op each, softmax_backward (mul, sum, sub, mul in one pass per row) and log_softmax_backward
 * (sum, exp, mul, sub). */
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/softmax.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

/* A contiguous tensor seen as (outer, n, inner) around the softmax axis. */
typedef struct sm_ctx {
    const void *x;
    void *y;
    int64_t n, inner;
    int log; /* 1: log_softmax */
} sm_ctx;

static void
split_axis(const ty_tensor *x, int axis, int64_t *n, int64_t *inner)
{
    *n = x->ndim == 0 ? 1 : x->shape[axis];
    *inner = 1;
    for (int d = axis + 1; d < x->ndim; d++) {
        *inner *= x->shape[d];
    }
}

static void
rows_f64(void *vctx, int64_t begin, int64_t end)
{
    const sm_ctx *c = vctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t base = (r / c->inner) * c->n * c->inner + r % c->inner, s = c->inner;
        const double *x = (const double *)c->x + base;
        double *y = (double *)c->y + base;
        double m = x[0], sum = 0.0;
        for (int64_t k = 1; k < c->n; k++) {
            m = x[k * s] > m ? x[k * s] : m;
        }
        for (int64_t k = 0; k < c->n; k++) {
            double e = exp(x[k * s] - m);
            sum += e;
            y[k * s] = c->log ? x[k * s] - m : e;
        }
        double adj = c->log ? log(sum) : 1.0 / sum;
        for (int64_t k = 0; k < c->n; k++) {
            y[k * s] = c->log ? y[k * s] - adj : y[k * s] * adj;
        }
    }
}

ty_status
ty_softmax_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    const ty_p_axis *p = c->params;
    int a;
    TY_CHECK(ty_dtype_is_float(x->dtype), TY_ERR_DTYPE, "expects a float tensor, got %s",
             ty_dtype_name(x->dtype));
    TY_TRY(ty_norm_axis(p->axis, x->ndim, &a));
    ty_meta_of(x, out);
    return TY_OK;
}

/* Runs the kernel on contiguous x (float32/float64) into contiguous y of the same dtype. */
static void
run_rows(const ty_tensor *x, ty_tensor *y, int axis, int log_out)
{
    sm_ctx sc = {.x = ty_tensor_ptr(x), .y = ty_tensor_ptr(y), .log = log_out};
    split_axis(x, axis, &sc.n, &sc.inner);
    if (sc.n == 0 || ty_tensor_numel(x) == 0) {
        return;
    }
    int64_t rows = ty_tensor_numel(x) / sc.n;
    if (x->dtype == TY_FLOAT32) {
        ty_softmax_f32(sc.x, sc.y, rows / sc.inner, sc.n, sc.inner, log_out);
        return;
    }
    ty_parallel_for(rows, (1 << 14) / sc.n + 1, rows_f64, &sc);
}

ty_status
ty_softmax_forward(const ty_call *c, ty_tensor **out)
{
    ty_status status = TY_OK;
    ty_tensor *x = c->in[0], *xc = NULL, *tmp = NULL;
    int a;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x->ndim, &a));
    int log_out = c->op == TY_OP_LOG_SOFTMAX;
    if (x->dtype == TY_FLOAT32 || x->dtype == TY_FLOAT64) {
        TY_TRY(ty_contiguous(x, &xc));
        run_rows(xc, out[0], a, log_out);
        ty_tensor_release(xc);
        return TY_OK;
    }
    /* half types compute in float32, then round once into the output */
    TY_TRY_GOTO(ty_strided_cast(x, TY_FLOAT32, &xc));
    TY_TRY_GOTO(ty_contiguous(xc, &tmp));
    ty_tensor_release(xc);
    xc = tmp;
    TY_TRY_GOTO(ty_tensor_new_like_meta(TY_FLOAT32, x->ndim, x->shape, &tmp));
    run_rows(xc, tmp, a, log_out);
    TY_TRY_GOTO(ty_strided_copy(out[0], tmp));
fail:
    ty_tensor_release(xc);
    ty_tensor_release(tmp);
    return status;
}

static int
same_shape(const ty_tensor *a, const ty_tensor *b)
{
    if (a->ndim != b->ndim) {
        return 0;
    }
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] != b->shape[d]) {
            return 0;
        }
    }
    return 1;
}

/* sum over the softmax axis, keeping it (for broadcasting back). */
static ty_tensor *
sum_axis(ty_gk *k, const ty_call *c, ty_tensor *t)
{
    ty_p_reduce rp = {.keepdims = 1};
    rp.axes.n = 1;
    rp.axes.v[0] = ((const ty_p_axis *)c->params)->axis;
    return gk_apply(k, TY_OP_SUM, &rp, 1, t, NULL, NULL);
}

/* y = softmax(x): dx = y * (g - sum(g * y)), one op unless the backward is recorded. */
ty_status
ty_grad_softmax(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    ty_gk k = {0};
    ty_tensor *y = out[0], *g = gout[0];
    if (!ty_grad_recorded() && g->dtype == y->dtype && same_shape(g, y)) {
        ty_tensor *in[2] = {y, g};
        gin[0] = NULL;
        return ty_apply(TY_OP_SOFTMAX_BACKWARD, c->params, 2, in, 1, &gin[0]);
    }
    ty_tensor *r = MUL(y, SUB(g, sum_axis(&k, c, MUL(g, y))));
    return gk_finish(&k, r, &gin[0]);
}

/* y = log_softmax(x): dx = g - exp(y) * sum(g), one op unless the backward is recorded. */
ty_status
ty_grad_log_softmax(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                    ty_tensor **gin)
{
    ty_gk k = {0};
    ty_tensor *y = out[0], *g = gout[0];
    if (!ty_grad_recorded() && g->dtype == y->dtype && same_shape(g, y)) {
        ty_tensor *in[2] = {y, g};
        gin[0] = NULL;
        return ty_apply(TY_OP_LOG_SOFTMAX_BACKWARD, c->params, 2, in, 1, &gin[0]);
    }
    ty_tensor *r = SUB(g, MUL(GK1(EXP, y), sum_axis(&k, c, g)));
    return gk_finish(&k, r, &gin[0]);
}

/* ---- softmax_backward(y, g): dx = y * (g - sum(g * y)), the sum in double ----
 * ---- log_softmax_backward(y, g): dx = g - exp(y) * sum(g) ---- */
typedef struct smb_ctx {
    const void *y, *g;
    void *dx;
    int64_t n, inner;
    int log; /* log_softmax_backward */
} smb_ctx;

static void
back_rows_f64(void *vctx, int64_t begin, int64_t end)
{
    const smb_ctx *c = vctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t base = (r / c->inner) * c->n * c->inner + r % c->inner, s = c->inner;
        const double *y = (const double *)c->y + base, *g = (const double *)c->g + base;
        double *dx = (double *)c->dx + base, sum = 0.0;
        for (int64_t k = 0; k < c->n; k++) {
            sum += c->log ? g[k * s] : g[k * s] * y[k * s];
        }
        for (int64_t k = 0; k < c->n; k++) {
            dx[k * s] = c->log ? g[k * s] - exp(y[k * s]) * sum : y[k * s] * (g[k * s] - sum);
        }
    }
}

ty_status
ty_softmax_backward_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *y = c->in[0], *g = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    int a;
    TY_CHECK(ty_dtype_is_float(y->dtype), TY_ERR_DTYPE, "expects a float tensor, got %s",
             ty_dtype_name(y->dtype));
    TY_CHECK(g->dtype == y->dtype && same_shape(g, y), TY_ERR_SHAPE,
             "output gradient must be a %s tensor of the output's shape %s, got %s %s",
             ty_dtype_name(y->dtype), ty_shape_str(y->ndim, y->shape, b1, sizeof b1),
             ty_dtype_name(g->dtype), ty_shape_str(g->ndim, g->shape, b2, sizeof b2));
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, y->ndim, &a));
    ty_meta_of(y, out);
    return TY_OK;
}

/* contiguous y, g of one dtype (float32/float64) into contiguous dx */
static void
run_back_rows(const ty_tensor *y, const ty_tensor *g, ty_tensor *dx, int axis, int log)
{
    smb_ctx bc = {.y = ty_tensor_ptr(y), .g = ty_tensor_ptr(g), .dx = ty_tensor_ptr(dx),
                  .log = log};
    split_axis(y, axis, &bc.n, &bc.inner);
    if (bc.n == 0 || ty_tensor_numel(y) == 0) {
        return;
    }
    int64_t rows = ty_tensor_numel(y) / bc.n;
    if (y->dtype == TY_FLOAT32) {
        ty_softmax_backward_f32(bc.y, bc.g, bc.dx, rows / bc.inner, bc.n, bc.inner, log);
        return;
    }
    ty_parallel_for(rows, (1 << 14) / bc.n + 1, back_rows_f64, &bc);
}

ty_status
ty_softmax_backward_forward(const ty_call *c, ty_tensor **out)
{
    ty_status status = TY_OK;
    ty_tensor *t[2] = {NULL, NULL}, *tmp = NULL;
    int a;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, c->in[0]->ndim, &a));
    int native = c->in[0]->dtype == TY_FLOAT32 || c->in[0]->dtype == TY_FLOAT64;
    for (int i = 0; i < 2; i++) { /* half types compute in float32, rounded once at the end */
        ty_tensor *src = c->in[i];
        if (!native) {
            TY_TRY_GOTO(ty_strided_cast(c->in[i], TY_FLOAT32, &tmp));
            src = tmp;
        }
        TY_TRY_GOTO(ty_contiguous(src, &t[i]));
        ty_tensor_release(tmp);
        tmp = NULL;
    }
    int log = c->op == TY_OP_LOG_SOFTMAX_BACKWARD;
    if (native) {
        run_back_rows(t[0], t[1], out[0], a, log);
    } else {
        TY_TRY_GOTO(ty_tensor_new_like_meta(TY_FLOAT32, t[0]->ndim, t[0]->shape, &tmp));
        run_back_rows(t[0], t[1], tmp, a, log);
        TY_TRY_GOTO(ty_strided_copy(out[0], tmp));
    }
fail:
    ty_tensor_release(t[0]);
    ty_tensor_release(t[1]);
    ty_tensor_release(tmp);
    return status;
}
