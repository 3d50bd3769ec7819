#include <string.h>

#include "ops/gradkit.h"

static ty_tensor *
keep(ty_gk *k, ty_status st, ty_tensor *t)
{
    if (st != TY_OK) {
        k->st = st;
        return NULL;
    }
    if (k->n == GK_MAX) {
        ty_tensor_release(t);
        k->st = ty_set_error(TY_ERR_INTERNAL, "gradient rule uses too many temporaries");
        return NULL;
    }
    k->tmp[k->n++] = t;
    return t;
}

ty_tensor *
gk_apply(ty_gk *k, ty_op op, const void *p, int nin, ty_tensor *a, ty_tensor *b, ty_tensor *c)
{
    ty_tensor *in[3] = {a, b, c};
    if (k->st != TY_OK) {
        return NULL;
    }
    for (int i = 0; i < nin; i++) {
        if (!in[i]) {
            k->st = ty_set_error(TY_ERR_INTERNAL, "gradient rule got a NULL operand");
            return NULL;
        }
    }
    ty_tensor *out = NULL;
    ty_status st = ty_apply(op, p, nin, in, 1, &out);
    return keep(k, st, out);
}

ty_tensor *
gk_const(ty_gk *k, const ty_tensor *like, double v)
{
    if (k->st != TY_OK || !like) {
        return NULL;
    }
    ty_tensor *t = NULL;
    ty_status st = ty_scalar(like->dtype, v, &t);
    return keep(k, st, t);
}

ty_tensor *
gk_sum_to(ty_gk *k, ty_tensor *g, const ty_tensor *like)
{
    if (k->st != TY_OK || !g) {
        return NULL;
    }
    ty_tensor *t = NULL;
    ty_status st = ty_sum_to_shape(g, like->ndim, like->shape, &t);
    return keep(k, st, t);
}

static void
release_all(ty_gk *k)
{
    for (int i = 0; i < k->n; i++) {
        ty_tensor_release(k->tmp[i]);
    }
    k->n = 0;
}

ty_status
gk_finish(ty_gk *k, ty_tensor *r, ty_tensor **out)
{
    if (k->st == TY_OK && r) {
        ty_tensor_retain(r);
        *out = r;
    }
    release_all(k);
    return k->st;
}

ty_status
gk_finish2(ty_gk *k, ty_tensor *r0, ty_tensor **out0, ty_tensor *r1, ty_tensor **out1)
{
    if (k->st == TY_OK) {
        if (r0) {
            ty_tensor_retain(r0);
        }
        if (r1) {
            ty_tensor_retain(r1);
        }
        *out0 = r0;
        *out1 = r1;
    }
    release_all(k);
    return k->st;
}

ty_tensor *
gk_fit_dtype(ty_gk *k, ty_tensor *g, const ty_tensor *like)
{
    if (!ty_dtype_is_float(like->dtype)) {
        return NULL;
    }
    if (g && g->dtype != like->dtype) {
        ty_p_astype p = {.dtype = like->dtype};
        return gk_apply(k, TY_OP_ASTYPE, &p, 1, g, NULL, NULL);
    }
    return g;
}

ty_status
ty_zeros_shaped(ty_dtype dt, int nd, const int64_t *shape, ty_tensor **out)
{
    ty_tensor *z;
    TY_TRY(ty_scalar(dt, 0.0, &z));
    ty_p_shape p = {0};
    p.shape.n = nd;
    memcpy(p.shape.v, shape, sizeof(int64_t) * (size_t)nd);
    ty_status st = ty_op1(TY_OP_BROADCAST_TO, &p, z, out);
    ty_tensor_release(z);
    return st;
}

static _Thread_local uint64_t grad_wanted = ~(uint64_t)0;

uint64_t
ty_grad_set_wanted(uint64_t mask)
{
    uint64_t old = grad_wanted;
    grad_wanted = mask;
    return old;
}

static _Thread_local int grad_recorded;

int
ty_grad_set_recorded(int on)
{
    int old = grad_recorded;
    grad_recorded = on;
    return old;
}

int
ty_grad_recorded(void)
{
    return grad_recorded;
}

int
ty_grad_wanted(int input)
{
    return input >= (int)(8 * sizeof grad_wanted) || (grad_wanted >> input) & 1; /* wider: wanted */
}
