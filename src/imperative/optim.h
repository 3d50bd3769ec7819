/* Fused optimizer updates for eager training steps (the Python optimizers' fast path). */
#ifndef TY_OPTIM_H
#define TY_OPTIM_H

#include "tianyuan/tianyuan.h"

/* One SGD step for one parameter, in place, computing exactly the float32 operations of
 * tianyuan.optimizer.SGD op by op, in the same order (so the bits are the same):
 *     g = grad + param * wd             (wd given)
 *     buf = buf * mom + g               (buf given)
 *     g = nesterov ? g + buf * mom : buf
 *     param = param - lr * g
 * lr, wd and mom are 0-d float32 tensors (wd NULL: no decay; buf NULL: no momentum).
 * *done = 0 (and nothing is written) when the fused kernel does not apply: another dtype or
 * device, a non-contiguous or aliased tensor, data not computed yet, or a dispatcher observer
 * (a trace, autodiff recording, DTR, op counting) that must see the ops one by one. */
ty_status ty_sgd_fused_update(ty_tensor *param, const ty_tensor *grad, ty_tensor *buf,
                              const ty_tensor *lr, const ty_tensor *wd, const ty_tensor *mom,
                              int nesterov, int *done) TY_NODISCARD;

#endif
