/* Gradient rules of the elementwise family, written with ops (see gradkit.h). */
#include <math.h>

#include "ops/gradkit.h"

#define UNARY_GRAD(name, expr)                                                                     \
    ty_status ty_grad_##name(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,      \
                             ty_tensor **gin)                                                      \
    {                                                                                              \
        ty_gk k = {0};                                                                             \
        ty_tensor *x = c->in[0], *y = out[0], *g = gout[0];                                        \
        (void)x;                                                                                   \
        (void)y;                                                                                   \
        return gk_finish(&k, (expr), &gin[0]);                                                     \
    }

#define GT(a, b) GK2(GT, a, b)
#define LT(a, b) GK2(LT, a, b)
#define GE(a, b) GK2(GE, a, b)
#define LE(a, b) GK2(LE, a, b)
#define AND(a, b) GK2(LOGICAL_AND, a, b)
#define SQ(a) GK1(SQUARE, a)
#define ZERO C(g, 0)
#define ONE C(g, 1)

UNARY_GRAD(neg, NEG(g))
UNARY_GRAD(abs, MUL(g, GK1(SIGN, x)))
UNARY_GRAD(sign, MUL(g, ZERO))
UNARY_GRAD(round, MUL(g, ZERO))
UNARY_GRAD(floor, MUL(g, ZERO))
UNARY_GRAD(ceil, MUL(g, ZERO))
UNARY_GRAD(square, MUL(g, MUL(x, C(g, 2))))
/* from the output: y > 0 exactly where x > 0, and a trace can then keep x in scratch */
UNARY_GRAD(relu, GK2(RELU_BACKWARD, y, g))
UNARY_GRAD(relu6, WHERE(AND(GT(x, ZERO), LT(x, C(g, 6))), g, ZERO))
UNARY_GRAD(leaky_relu,
           WHERE(GT(x, ZERO), g, MUL(g, C(g, ((const ty_p_leaky_relu *)c->params)->negative_slope))))
UNARY_GRAD(clip, WHERE(AND(GE(x, C(x, ((const ty_p_clip *)c->params)->lower)),
                           LE(x, C(x, ((const ty_p_clip *)c->params)->upper))),
                       g, ZERO))
UNARY_GRAD(exp, MUL(g, y))
UNARY_GRAD(expm1, MUL(g, ADD(y, ONE)))
UNARY_GRAD(log, DIV(g, x))
UNARY_GRAD(log1p, DIV(g, ADD(x, ONE)))
UNARY_GRAD(sqrt, DIV(g, MUL(y, C(g, 2))))
UNARY_GRAD(sin, MUL(g, GK1(COS, x)))
UNARY_GRAD(cos, NEG(MUL(g, GK1(SIN, x))))
UNARY_GRAD(tan, MUL(g, ADD(ONE, SQ(y))))
UNARY_GRAD(asin, DIV(g, GK1(SQRT, SUB(ONE, SQ(x)))))
UNARY_GRAD(acos, NEG(DIV(g, GK1(SQRT, SUB(ONE, SQ(x))))))
UNARY_GRAD(atan, DIV(g, ADD(ONE, SQ(x))))
UNARY_GRAD(sinh, MUL(g, GK1(COSH, x)))
UNARY_GRAD(cosh, MUL(g, GK1(SINH, x)))
UNARY_GRAD(tanh, MUL(g, SUB(ONE, SQ(y))))
UNARY_GRAD(asinh, DIV(g, GK1(SQRT, ADD(SQ(x), ONE))))
UNARY_GRAD(acosh, DIV(g, GK1(SQRT, SUB(SQ(x), ONE))))
UNARY_GRAD(atanh, DIV(g, SUB(ONE, SQ(x))))
UNARY_GRAD(erf, MUL(g, MUL(C(g, 1.1283791670955126), GK1(EXP, NEG(SQ(x))))))
UNARY_GRAD(sigmoid, MUL(g, MUL(y, SUB(ONE, y))))
UNARY_GRAD(softplus, MUL(g, GK1(SIGMOID, x)))
UNARY_GRAD(hsigmoid, WHERE(AND(GT(x, C(g, -3)), LT(x, C(g, 3))), DIV(g, C(g, 6)), ZERO))
UNARY_GRAD(hswish, WHERE(LT(x, C(g, -3)), ZERO,
                         WHERE(GT(x, C(g, 3)), g,
                               MUL(g, DIV(ADD(MUL(x, C(g, 2)), C(g, 3)), C(g, 6))))))

