/* conv_bias(x, w, b[, z]) = act(conv2d(x, w) + b (+ z)): MegEngine's ConvBias, the op
 * trace.dump's fusion writes for a convolution followed by its bias, a residual add and an
 * activation. The convolution is conv2d's own forward; the epilogue then runs, row by row
 * over the output while it is in cache, the very elementwise loops the unfused add and
 * activation run, so a fused op gives the bits of the ops it replaces. Inference only. */
#include <string.h>

#include "base/threadpool.h"
#include "ops/conv.h"
#include "ops/op.h"

enum { MODE_IDENTITY = 0, MODE_RELU, MODE_SIGMOID, MODE_HSWISH, MODE_RELU6 };

static const ty_op act_op[] = {
    [MODE_IDENTITY] = TY_OP_COUNT, [MODE_RELU] = TY_OP_RELU, [MODE_SIGMOID] = TY_OP_SIGMOID,
    [MODE_HSWISH] = TY_OP_HSWISH,  [MODE_RELU6] = TY_OP_RELU6,
};

/* conv2d's call for the same x and w (its params are conv_bias's first fields). */
static void
conv_call(const ty_call *c, ty_p_conv *p, ty_call *conv)
{
    const ty_p_conv_bias *q = c->params;
    *p = (ty_p_conv){.stride_h = q->stride_h, .stride_w = q->stride_w, .pad_h = q->pad_h,
                     .pad_w = q->pad_w, .dilate_h = q->dilate_h, .dilate_w = q->dilate_w,
                     .groups = q->groups};
    *conv = (ty_call){TY_OP_CONV2D, p, 2, c->in, 1};
}

static ty_status
check_bias(const ty_tensor *b, const ty_meta *y)
{
    char s1[TY_SHAPE_BUF];
    TY_CHECK(b->ndim == 4 && b->shape[0] == 1 && b->shape[1] == y->shape[1] &&
                 b->shape[2] == 1 && b->shape[3] == 1,
             TY_ERR_SHAPE, "bias must have shape (1, %lld, 1, 1), got %s",
             (long long)y->shape[1], ty_shape_str(b->ndim, b->shape, s1, sizeof s1));
    TY_CHECK(b->dtype == y->dtype, TY_ERR_DTYPE, "bias has dtype %s, the convolution gives %s",
             ty_dtype_name(b->dtype), ty_dtype_name(y->dtype));
    return TY_OK;
}

static ty_status
check_z(const ty_tensor *z, const ty_meta *y)
{
    char s1[TY_SHAPE_BUF], s2[TY_SHAPE_BUF];
    TY_CHECK(z->ndim == 4 && memcmp(z->shape, y->shape, sizeof(int64_t) * 4) == 0, TY_ERR_SHAPE,
             "z must have the output's shape %s, got %s", ty_shape_str(4, y->shape, s1, sizeof s1),
             ty_shape_str(z->ndim, z->shape, s2, sizeof s2));
    TY_CHECK(z->dtype == y->dtype, TY_ERR_DTYPE, "z has dtype %s, the convolution gives %s",
             ty_dtype_name(z->dtype), ty_dtype_name(y->dtype));
    return TY_OK;
}

ty_status
ty_conv_bias_infer(const ty_call *c, ty_meta *out)
{
    TY_CHECK(c->nin == 3 || c->nin == 4, TY_ERR_INVALID_ARG,
             "takes (x, w, b) or (x, w, b, z), got %d inputs", c->nin);
    ty_p_conv p;
    ty_call conv;
    conv_call(c, &p, &conv);
    TY_TRY(ty_conv2d_infer(&conv, out));
    TY_TRY(check_bias(c->in[2], out));
    if (c->nin == 4) {
        TY_TRY(check_z(c->in[3], out));
    }
    return TY_OK;
}

