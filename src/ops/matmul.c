/* Batched matrix product with numpy-style broadcast batch dims, on the CPU GEMM. */
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/gemm.h"
#include "ops/batch_tree.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

/* With at least one batch per thread, or below this many multiply-adds per matrix, batches
 * run in parallel (each GEMM serial); otherwise batches run in turn and each GEMM uses the
 * threads. Both give the same bits. */
enum { SMALL_FMAS = 1 << 18 };

typedef struct mm_dims {
    int nb;                    /* batch rank of the output */
    int64_t bshape[TY_MAX_DIMS];
    int64_t batch;             /* product of bshape */
    int64_t M, N, K;
} mm_dims;

static ty_status
mm_check_dtype(ty_dtype a, ty_dtype b, ty_dtype *out)
{
    TY_CHECK(a != TY_BOOL && b != TY_BOOL, TY_ERR_DTYPE,
             "operands must be numeric, got %s and %s", ty_dtype_name(a), ty_dtype_name(b));
    *out = ty_promote(a, b);
    return TY_OK;
}

/* Shapes, inner-dimension agreement and the broadcast batch shape. */
static ty_status
mm_plan(const ty_call *c, mm_dims *d)
{
    const ty_p_matmul *p = c->params;
    const ty_tensor *a = c->in[0], *b = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(a->ndim >= 2 && b->ndim >= 2, TY_ERR_SHAPE,
             "operands must have at least 2 dims, got %s and %s",
             ty_shape_str(a->ndim, a->shape, b1, sizeof b1),
             ty_shape_str(b->ndim, b->shape, b2, sizeof b2));
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    d->M = p->transpose_a ? ac : ar;
    d->K = p->transpose_a ? ar : ac;
    d->N = p->transpose_b ? br : bc;
    int64_t kb = p->transpose_b ? bc : br;
    TY_CHECK(d->K == kb, TY_ERR_SHAPE,
             "inner dimensions differ: %s%s @ %s%s (%lld vs %lld)",
             ty_shape_str(a->ndim, a->shape, b1, sizeof b1), p->transpose_a ? "^T" : "",
             ty_shape_str(b->ndim, b->shape, b2, sizeof b2), p->transpose_b ? "^T" : "",
             (long long)d->K, (long long)kb);
    ty_status st = ty_broadcast_shapes(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &d->nb,
                                       d->bshape);
    TY_CHECK(st == TY_OK, TY_ERR_SHAPE, "batch dims of %s and %s cannot be broadcast",
             ty_shape_str(a->ndim, a->shape, b1, sizeof b1),
             ty_shape_str(b->ndim, b->shape, b2, sizeof b2));
    TY_CHECK(d->nb + 2 <= TY_MAX_DIMS, TY_ERR_SHAPE, "result rank exceeds %d", TY_MAX_DIMS);
    d->batch = 1;
    for (int i = 0; i < d->nb; i++) {
        d->batch *= d->bshape[i];
    }
    return TY_OK;
}

ty_status
ty_matmul_infer(const ty_call *c, ty_meta *out)
{
    mm_dims d;
    TY_TRY(mm_check_dtype(c->in[0]->dtype, c->in[1]->dtype, &out->dtype));
    TY_TRY(mm_plan(c, &d));
    out->ndim = d.nb + 2;
    memcpy(out->shape, d.bshape, sizeof(int64_t) * (size_t)d.nb);
    out->shape[d.nb] = d.M;
    out->shape[d.nb + 1] = d.N;
    int64_t n;
    return ty_shape_numel(out->ndim, out->shape, &n);
}

/* ---- forward ---- */
typedef struct mm_ctx {
    const mm_dims *d;
    ty_dtype dt;            /* float32, float64 or int64 */
    const char *pa, *pb;
    char *pc;
    int64_t abstr[TY_MAX_DIMS], bbstr[TY_MAX_DIMS]; /* batch strides, 0 where broadcast */
    int64_t rsa, csa, rsb, csb;
} mm_ctx;

