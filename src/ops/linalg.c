/* Linear algebra family: matinv (batched inverse, Gauss-Jordan with partial pivoting) and svd
 * (one-sided Jacobi). Both compute in double precision, one matrix per work item, so the bits
 * never depend on the thread count. A matrix with a non-finite entry, and for matinv a
 * singular one, gives NaN everywhere (no error that depends on the data: eager, traced and
 * deployed runs behave alike). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/gradkit.h"
#include "ops/op.h"
#include "ops/strided.h"

enum { MAX_SWEEPS = 64 };

static ty_status
check_float_matrix(const ty_tensor *x)
{
    char buf[TY_SHAPE_BUF];
    TY_CHECK(x->dtype == TY_FLOAT32 || x->dtype == TY_FLOAT64, TY_ERR_DTYPE,
             "expects a float32 or float64 input, got %s", ty_dtype_name(x->dtype));
    TY_CHECK(x->ndim >= 2, TY_ERR_SHAPE, "expects a (..., M, N) input of at least 2 dims, got %s",
             ty_shape_str(x->ndim, x->shape, buf, sizeof buf));
    return TY_OK;
}

static int
all_finite(const double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) {
            return 0;
        }
    }
    return 1;
}

static void
fill_nan(double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        a[i] = NAN;
    }
}

/* Loads matrix b of x (contiguous) into dst as doubles. */
static void
load_matrix(const ty_tensor *x, int64_t b, int64_t n, double *dst)
{
    size_t es = ty_dtype_size(x->dtype);
    const char *src = ty_tensor_ptr(x) + (size_t)(b * n) * es;
    for (int64_t i = 0; i < n; i++) {
        dst[i] = ty_load_f64(src + (size_t)i * es, x->dtype);
    }
}

static void
store_matrix(ty_tensor *y, int64_t b, int64_t n, const double *src)
{
    size_t es = ty_dtype_size(y->dtype);
    char *dst = ty_tensor_ptr(y) + (size_t)(b * n) * es;
    for (int64_t i = 0; i < n; i++) {
        ty_store_f64(dst + (size_t)i * es, y->dtype, src[i]);
    }
}

/* ---- matinv ---- */
ty_status
ty_matinv_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    char buf[TY_SHAPE_BUF];
    TY_TRY(check_float_matrix(x));
    TY_CHECK(x->shape[x->ndim - 1] == x->shape[x->ndim - 2], TY_ERR_SHAPE,
             "expects square matrices (..., n, n), got %s",
             ty_shape_str(x->ndim, x->shape, buf, sizeof buf));
    out->dtype = x->dtype;
    out->ndim = x->ndim;
    memcpy(out->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    return TY_OK;
}

