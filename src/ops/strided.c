#include <string.h>

#include "ops/strided.h"

void
ty_broadcast_strides(const ty_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        if (d < lead) {
            strides[d] = 0;
        } else {
            int s = d - lead;
            strides[d] = (t->shape[s] == 1 && shape[d] != 1) ? 0 : t->strides[s];
        }
    }
}

ty_status
ty_strided_run(ty_tensor *out, int nops, ty_tensor *const *ops, ty_elemw_loop loop,
               const double *pv)
{
    enum { MAXOPS = 8 };
    int64_t strides[MAXOPS][TY_MAX_DIMS];
    char *data[MAXOPS];
    size_t esize[MAXOPS];
    TY_CHECK(loop != NULL, TY_ERR_UNSUPPORTED, "no kernel for dtype %s",
             ty_dtype_name(out->dtype));
    TY_CHECK(nops <= MAXOPS, TY_ERR_INTERNAL, "too many operands");
    for (int k = 0; k < nops; k++) {
        ty_broadcast_strides(ops[k], out->ndim, out->shape, strides[k]);
        data[k] = ty_tensor_ptr(ops[k]);
        esize[k] = ty_dtype_size(ops[k]->dtype);
    }
    ty_cpu_iterate(out->ndim, out->shape, nops, data, (const int64_t(*)[TY_MAX_DIMS])strides,
                   esize, loop, pv);
    return TY_OK;
}

ty_status
ty_strided_copy(ty_tensor *dst, const ty_tensor *src)
{
    ty_tensor *ops[2] = {dst, (ty_tensor *)src};
    return ty_strided_run(dst, 2, ops, ty_cpu_convert_loop(src->dtype, dst->dtype), NULL);
}

ty_status
ty_strided_cast(ty_tensor *t, ty_dtype dt, ty_tensor **out)
{
    if (t->dtype == dt) {
        ty_tensor_retain(t);
        *out = t;
        return TY_OK;
    }
    ty_tensor *r;
    TY_TRY(ty_tensor_new_like_meta(dt, t->ndim, t->shape, &r));
    ty_status st = ty_strided_copy(r, t);
    if (st != TY_OK) {
        ty_tensor_release(r);
        return st;
    }
    *out = r;
    return TY_OK;
}

ty_status
ty_contiguous(ty_tensor *t, ty_tensor **out)
{
    if (ty_tensor_is_contiguous(t)) {
        ty_tensor_retain(t);
        *out = t;
        return TY_OK;
    }
    ty_tensor *r;
    TY_TRY(ty_tensor_new_like_meta(t->dtype, t->ndim, t->shape, &r));
    ty_status st = ty_strided_copy(r, t);
    if (st != TY_OK) {
        ty_tensor_release(r);
        return st;
    }
    *out = r;
    return TY_OK;
}

/* ---- public copies ---- */
ty_status
ty_tensor_copy_to(const ty_tensor *t, void *dst, size_t nbytes)
{
    TY_CHECK(t && (dst || nbytes == 0), TY_ERR_INVALID_ARG, "ty_tensor_copy_to: NULL argument");
    TY_TRY(ty_check_readable(t));
    size_t need = (size_t)ty_tensor_numel(t) * ty_dtype_size(t->dtype);
    TY_CHECK(nbytes == need, TY_ERR_INVALID_ARG, "ty_tensor_copy_to: buffer has %zu bytes, need %zu",
             nbytes, need);
    if (need == 0) {
        return TY_OK;
    }
    int64_t strides[TY_MAX_DIMS];
    ty_contiguous_strides(t->ndim, t->shape, strides);
    ty_tensor *view;
    TY_TRY(ty_tensor_wrap(t->dtype, t->ndim, t->shape, strides, dst, nbytes, ty_noop_deleter,
                          NULL, &view));
    ty_status st = ty_strided_copy(view, t);
    ty_tensor_release(view);
    return st;
}

static ty_status
assign_impl(ty_tensor *dst, const ty_tensor *src)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(dst && src, TY_ERR_INVALID_ARG, "NULL argument");
    int nd;
    int64_t shape[TY_MAX_DIMS];
    TY_TRY(ty_broadcast_shapes(dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape));
    TY_CHECK(nd == dst->ndim && memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd) == 0,
             TY_ERR_SHAPE, "cannot assign a value of shape %s to a tensor of shape %s",
             ty_shape_str(src->ndim, src->shape, b1, sizeof b1),
             ty_shape_str(dst->ndim, dst->shape, b2, sizeof b2));
    ty_storage_written(dst);
    return ty_strided_copy(dst, src);
}

ty_status
ty_tensor_assign(ty_tensor *dst, const ty_tensor *src)
{
    ty_status st = assign_impl(dst, src);
    if (st != TY_OK) {
        ty_error_prefix("assign");
    }
    return st;
}

ty_status
ty_contiguous_as(ty_tensor *t, ty_dtype dt, ty_tensor **out)
{
    return t->dtype != dt ? ty_strided_cast(t, dt, out) : ty_contiguous(t, out);
}

ty_status
ty_compute_target(ty_tensor *out, ty_dtype dt, ty_tensor **y)
{
    if (out->dtype == dt) {
        ty_tensor_retain(out);
        *y = out;
        return TY_OK;
    }
    return ty_tensor_new_like_meta(dt, out->ndim, out->shape, y);
}

ty_status
ty_compute_done(ty_tensor *out, ty_tensor *y)
{
    return y == out ? TY_OK : ty_strided_copy(out, y);
}