/* GEMM view of an operand: element (i, k) at i*rs + k*cs, transposed by swapping strides. */
static void
mm_strides(const ty_tensor *t, int trans, int64_t *rs, int64_t *cs)
{
    int64_t r = t->strides[t->ndim - 2], s = t->strides[t->ndim - 1];
    *rs = trans ? s : r;
    *cs = trans ? r : s;
}

/* C (M x N) += A B over int64 with wrap-around (the narrowing store keeps the low bits, which
 * is exact modular arithmetic for every integer dtype). */
static void
mm_int64(const mm_ctx *x, const int64_t *A, const int64_t *B, int64_t *Cm)
{
    const mm_dims *d = x->d;
    for (int64_t i = 0; i < d->M; i++) {
        uint64_t *crow = (uint64_t *)(Cm + i * d->N);
        memset(crow, 0, sizeof(int64_t) * (size_t)d->N);
        for (int64_t k = 0; k < d->K; k++) {
            uint64_t av = (uint64_t)A[i * x->rsa + k * x->csa];
            const int64_t *brow = B + k * x->rsb;
            for (int64_t j = 0; j < d->N; j++) {
                crow[j] += av * (uint64_t)brow[j * x->csb];
            }
        }
    }
}

static void
mm_one(const mm_ctx *x, int64_t bi)
{
    const mm_dims *d = x->d;
    int64_t oa = 0, ob = 0, r = bi;
    for (int i = d->nb - 1; i >= 0; i--) {
        int64_t idx = r % d->bshape[i];
        r /= d->bshape[i];
        oa += idx * x->abstr[i];
        ob += idx * x->bbstr[i];
    }
    size_t es = ty_dtype_size(x->dt);
    const char *A = x->pa + oa * (int64_t)es, *B = x->pb + ob * (int64_t)es;
    char *Cm = x->pc + bi * d->M * d->N * (int64_t)es;
    if (x->dt == TY_FLOAT32) {
        ty_gemm_f32(d->M, d->N, d->K, (const float *)A, x->rsa, x->csa, (const float *)B, x->rsb,
                    x->csb, (float *)Cm, d->N, 0);
    } else if (x->dt == TY_FLOAT64) {
        ty_gemm_f64(d->M, d->N, d->K, (const double *)A, x->rsa, x->csa, (const double *)B,
                    x->rsb, x->csb, (double *)Cm, d->N, 0);
    } else {
        mm_int64(x, (const int64_t *)A, (const int64_t *)B, (int64_t *)Cm);
    }
}

static void
mm_range(void *ctx, int64_t begin, int64_t end)
{
    for (int64_t bi = begin; bi < end; bi++) {
        mm_one(ctx, bi);
    }
}

/* Compute dtype of a result dtype: GEMM types as is, half types in float32, ints in int64. */
static ty_dtype
mm_compute_dtype(ty_dtype dt)
{
    if (dt == TY_FLOAT32 || dt == TY_FLOAT64) {
        return dt;
    }
    return ty_dtype_is_float(dt) ? TY_FLOAT32 : TY_INT64;
}

/* An operand in the compute dtype; copied only when neither of its last two dims has unit
 * stride (GEMM packing reads any strides, but gathers on both axes are slow). */
static ty_status
mm_operand(ty_tensor *t, ty_dtype cdt, ty_tensor **out)
{
    if (t->dtype != cdt) {
        return ty_strided_cast(t, cdt, out);
    }
    int n = t->ndim;
    int unit = t->strides[n - 1] == 1 || t->strides[n - 2] == 1 || t->shape[n - 1] <= 1 ||
               t->shape[n - 2] <= 1;
    if (unit) {
        ty_tensor_retain(t);
        *out = t;
        return TY_OK;
    }
    return ty_contiguous(t, out);
}

/* Strides of t's batch dims (all but the last two) seen from the nb-d batch shape. */
static void
mm_batch_strides(const ty_tensor *t, const mm_dims *d, int64_t *st)
{
    int lead = d->nb - (t->ndim - 2);
    for (int i = 0; i < d->nb; i++) {
        int j = i - lead;
        st[i] = (j < 0 || t->shape[j] == 1) ? 0 : t->strides[j];
    }
}