/* Inverts the n x n row-major a in place using aug (n x 2n scratch); 0 when singular. */
static int
gauss_jordan(double *a, int64_t n, double *aug)
{
    int64_t w = 2 * n;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            aug[i * w + j] = a[i * n + j];
            aug[i * w + n + j] = i == j ? 1.0 : 0.0;
        }
    }
    for (int64_t col = 0; col < n; col++) {
        int64_t piv = col;
        for (int64_t r = col + 1; r < n; r++) {
            if (fabs(aug[r * w + col]) > fabs(aug[piv * w + col])) {
                piv = r;
            }
        }
        if (aug[piv * w + col] == 0.0) {
            return 0;
        }
        if (piv != col) {
            for (int64_t j = 0; j < w; j++) {
                double t = aug[col * w + j];
                aug[col * w + j] = aug[piv * w + j];
                aug[piv * w + j] = t;
            }
        }
        double inv = 1.0 / aug[col * w + col];
        for (int64_t j = 0; j < w; j++) {
            aug[col * w + j] *= inv;
        }
        for (int64_t r = 0; r < n; r++) {
            double f = aug[r * w + col];
            if (r == col || f == 0.0) {
                continue;
            }
            for (int64_t j = 0; j < w; j++) {
                aug[r * w + j] -= f * aug[col * w + j];
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(a + i * n, aug + i * w + n, sizeof(double) * (size_t)n);
    }
    return 1;
}

typedef struct inv_ctx {
    const ty_tensor *x;
    ty_tensor *y;
    int64_t n;
    double *scratch; /* 3 n^2 doubles per matrix */
} inv_ctx;

static void
inv_range(void *ctx, int64_t begin, int64_t end)
{
    const inv_ctx *c = ctx;
    int64_t nn = c->n * c->n;
    for (int64_t b = begin; b < end; b++) {
        double *a = c->scratch + b * 3 * nn, *aug = a + nn;
        load_matrix(c->x, b, nn, a);
        if (!all_finite(a, nn) || !gauss_jordan(a, c->n, aug)) {
            fill_nan(a, nn);
        }
        store_matrix(c->y, b, nn, a);
    }
}

static ty_status
scratch_alloc(int64_t count, size_t *nbytes, double **out)
{
    TY_CHECK(count >= 0 && (uint64_t)count < SIZE_MAX / sizeof(double), TY_ERR_INVALID_ARG,
             "the work space of %lld doubles is too large", (long long)count);
    *nbytes = (size_t)(count > 0 ? count : 1) * sizeof(double);
    return ty_mem_alloc(*nbytes, (void **)out);
}

ty_status
ty_matinv_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *x = NULL;
    TY_TRY(ty_contiguous(c->in[0], &x));
    int64_t n = x->shape[x->ndim - 1];
    int64_t batch = ty_tensor_numel(x) / (n > 0 ? n * n : 1);
    if (n == 0) {
        batch = 0;
    }
    double *scratch = NULL;
    size_t nbytes = 0;
    ty_status st = scratch_alloc(batch * 3 * n * n, &nbytes, &scratch);
    if (st == TY_OK) {
        inv_ctx ctx = {x, out[0], n, scratch};
        ty_parallel_for(batch, 1, inv_range, &ctx);
        ty_mem_free(scratch, nbytes);
    }
    ty_tensor_release(x);
    return st;
}

/* d inv(A) = -inv(A)^T g inv(A)^T, written with matmul (so it differentiates again). */
ty_status
ty_grad_matinv(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
               ty_tensor **gin)
{
    (void)c;
    ty_gk k = {0};
    if (!gout[0]) {
        return gk_finish(&k, NULL, &gin[0]);
    }
    ty_p_matmul ta = {.transpose_a = 1}, tb = {.transpose_b = 1};
    ty_tensor *t = gk_apply(&k, TY_OP_MATMUL, &ta, 2, out[0], gout[0], NULL);
    ty_tensor *r = t ? gk_apply(&k, TY_OP_MATMUL, &tb, 2, t, out[0], NULL) : NULL;
    return gk_finish(&k, r ? NEG(r) : NULL, &gin[0]);
}

/* ---- svd ---- */
typedef struct svd_dims {
    int64_t rows, cols; /* M, N of each input matrix */
    int64_t m, n;       /* the Jacobi work matrix: m = max(M, N) rows, n = min(M, N) columns */
    int full;
    int64_t ku, kv; /* columns of U, rows of Vh */
} svd_dims;

static svd_dims
svd_dims_of(const ty_tensor *x, int full)
{
    svd_dims d;
    d.rows = x->shape[x->ndim - 2];
    d.cols = x->shape[x->ndim - 1];
    d.m = d.rows >= d.cols ? d.rows : d.cols;
    d.n = d.rows >= d.cols ? d.cols : d.rows;
    d.full = full;
    d.ku = full ? d.rows : d.n;
    d.kv = full ? d.cols : d.n;
    return d;
}

ty_status
ty_svd_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x = c->in[0];
    const ty_p_svd *p = c->params;
    TY_TRY(check_float_matrix(x));
    svd_dims d = svd_dims_of(x, (int)p->full_matrices);
    int nd = x->ndim;
    for (int i = 0; i < 3; i++) {
        out[i].dtype = x->dtype;
        memcpy(out[i].shape, x->shape, sizeof(int64_t) * (size_t)(nd - 2));
    }
    out[0].ndim = nd;
    out[0].shape[nd - 2] = d.rows;
    out[0].shape[nd - 1] = d.ku;
    out[1].ndim = nd - 1;
    out[1].shape[nd - 2] = d.n;
    out[2].ndim = nd;
    out[2].shape[nd - 2] = d.kv;
    out[2].shape[nd - 1] = d.cols;
    return TY_OK;
}

