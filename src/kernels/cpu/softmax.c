/* float32 softmax / log_softmax kernels (softmax.h). */
#include <math.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/softmax.h"
#include "kernels/cpu/vmath.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SM_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#endif

enum { MIN_CHUNK_ELEMS = 1 << 14 }; /* per parallel chunk */

typedef struct sm_ctx {
    const float *x, *g; /* g: the output gradient (backward; x is then softmax's output) */
    float *y;
    int64_t n, inner;
    int64_t lanes; /* inner positions per task when inner > 1 (vector paths); 0: generic */
    int log_out;
} sm_ctx;

static ty_isa_override isa_forced;

ty_isa
ty_softmax_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

/* ---- generic: one row of stride s, exp from libm, one double sum ---- */
static void
row_generic(const float *x, float *y, int64_t n, int64_t s, int log_out)
{
    float m = x[0];
    double sum = 0.0;
    for (int64_t k = 1; k < n; k++) {
        m = x[k * s] > m ? x[k * s] : m;
    }
    for (int64_t k = 0; k < n; k++) {
        float e = expf(x[k * s] - m);
        sum += e;
        y[k * s] = log_out ? x[k * s] - m : e;
    }
    float adj = log_out ? (float)log(sum) : (float)(1.0 / sum);
    for (int64_t k = 0; k < n; k++) {
        y[k * s] = log_out ? y[k * s] - adj : y[k * s] * adj;
    }
}

static void
rows_generic(void *vctx, int64_t begin, int64_t end)
{
    const sm_ctx *c = vctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t base = (r / c->inner) * c->n * c->inner + r % c->inner;
        row_generic(c->x + base, c->y + base, c->n, c->inner, c->log_out);
    }
}

/* backward, generic: dx = y * (g - sum(g * y)), y the softmax output (the products are exact
 * in double); log: dx = g - exp(y) * sum(g), y the log_softmax output */
static void
back_row_generic(const float *y, const float *g, float *dx, int64_t n, int64_t s, int log)
{
    double sum = 0.0;
    for (int64_t k = 0; k < n; k++) {
        sum += (double)g[k * s] * (log ? 1.0 : (double)y[k * s]);
    }
    float t = (float)sum;
    for (int64_t k = 0; k < n; k++) {
        dx[k * s] = log ? g[k * s] - ty_vexp_scalar(y[k * s]) * t : y[k * s] * (g[k * s] - t);
    }
}

static void
back_rows_generic(void *vctx, int64_t begin, int64_t end)
{
    const sm_ctx *c = vctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t base = (r / c->inner) * c->n * c->inner + r % c->inner;
        back_row_generic(c->x + base, c->g + base, c->y + base, c->n, c->inner, c->log_out);
    }
}

/* The per-lane sums, added in lane order, and the factor (softmax) or term (log_softmax)
 * each output takes. */
static float
row_adjust(const double *acc, int lanes, int log_out)
{
    double sum = 0.0;
    for (int j = 0; j < lanes; j++) {
        sum += acc[j];
    }
    return log_out ? (float)log(sum) : (float)(1.0 / sum);
}

/* For a block of lanes each a row of its own. */
static void
lane_adjust(const double *acc, int64_t count, int log_out, float *adj)
{
    for (int64_t j = 0; j < count; j++) {
        adj[j] = log_out ? (float)log(acc[j]) : (float)(1.0 / acc[j]);
    }
}

