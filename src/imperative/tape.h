/* The autodiff tape: a dispatcher hook that records differentiable op applications whose
 * inputs are tracked, and the reverse pass over what it recorded (GradManager semantics). */
#ifndef TY_TAPE_H
#define TY_TAPE_H

#include "ops/op.h"

typedef struct ty_node ty_node;

/* Per-tensor autodiff state, shared (refcounted) by the tensor and the edges that use it. */
typedef struct ty_ad_meta {
    _Atomic int64_t refcnt;
    ty_node *node; /* producer, NULL for an attached leaf */
    int out_index;
} ty_ad_meta;

void ty_ad_meta_release(ty_ad_meta *m);

/* Nonzero while this thread runs a backward pass's gradient rules. */
int ty_ad_in_backward(void);

/* Registers the tape with the dispatcher and takes its tensor extension slot (ty_init). */
ty_status ty_tape_init(void) TY_NODISCARD;

/* The public autodiff API (ty_ad_*, ty_backward) is declared in tianyuan.h. */

#endif
