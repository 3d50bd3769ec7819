/* Deterministic mode's batch reductions: in gradients, every sum over the batch axis (axis 0)
 * is a balanced pairwise tree over the batch index, ((s0 + s1) + (s2 + s3)) + ..., of
 * per-sample partials. A level adds neighbours (2i, 2i + 1) and carries an odd last one up,
 * which is the tree that splits n items at the largest power of two below n.
 *
 * Why: data-parallel training on w ranks sums each rank's contiguous slice of the batch the
 * same way, and the deterministic all-reduce adds the ranks in the same tree over the rank
 * index (src/dist, combine_blocks). When w is a power of two dividing the batch, each rank's
 * tree is a subtree of one process's tree on the whole batch, and the loss's 1/N against
 * 1/(N/w) then 1/w differ by exact powers of two, so both end with the same bits.
 *
 * On when the calling thread's algorithm policy has TY_ALGO_REPRODUCIBLE
 * (tianyuan.config.deterministic_kernel) or the communicator is deterministic
 * (ty_dist_set_deterministic); off, the gradients take the usual fused kernels. The trees are
 * built from ordinary ops (slice, add, mul, the per-sample filter gradient), so traces record
 * them like any gradient. Costs: the linear layer's weight gradient holds batch x weight
 * elements of per-sample products, the convolution's filter gradient runs per image. */
#ifndef TY_OPS_BATCH_TREE_H
#define TY_OPS_BATCH_TREE_H

#include "ops/gradkit.h"

/* Whether deterministic mode's batch trees are on for this thread. */
int ty_batch_tree_on(void);

/* Whether ty_sum_to_shape(g -> shape) sums over axis 0 of a float g of more than one row
 * while the trees are on: then ty_batch_tree_sum_to computes it. */
int ty_batch_tree_sums_rows(const ty_tensor *g, int ndim, const int64_t *shape);
/* g summed to shape: its other broadcast axes per row first, then the tree over axis 0. */
ty_status ty_batch_tree_sum_to(ty_tensor *g, int ndim, const int64_t *shape,
                               ty_tensor **out) TY_NODISCARD;

/* Whether x^T y for x (M, p), y (M, q) (a weight gradient whose contraction runs over the
 * batch rows) takes gk_tree_rows_outer: 2-d float32/float64 operands, trees on. */
int ty_batch_tree_rows_outer_applies(const ty_tensor *x, const ty_tensor *y);
/* x^T y as the tree over rows i of the exact products outer(x[i], y[i]): (p, q). */
ty_tensor *gk_tree_rows_outer(ty_gk *k, ty_tensor *x, ty_tensor *y);

/* conv2d's filter gradient backward_filter(x, dy, w) (params p); with the trees on, the tree
 * over images n of backward_filter(x[n], dy[n], w). */
ty_tensor *gk_conv2d_filter_grad(ty_gk *k, const void *p, ty_tensor *x, ty_tensor *dy,
                                 ty_tensor *w);

#endif