/* Column-major helpers: column j of an m-row matrix starts at j * m. */
static double
dot(const double *a, const double *b, int64_t m)
{
    double s = 0.0;
    for (int64_t i = 0; i < m; i++) {
        s += a[i] * b[i];
    }
    return s;
}

static void
rotate(double *p, double *q, int64_t m, double c, double s)
{
    for (int64_t i = 0; i < m; i++) {
        double a = p[i], b = q[i];
        p[i] = c * a - s * b;
        q[i] = s * a + c * b;
    }
}

/* Orthogonalises the n columns of w (m rows) by plane rotations, accumulated into v. */
static void
jacobi(double *w, double *v, int64_t m, int64_t n)
{
    for (int sweep = 0; sweep < MAX_SWEEPS; sweep++) {
        int rotated = 0;
        for (int64_t p = 0; p < n; p++) {
            for (int64_t q = p + 1; q < n; q++) {
                double *wp = w + p * m, *wq = w + q * m;
                double alpha = dot(wp, wp, m), beta = dot(wq, wq, m), gamma = dot(wp, wq, m);
                if (gamma == 0.0 || fabs(gamma) <= 1e-15 * sqrt(alpha * beta)) {
                    continue;
                }
                rotated = 1;
                double zeta = (beta - alpha) / (2.0 * gamma);
                double t = copysign(1.0, zeta) / (fabs(zeta) + sqrt(1.0 + zeta * zeta));
                double cs = 1.0 / sqrt(1.0 + t * t), sn = cs * t;
                rotate(wp, wq, m, cs, sn);
                rotate(v + p * n, v + q * n, n, cs, sn);
            }
        }
        if (!rotated) {
            break;
        }
    }
}

/* Appends to the k orthonormal columns of u (m rows) the unit vector, among e_0..e_{m-1}
 * made orthogonal to them, with the largest remaining norm. */
static void
complete_basis(double *u, int64_t m, int64_t k)
{
    double *cand = u + k * m;
    double best = -1.0;
    int64_t best_i = 0;
    for (int64_t i = 0; i < m; i++) {
        double r2 = 1.0;
        for (int64_t j = 0; j < k; j++) {
            r2 -= u[j * m + i] * u[j * m + i];
        }
        if (r2 > best + 1e-12) {
            best = r2;
            best_i = i;
        }
    }
    memset(cand, 0, sizeof(double) * (size_t)m);
    cand[best_i] = 1.0;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t j = 0; j < k; j++) {
            double pr = dot(u + j * m, cand, m);
            for (int64_t i = 0; i < m; i++) {
                cand[i] -= pr * u[j * m + i];
            }
        }
    }
    double nrm = sqrt(dot(cand, cand, m));
    for (int64_t i = 0; i < m; i++) {
        cand[i] /= nrm;
    }
}

typedef struct svd_ctx {
    const ty_tensor *x;
    ty_tensor *u, *s, *vh;
    svd_dims d;
    double *scratch;
    int64_t per; /* doubles of scratch per matrix */
} svd_ctx;

