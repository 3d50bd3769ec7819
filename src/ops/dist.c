/* Collective family: the dist_* ops of ops.def, over the communicator of tianyuan/dist.h.
 *
 * Shapes are the same on every rank, so one trace fits every rank: what a rank does not
 * receive (reduce and gather away from root) is zeros. Gradient rules are collectives too,
 * written with ty_apply (all_reduce's is all_reduce, all_gather's is reduce_scatter,
 * broadcast's is a reduce to root...), for a loss that is the sum of the ranks' losses. */
#include <string.h>

#include "ops/gradkit.h"
#include "ops/strided.h"
#include "tianyuan/dist.h"

/* The size of group, checking that this rank is a member. */
static ty_status
member_size(int64_t group, int *size)
{
    int rank = -1;
    TY_TRY(ty_dist_rank((int)group, &rank));
    TY_TRY(ty_dist_size((int)group, size));
    TY_CHECK(rank >= 0, TY_ERR_INVALID_ARG, "this rank is not a member of group %lld",
             (long long)group);
    return TY_OK;
}

static ty_status
check_root(int64_t root, int size, const char *what)
{
    TY_CHECK(root < size, TY_ERR_INDEX, "%s %lld outside a group of %d ranks", what,
             (long long)root, size);
    return TY_OK;
}

/* The group field of any collective's params (every dist_* struct has one). */
static int64_t
group_of(const ty_call *c)
{
    switch (c->op) {
    case TY_OP_DIST_ALL_REDUCE:
    case TY_OP_DIST_REDUCE_SCATTER: return ((const ty_p_dist_reduce *)c->params)->group;
    case TY_OP_DIST_ALL_GATHER:
    case TY_OP_DIST_ALL_TO_ALL: return ((const ty_p_dist_group *)c->params)->group;
    case TY_OP_DIST_REDUCE: return ((const ty_p_dist_reduce_root *)c->params)->group;
    case TY_OP_DIST_SEND: return ((const ty_p_dist_send *)c->params)->group;
    case TY_OP_DIST_RECV: return ((const ty_p_dist_recv *)c->params)->group;
    default: return ((const ty_p_dist_root *)c->params)->group;
    }
}

/* ---- inference ---- */