#ifdef SM_X86
/* acc (16 double lanes: a and b) += e */
AVX512 static inline void
acc512(__m512 e, __m512d *a, __m512d *b)
{
    *a = _mm512_add_pd(*a, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    *b = _mm512_add_pd(*b, _mm512_cvtps_pd(
                               _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
}

/* x and y's lanes in mask; the others of the result 0 */
AVX512 static inline __m512
exp_store512(const float *x, float *y, __mmask16 mask, __m512 m, int log_out)
{
    __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x), m);
    __m512 e = _mm512_maskz_mov_ps(mask, ty_vexp512(v));
    _mm512_mask_storeu_ps(y, mask, log_out ? v : e);
    return e;
}

AVX512 static inline void
adjust512(float *y, __mmask16 mask, __m512 adj, int log_out)
{
    __m512 v = _mm512_maskz_loadu_ps(mask, y);
    _mm512_mask_storeu_ps(y, mask, log_out ? _mm512_sub_ps(v, adj) : _mm512_mul_ps(v, adj));
}

/* one contiguous row: lane j takes positions j mod 16, the tail its first lanes */
AVX512 static void
row512(const float *x, float *y, int64_t n, int log_out)
{
    int64_t full = n & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (n - full)) - 1);
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t k = 0; k < full; k += 16) {
        vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + k));
    }
    vm = _mm512_mask_max_ps(vm, tail, vm, _mm512_maskz_loadu_ps(tail, x + full));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
    __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
    for (int64_t k = 0; k < full; k += 16) {
        acc512(exp_store512(x + k, y + k, 0xffff, m, log_out), &a, &b);
    }
    acc512(exp_store512(x + full, y + full, tail, m, log_out), &a, &b);
    double acc[16];
    _mm512_storeu_pd(acc, a);
    _mm512_storeu_pd(acc + 8, b);
    __m512 adj = _mm512_set1_ps(row_adjust(acc, 16, log_out));
    for (int64_t k = 0; k < full; k += 16) {
        adjust512(y + k, 0xffff, adj, log_out);
    }
    adjust512(y + full, tail, adj, log_out);
}

/* count (<= 16) rows of stride s at consecutive positions, one per lane */
AVX512 static void
block512(const float *x, float *y, int64_t n, int64_t s, int64_t count, int log_out)
{
    __mmask16 mask = (__mmask16)((1u << count) - 1);
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t k = 0; k < n; k++) {
        m = _mm512_max_ps(m, _mm512_maskz_loadu_ps(mask, x + k * s));
    }
    __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
    for (int64_t k = 0; k < n; k++) {
        acc512(exp_store512(x + k * s, y + k * s, mask, m, log_out), &a, &b);
    }
    double acc[16];
    float adj[16] = {0};
    _mm512_storeu_pd(acc, a);
    _mm512_storeu_pd(acc + 8, b);
    lane_adjust(acc, count, log_out, adj);
    __m512 vadj = _mm512_loadu_ps(adj);
    for (int64_t k = 0; k < n; k++) {
        adjust512(y + k * s, mask, vadj, log_out);
    }
}

/* acc (a, b) += g * y in double (exact products) over the lanes of mask; log: += g */
AVX512 static inline void
dot512(const float *g, const float *y, __mmask16 mask, __m512d *a, __m512d *b, int log)
{
    __m512 vg = _mm512_maskz_loadu_ps(mask, g);
    __m512 vy = log ? _mm512_set1_ps(1.0f) : _mm512_maskz_loadu_ps(mask, y);
    __m256 gh = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vg), 1));
    __m256 yh = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(vy), 1));
    *a = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(vg)),
                         _mm512_cvtps_pd(_mm512_castps512_ps256(vy)), *a);
    *b = _mm512_fmadd_pd(_mm512_cvtps_pd(gh), _mm512_cvtps_pd(yh), *b);
}

/* dx = y * (g - t) over the lanes of mask; log: dx = g - exp(y) * t */
AVX512 static inline void
back_store512(const float *y, const float *g, float *dx, __mmask16 mask, __m512 t, int log)
{
    __m512 vg = _mm512_maskz_loadu_ps(mask, g), vy = _mm512_maskz_loadu_ps(mask, y);
    __m512 d = log ? _mm512_sub_ps(vg, _mm512_mul_ps(ty_vexp512(vy), t))
                   : _mm512_mul_ps(vy, _mm512_sub_ps(vg, t));
    _mm512_mask_storeu_ps(dx, mask, d);
}

