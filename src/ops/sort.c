/* Sort family: sort and topk along the last axis. Each row is sorted by a stable merge sort
 * of its indices (keys read as doubles; NaN sorts as the largest value), and the first k
 * values and their int32 indices are written. */
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

typedef struct sort_ctx {
    const char *x; /* contiguous rows of n */
    char *vals;
    int32_t *idx;
    int64_t n, k;
    size_t es;
    ty_dtype dt;
    int desc;
    _Atomic int oom;
} sort_ctx;

static void
row_keys(const sort_ctx *s, const char *row, double *key)
{
    if (s->dt == TY_FLOAT32) {
        for (int64_t i = 0; i < s->n; i++) {
            key[i] = ((const float *)row)[i];
        }
    } else if (s->dt == TY_INT32) {
        for (int64_t i = 0; i < s->n; i++) {
            key[i] = ((const int32_t *)row)[i];
        }
    } else {
        for (int64_t i = 0; i < s->n; i++) {
            key[i] = ty_load_f64(row + i * (int64_t)s->es, s->dt);
        }
    }
}

/* Does key a come strictly before key b? NaN sorts as the largest value. */
static inline int
before(double a, double b, int desc)
{
    if (desc) {
        return a > b || (a != a && b == b);
    }
    return a < b || (b != b && a == a);
}

/* Stable bottom-up merge sort of the permutation p (length n) by key. */
static void
merge_sort(const double *key, int32_t *p, int32_t *tmp, int64_t n, int desc)
{
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                tmp[o++] = before(key[p[j]], key[p[i]], desc) ? p[j++] : p[i++];
            }
            while (i < mid) {
                tmp[o++] = p[i++];
            }
            while (j < hi) {
                tmp[o++] = p[j++];
            }
        }
        memcpy(p, tmp, sizeof(int32_t) * (size_t)n);
    }
}

static void
sort_range(void *vctx, int64_t begin, int64_t end)
{
    sort_ctx *s = vctx;
    size_t n = (size_t)s->n;
    double *key = malloc(sizeof(double) * n);
    int32_t *p = malloc(sizeof(int32_t) * n), *tmp = malloc(sizeof(int32_t) * n);
    if (!key || !p || !tmp) {
        s->oom = 1;
    }
    for (int64_t r = begin; r < end && key && p && tmp; r++) {
        const char *row = s->x + r * s->n * (int64_t)s->es;
        row_keys(s, row, key);
        for (int64_t i = 0; i < s->n; i++) {
            p[i] = (int32_t)i;
        }
        merge_sort(key, p, tmp, s->n, s->desc);
        for (int64_t i = 0; i < s->k; i++) {
            ty_copy_elem(s->vals + (r * s->k + i) * (int64_t)s->es,
                         row + p[i] * (int64_t)s->es, s->es);
            s->idx[r * s->k + i] = p[i];
        }
    }
    free(key);
    free(p);
    free(tmp);
}

static ty_status
sort_check(const ty_call *c, int64_t *k)
{
    const ty_tensor *x = c->in[0];
    TY_CHECK(x->ndim >= 1, TY_ERR_SHAPE, "needs an input with at least 1 dim");
    TY_CHECK(x->dtype != TY_BOOL, TY_ERR_DTYPE, "cannot sort a bool tensor");
    int64_t n = x->shape[x->ndim - 1];
    TY_CHECK(n <= INT32_MAX, TY_ERR_SHAPE, "rows of %lld elements are too long to sort",
             (long long)n);
    *k = n;
    if (c->op == TY_OP_TOPK) {
        *k = ((const ty_p_topk *)c->params)->k;
        TY_CHECK(*k >= 0 && *k <= n, TY_ERR_INVALID_ARG, "k = %lld is out of range [0, %lld]",
                 (long long)*k, (long long)n);
    }
    return TY_OK;
}

ty_status
ty_sort_infer(const ty_call *c, ty_meta *out)
{
    int64_t k = 0;
    TY_TRY(sort_check(c, &k));
    ty_meta_of(c->in[0], &out[0]);
    out[0].shape[out[0].ndim - 1] = k;
    out[1] = out[0];
    out[1].dtype = TY_INT32;
    return TY_OK;
}

ty_status
ty_sort_forward(const ty_call *c, ty_tensor **out)
{
    int64_t k = 0;
    ty_tensor *x;
    TY_TRY(sort_check(c, &k));
    const ty_tensor *in = c->in[0];
    int64_t n = in->shape[in->ndim - 1];
    if (n == 0 || ty_tensor_numel(in) == 0 || k == 0) {
        return TY_OK;
    }
    int desc = c->op == TY_OP_TOPK ? ((const ty_p_topk *)c->params)->descending != 0
                                    : ((const ty_p_sort *)c->params)->descending != 0;
    TY_TRY(ty_contiguous(c->in[0], &x));
    sort_ctx s = {.x = ty_tensor_ptr(x), .vals = ty_tensor_ptr(out[0]),
                  .idx = (int32_t *)ty_tensor_ptr(out[1]), .n = n, .k = k,
                  .es = ty_dtype_size(x->dtype), .dt = x->dtype, .desc = desc, .oom = 0};
    ty_parallel_for(ty_tensor_numel(x) / n, (1 << 12) / n + 1, sort_range, &s);
    ty_tensor_release(x);
    TY_CHECK(!s.oom, TY_ERR_OOM, "out of memory for sort scratch (rows of %lld)", (long long)n);
    return TY_OK;
}

ty_status
ty_grad_sort(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    const ty_tensor *x = c->in[0];
    if (!gout[0]) {
        gin[0] = NULL;
        return TY_OK;
    }
    ty_tensor *z;
    TY_TRY(ty_zeros_shaped(gout[0]->dtype, x->ndim, x->shape, &z));
    ty_p_axis p = {.axis = x->ndim - 1};
    ty_status st = ty_op3(TY_OP_SCATTER_ADD, &p, z, out[1], gout[0], &gin[0]);
    ty_tensor_release(z);
    return st;
}
