/* The autodiff tape: a dispatcher hook that records differentiable op applications whose
 * inputs are tracked, and the reverse pass over what it recorded (GradManager semantics). */
#ifndef TY_TAPE_H
#define TY_TAPE_H

#include "core/core.h"

typedef struct ty_node ty_node;

/* Per-tensor autodiff state, shared (refcounted) by the tensor and the edges that use it. */
typedef struct ty_ad_meta {
    _Atomic int64_t refcnt;
    ty_node *node; /* producer, NULL for an attached leaf */
    int out_index;
} ty_ad_meta;

void ty_ad_meta_release(ty_ad_meta *m);

/* Hook point for the tracer: while set on this thread, ty_backward reports itself (record)
 * or is replaced (replay). */
typedef struct ty_backward_hooks {
    ty_status (*replace)(void *ud, int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx,
                         ty_tensor *const *xs, ty_tensor **grads);
    ty_status (*begin)(void *ud, int ny, ty_tensor *const *ys, int nx, ty_tensor *const *xs);
    ty_status (*end)(void *ud, int nx, ty_tensor *const *grads);
    void *ud;
} ty_backward_hooks;
void ty_set_backward_hooks(const ty_backward_hooks *h);
/* Pauses the tape on this thread (a replay records no autodiff graph). */
void ty_tape_pause(int on);

/* The public autodiff API (ty_ad_*, ty_backward) is declared in tianyuan.h. */

#endif
