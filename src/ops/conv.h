/* conv2d forward with a fused epilogue, for ops that build on the convolution (a fused
 * conv + bias + activation op calls it from its forward). */
#ifndef TY_OPS_CONV_H
#define TY_OPS_CONV_H

#include "kernels/cpu/gemm.h"
#include "ops/op.h"

typedef enum ty_conv_act {
    TY_CONV_ACT_NONE = 0,
    TY_CONV_ACT_RELU = 1,
    TY_CONV_ACT_RELU6 = 2
} ty_conv_act;

/* out = act(conv2d(x, w; p) + bias), bias broadcast over the batch and the image (NULL: no
 * bias). The bias and the activation are applied to each block of the output as soon as its
 * convolution sums are done, while it is in cache, so out is written once. For float32 and
 * float64 outputs the bits equal those of conv2d, then the add op with the bias as
 * (1, OC, 1, 1), then relu (relu6); for half types the sum is rounded once, after the epilogue. out:
 * a float tensor of the convolution's output shape (the caller allocates it, as the
 * dispatcher does for an op's forward); bias: any float tensor with OC elements. Checks the
 * arguments; borrowed references. */
ty_status ty_conv2d_forward_fused(const ty_p_conv *p, ty_tensor *x, ty_tensor *w,
                                  ty_tensor *bias, ty_conv_act act, ty_tensor *out);

/* Whether conv_bias (q, nin inputs, output dtype ydt) runs as ty_conv2d_forward_fused
 * (bias and activation applied as the tiles finish; the tile hook below then sees the
 * finished values): no z and an identity, relu or relu6 mode. Otherwise it adds and
 * activates in a pass after the convolution. */
int ty_conv_bias_runs_fused(const ty_p_conv_bias *q, int nin, ty_dtype ydt);

/* A pass over the finished float32 output of the next forward convolution this thread runs
 * (conv2d or the fused forward) that writes to y: fn(ctx, p, rows, cols, ld) for rows of
 * cols elements at p, ld apart, each element once, called concurrently on disjoint ones right after the
 * convolution (and its bias and activation) wrote them, while they are in cache. A graph
 * runs a fused elementwise group this way. The convolution takes the hook when it starts;
 * one writing elsewhere (another convolution run on the way, say a recomputation) leaves
 * it. ty_conv_clear_tile_hook drops a hook no convolution took and says whether there was
 * one. */
typedef void (*ty_conv_tile_fn)(void *ctx, float *p, int64_t rows, int64_t cols, int64_t ld);
void ty_conv_set_tile_hook(ty_conv_tile_fn fn, void *ctx, const float *y);
int ty_conv_clear_tile_hook(void);

/* Says that the pending hook (set just before; setting a hook forgets this) is exactly bn's
 * batch norm chain over the output (gemm.h; copied): a convolution with no bias or activation
 * of its own hands it to its kernel with the hook, and a kernel that can runs it in registers
 * instead (conv1x1's AVX2 tiles). */
void ty_conv_set_tile_bn(const ty_epi_bn_f32 *bn);

#endif