AVX512 static void
back_row512(const float *y, const float *g, float *dx, int64_t n, int log)
{
    int64_t full = n & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (n - full)) - 1);
    __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
    for (int64_t k = 0; k < full; k += 16) {
        dot512(g + k, y + k, 0xffff, &a, &b, log);
    }
    dot512(g + full, y + full, tail, &a, &b, log);
    double acc[16], sum = 0.0;
    _mm512_storeu_pd(acc, a);
    _mm512_storeu_pd(acc + 8, b);
    for (int j = 0; j < 16; j++) {
        sum += acc[j];
    }
    __m512 t = _mm512_set1_ps((float)sum);
    for (int64_t k = 0; k < full; k += 16) {
        back_store512(y + k, g + k, dx + k, 0xffff, t, log);
    }
    back_store512(y + full, g + full, dx + full, tail, t, log);
}

AVX512 static void
back_block512(const float *y, const float *g, float *dx, int64_t n, int64_t s, int64_t count,
              int log)
{
    __mmask16 mask = (__mmask16)((1u << count) - 1);
    __m512d a = _mm512_setzero_pd(), b = _mm512_setzero_pd();
    for (int64_t k = 0; k < n; k++) {
        dot512(g + k * s, y + k * s, mask, &a, &b, log);
    }
    __m512d lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(a)));
    __m512 t = _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm512_cvtpd_ps(b)), 1));
    for (int64_t k = 0; k < n; k++) {
        back_store512(y + k * s, g + k * s, dx + k * s, mask, t, log);
    }
}

/* ---- AVX2 + FMA: the same with 8 lanes ---- */
AVX2 static inline __m256i
mask256(int64_t count)
{
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), lane);
}

AVX2 static inline void
acc256(__m256 e, __m256d *a, __m256d *b)
{
    *a = _mm256_add_pd(*a, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    *b = _mm256_add_pd(*b, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}

AVX2 static inline __m256
exp_store256(const float *x, float *y, __m256i mask, __m256 m, int log_out)
{
    __m256 v = _mm256_sub_ps(_mm256_maskload_ps(x, mask), m);
    __m256 e = _mm256_and_ps(ty_vexp256(v), _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(y, mask, log_out ? v : e);
    return e;
}

AVX2 static inline void
adjust256(float *y, __m256i mask, __m256 adj, int log_out)
{
    __m256 v = _mm256_maskload_ps(y, mask);
    _mm256_maskstore_ps(y, mask, log_out ? _mm256_sub_ps(v, adj) : _mm256_mul_ps(v, adj));
}

AVX2 static float
max256(__m256 v)
{
    float t[8], m = -INFINITY;
    _mm256_storeu_ps(t, v);
    for (int j = 0; j < 8; j++) {
        m = t[j] > m ? t[j] : m;
    }
    return m;
}

AVX2 static void
row256(const float *x, float *y, int64_t n, int log_out)
{
    int64_t full = n & ~(int64_t)7;
    __m256i all = _mm256_set1_epi32(-1), tail = mask256(n - full);
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (int64_t k = 0; k < full; k += 8) {
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + k));
    }
    __m256 t = _mm256_blendv_ps(vm, _mm256_maskload_ps(x + full, tail), _mm256_castsi256_ps(tail));
    __m256 m = _mm256_set1_ps(max256(_mm256_max_ps(vm, t)));
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    for (int64_t k = 0; k < full; k += 8) {
        acc256(exp_store256(x + k, y + k, all, m, log_out), &a, &b);
    }
    acc256(exp_store256(x + full, y + full, tail, m, log_out), &a, &b);
    double acc[8];
    _mm256_storeu_pd(acc, a);
    _mm256_storeu_pd(acc + 4, b);
    __m256 adj = _mm256_set1_ps(row_adjust(acc, 8, log_out));
    for (int64_t k = 0; k < full; k += 8) {
        adjust256(y + k, all, adj, log_out);
    }
    adjust256(y + full, tail, adj, log_out);
}

AVX2 static void
block256(const float *x, float *y, int64_t n, int64_t s, int64_t count, int log_out)
{
    __m256i mask = mask256(count);
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int64_t k = 0; k < n; k++) {
        m = _mm256_max_ps(m, _mm256_maskload_ps(x + k * s, mask));
    }
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    for (int64_t k = 0; k < n; k++) {
        acc256(exp_store256(x + k * s, y + k * s, mask, m, log_out), &a, &b);
    }
    double acc[8];
    float adj[8] = {0};
    _mm256_storeu_pd(acc, a);
    _mm256_storeu_pd(acc + 4, b);
    lane_adjust(acc, count, log_out, adj);
    __m256 vadj = _mm256_loadu_ps(adj);
    for (int64_t k = 0; k < n; k++) {
        adjust256(y + k * s, mask, vadj, log_out);
    }
}