/* The epilogue's loops and operands. */
typedef struct epilogue {
    ty_ew_kernel add, act;
    int has_act;
    const ty_tensor *y, *b, *z;
    int64_t C, H, W;
    size_t es;
} epilogue;

/* Rows (n, c, h) of W outputs in [begin, end): y = act(y + b[c] (+ z)). */
static void
epilogue_rows(void *ctx, int64_t begin, int64_t end)
{
    const epilogue *e = ctx;
    char *y0 = ty_tensor_ptr(e->y);
    const char *b0 = ty_tensor_ptr(e->b), *z0 = e->z ? ty_tensor_ptr(e->z) : NULL;
    for (int64_t r = begin; r < end; r++) {
        int64_t h = r % e->H, c = r / e->H % e->C, n = r / e->H / e->C;
        char *y = y0 + (size_t)(r * e->W) * e->es;
        char *bias = (char *)b0 + (size_t)(c * e->b->strides[1]) * e->es;
        char *p[3] = {y, y, bias};
        int64_t s[3] = {1, 1, 0};
        e->add.loop(e->W, p, s, e->add.pv);
        if (z0) {
            const int64_t *zs = e->z->strides;
            p[2] = (char *)z0 + (size_t)(n * zs[0] + c * zs[1] + h * zs[2]) * e->es;
            s[2] = zs[3];
            e->add.loop(e->W, p, s, e->add.pv);
        }
        if (e->has_act) {
            s[1] = 1;
            e->act.loop(e->W, p, s, e->act.pv);
        }
    }
}

int
ty_conv_bias_runs_fused(const ty_p_conv_bias *q, int nin, ty_dtype ydt)
{
    return nin == 3 &&
           (q->mode == MODE_IDENTITY || q->mode == MODE_RELU || q->mode == MODE_RELU6) &&
           (ydt == TY_FLOAT32 || ydt == TY_FLOAT64);
}

ty_status
ty_conv_bias_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_conv_bias *q = c->params;
    ty_p_conv p;
    ty_call conv;
    conv_call(c, &p, &conv);
    if (ty_conv_bias_runs_fused(q, c->nin, out[0]->dtype)) {
        /* the convolution applies bias and the activation to each block as it finishes it
         * (written once); for these dtypes that gives the bits of the separate loops below */
        ty_conv_act act = q->mode == MODE_RELU    ? TY_CONV_ACT_RELU
                          : q->mode == MODE_RELU6 ? TY_CONV_ACT_RELU6
                                                  : TY_CONV_ACT_NONE;
        return ty_conv2d_forward_fused(&p, c->in[0], c->in[1], c->in[2], act, out[0]);
    }
    TY_TRY(ty_conv2d_forward(&conv, out));
    ty_tensor *y = out[0];
    ty_dtype dt[2] = {y->dtype, y->dtype};
    epilogue e = {.y = y, .b = c->in[2], .z = c->nin == 4 ? c->in[3] : NULL, .C = y->shape[1],
                  .H = y->shape[2], .W = y->shape[3], .es = ty_dtype_size(y->dtype)};
    ty_elemw_kernel(TY_DEVICE_CPU, TY_OP_ADD, NULL, 2, dt, &e.add);
    e.has_act = q->mode != MODE_IDENTITY;
    if (e.has_act) {
        ty_elemw_kernel(TY_DEVICE_CPU, act_op[q->mode], NULL, 1, dt, &e.act);
    }
    TY_CHECK(e.add.loop && e.add.compute == y->dtype &&
                 (!e.has_act || (e.act.loop && e.act.compute == y->dtype)),
             TY_ERR_DTYPE, "dtype %s is not supported", ty_dtype_name(y->dtype));
    int64_t rows = y->shape[0] * e.C * e.H;
    int64_t grain = e.W >= 4096 ? 1 : 4096 / (e.W ? e.W : 1);
    ty_parallel_for(e.W ? rows : 0, grain, epilogue_rows, &e);
    return TY_OK;
}
