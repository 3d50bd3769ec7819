/* A small expression kit for gradient rules: each call applies one op through the
 * dispatcher (so backward is traceable and twice differentiable), keeps the result for
 * release, and propagates the first failure as NULL, so rules read like formulas:
 *
 *     ty_gk k = {0};
 *     ty_tensor *d = MUL(g, COS(x));
 *     return gk_finish(&k, d, &gin[0]);
 */
#ifndef TY_GRADKIT_H
#define TY_GRADKIT_H

#include "ops/op.h"

enum { GK_MAX = 48 };
typedef struct ty_gk {
    ty_tensor *tmp[GK_MAX];
    int n;
    ty_status st;
} ty_gk;

ty_tensor *gk_apply(ty_gk *k, ty_op op, const void *p, int nin, ty_tensor *a, ty_tensor *b,
                    ty_tensor *c);
/* 0-d tensor of like's dtype holding v. */
ty_tensor *gk_const(ty_gk *k, const ty_tensor *like, double v);
/* Sum g down to the shape of like (undoes broadcasting). */
ty_tensor *gk_sum_to(ty_gk *k, ty_tensor *g, const ty_tensor *like);
/* g cast to like's dtype (an op may have promoted mixed operands); NULL when like is not a
 * float tensor (it gets no gradient). */
ty_tensor *gk_fit_dtype(ty_gk *k, ty_tensor *g, const ty_tensor *like);
/* Stores a new reference to r in *out and releases the temporaries; returns the status. */
ty_status gk_finish(ty_gk *k, ty_tensor *r, ty_tensor **out);
/* Like gk_finish for two results. */
ty_status gk_finish2(ty_gk *k, ty_tensor *r0, ty_tensor **out0, ty_tensor *r1, ty_tensor **out1);
/* Zeros of dtype dt and the given shape: a broadcast view of a 0-d zero (through the
 * dispatcher, so a gradient built on it is traceable). */
ty_status ty_zeros_shaped(ty_dtype dt, int nd, const int64_t *shape, ty_tensor **out) TY_NODISCARD;

/* Which inputs of the op whose rule runs need a gradient: the tape sets a mask (bit i for
 * input i; inputs past 63 always count as wanted) so that a rule may skip work nobody reads
 * (the input gradient of a network's first layer). Outside the tape every input is wanted. */
uint64_t ty_grad_set_wanted(uint64_t mask);
int ty_grad_wanted(int input);
/* Whether the backward that runs the rule is itself recorded (a higher-order gradient: the
 * tape sets it around each rule, 0 elsewhere): a rule may then take a fused kernel that has
 * no gradient of its own only when this is 0. Returns the previous setting. */
int ty_grad_set_recorded(int on);
int ty_grad_recorded(void);

#define GK1(op, a) gk_apply(&k, TY_OP_##op, NULL, 1, (a), NULL, NULL)
#define GK2(op, a, b) gk_apply(&k, TY_OP_##op, NULL, 2, (a), (b), NULL)
#define ADD(a, b) GK2(ADD, a, b)
#define SUB(a, b) GK2(SUB, a, b)
#define MUL(a, b) GK2(MUL, a, b)
#define DIV(a, b) GK2(DIV, a, b)
#define NEG(a) GK1(NEG, a)
#define C(like, v) gk_const(&k, (like), (v))
#define WHERE(c, a, b) gk_apply(&k, TY_OP_WHERE, NULL, 3, (c), (a), (b))

#endif