static void
mm_run(mm_ctx *x, const ty_tensor *a, const ty_tensor *b)
{
    const mm_dims *d = x->d;
    mm_batch_strides(a, d, x->abstr);
    mm_batch_strides(b, d, x->bbstr);
    x->pa = ty_tensor_ptr(a);
    x->pb = ty_tensor_ptr(b);
    double fmas = (double)d->M * (double)d->N * (double)d->K;
    int many = d->batch >= ty_get_num_threads();
    if (d->batch > 1 && (many || fmas < SMALL_FMAS || x->dt == TY_INT64)) {
        int64_t grain = (int64_t)(SMALL_FMAS / (fmas + 1.0)) + 1;
        ty_parallel_for(d->batch, grain, mm_range, x);
    } else {
        mm_range(x, 0, d->batch);
    }
}

ty_status
ty_matmul_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_matmul *p = c->params;
    mm_dims d;
    TY_TRY(mm_plan(c, &d));
    ty_dtype cdt = mm_compute_dtype(out[0]->dtype);
    ty_tensor *a = NULL, *b = NULL, *y = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(mm_operand(c->in[0], cdt, &a));
    TY_TRY_GOTO(mm_operand(c->in[1], cdt, &b));
    TY_TRY_GOTO(ty_compute_target(out[0], cdt, &y));
    mm_ctx x = {.d = &d, .dt = cdt, .pc = ty_tensor_ptr(y)};
    mm_strides(a, p->transpose_a != 0, &x.rsa, &x.csa);
    mm_strides(b, p->transpose_b != 0, &x.rsb, &x.csb);
    mm_run(&x, a, b);
    TY_TRY_GOTO(ty_compute_done(out[0], y));
fail:
    ty_tensor_release(a);
    ty_tensor_release(b);
    ty_tensor_release(y);
    return status;
}

/* ---- gradient ---- */
static ty_tensor *
mm_apply(ty_gk *k, ty_tensor *a, ty_tensor *b, int ta, int tb)
{
    ty_p_matmul p = {.transpose_a = ta, .transpose_b = tb};
    return gk_apply(k, TY_OP_MATMUL, &p, 2, a, b, NULL);
}

/* Sums the broadcast batch dims away and restores like's dtype (operands may be promoted). */
static ty_tensor *
mm_fit(ty_gk *k, ty_tensor *g, const ty_tensor *like)
{
    ty_tensor *r = gk_sum_to(k, g, like);
    return r ? gk_fit_dtype(k, r, like) : NULL;
}

/* y = op(a) op(b): each input's gradient is again one matmul of g with the other input. */
ty_status
ty_grad_matmul(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const ty_p_matmul *p = c->params;
    ty_tensor *a = c->in[0], *b = c->in[1], *g = gout[0];
    int ta = p->transpose_a != 0, tb = p->transpose_b != 0;
    ty_gk k = {0};
    ty_tensor *da = NULL, *db = NULL;
    if (!g) {
        return gk_finish2(&k, NULL, &gin[0], NULL, &gin[1]);
    }
    int want_a = ty_grad_wanted(0) && ty_dtype_is_float(a->dtype);
    int want_b = ty_grad_wanted(1) && ty_dtype_is_float(b->dtype);
    if (want_a && !ta) {
        da = tb ? mm_apply(&k, g, b, 0, 0) : mm_apply(&k, g, b, 0, 1);
    } else if (want_a) {
        da = tb ? mm_apply(&k, b, g, 1, 1) : mm_apply(&k, b, g, 0, 1);
    }
    if (want_b && !ta && ty_batch_tree_rows_outer_applies(a, g)) { /* ops/batch_tree.h */
        db = tb ? gk_tree_rows_outer(&k, g, a) : gk_tree_rows_outer(&k, a, g);
    } else if (want_b && !tb) {
        db = ta ? mm_apply(&k, a, g, 0, 0) : mm_apply(&k, a, g, 1, 0);
    } else if (want_b) {
        db = ta ? mm_apply(&k, g, a, 1, 1) : mm_apply(&k, g, a, 1, 0);
    }
    da = want_a ? mm_fit(&k, da, a) : NULL;
    db = want_b ? mm_fit(&k, db, b) : NULL;
    return gk_finish2(&k, da, &gin[0], db, &gin[1]);
}