/* silu = x s(x): d/dx = s (1 + x (1 - s)) */
ty_status
ty_grad_silu(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *x = c->in[0], *g = gout[0];
    ty_tensor *s = GK1(SIGMOID, x);
    ty_tensor *d = MUL(s, ADD(ONE, MUL(x, SUB(ONE, s))));
    return gk_finish(&k, MUL(g, d), &gin[0]);
}

/* gelu = x Phi(x): d/dx = Phi(x) + x phi(x) */
ty_status
ty_grad_gelu(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    ty_tensor *x = c->in[0], *g = gout[0];
    ty_tensor *cdf = MUL(C(g, 0.5), ADD(ONE, GK1(ERF, MUL(x, C(g, M_SQRT1_2)))));
    ty_tensor *pdf = MUL(C(g, 0.3989422804014327), GK1(EXP, MUL(SQ(x), C(g, -0.5))));
    return gk_finish(&k, MUL(g, ADD(cdf, MUL(x, pdf))), &gin[0]);
}

#define BINARY_GRAD(name, ga, gb)                                                                  \
    ty_status ty_grad_##name(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,      \
                             ty_tensor **gin)                                                      \
    {                                                                                              \
        ty_gk k = {0};                                                                             \
        ty_tensor *a = c->in[0], *b = c->in[1], *y = out[0], *g = gout[0];                         \
        (void)y;                                                                                   \
        ty_tensor *ra = gk_sum_to(&k, (ga), a);                                                    \
        ty_tensor *rb = gk_sum_to(&k, (gb), b);                                                    \
        return gk_finish2(&k, ra, &gin[0], rb, &gin[1]);                                           \
    }

BINARY_GRAD(add, g, g)
BINARY_GRAD(sub, g, NEG(g))
BINARY_GRAD(mul, MUL(g, b), MUL(g, a))
BINARY_GRAD(div, DIV(g, b), NEG(DIV(MUL(g, y), b)))
BINARY_GRAD(floor_div, MUL(g, ZERO), MUL(g, ZERO))
BINARY_GRAD(mod, g, NEG(MUL(g, GK2(FLOOR_DIV, a, b))))
BINARY_GRAD(maximum, WHERE(GE(a, b), g, ZERO), WHERE(GE(a, b), ZERO, g))
BINARY_GRAD(minimum, WHERE(LE(a, b), g, ZERO), WHERE(LE(a, b), ZERO, g))
BINARY_GRAD(atan2, DIV(MUL(g, b), ADD(SQ(a), SQ(b))), NEG(DIV(MUL(g, a), ADD(SQ(a), SQ(b)))))
/* d(a^b)/da = b a^(b-1); d/db = a^b log a, taken as 0 where a <= 0 (log undefined). */
BINARY_GRAD(pow, MUL(g, MUL(b, GK2(POW, a, SUB(b, ONE)))),
            WHERE(GT(a, ZERO), MUL(g, MUL(y, GK1(LOG, WHERE(GT(a, ZERO), a, ONE)))), ZERO))

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

/* relu_backward(x, dy) is linear in dy and piecewise constant in x. */
ty_status
ty_grad_relu_backward(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                      ty_tensor **gin)
{
    (void)out;
    ty_gk k = {0};
    gin[0] = NULL;
    ty_tensor *g = gk_sum_to(&k, GK2(RELU_BACKWARD, c->in[0], gout[0]), c->in[1]);
    return gk_finish(&k, g, &gin[1]);
}