/* The n singular values (descending, ties by index) as an order of the columns of w. */
static void
order_by_norm(const double *w, int64_t m, int64_t n, double *sv, int64_t *order)
{
    for (int64_t j = 0; j < n; j++) {
        sv[j] = sqrt(dot(w + j * m, w + j * m, m));
        order[j] = j;
    }
    for (int64_t i = 1; i < n; i++) { /* insertion sort: stable, n is small */
        int64_t o = order[i], j = i;
        while (j > 0 && sv[order[j - 1]] < sv[o]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = o;
    }
}

static void
svd_one(const svd_ctx *c, int64_t b)
{
    const svd_dims *d = &c->d;
    int64_t m = d->m, n = d->n, mn = d->rows * d->cols;
    double *a = c->scratch + b * c->per, *w = a + mn, *v = w + m * n, *left = v + n * n;
    double *sv = left + m * m, *ord_d = sv + n, *uo = ord_d + n;
    double *vho = uo + d->rows * d->ku, *so = vho + d->kv * d->cols;
    int64_t *order = (int64_t *)ord_d;
    load_matrix(c->x, b, mn, a);
    int tall = d->rows >= d->cols;
    for (int64_t i = 0; i < d->rows; i++) { /* w: A (tall) or A^T, column-major */
        for (int64_t j = 0; j < d->cols; j++) {
            double val = a[i * d->cols + j];
            if (tall) {
                w[j * m + i] = val;
            } else {
                w[i * m + j] = val;
            }
        }
    }
    memset(v, 0, sizeof(double) * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) {
        v[j * n + j] = 1.0;
    }
    int finite = all_finite(a, mn);
    if (finite) {
        jacobi(w, v, m, n);
    }
    order_by_norm(w, m, n, sv, order);
    double smax = n > 0 ? sv[order[0]] : 0.0, tol = smax * (double)m * DBL_EPSILON;
    int64_t k = 0;
    double *right = a; /* reuse: n x n sorted right vectors, column-major */
    for (int64_t j = 0; j < n; j++) {
        int64_t o = order[j];
        memcpy(right + j * n, v + o * n, sizeof(double) * (size_t)n);
        so[j] = sv[o];
    }
    for (int64_t j = 0; j < n; j++) { /* left vectors: normalised columns, rank first */
        int64_t o = order[j];
        if (sv[o] > tol && sv[o] > 0.0) {
            for (int64_t i = 0; i < m; i++) {
                left[k * m + i] = w[o * m + i] / sv[o];
            }
            k++;
        }
    }
    int64_t need = d->full ? m : n;
    while (k < need) {
        complete_basis(left, m, k++);
    }
    /* U and Vh from left (m-vectors) and right (n-vectors) */
    for (int64_t i = 0; i < d->rows; i++) {
        for (int64_t j = 0; j < d->ku; j++) {
            uo[i * d->ku + j] = tall ? left[j * m + i] : right[j * n + i];
        }
    }
    for (int64_t j = 0; j < d->kv; j++) {
        for (int64_t i = 0; i < d->cols; i++) {
            vho[j * d->cols + i] = tall ? right[j * n + i] : left[j * m + i];
        }
    }
    if (!finite) {
        fill_nan(uo, d->rows * d->ku);
        fill_nan(vho, d->kv * d->cols);
        fill_nan(so, n);
    }
    store_matrix(c->u, b, d->rows * d->ku, uo);
    store_matrix(c->vh, b, d->kv * d->cols, vho);
    store_matrix(c->s, b, n, so);
}

static void
svd_range(void *ctx, int64_t begin, int64_t end)
{
    for (int64_t b = begin; b < end; b++) {
        svd_one(ctx, b);
    }
}

ty_status
ty_svd_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_svd *p = c->params;
    ty_tensor *x = NULL;
    TY_TRY(ty_contiguous(c->in[0], &x));
    svd_dims d = svd_dims_of(x, (int)p->full_matrices);
    int64_t mn = d.rows * d.cols;
    int64_t batch = ty_shape_prod(x->shape, 0, x->ndim - 2);
    /* a | w | v | left | sv | order | U | Vh | S, per matrix */
    int64_t per = mn + d.m * d.n + d.n * d.n + d.m * d.m + 2 * d.n + d.rows * d.ku +
                  d.kv * d.cols + d.n;
    double *scratch = NULL;
    size_t nbytes = 0;
    ty_status st = scratch_alloc(batch * per, &nbytes, &scratch);
    if (st == TY_OK) {
        svd_ctx ctx = {x, out[0], out[1], out[2], d, scratch, per};
        ty_parallel_for(batch, 1, svd_range, &ctx);
        ty_mem_free(scratch, nbytes);
    }
    ty_tensor_release(x);
    return st;
}
