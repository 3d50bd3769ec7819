/* Deterministic mode's batch reductions as pairwise trees over the batch index: see
 * batch_tree.h for the tree, why it makes data-parallel training equal one process's, and
 * when it is on. Everything here is composed of ops, so traces record it. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ops/batch_tree.h"
#include "tianyuan/dist.h"

int
ty_batch_tree_on(void)
{
    return (ty_algo_policy_current() & TY_ALGO_REPRODUCIBLE) || ty_dist_deterministic();
}

/* The trees add in the tensor's own dtype: float16 sums keep the usual wider kernels. */
static int
tree_dtype(ty_dtype dt)
{
    return dt == TY_FLOAT32 || dt == TY_FLOAT64;
}

/* t[lo:hi:step] along axis 0 (a view). */
static ty_status
rows(ty_tensor *t, int64_t lo, int64_t hi, int64_t step, ty_tensor **out)
{
    ty_p_slice p;
    memset(&p, 0, sizeof p);
    p.starts.n = p.stops.n = p.steps.n = t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        p.starts.v[d] = d == 0 ? lo : 0;
        p.stops.v[d] = d == 0 ? hi : t->shape[d];
        p.steps.v[d] = d == 0 ? step : 1;
    }
    return ty_op1(TY_OP_SLICE, &p, t, out);
}

/* One level of the tree: row i of *out is t[2i] + t[2i + 1]; an odd last row is carried. */
static ty_status
tree_level(ty_tensor *t, ty_tensor **out)
{
    int64_t n = t->shape[0], h = n / 2;
    ty_tensor *even = NULL, *odd = NULL, *sum = NULL, *last = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(rows(t, 0, 2 * h, 2, &even));
    TY_TRY_GOTO(rows(t, 1, 2 * h, 2, &odd));
    TY_TRY_GOTO(ty_op2(TY_OP_ADD, NULL, even, odd, &sum));
    if (n % 2) {
        TY_TRY_GOTO(rows(t, n - 1, n, 1, &last));
        ty_p_axis ap = {.axis = 0};
        ty_tensor *in[2] = {sum, last};
        TY_TRY_GOTO(ty_apply(TY_OP_CONCAT, &ap, 2, in, 1, out));
    } else {
        *out = sum;
        sum = NULL;
    }
fail:
    ty_tensor_release(even);
    ty_tensor_release(odd);
    ty_tensor_release(sum);
    ty_tensor_release(last);
    return status;
}

/* t (n >= 1, ...) summed over axis 0 by the tree, the axis kept: (1, ...). */
static ty_status
tree_rows(ty_tensor *t, ty_tensor **out)
{
    ty_tensor_retain(t);
    while (t->shape[0] > 1) {
        ty_tensor *next = NULL;
        ty_status st = tree_level(t, &next);
        ty_tensor_release(t);
        TY_TRY(st);
        t = next;
    }
    *out = t;
    return TY_OK;
}

/* ---- broadcast gradients (ty_sum_to_shape) ---- */
int
ty_batch_tree_sums_rows(const ty_tensor *g, int ndim, const int64_t *shape)
{
    if (g->ndim < 1 || g->ndim < ndim || g->shape[0] < 1 || !tree_dtype(g->dtype)) {
        return 0;
    }
    int lead = g->ndim - ndim;
    int sums_axis0 = lead > 0 || (shape[0] == 1 && g->shape[0] != 1);
    return sums_axis0 && ty_batch_tree_on();
}

ty_status
ty_batch_tree_sum_to(ty_tensor *g, int ndim, const int64_t *shape, ty_tensor **out)
{
    ty_p_reduce rp = *(const ty_p_reduce *)ty_op_defs[TY_OP_SUM].params->defaults;
    int lead = g->ndim - ndim;
    rp.axes.n = 0;
    for (int i = 1; i < g->ndim; i++) { /* every reduced axis but the batch: per row */
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) {
            rp.axes.v[rp.axes.n++] = i;
        }
    }
    rp.keepdims = 1;
    ty_tensor *per_row = NULL, *sum = NULL;
    if (rp.axes.n > 0) {
        TY_TRY(ty_op1(TY_OP_SUM, &rp, g, &per_row));
    } else {
        ty_tensor_retain(g);
        per_row = g;
    }
    ty_status st = tree_rows(per_row, &sum);
    ty_tensor_release(per_row);
    TY_TRY(st);
    ty_p_shape sp = {0};
    sp.shape.n = ndim;
    memcpy(sp.shape.v, shape, sizeof(int64_t) * (size_t)ndim);
    st = ty_op1(TY_OP_RESHAPE, &sp, sum, out);
    ty_tensor_release(sum);
    return st;
}

/* ---- gradient rules: results are kept by the rule's kit ---- */

