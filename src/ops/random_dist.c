/* random_dist: draws from distributions with per-element parameters (tianyuan.random.gamma,
 * beta, poisson, exponential). Inputs a and b (float, one shape; Python broadcasts them) hold
 * the parameters: gamma (shape a, scale b), beta (alpha a, beta b), poisson (rate a),
 * exponential (rate a); b is ignored where the distribution has one parameter. An element
 * whose parameter is not finite and positive is NaN (no error that depends on the data, so
 * eager, traced and deployed runs behave alike; Python checks plain-number parameters).
 *
 * Element i depends only on (key, counter + i): its rejection loop draws from sub-streams
 * of that one counter, so a draw reserves exactly numel counters of the global generator
 * (or of an RNG's keyed stream) and the bits never depend on the thread count. */
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/op.h"
#include "ops/strided.h"

enum { DIST_GAMMA = 0, DIST_BETA = 1, DIST_POISSON = 2, DIST_EXPONENTIAL = 3 };
enum { GRAIN = 1 << 12, MAX_TRIES = 256 };
/* Sub-stream spacing; beta's second gamma starts MAX_TRIES * 4 streams later. */
#define STREAM_STEP 0x9e3779b97f4a7c15ull

typedef struct draw {
    uint64_t key, ctr;
    uint64_t next; /* next sub-stream */
} draw;

static double
unit_open(draw *d) /* (0, 1) */
{
    uint64_t bits = ty_random_bits(d->key + STREAM_STEP * ++d->next, d->ctr);
    return ((double)(bits >> 11) + 0.5) * 0x1p-53;
}

static double
std_normal(draw *d)
{
    double u1 = unit_open(d), u2 = unit_open(d);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Marsaglia and Tsang (2000) for shape >= 1; shape < 1 boosted by U^(1/shape). */
static double
std_gamma(draw *d, double shape)
{
    double boost = 1.0;
    if (shape < 1.0) {
        boost = pow(unit_open(d), 1.0 / shape);
        shape += 1.0;
    }
    double dd = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * dd), v = 1.0;
    for (int t = 0; t < MAX_TRIES; t++) {
        double x = std_normal(d);
        v = 1.0 + c * x;
        if (v <= 0.0) {
            continue;
        }
        v = v * v * v;
        double u = unit_open(d);
        if (log(u) < 0.5 * x * x + dd - dd * v + dd * log(v)) {
            break;
        }
    }
    /* acceptance is > 95% per try: MAX_TRIES failures never happen in practice */
    return dd * (v > 0.0 ? v : 1.0) * boost;
}

/* Knuth's product of uniforms for small rates, Hoermann's PTRS (1993) for large ones. */
static double
poisson_small(draw *d, double lam)
{
    double limit = exp(-lam), p = 1.0;
    double k = -1.0;
    do {
        k += 1.0;
        p *= unit_open(d);
    } while (p > limit && k < 1e4); /* the bound is never reached for lam < 10 */
    return k;
}

static double
poisson_ptrs(draw *d, double lam)
{
    double slam = sqrt(lam), loglam = log(lam);
    double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2.0);
    double k = floor(lam);
    for (int t = 0; t < MAX_TRIES; t++) {
        double u = unit_open(d) - 0.5, v = unit_open(d);
        double us = 0.5 - fabs(u);
        k = floor((2.0 * a / us + b) * u + lam + 0.43);
        if (us >= 0.07 && v <= vr) {
            return k;
        }
        if (k < 0.0 || (us < 0.013 && v > us)) {
            continue;
        }
        if (log(v) + log(inv_alpha) - log(a / (us * us) + b) <=
            -lam + k * loglam - lgamma(k + 1.0)) {
            return k;
        }
    }
    return k < 0.0 ? 0.0 : k;
}

static int
needs_b(int dist)
{
    return dist == DIST_GAMMA || dist == DIST_BETA;
}

static int
valid(double v)
{
    return isfinite(v) && v > 0.0;
}

static double
draw_one(int dist, double a, double b, uint64_t key, uint64_t ctr)
{
    draw d = {key, ctr, 0};
    if (!valid(a) || (needs_b(dist) && !valid(b))) {
        return NAN; /* a parameter outside (0, inf) has no distribution */
    }
    switch (dist) {
    case DIST_GAMMA: return std_gamma(&d, a) * b;
    case DIST_BETA: {
        double x = std_gamma(&d, a);
        d.next = (uint64_t)MAX_TRIES * 4; /* the second gamma's own sub-streams */
        double y = std_gamma(&d, b);
        return x / (x + y);
    }
    case DIST_POISSON: return a < 10.0 ? poisson_small(&d, a) : poisson_ptrs(&d, a);
    default: return -log(unit_open(&d)) / a;
    }
}

typedef struct dist_ctx {
    const char *a, *b;
    char *dst;
    ty_dtype dt;
    int dist;
    uint64_t key, counter;
} dist_ctx;

static void
dist_range(void *ctx, int64_t begin, int64_t end)
{
    const dist_ctx *c = ctx;
    size_t es = ty_dtype_size(c->dt);
    for (int64_t i = begin; i < end; i++) {
        double a = ty_load_f64(c->a + (size_t)i * es, c->dt);
        double b = ty_load_f64(c->b + (size_t)i * es, c->dt);
        double v = draw_one(c->dist, a, b, c->key, c->counter + (uint64_t)i);
        ty_store_f64(c->dst + (size_t)i * es, c->dt, v);
    }
}

ty_status
ty_random_dist_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *a = c->in[0], *b = c->in[1];
    char sa[TY_SHAPE_BUF], sb[TY_SHAPE_BUF];
    TY_CHECK(ty_dtype_is_float(a->dtype) && a->dtype == b->dtype, TY_ERR_DTYPE,
             "parameters must be float tensors of one dtype, got %s and %s",
             ty_dtype_name(a->dtype), ty_dtype_name(b->dtype));
    TY_CHECK(a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim),
             TY_ERR_SHAPE, "parameters must have one shape, got %s and %s",
             ty_shape_str(a->ndim, a->shape, sa, sizeof sa),
             ty_shape_str(b->ndim, b->shape, sb, sizeof sb));
    out->dtype = a->dtype;
    out->ndim = a->ndim;
    memcpy(out->shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    return TY_OK;
}

static uint64_t
key_of_seed(int64_t seed)
{
    /* splitmix64 over a salted seed: other streams than random_keyed's for the same seed */
    uint64_t z = (uint64_t)seed + 0x452821e638d01377ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

ty_status
ty_random_dist_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_random_dist *p = c->params;
    int dist = (int)p->dist;
    ty_tensor *a = NULL, *b = NULL;
    ty_status st = ty_contiguous(c->in[0], &a);
    if (st == TY_OK) {
        st = ty_contiguous(c->in[1], &b);
    }
    if (st == TY_OK) {
        int64_t n = ty_tensor_numel(out[0]);
        uint64_t key, counter;
        if (p->keyed) {
            key = key_of_seed(p->seed);
            counter = (uint64_t)p->counter;
        } else {
            ty_random_reserve((uint64_t)n, &key, &counter);
        }
        dist_ctx d = {ty_tensor_ptr(a), ty_tensor_ptr(b), ty_tensor_ptr(out[0]),
                      out[0]->dtype, dist, key, counter};
        ty_parallel_for(n, GRAIN, dist_range, &d);
    }
    ty_tensor_release(a);
    ty_tensor_release(b);
    return st;
}
