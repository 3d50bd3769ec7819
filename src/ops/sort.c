/* Sort family: sort and topk along the last axis. Each row is sorted by a stable merge sort
 * of its indices (float keys as doubles, NaN the largest; integer keys exact), and the first k
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

/* A sort key: a float row's value as a double (NaN sorts as the largest value), an integer
 * row's exactly as an int64 (a double cannot tell 2**63 - 1 from 2**63 - 2). */
typedef union sort_key {
    double f;
    int64_t i;
} sort_key;

static void
row_keys(const sort_ctx *s, const char *row, sort_key *key)
{
    for (int64_t i = 0; i < s->n; i++) {
        const char *v = row + i * (int64_t)s->es;
        switch (s->dt) {
        case TY_FLOAT32: key[i].f = *(const float *)v; break;
        case TY_INT32: key[i].i = *(const int32_t *)v; break;
        case TY_INT64: key[i].i = *(const int64_t *)v; break;
        default:
            if (ty_dtype_is_float(s->dt)) {
                key[i].f = ty_load_f64(v, s->dt);
            } else {
                key[i].i = (int64_t)ty_load_f64(v, s->dt); /* 8/16-bit: exact */
            }
        }
    }
}

/* Does key a come strictly before key b? */
static inline int
before(sort_key a, sort_key b, int isint, int desc)
{
    if (isint) {
        return desc ? a.i > b.i : a.i < b.i;
    }
    if (desc) {
        return a.f > b.f || (a.f != a.f && b.f == b.f);
    }
    return a.f < b.f || (b.f != b.f && a.f == a.f);
}

/* Stable bottom-up merge sort of the permutation p (length n) by key. */
static void
merge_sort(const sort_key *key, int32_t *p, int32_t *tmp, int64_t n, int isint, int desc)
{
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) {
                tmp[o++] = before(key[p[j]], key[p[i]], isint, desc) ? p[j++] : p[i++];
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
    sort_key *key = malloc(sizeof(sort_key) * n);
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
        merge_sort(key, p, tmp, s->n, !ty_dtype_is_float(s->dt), s->desc);
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
