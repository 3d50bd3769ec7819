/* A fused group with a head convolution whose members form a chain (batch norm's sub, div,
 * mul and add, a residual add, an activation: each member reads the previous one's result
 * and at most one other operand, a scalar, a per-channel constant or a tensor of the
 * output's shape) runs per channel segment of a tile: each member's own elementwise loop
 * over a small local buffer, its operand read with stride 0 or 1. The same loops on the same
 * values in the same order as unfused, so the same bits; without the generic steps' per-run
 * bookkeeping, and with the intermediates in L1. */
#ifndef TY_GRAPH_PASSES_FUSE_CHAIN_H
#define TY_GRAPH_PASSES_FUSE_CHAIN_H

#include "graph/trace_impl.h"
#include "ops/conv.h" /* ty_epi_bn_f32 */

enum { TY_CHAIN_MAX = 8 };

typedef enum ty_chain_kind {
    TY_CHAIN_UNARY,   /* no operand */
    TY_CHAIN_SCALAR,  /* p[0] */
    TY_CHAIN_CHANNEL, /* p[c] for channel c */
    TY_CHAIN_FULL,    /* p[i] for element i of the output */
} ty_chain_kind;

typedef struct ty_chain_step {
    ty_op op;
    ty_ew_loop loop;
    const double *pv;
    ty_chain_kind kind;
    int chain_second; /* the running value is the op's second operand */
    const float *p;
} ty_chain_step;

typedef struct ty_fchain {
    int n; /* steps; 0: the group is no such chain */
    ty_chain_step s[TY_CHAIN_MAX];
    /* inference batch norm, (y - mean) * scale + beta (bn_div: a model dumped before the
     * scale was precomputed, (y - mean) / std * gamma + beta), maybe then a residual add and
     * relu or relu6: one loop over registers (checked against the steps' loops when built);
     * bn_res: 0 none, 1 v + r, 2 r + v; bn_act: 0 none, 1 relu, 2 relu6; bn_vec: the scale
     * form's vector loop (AVX-512 or AVX2) that runs it, else NULL; bn_rows: the same over the
     * rows of a tile */
    int bn, bn_div, bn_res, bn_act;
    /* bn_bias: the chain starts with an add of a per-channel constant (a convolution's bias)
     * instead of the batch norm steps: run as the scale form with mean +0 and scale 1, which
     * leave every value as it is (y - +0 and y * 1 are y, signed zeros and NaNs included) */
    int bn_bias;
    void (*bn_vec)(const float *y, const float *k, const float *r, int res, int act, float *out,
                   int64_t m);
    void (*bn_rows)(const struct ty_fchain *c, const float *y, int64_t off, int64_t rows,
                    int64_t cols, int64_t ld, int64_t ch0);
    float *out; /* the last step's output */
    int64_t C, HW;
} ty_fchain;

/* Fills ch for group gi (ch->n = 0 when the group is not a chain of such steps); binds the
 * operands' memory. Per call: the pointers are the call's. */
ty_status ty_chain_build(ty_trace *tr, int gi, ty_fchain *ch) TY_NODISCARD;

/* The chain over rows of cols elements of the head's output y, the first at element off,
 * ld apart. */
void ty_chain_run(const ty_fchain *ch, const float *y, int64_t off, int64_t rows, int64_t cols,
                  int64_t ld);

/* Whether the chain is batch norm's scale form (maybe with the residual add and activation),
 * which a kernel may run in registers: then bn describes it over the head's output (gemm.h's
 * ty_epi_bn_f32, the same values as ty_chain_run's). */
int ty_chain_bn_desc(const ty_fchain *ch, ty_epi_bn_f32 *bn);

#endif
