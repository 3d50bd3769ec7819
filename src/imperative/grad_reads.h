/* Which of an op's saved tensors its gradient rule reads the values of (the tape keeps those
 * and only the shapes of the rest). */
#ifndef TY_GRAD_READS_H
#define TY_GRAD_READS_H

#include "ops/op.h"

/* Bit i: input i; bit nin + j: output j; `wanted` has bit i set when input i needs a
 * gradient. Tensors past bit 63 always count as read. */
uint64_t ty_grad_reads(const ty_call *c, uint64_t wanted);

#endif