ty_status
ty_dist_all_reduce_infer(const ty_call *c, ty_meta *out)
{
    int size;
    TY_TRY(member_size(group_of(c), &size));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

/* broadcast and reduce: x's meta, with a root inside the group */
ty_status
ty_dist_same_infer(const ty_call *c, ty_meta *out)
{
    int size;
    TY_TRY(member_size(group_of(c), &size));
    int64_t root = c->op == TY_OP_DIST_REDUCE ? ((const ty_p_dist_reduce_root *)c->params)->root
                                              : ((const ty_p_dist_root *)c->params)->root;
    TY_TRY(check_root(root, size, "root"));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

/* all_gather and gather: size blocks of x along axis 0 (a 0-d x is one element) */
ty_status
ty_dist_all_gather_infer(const ty_call *c, ty_meta *out)
{
    int size;
    TY_TRY(member_size(group_of(c), &size));
    if (c->op == TY_OP_DIST_GATHER) {
        TY_TRY(check_root(((const ty_p_dist_root *)c->params)->root, size, "root"));
    }
    ty_meta_of(c->in[0], out);
    if (out->ndim == 0) {
        out->ndim = 1;
        out->shape[0] = 1;
    }
    TY_CHECK(out->shape[0] <= INT64_MAX / size, TY_ERR_SHAPE, "%lld rows gathered from %d ranks "
             "overflow", (long long)out->shape[0], size);
    out->shape[0] *= size;
    return TY_OK;
}

static ty_status
check_blocks(const ty_tensor *x, int size)
{
    TY_CHECK(x->ndim >= 1 && x->shape[0] % size == 0, TY_ERR_SHAPE,
             "axis 0 of x (shape %s) must split into %d equal blocks, one per rank",
             ty_shape_str(x->ndim, x->shape, (char[TY_SHAPE_BUF]){0}, TY_SHAPE_BUF), size);
    return TY_OK;
}

/* reduce_scatter and scatter: block r of x's axis 0 */
ty_status
ty_dist_split_infer(const ty_call *c, ty_meta *out)
{
    int size;
    TY_TRY(member_size(group_of(c), &size));
    if (c->op == TY_OP_DIST_SCATTER) {
        TY_TRY(check_root(((const ty_p_dist_root *)c->params)->root, size, "root"));
    }
    TY_TRY(check_blocks(c->in[0], size));
    ty_meta_of(c->in[0], out);
    out->shape[0] /= size;
    return TY_OK;
}

ty_status
ty_dist_all_to_all_infer(const ty_call *c, ty_meta *out)
{
    int size;
    TY_TRY(member_size(group_of(c), &size));
    TY_TRY(check_blocks(c->in[0], size));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

ty_status
ty_dist_send_infer(const ty_call *c, ty_meta *out)
{
    int size;
    TY_TRY(member_size(group_of(c), &size));
    TY_TRY(check_root(((const ty_p_dist_send *)c->params)->peer, size, "peer"));
    out->dtype = c->in[0]->dtype;
    out->ndim = 1;
    out->shape[0] = 0;
    return TY_OK;
}

ty_status
ty_dist_recv_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_dist_recv *p = c->params;
    int size;
    TY_TRY(member_size(p->group, &size));
    TY_TRY(check_root(p->peer, size, "peer"));
    int64_t n;
    TY_TRY(ty_shape_numel(p->shape.n, p->shape.v, &n));
    out->dtype = (ty_dtype)p->dtype;
    out->ndim = p->shape.n;
    memcpy(out->shape, p->shape.v, sizeof(int64_t) * (size_t)p->shape.n);
    return TY_OK;
}

/* ---- forward ---- */

/* x's data, contiguous: x's own memory, or a copy in *tmp (a new reference). Kernels use
 * ty_tensor_ptr: the dispatcher made the inputs readable, and an output being written is
 * still pending (ty_tensor_data would refuse it). */
static ty_status
contiguous_data(ty_tensor *x, ty_tensor **tmp, const void **data)
{
    *tmp = NULL;
    if (ty_tensor_is_contiguous(x)) {
        *data = ty_tensor_ptr(x);
        return TY_OK;
    }
    TY_TRY(ty_tensor_new_like_meta(x->dtype, x->ndim, x->shape, tmp));
    ty_status s = ty_strided_copy(*tmp, x);
    if (s != TY_OK) {
        ty_tensor_release(*tmp);
        *tmp = NULL;
        return s;
    }
    *data = ty_tensor_ptr(*tmp);
    return TY_OK;
}

/* Runs collective coll from x (input 0, when the op has one) into out (NULL: none), count
 * elements per rank's block. */
static ty_status
run(const ty_call *c, ty_dist_coll coll, int64_t mode, int64_t root, int64_t count,
    ty_tensor *out)
{
    ty_tensor *tmp = NULL;
    const void *send = NULL;
    if (c->nin > 0) {
        TY_TRY(contiguous_data(c->in[0], &tmp, &send));
    }
    ty_dtype dt = c->nin > 0 ? c->in[0]->dtype : out->dtype;
    ty_dist_args a = {coll, (int)group_of(c), send, out ? ty_tensor_ptr(out) : NULL, count, dt,
                      (ty_dist_mode)mode, (int)root};
    ty_status s = ty_dist_run(&a);
    ty_tensor_release(tmp);
    return s;
}

static int
group_size(const ty_call *c)
{
    int size = 1;
    return ty_dist_size((int)group_of(c), &size) == TY_OK ? size : 1;
}

/* Zeros where this rank is not root (reduce, gather): the same shape on every rank. */
static void
zero_unless_root(const ty_call *c, int64_t root, ty_tensor *out)
{
    int rank = -1;
    int64_t n = ty_tensor_numel(out);
    if (n > 0 && (ty_dist_rank((int)group_of(c), &rank) != TY_OK || rank != root)) {
        memset(ty_tensor_ptr(out), 0, (size_t)n * ty_dtype_size(out->dtype));
    }
}

ty_status
ty_dist_all_reduce_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_reduce *p = c->params;
    return run(c, TY_COLL_ALL_REDUCE, p->mode, 0, ty_tensor_numel(out[0]), out[0]);
}

ty_status
ty_dist_broadcast_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_root *p = c->params;
    return run(c, TY_COLL_BROADCAST, 0, p->root, ty_tensor_numel(out[0]), out[0]);
}