AVX2 static inline void
dot256(const float *g, const float *y, __m256i mask, __m256d *a, __m256d *b, int log)
{
    __m256 vg = _mm256_maskload_ps(g, mask);
    __m256 vy = log ? _mm256_set1_ps(1.0f) : _mm256_maskload_ps(y, mask);
    *a = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vg)),
                         _mm256_cvtps_pd(_mm256_castps256_ps128(vy)), *a);
    *b = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vg, 1)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(vy, 1)), *b);
}

AVX2 static inline void
back_store256(const float *y, const float *g, float *dx, __m256i mask, __m256 t, int log)
{
    __m256 vg = _mm256_maskload_ps(g, mask), vy = _mm256_maskload_ps(y, mask);
    __m256 d = log ? _mm256_sub_ps(vg, _mm256_mul_ps(ty_vexp256(vy), t))
                   : _mm256_mul_ps(vy, _mm256_sub_ps(vg, t));
    _mm256_maskstore_ps(dx, mask, d);
}

AVX2 static void
back_row256(const float *y, const float *g, float *dx, int64_t n, int log)
{
    int64_t full = n & ~(int64_t)7;
    __m256i all = _mm256_set1_epi32(-1), tail = mask256(n - full);
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    for (int64_t k = 0; k < full; k += 8) {
        dot256(g + k, y + k, all, &a, &b, log);
    }
    dot256(g + full, y + full, tail, &a, &b, log);
    double acc[8], sum = 0.0;
    _mm256_storeu_pd(acc, a);
    _mm256_storeu_pd(acc + 4, b);
    for (int j = 0; j < 8; j++) {
        sum += acc[j];
    }
    __m256 t = _mm256_set1_ps((float)sum);
    for (int64_t k = 0; k < full; k += 8) {
        back_store256(y + k, g + k, dx + k, all, t, log);
    }
    back_store256(y + full, g + full, dx + full, tail, t, log);
}

AVX2 static void
back_block256(const float *y, const float *g, float *dx, int64_t n, int64_t s, int64_t count,
              int log)
{
    __m256i mask = mask256(count);
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    for (int64_t k = 0; k < n; k++) {
        dot256(g + k * s, y + k * s, mask, &a, &b, log);
    }
    __m256 t = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(a)),
                                    _mm256_cvtpd_ps(b), 1);
    for (int64_t k = 0; k < n; k++) {
        back_store256(y + k * s, g + k * s, dx + k * s, mask, t, log);
    }
}

