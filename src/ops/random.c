/* Random family: uniform, normal, permutation (global generator) and random_keyed (the same
 * draws from an explicit (seed, counter) stream, used by tianyuan.random.RNG).
 *
 * Element i of a draw depends only on (key, counter + i): a draw reserves exactly numel
 * counters, so results do not depend on the thread count and a replayed graph draws exactly
 * like eager execution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/op.h"

enum { RAND_GRAIN = 1 << 14 };
enum { DIST_UNIFORM = 0, DIST_NORMAL = 1, DIST_PERMUTATION = 2 };
#define MAX_NUMEL ((int64_t)1 << 56)
/* second stream for the angle of Box-Muller, so one counter yields one normal */
#define ANGLE_KEY 0x6a09e667f3bcc909ull

static ty_status
meta_from_shape(const ty_i64list *l, int64_t dtype, ty_meta *out)
{
    char buf[TY_SHAPE_BUF];
    int64_t n = 1;
    TY_CHECK(dtype >= 0 && dtype < TY_DTYPE_COUNT, TY_ERR_DTYPE, "invalid dtype code %lld",
             (long long)dtype);
    TY_CHECK(dtype == TY_FLOAT32 || dtype == TY_FLOAT64, TY_ERR_DTYPE,
             "dtype must be float32 or float64, got %s", ty_dtype_name((ty_dtype)dtype));
    TY_CHECK(l->n >= 0 && l->n <= TY_MAX_DIMS, TY_ERR_SHAPE, "rank %d is out of range [0, %d]",
             (int)l->n, TY_MAX_DIMS);
    for (int i = 0; i < l->n; i++) {
        TY_CHECK(l->v[i] >= 0, TY_ERR_SHAPE, "negative dimension in shape %s",
                 ty_shape_str(l->n, l->v, buf, sizeof buf));
        TY_CHECK(!__builtin_mul_overflow(n, l->v[i], &n) && n <= MAX_NUMEL, TY_ERR_INVALID_ARG,
                 "shape %s has too many elements", ty_shape_str(l->n, l->v, buf, sizeof buf));
    }
    out->dtype = (ty_dtype)dtype;
    out->ndim = l->n;
    memcpy(out->shape, l->v, sizeof(int64_t) * (size_t)l->n);
    return TY_OK;
}

static ty_status
check_uniform(double low, double high)
{
    TY_CHECK(isfinite(high - low) && low < high, TY_ERR_INVALID_ARG,
             "need low < high with a finite range, got low=%g, high=%g", low, high);
    return TY_OK;
}

static ty_status
check_normal(double mean, double std)
{
    TY_CHECK(isfinite(mean) && isfinite(std) && std >= 0, TY_ERR_INVALID_ARG,
             "mean must be finite and std finite and non-negative, got mean=%g, std=%g", mean,
             std);
    return TY_OK;
}

/* the largest n a permutation of dtype can hold exactly */
static int64_t
perm_limit(ty_dtype dt)
{
    switch (dt) {
    case TY_INT32: return (int64_t)1 << 31;
    case TY_INT64: return MAX_NUMEL;
    case TY_FLOAT32: return (int64_t)1 << 24;
    case TY_FLOAT64: return MAX_NUMEL;
    default: return -1;
    }
}

static ty_status
perm_meta(int64_t n, int64_t dtype, ty_meta *out)
{
    TY_CHECK(dtype >= 0 && dtype < TY_DTYPE_COUNT, TY_ERR_DTYPE, "invalid dtype code %lld",
             (long long)dtype);
    int64_t lim = perm_limit((ty_dtype)dtype);
    TY_CHECK(lim > 0, TY_ERR_DTYPE, "dtype must be int32, int64, float32 or float64, got %s",
             ty_dtype_name((ty_dtype)dtype));
    TY_CHECK(n <= lim, TY_ERR_INVALID_ARG, "n = %lld is too large for dtype %s (max %lld)",
             (long long)n, ty_dtype_name((ty_dtype)dtype), (long long)lim);
    out->dtype = (ty_dtype)dtype;
    out->ndim = 1;
    out->shape[0] = n;
    return TY_OK;
}

/* ---- kernels ---- */
static double
unit_open_right(uint64_t bits) /* [0, 1) with 53 random bits */
{
    return (double)(bits >> 11) * 0x1p-53;
}

typedef struct draw_ctx {
    char *dst;
    ty_dtype dt;
    int dist;
    double a, b;
    uint64_t key, counter;
} draw_ctx;