/* The rule's result: t reshaped (a view) through k, so k keeps it; t is released. */
static ty_tensor *
hand_over(ty_gk *k, ty_tensor *t, int ndim, const int64_t *shape)
{
    ty_p_shape sp = {0};
    sp.shape.n = ndim;
    memcpy(sp.shape.v, shape, sizeof(int64_t) * (size_t)ndim);
    ty_tensor *r = gk_apply(k, TY_OP_RESHAPE, &sp, 1, t, NULL, NULL);
    ty_tensor_release(t);
    return r;
}

int
ty_batch_tree_rows_outer_applies(const ty_tensor *x, const ty_tensor *y)
{
    return x->ndim == 2 && y->ndim == 2 && x->shape[0] >= 1 && x->shape[0] == y->shape[0] &&
           x->dtype == y->dtype && tree_dtype(x->dtype) && ty_batch_tree_on();
}

ty_tensor *
gk_tree_rows_outer(ty_gk *k, ty_tensor *x, ty_tensor *y)
{
    if (k->st != TY_OK || !x || !y) {
        return NULL;
    }
    ty_gk t = {0};
    ty_p_axes col = {.axes = {.n = 1, .v = {2}}}, row = {.axes = {.n = 1, .v = {1}}};
    ty_tensor *xc = gk_apply(&t, TY_OP_EXPAND_DIMS, &col, 1, x, NULL, NULL); /* (M, p, 1) */
    ty_tensor *yr = gk_apply(&t, TY_OP_EXPAND_DIMS, &row, 1, y, NULL, NULL); /* (M, 1, q) */
    ty_tensor *products = gk_apply(&t, TY_OP_MUL, NULL, 2, xc, yr, NULL);    /* exact each */
    ty_tensor *sum = NULL;
    if (t.st == TY_OK) {
        t.st = tree_rows(products, &sum);
    }
    ty_status st = gk_finish(&t, NULL, NULL);
    if (st != TY_OK) {
        k->st = st;
        return NULL;
    }
    int64_t shape[2] = {x->shape[1], y->shape[1]};
    return hand_over(k, sum, 2, shape);
}

/* parts[0] = the tree over parts[0..n) (the same tree as tree_rows: at stride s, part i
 * takes part i + s for i a multiple of 2s); the others are released. */
static ty_status
tree_list(ty_tensor **parts, int64_t n)
{
    for (int64_t s = 1; s < n; s *= 2) {
        for (int64_t i = 0; i + s < n; i += 2 * s) {
            ty_tensor *sum = NULL;
            TY_TRY(ty_op2(TY_OP_ADD, NULL, parts[i], parts[i + s], &sum));
            ty_tensor_release(parts[i]);
            ty_tensor_release(parts[i + s]);
            parts[i] = sum;
            parts[i + s] = NULL;
        }
    }
    return TY_OK;
}

/* parts[i] = backward_filter(x[i], dy[i], w) for each image, then their tree into parts[0]. */
static ty_status
per_image_filters(const void *p, ty_tensor *x, ty_tensor *dy, ty_tensor *w, ty_tensor **parts)
{
    int64_t n = x->shape[0];
    for (int64_t i = 0; i < n; i++) {
        ty_tensor *xi = NULL, *dyi = NULL;
        ty_status status = TY_OK;
        TY_TRY_GOTO(rows(x, i, i + 1, 1, &xi));
        TY_TRY_GOTO(rows(dy, i, i + 1, 1, &dyi));
        TY_TRY_GOTO(ty_op3(TY_OP_CONV2D_BACKWARD_FILTER, p, xi, dyi, w, &parts[i]));
    fail:
        ty_tensor_release(xi);
        ty_tensor_release(dyi);
        TY_TRY(status);
    }
    return tree_list(parts, n);
}

ty_tensor *
gk_conv2d_filter_grad(ty_gk *k, const void *p, ty_tensor *x, ty_tensor *dy, ty_tensor *w)
{
    if (k->st != TY_OK) {
        return NULL;
    }
    int64_t n = x->ndim == 4 && dy->ndim == 4 ? x->shape[0] : 0;
    if (n < 1 || dy->shape[0] != n || x->dtype != dy->dtype || !tree_dtype(x->dtype) ||
        !ty_batch_tree_on()) {
        return gk_apply(k, TY_OP_CONV2D_BACKWARD_FILTER, p, 3, x, dy, w);
    }
    ty_tensor **parts = calloc((size_t)n, sizeof *parts);
    if (!parts) {
        k->st = ty_set_error(TY_ERR_OOM, "conv2d filter gradient: no memory for %lld parts",
                             (long long)n);
        return NULL;
    }
    ty_status st = per_image_filters(p, x, dy, w, parts);
    ty_tensor *sum = parts[0];
    for (int64_t i = st == TY_OK ? 1 : 0; i < n; i++) {
        ty_tensor_release(parts[i]);
    }
    free(parts);
    if (st != TY_OK) {
        k->st = st;
        return NULL;
    }
    return hand_over(k, sum, w->ndim, w->shape);
}
