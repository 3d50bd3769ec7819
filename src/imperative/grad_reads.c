/* Which saved tensors an op's gradient rule reads the values of, so the tape keeps only
 * those (the others stay as shape-only shells). Both facts come from the op's row:
 *  - an elementwise row's gradient formula, evaluated here with each tensor replaced by its
 *    bit, so the mask follows the formula exactly (x or a, b: the inputs, y: the output);
 *  - the TY_F_NO_SAVE_IN / TY_F_NO_SAVE_OUT flags of the other rows.
 * A row with neither keeps everything. */
#include "imperative/grad_reads.h"

/* The formula notation of src/ops/elemw_grad.c as bit masks: an op reads its operands; a
 * constant only takes its "like" operand's dtype. */
#define GK1(op, a) (a)
#define GK2(op, a, b) ((a) | (b))
#define ADD(a, b) ((a) | (b))
#define SUB(a, b) ((a) | (b))
#define MUL(a, b) ((a) | (b))
#define DIV(a, b) ((a) | (b))
#define NEG(a) (a)
#define GT(a, b) ((a) | (b))
#define LT(a, b) ((a) | (b))
#define GE(a, b) ((a) | (b))
#define LE(a, b) ((a) | (b))
#define AND(a, b) ((a) | (b))
#define SQ(a) (a)
#define WHERE(cond, a, b) ((cond) | (a) | (b))
#define C(like, v) UINT64_C(0)
#define ZERO UINT64_C(0)
#define ONE UINT64_C(0)
#define NONE UINT64_C(0)
#define LET(tmp, e, body) ((tmp) = (e), (body))

#define TY_EW_GRAD1(name, expr)                                                                    \
    {                                                                                              \
        uint64_t x = 1, y = 2, g = 0, t = 0;                                                       \
        (void)x, (void)y, (void)g, (void)t;                                                        \
        *mask = (wanted & 1) ? (uint64_t)(expr) : 0;                                               \
        return 1;                                                                                  \
    }
#define TY_EW_GRAD2(name, ga, gb)                                                                  \
    {                                                                                              \
        uint64_t a = 1, b = 2, y = 4, g = 0;                                                       \
        (void)a, (void)b, (void)y, (void)g;                                                        \
        *mask = ((wanted & 1) ? (uint64_t)(ga) : 0) | ((wanted & 2) ? (uint64_t)(gb) : 0);       \
        return 1;                                                                                  \
    }

/* The mask of op's formula, when its row has one (the formula follows its TY_OP, so each
 * row's case runs into it; a row without one breaks at the next row's case). */
static int
formula_mask(ty_op op, uint64_t wanted, uint64_t *mask)
{
    switch (op) {
#define TY_OP(ENUM, name, family, nin, nout, params, flags, infer, fwd, grad)                     \
    break;                                                                                         \
    case TY_OP_##ENUM:
#include "tianyuan/ops.def"
#undef TY_OP
        break;
    default:
        break;
    }
    return 0;
}

uint64_t
ty_grad_reads(const ty_call *c, uint64_t wanted)
{
    int n = c->nin + c->nout;
    if (n > 63) {
        return ~UINT64_C(0);
    }
    uint64_t all = (UINT64_C(1) << n) - 1, ins = (UINT64_C(1) << c->nin) - 1, mask;
    if (formula_mask(c->op, wanted, &mask)) {
        return mask & all;
    }
    uint32_t flags = ty_op_defs[c->op].flags;
    mask = all;
    if (flags & TY_F_NO_SAVE_IN) {
        mask &= ~ins;
    }
    if (flags & TY_F_NO_SAVE_OUT) {
        mask &= ins;
    }
    if (c->op == TY_OP_BATCH_NORM_TRAIN) {
        /* its rule reads mean and var but never y, output 0, as large as x: not kept, y dies
         * with its last use (the following relu or add) instead of at backward */
        mask &= ~(UINT64_C(1) << c->nin);
    }
    return mask;
}
