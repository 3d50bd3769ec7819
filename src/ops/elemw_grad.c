/* Gradient rules of the elementwise family. The formulas live in their rows of ops.def
 * (a gradkit expression per input); this file gives them the names they use and expands
 * each row into its ty_grad_<name> function. A binary rule computes only the wanted inputs'
 * formulas, so the tape keeps only what those read (src/imperative/grad_reads.c). */
#include <math.h>

#include "ops/gradkit.h"

/* The notation of the formulas, on top of gradkit.h's ADD, SUB, MUL, DIV, NEG, C, WHERE. */
#define GT(a, b) GK2(GT, a, b)
#define LT(a, b) GK2(LT, a, b)
#define GE(a, b) GK2(GE, a, b)
#define LE(a, b) GK2(LE, a, b)
#define AND(a, b) GK2(LOGICAL_AND, a, b)
#define SQ(a) GK1(SQUARE, a)
#define ZERO C(g, 0)
#define ONE C(g, 1)
#define NONE NULL /* this input gets no gradient */
/* A float field of the op's params struct. */
#define PARAM(pstruct, field) (((const ty_p_##pstruct *)c->params)->field)
/* Binds the scratch tensor t to e for use in body, so a shared subterm is applied once. */
#define LET(t, e, body) ((t) = (e), (body))

#define TY_OP(ENUM, name, family, nin, nout, params, flags, infer, fwd, grad)
#define TY_EW_GRAD1(name, expr)                                                                    \
    ty_status ty_grad_##name(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,      \
                             ty_tensor **gin)                                                      \
    {                                                                                              \
        ty_gk k = {0};                                                                             \
        ty_tensor *x = c->in[0], *y = out[0], *g = gout[0], *t = NULL;                             \
        (void)x;                                                                                   \
        (void)y;                                                                                   \
        (void)t;                                                                                   \
        return gk_finish(&k, (expr), &gin[0]);                                                     \
    }
#define TY_EW_GRAD2(name, ga, gb)                                                                  \
    ty_status ty_grad_##name(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,      \
                             ty_tensor **gin)                                                      \
    {                                                                                              \
        ty_gk k = {0};                                                                             \
        ty_tensor *a = c->in[0], *b = c->in[1], *y = out[0], *g = gout[0];                         \
        (void)y;                                                                                   \
        ty_tensor *ra = ty_grad_wanted(0) ? gk_sum_to(&k, (ga), a) : NULL;                         \
        ty_tensor *rb = ty_grad_wanted(1) ? gk_sum_to(&k, (gb), b) : NULL;                         \
        return gk_finish2(&k, ra, &gin[0], rb, &gin[1]);                                           \
    }
#include "tianyuan/ops.def"
#undef TY_OP
#undef TY_EW_GRAD1
#undef TY_EW_GRAD2

ty_status
ty_grad_where(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *cond = c->in[0], *g = gout[0];
    gin[0] = NULL;
    ty_tensor *gx = gk_sum_to(&k, WHERE(cond, g, ZERO), c->in[1]);
    ty_tensor *gy = gk_sum_to(&k, WHERE(cond, ZERO, g), c->in[2]);
    return gk_finish2(&k, gx, &gin[1], gy, &gin[2]);
}

ty_status
ty_grad_astype(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    if (!ty_dtype_is_float(c->in[0]->dtype)) {
        gin[0] = NULL;
        return TY_OK;
    }
    ty_p_astype p = {.dtype = c->in[0]->dtype};
    return gk_finish(&k, gk_apply(&k, TY_OP_ASTYPE, &p, 1, gout[0], NULL, NULL), &gin[0]);
}
