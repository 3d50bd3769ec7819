/* Running elementwise loops over tensors: broadcast strides, casts, copies. Used by the
 * forward functions (never goes through the dispatcher, so nothing here is recorded). */
#ifndef TY_STRIDED_H
#define TY_STRIDED_H

#include <string.h>

#include "kernels/cpu/elemw_cpu.h"
#include "ops/op.h"

/* out-of-dispatcher cast: a new reference to t itself when it already has dtype dt. */
ty_status ty_strided_cast(ty_tensor *t, ty_dtype dt, ty_tensor **out) TY_NODISCARD;
/* Runs loop with ops[0] = out, ops[1..] broadcast to out's shape. */
ty_status ty_strided_run(ty_tensor *out, int nops, ty_tensor *const *ops, ty_elemw_loop loop,
                         const double *pv) TY_NODISCARD;
/* dst[...] = src (broadcast to dst's shape, converted to dst's dtype). */
ty_status ty_strided_copy(ty_tensor *dst, const ty_tensor *src) TY_NODISCARD;
/* Strides of t as seen from an ndim-d broadcast shape (0 on broadcast dims). */
void ty_broadcast_strides(const ty_tensor *t, int ndim, const int64_t *shape, int64_t *strides);
/* A new contiguous copy of t (a new reference to t when already contiguous). */
ty_status ty_contiguous(ty_tensor *t, ty_tensor **out) TY_NODISCARD;
/* t as a contiguous tensor of dtype dt (a new reference to t when it already is one). */
ty_status ty_contiguous_as(ty_tensor *t, ty_dtype dt, ty_tensor **out) TY_NODISCARD;
/* Where a kernel computing in dt writes an op's output: out itself (retained) when its dtype
 * is dt, else a new scratch tensor that ty_compute_done then converts into out. */
ty_status ty_compute_target(ty_tensor *out, ty_dtype dt, ty_tensor **y) TY_NODISCARD;
ty_status ty_compute_done(ty_tensor *out, ty_tensor *y) TY_NODISCARD;

/* The number of elements of dims [a, b) of shape. */
static inline int64_t
ty_shape_prod(const int64_t *shape, int a, int b)
{
    int64_t p = 1;
    for (int i = a; i < b; i++) {
        p *= shape[i];
    }
    return p;
}

/* Copies one element of es bytes; constant sizes let the compiler inline the copy. */
static inline void
ty_copy_elem(char *d, const char *s, size_t es)
{
    switch (es) {
    case 1: memcpy(d, s, 1); break;
    case 2: memcpy(d, s, 2); break;
    case 4: memcpy(d, s, 4); break;
    case 8: memcpy(d, s, 8); break;
    default: memcpy(d, s, es); break;
    }
}

#endif