static double
draw_one(const draw_ctx *d, uint64_t ctr)
{
    uint64_t bits = ty_random_bits(d->key, ctr);
    if (d->dist == DIST_UNIFORM) {
        return d->a + (d->b - d->a) * unit_open_right(bits);
    }
    /* Box-Muller: radius from (0, 1], angle from an independent stream of the same counter */
    double u1 = 1.0 - unit_open_right(bits);
    double u2 = unit_open_right(ty_random_bits(d->key ^ ANGLE_KEY, ctr));
    return d->a + d->b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void
draw_range(void *ctx, int64_t begin, int64_t end)
{
    const draw_ctx *d = ctx;
    for (int64_t i = begin; i < end; i++) {
        double v = draw_one(d, d->counter + (uint64_t)i);
        if (d->dt == TY_FLOAT32) {
            float f = (float)v;
            /* rounding must not reach high: uniform draws lie in [low, high) */
            if (d->dist == DIST_UNIFORM && f >= (float)d->b) {
                f = nextafterf((float)d->b, -INFINITY);
            }
            ((float *)d->dst)[i] = f;
        } else {
            if (d->dist == DIST_UNIFORM && v >= d->b) {
                v = nextafter(d->b, -INFINITY);
            }
            ((double *)d->dst)[i] = v;
        }
    }
}

static void
run_draw(ty_tensor *t, int dist, double a, double b, uint64_t key, uint64_t counter)
{
    draw_ctx d = {ty_tensor_ptr(t), t->dtype, dist, a, b, key, counter};
    ty_parallel_for(ty_tensor_numel(t), RAND_GRAIN, draw_range, &d);
}

typedef struct sort_item {
    uint64_t key;
    int64_t idx;
} sort_item;

static int
item_cmp(const void *pa, const void *pb)
{
    const sort_item *a = pa, *b = pb;
    /* a total order (ties broken by index), so the result does not depend on qsort */
    if (a->key != b->key) {
        return a->key < b->key ? -1 : 1;
    }
    return (a->idx > b->idx) - (a->idx < b->idx);
}

typedef struct perm_ctx {
    sort_item *items;
    uint64_t key, counter;
} perm_ctx;

static void
perm_keys(void *ctx, int64_t begin, int64_t end)
{
    const perm_ctx *p = ctx;
    for (int64_t i = begin; i < end; i++) {
        p->items[i].key = ty_random_bits(p->key, p->counter + (uint64_t)i);
        p->items[i].idx = i;
    }
}

/* A uniform shuffle of 0..n-1: sort the indices by one random key each. */
static ty_status
run_permutation(ty_tensor *t, uint64_t key, uint64_t counter)
{
    int64_t n = ty_tensor_numel(t);
    size_t nbytes = (size_t)n * sizeof(sort_item);
    sort_item *items = NULL;
    if (n == 0) {
        return TY_OK;
    }
    TY_TRY(ty_mem_alloc(nbytes, (void **)&items));
    perm_ctx p = {items, key, counter};
    ty_parallel_for(n, RAND_GRAIN, perm_keys, &p);
    qsort(items, (size_t)n, sizeof(sort_item), item_cmp);
    char *dst = ty_tensor_ptr(t);
    size_t es = ty_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++) {
        ty_store_f64(dst + i * (int64_t)es, t->dtype, (double)items[i].idx);
    }
    ty_mem_free(items, nbytes);
    return TY_OK;
}

/* ---- uniform / normal ---- */
ty_status
ty_uniform_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_random *p = c->params;
    TY_TRY(check_uniform(p->a, p->b));
    return meta_from_shape(&p->shape, p->dtype, out);
}

ty_status
ty_normal_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_random *p = c->params;
    TY_TRY(check_normal(p->a, p->b));
    return meta_from_shape(&p->shape, p->dtype, out);
}

static ty_status
global_draw(const ty_call *c, ty_tensor *t, int dist)
{
    const ty_p_random *p = c->params;
    uint64_t key, counter;
    ty_random_reserve((uint64_t)ty_tensor_numel(t), &key, &counter);
    run_draw(t, dist, p->a, p->b, key, counter);
    return TY_OK;
}

ty_status
ty_uniform_forward(const ty_call *c, ty_tensor **out)
{
    return global_draw(c, out[0], DIST_UNIFORM);
}

ty_status
ty_normal_forward(const ty_call *c, ty_tensor **out)
{
    return global_draw(c, out[0], DIST_NORMAL);
}

/* ---- permutation ---- */
ty_status
ty_permutation_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_permutation *p = c->params;
    return perm_meta(p->n, p->dtype, out);
}

ty_status
ty_permutation_forward(const ty_call *c, ty_tensor **out)
{
    (void)c;
    uint64_t key, counter;
    ty_random_reserve((uint64_t)ty_tensor_numel(out[0]), &key, &counter);
    return run_permutation(out[0], key, counter);
}

/* ---- random_keyed: a pure function of its params (seed, counter), reserving nothing ---- */
static uint64_t
key_of_seed(int64_t seed)
{
    /* splitmix64 finalizer over a salted seed: RNG(s) and random.seed(s) give other streams */
    uint64_t z = (uint64_t)seed + 0x243f6a8885a308d3ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

ty_status
ty_random_keyed_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_random_keyed *p = c->params;
    switch (p->dist) {
    case DIST_UNIFORM: TY_TRY(check_uniform(p->a, p->b)); break;
    case DIST_NORMAL: TY_TRY(check_normal(p->a, p->b)); break;
    case DIST_PERMUTATION:
        TY_CHECK(p->shape.n == 1, TY_ERR_SHAPE, "a permutation has a 1-d shape, got rank %d",
                 (int)p->shape.n);
        return perm_meta(p->shape.v[0], p->dtype, out);
    default:
        return ty_set_error(TY_ERR_INVALID_ARG, "unknown distribution %lld (0 uniform, "
                            "1 normal, 2 permutation)", (long long)p->dist);
    }
    return meta_from_shape(&p->shape, p->dtype, out);
}

ty_status
ty_random_keyed_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_random_keyed *p = c->params;
    uint64_t key = key_of_seed(p->seed);
    if (p->dist == DIST_PERMUTATION) {
        return run_permutation(out[0], key, (uint64_t)p->counter);
    }
    run_draw(out[0], (int)p->dist, p->a, p->b, key, (uint64_t)p->counter);
    return TY_OK;
}