ty_status
ty_dist_all_gather_forward(const ty_call *c, ty_tensor **out)
{
    return run(c, TY_COLL_ALL_GATHER, 0, 0, ty_tensor_numel(c->in[0]), out[0]);
}

ty_status
ty_dist_reduce_scatter_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_reduce *p = c->params;
    return run(c, TY_COLL_REDUCE_SCATTER, p->mode, 0, ty_tensor_numel(out[0]), out[0]);
}

ty_status
ty_dist_reduce_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_reduce_root *p = c->params;
    zero_unless_root(c, p->root, out[0]);
    return run(c, TY_COLL_REDUCE, p->mode, p->root, ty_tensor_numel(out[0]), out[0]);
}

ty_status
ty_dist_gather_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_root *p = c->params;
    zero_unless_root(c, p->root, out[0]);
    return run(c, TY_COLL_GATHER, 0, p->root, ty_tensor_numel(c->in[0]), out[0]);
}

ty_status
ty_dist_scatter_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_root *p = c->params;
    return run(c, TY_COLL_SCATTER, 0, p->root, ty_tensor_numel(out[0]), out[0]);
}

ty_status
ty_dist_all_to_all_forward(const ty_call *c, ty_tensor **out)
{
    return run(c, TY_COLL_ALL_TO_ALL, 0, 0, ty_tensor_numel(out[0]) / group_size(c), out[0]);
}

ty_status
ty_dist_send_forward(const ty_call *c, ty_tensor **out)
{
    (void)out;
    const ty_p_dist_send *p = c->params;
    return run(c, TY_COLL_SEND, 0, p->peer, ty_tensor_numel(c->in[0]), NULL);
}

ty_status
ty_dist_recv_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_dist_recv *p = c->params;
    return run(c, TY_COLL_RECV, 0, p->peer, ty_tensor_numel(out[0]), out[0]);
}

/* ---- gradients ---- */

/* The output's gradient, or zeros: a rank whose output got no gradient still takes part in
 * the backward collective the other ranks run. */
static ty_tensor *
grad_or_zeros(ty_gk *k, ty_tensor *g, const ty_tensor *y)
{
    if (g || k->st != TY_OK) {
        return g;
    }
    ty_tensor *z = NULL;
    k->st = ty_zeros_shaped(y->dtype, y->ndim, y->shape, &z);
    if (k->st == TY_OK && k->n < GK_MAX) {
        k->tmp[k->n++] = z;
        return z;
    }
    ty_tensor_release(z);
    return NULL;
}

/* g where x equals the reduction's result, else 0: the adjoint of max/min. */
static ty_tensor *
where_selected(ty_gk *k, ty_tensor *x, ty_tensor *y, ty_tensor *g)
{
    ty_tensor *mask = gk_apply(k, TY_OP_EQ, NULL, 2, x, y, NULL);
    return gk_apply(k, TY_OP_WHERE, NULL, 3, mask, g, gk_const(k, g, 0.0));
}

/* t reshaped to like's shape (a 0-d input went through collectives as one element). */
static ty_tensor *
shaped_like(ty_gk *k, ty_tensor *t, const ty_tensor *like)
{
    if (!t || t->ndim == like->ndim) {
        return t;
    }
    ty_p_shape p = {0};
    p.shape.n = like->ndim;
    memcpy(p.shape.v, like->shape, sizeof(int64_t) * (size_t)like->ndim);
    return gk_apply(k, TY_OP_RESHAPE, &p, 1, t, NULL, NULL);
}

