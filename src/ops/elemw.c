/* Elementwise family: inference (broadcast + promotion), forward through the CPU loops. */
#include <string.h>

#include "kernels/cpu/elemw_cpu.h"
#include "ops/op.h"
#include "ops/strided.h"

ty_dtype
ty_elemw_compute_dtype(ty_op op, int nin, const ty_dtype *in)
{
    const ty_elemw_info *info = &ty_elemw_table[op];
    ty_dtype dt = in[0];
    for (int i = 1; i < nin; i++) {
        dt = ty_promote(dt, in[i]);
    }
    if (info->kind == TY_EW_LOGIC) {
        dt = TY_BOOL;
    } else if (info->kind == TY_EW_UNARY || info->kind == TY_EW_BINARY) {
        if (info->cls == TY_EWC_FLT && !ty_dtype_is_float(dt)) {
            dt = TY_FLOAT32;
        } else if (dt == TY_BOOL) {
            dt = TY_INT32;
        }
    }
    return dt;
}

void
ty_elemw_kernel(ty_device_type dev, ty_op op, const void *params, int nin, const ty_dtype *in,
                ty_ew_kernel *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)op >= TY_OP_COUNT || nin < 1 || nin > TY_ELEMW_MAX_IN ||
        ty_op_forward(dev, op) != ty_elemw_forward || dev != TY_DEVICE_CPU) {
        return; /* the CPU column is the only elementwise one so far */
    }
    const ty_elemw_info *info = &ty_elemw_table[op];
    ty_dtype dt = ty_elemw_compute_dtype(op, nin, in);
    if (info->kind == TY_EW_NONE || (unsigned)dt >= TY_DTYPE_COUNT || !info->loop[dt]) {
        return;
    }
    int to_bool = info->kind == TY_EW_CMP || info->kind == TY_EW_LOGIC || info->kind == TY_EW_PRED;
    out->loop = info->loop[dt];
    out->compute = dt;
    out->out = to_bool ? TY_BOOL : dt;
    ty_elemw_float_params(op, params, out->pv);
}

/* The compute dtype of call c, which info's loops must support. */
static ty_status
compute_dtype(const ty_call *c, const ty_elemw_info *info, ty_dtype *out)
{
    ty_dtype in[TY_ELEMW_MAX_IN];
    TY_CHECK(c->nin >= 1 && c->nin <= TY_ELEMW_MAX_IN, TY_ERR_INTERNAL,
             "elementwise op with %d inputs", c->nin);
    for (int i = 0; i < c->nin; i++) {
        in[i] = c->in[i]->dtype;
    }
    ty_dtype dt = ty_elemw_compute_dtype(c->op, c->nin, in);
    TY_CHECK(info->loop[dt] != NULL, TY_ERR_DTYPE, "dtype %s is not supported",
             ty_dtype_name(dt));
    *out = dt;
    return TY_OK;
}

static ty_status
broadcast_all(const ty_call *c, ty_meta *m)
{
    m->ndim = c->in[0]->ndim;
    memcpy(m->shape, c->in[0]->shape, sizeof(int64_t) * (size_t)m->ndim);
    for (int i = 1; i < c->nin; i++) {
        TY_TRY(ty_broadcast_shapes(m->ndim, m->shape, c->in[i]->ndim, c->in[i]->shape, &m->ndim,
                                   m->shape));
    }
    return TY_OK;
}

ty_status
ty_elemw_infer(const ty_call *c, ty_meta *out)
{
    const ty_elemw_info *info = &ty_elemw_table[c->op];
    TY_CHECK(info->kind != TY_EW_NONE, TY_ERR_INTERNAL, "no elementwise kernel");
    ty_dtype dt;
    TY_TRY(compute_dtype(c, info, &dt));
    TY_TRY(broadcast_all(c, out));
    int to_bool = info->kind == TY_EW_CMP || info->kind == TY_EW_LOGIC || info->kind == TY_EW_PRED;
    out->dtype = to_bool ? TY_BOOL : dt;
    return TY_OK;
}

void
ty_elemw_float_params(ty_op op, const void *params, double pv[2])
{
    const ty_params_desc *d = ty_op_defs[op].params;
    int k = 0;
    pv[0] = pv[1] = 0.0;
    for (int i = 0; i < d->nfields && k < 2; i++) {
        if (d->fields[i].kind == TY_FK_F64) {
            pv[k++] = *(const double *)((const char *)params + d->fields[i].offset);
        }
    }
}

ty_status
ty_elemw_forward(const ty_call *c, ty_tensor **out)
{
    const ty_elemw_info *info = &ty_elemw_table[c->op];
    ty_dtype dt;
    TY_TRY(compute_dtype(c, info, &dt));
    ty_tensor *ops[1 + TY_ELEMW_MAX_IN] = {out[0]};
    ty_status status = TY_OK;
    for (int i = 0; i < c->nin; i++) {
        TY_TRY_GOTO(ty_strided_cast(c->in[i], dt, &ops[1 + i]));
    }
    double pv[2];
    ty_elemw_float_params(c->op, c->params, pv);
    status = ty_strided_run(out[0], 1 + c->nin, ops, info->loop[dt], pv);
fail:
    for (int i = 0; i < c->nin; i++) {
        ty_tensor_release(ops[1 + i]);
    }
    return status;
}

/* ---- where(cond, x, y) ---- */
ty_status
ty_where_infer(const ty_call *c, ty_meta *out)
{
    TY_TRY(broadcast_all(c, out));
    out->dtype = ty_promote(c->in[1]->dtype, c->in[2]->dtype);
    return TY_OK;
}

ty_status
ty_where_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *ops[4] = {out[0]};
    ty_status status = TY_OK;
    TY_TRY_GOTO(ty_strided_cast(c->in[0], TY_BOOL, &ops[1]));
    TY_TRY_GOTO(ty_strided_cast(c->in[1], out[0]->dtype, &ops[2]));
    TY_TRY_GOTO(ty_strided_cast(c->in[2], out[0]->dtype, &ops[3]));
    status = ty_strided_run(out[0], 4, ops, ty_cpu_where_loop(ty_dtype_size(out[0]->dtype)), NULL);
fail:
    for (int i = 1; i < 4; i++) {
        ty_tensor_release(ops[i]);
    }
    return status;
}

/* ---- astype ---- */
ty_status
ty_astype_infer(const ty_call *c, ty_meta *out)
{
    int64_t dt = ((const ty_p_astype *)c->params)->dtype;
    TY_CHECK(dt >= 0 && dt < TY_DTYPE_COUNT, TY_ERR_DTYPE, "invalid dtype code %lld",
             (long long)dt);
    ty_meta_of(c->in[0], out);
    out->dtype = (ty_dtype)dt;
    return TY_OK;
}

ty_status
ty_astype_forward(const ty_call *c, ty_tensor **out)
{
    return ty_strided_copy(out[0], c->in[0]);
}