/* Backward tasks, split as the forward's. */
static void
back_tasks_vector(const sm_ctx *c, int64_t begin, int64_t end, int avx512)
{
    int64_t blocks = (c->inner + c->lanes - 1) / c->lanes;
    for (int64_t t = begin; t < end; t++) {
        if (c->inner == 1) {
            int64_t o = t * c->n;
            if (avx512) {
                back_row512(c->x + o, c->g + o, c->y + o, c->n, c->log_out);
            } else {
                back_row256(c->x + o, c->g + o, c->y + o, c->n, c->log_out);
            }
            continue;
        }
        int64_t j = (t % blocks) * c->lanes, base = (t / blocks) * c->n * c->inner + j;
        int64_t count = c->inner - j < c->lanes ? c->inner - j : c->lanes;
        if (avx512) {
            back_block512(c->x + base, c->g + base, c->y + base, c->n, c->inner, count,
                          c->log_out);
        } else {
            back_block256(c->x + base, c->g + base, c->y + base, c->n, c->inner, count,
                          c->log_out);
        }
    }
}

static void
back_tasks_avx512(void *vctx, int64_t begin, int64_t end)
{
    back_tasks_vector(vctx, begin, end, 1);
}

static void
back_tasks_avx2(void *vctx, int64_t begin, int64_t end)
{
    back_tasks_vector(vctx, begin, end, 0);
}

/* Tasks: rows when inner == 1; else (outer, block of c->lanes inner positions). */
static void
tasks_vector(const sm_ctx *c, int64_t begin, int64_t end, int avx512)
{
    int64_t blocks = (c->inner + c->lanes - 1) / c->lanes;
    for (int64_t t = begin; t < end; t++) {
        if (c->inner == 1) {
            const float *x = c->x + t * c->n;
            float *y = c->y + t * c->n;
            avx512 ? row512(x, y, c->n, c->log_out) : row256(x, y, c->n, c->log_out);
            continue;
        }
        int64_t j = (t % blocks) * c->lanes, base = (t / blocks) * c->n * c->inner + j;
        int64_t count = c->inner - j < c->lanes ? c->inner - j : c->lanes;
        if (avx512) {
            block512(c->x + base, c->y + base, c->n, c->inner, count, c->log_out);
        } else {
            block256(c->x + base, c->y + base, c->n, c->inner, count, c->log_out);
        }
    }
}

static void
tasks_avx512(void *vctx, int64_t begin, int64_t end)
{
    tasks_vector(vctx, begin, end, 1);
}

static void
tasks_avx2(void *vctx, int64_t begin, int64_t end)
{
    tasks_vector(vctx, begin, end, 0);
}
#endif

/* Runs fn (forward) or back_fn over the tasks of the instruction set in use. */
static void
run_tasks(sm_ctx *c, int64_t outer, int backward)
{
    ty_range_fn fn = backward ? back_rows_generic : rows_generic;
#ifdef SM_X86
    ty_isa isa = ty_isa_override_get(&isa_forced);
    if (isa >= TY_ISA_AVX512) {
        c->lanes = 16;
        fn = backward ? back_tasks_avx512 : tasks_avx512;
    } else if (isa >= TY_ISA_AVX2) {
        c->lanes = 8;
        fn = backward ? back_tasks_avx2 : tasks_avx2;
    }
#endif
    int64_t tasks = outer * c->inner, task_elems = c->n;
    if (c->lanes && c->inner > 1) {
        tasks = outer * ((c->inner + c->lanes - 1) / c->lanes);
        task_elems = c->n * c->lanes;
    }
    ty_parallel_for(tasks, MIN_CHUNK_ELEMS / task_elems + 1, fn, c);
}

void
ty_softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, int log_out)
{
    sm_ctx c = {.x = x, .y = y, .n = n, .inner = inner, .log_out = log_out};
    run_tasks(&c, outer, 0);
}

void
ty_softmax_backward_f32(const float *y, const float *g, float *dx, int64_t outer, int64_t n,
                        int64_t inner, int log_in)
{
    sm_ctx c = {.x = y, .g = g, .y = dx, .n = n, .inner = inner, .log_out = log_in};
    run_tasks(&c, outer, 1);
}
