/* Scan family: cumsum, the running sum along an axis (in place over a copy of the input,
 * strips of rows in parallel). */
#include "base/threadpool.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

ty_status
ty_cumsum_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    int axis;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x->ndim, &axis));
    ty_meta_of(x, out);
    if (x->dtype == TY_BOOL) {
        out->dtype = TY_INT32;
    }
    return TY_OK;
}

typedef struct cumsum_ctx {
    char *y;
    int64_t len, inner, chunk, nchunk;
    size_t es;
    ty_dtype dt;
} cumsum_ctx;

/* An exact 8/16-bit integer sum wrapped into its dtype (NumPy's int64 sum narrowed). */
static double
wrap_small_int(double v, ty_dtype dt)
{
    int64_t i = (int64_t)v;
    return dt == TY_INT8 ? (int8_t)i : dt == TY_UINT8 ? (uint8_t)i : (double)(int16_t)i;
}

/* In place: row t += row t-1 over one (outer, inner chunk) strip. */
static void
cumsum_range(void *vctx, int64_t begin, int64_t end)
{
    const cumsum_ctx *cc = vctx;
    for (int64_t task = begin; task < end; task++) {
        int64_t o = task / cc->nchunk, lo = (task % cc->nchunk) * cc->chunk;
        int64_t n = cc->inner - lo < cc->chunk ? cc->inner - lo : cc->chunk;
        char *base = cc->y + (o * cc->len * cc->inner + lo) * (int64_t)cc->es;
        int64_t row = cc->inner * (int64_t)cc->es;
        for (int64_t t = 1; t < cc->len; t++) {
            char *cur = base + t * row;
            const char *prev = cur - row;
            if (cc->dt == TY_FLOAT32) {
                for (int64_t i = 0; i < n; i++) {
                    ((float *)cur)[i] += ((const float *)prev)[i];
                }
            } else if (cc->dt == TY_FLOAT64) {
                for (int64_t i = 0; i < n; i++) {
                    ((double *)cur)[i] += ((const double *)prev)[i];
                }
            } else if (cc->dt == TY_INT32) {
                for (int64_t i = 0; i < n; i++) {
                    ((int32_t *)cur)[i] = (int32_t)((uint32_t)((int32_t *)cur)[i] +
                                                    (uint32_t)((const int32_t *)prev)[i]);
                }
            } else if (cc->dt == TY_INT64) {
                for (int64_t i = 0; i < n; i++) {
                    ((int64_t *)cur)[i] = (int64_t)((uint64_t)((int64_t *)cur)[i] +
                                                    (uint64_t)((const int64_t *)prev)[i]);
                }
            } else {
                for (int64_t i = 0; i < n; i++) {
                    char *ci = cur + i * (int64_t)cc->es;
                    double v = ty_load_f64(ci, cc->dt) +
                               ty_load_f64(prev + i * (int64_t)cc->es, cc->dt);
                    ty_store_f64(ci, cc->dt,
                                 ty_dtype_is_float(cc->dt) ? v : wrap_small_int(v, cc->dt));
                }
            }
        }
    }
}

ty_status
ty_cumsum_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *y = out[0];
    int axis;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, c->in[0]->ndim, &axis));
    TY_TRY(ty_strided_copy(y, c->in[0]));
    if (ty_tensor_numel(y) == 0 || y->ndim == 0) {
        return TY_OK;
    }
    cumsum_ctx cc = {.y = ty_tensor_ptr(y), .len = y->shape[axis],
                     .inner = ty_shape_prod(y->shape, axis + 1, y->ndim),
                     .es = ty_dtype_size(y->dtype), .dt = y->dtype};
    int64_t outer = ty_shape_prod(y->shape, 0, axis);
    cc.chunk = outer > 16 || cc.inner < 512 ? cc.inner : 512;
    cc.nchunk = (cc.inner + cc.chunk - 1) / cc.chunk;
    ty_parallel_for(outer * cc.nchunk, (1 << 14) / (cc.len * cc.chunk + 1) + 1, cumsum_range,
                    &cc);
    return TY_OK;
}

ty_status
ty_grad_cumsum(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
               ty_tensor **gin)
{
    (void)out;
    int axis;
    const ty_tensor *x = c->in[0];
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x->ndim, &axis));
    if (x->ndim == 0) {
        ty_tensor_retain(gout[0]);
        gin[0] = gout[0];
        return TY_OK;
    }
    ty_gk k = {0};
    ty_p_axes fp = {0};
    fp.axes.n = 1;
    fp.axes.v[0] = axis;
    ty_p_axis cp = {.axis = axis};
    ty_tensor *g = gk_apply(&k, TY_OP_FLIP, &fp, 1, gout[0], NULL, NULL);
    g = g ? gk_apply(&k, TY_OP_CUMSUM, &cp, 1, g, NULL, NULL) : NULL;
    g = g ? gk_apply(&k, TY_OP_FLIP, &fp, 1, g, NULL, NULL) : NULL;
    return gk_finish(&k, g, &gin[0]);
}