ty_status
ty_grad_dist_all_reduce(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                        ty_tensor **gin)
{
    const ty_p_dist_reduce *p = c->params;
    ty_gk k = {0};
    ty_p_dist_reduce sum = {.mode = TY_DIST_SUM, .group = p->group};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    ty_tensor *r = gk_apply(&k, TY_OP_DIST_ALL_REDUCE, &sum, 1, g, NULL, NULL);
    if (p->mode != TY_DIST_SUM) {
        r = where_selected(&k, c->in[0], out[0], r);
    }
    return gk_finish(&k, r, &gin[0]);
}

ty_status
ty_grad_dist_broadcast(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                       ty_tensor **gin)
{
    const ty_p_dist_root *p = c->params;
    ty_gk k = {0};
    ty_p_dist_reduce_root to_root = {.root = p->root, .mode = TY_DIST_SUM, .group = p->group};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    return gk_finish(&k, gk_apply(&k, TY_OP_DIST_REDUCE, &to_root, 1, g, NULL, NULL), &gin[0]);
}

ty_status
ty_grad_dist_all_gather(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                        ty_tensor **gin)
{
    const ty_p_dist_group *p = c->params;
    ty_gk k = {0};
    ty_p_dist_reduce sum = {.mode = TY_DIST_SUM, .group = p->group};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    ty_tensor *r = gk_apply(&k, TY_OP_DIST_REDUCE_SCATTER, &sum, 1, g, NULL, NULL);
    return gk_finish(&k, shaped_like(&k, r, c->in[0]), &gin[0]);
}

ty_status
ty_grad_dist_reduce_scatter(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                            ty_tensor **gin)
{
    const ty_p_dist_reduce *p = c->params;
    ty_gk k = {0};
    ty_p_dist_group gp = {.group = p->group};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    ty_tensor *r = gk_apply(&k, TY_OP_DIST_ALL_GATHER, &gp, 1, g, NULL, NULL);
    if (p->mode != TY_DIST_SUM) {
        ty_tensor *y = gk_apply(&k, TY_OP_DIST_ALL_GATHER, &gp, 1, out[0], NULL, NULL);
        r = where_selected(&k, c->in[0], y, r);
    }
    return gk_finish(&k, r, &gin[0]);
}

ty_status
ty_grad_dist_reduce(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                    ty_tensor **gin)
{
    const ty_p_dist_reduce_root *p = c->params;
    ty_gk k = {0};
    ty_p_dist_root from_root = {.root = p->root, .group = p->group};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    ty_tensor *r = gk_apply(&k, TY_OP_DIST_BROADCAST, &from_root, 1, g, NULL, NULL);
    if (p->mode != TY_DIST_SUM) {
        ty_tensor *y = gk_apply(&k, TY_OP_DIST_BROADCAST, &from_root, 1, out[0], NULL, NULL);
        r = where_selected(&k, c->in[0], y, r);
    }
    return gk_finish(&k, r, &gin[0]);
}

ty_status
ty_grad_dist_gather(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                    ty_tensor **gin)
{
    const ty_p_dist_root *p = c->params;
    ty_gk k = {0};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    ty_tensor *r = gk_apply(&k, TY_OP_DIST_SCATTER, p, 1, g, NULL, NULL);
    return gk_finish(&k, shaped_like(&k, r, c->in[0]), &gin[0]);
}

ty_status
ty_grad_dist_scatter(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                     ty_tensor **gin)
{
    const ty_p_dist_root *p = c->params;
    ty_gk k = {0};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    return gk_finish(&k, gk_apply(&k, TY_OP_DIST_GATHER, p, 1, g, NULL, NULL), &gin[0]);
}

ty_status
ty_grad_dist_all_to_all(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                        ty_tensor **gin)
{
    ty_gk k = {0};
    ty_tensor *g = grad_or_zeros(&k, gout[0], out[0]);
    return gk_finish(&k, gk_apply(&k, TY_OP_DIST_ALL_TO_ALL, c->params, 1, g, NULL, NULL),
                     &gin[0]);
}
