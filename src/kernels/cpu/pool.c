/* 2-D max / average pooling, strided and adaptive, forward and backward.
 *
 * Strided and adaptive pooling differ only in where a window starts and ends, so both go
 * through window_1d and share the per-type bodies below. The backward of max pooling
 * recomputes the argmax instead of storing indices: the forward pass then needs no extra
 * output, and the same search decides both passes, so they always agree.
 *
 * The common 2x2 stride-2 unpadded max pool has its own kernels: portable C, and for f32
 * AVX2 and AVX-512 ones picked at run time: GCC vectorises the portable loop only for rows of
 * 16+ outputs, and the scalar remainder branches on the data (a small CNN's 14- and 7-wide
 * rows ran at about 6 ns per output). All kernels make the same comparisons and selections,
 * so they give the same bits. Other strided max pools run separably (DEFINE_SEPMAX); for f32
 * windows 3 columns wide at column stride 2 (ResNet's 3x3/2 stem pool) that has AVX2 and
 * AVX-512 kernels too (the k3_ functions), picked by the same ISA setting. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "base/isa.h"
#include "kernels/cpu/pool.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define POOL_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))
#endif

enum { MIN_CHUNK_WORK = 1 << 15 };

typedef struct pool_geom {
    int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw;
    int adaptive;
    int include_pad;
} pool_geom;

typedef struct pool_ctx {
    pool_geom g;
    int is_max;
    const void *x;  /* forward input; also read by the max backward */
    const void *dy; /* backward only */
    void *out;      /* y, or dx (accumulated, or stored when store) */
    ty_isa isa;     /* of the 2x2 fast path, fixed for the whole call */
    int store;      /* 2x2 max backward: write every cell of dx instead of adding */
} pool_ctx;

/* Input range [*lo, *hi) of output index o along one axis of length L (O outputs), and the
 * window length counted by count_include_pad (*padded). */
static inline void
window_1d(const pool_geom *g, int axis_w, int64_t o, int64_t *lo, int64_t *hi, int64_t *padded)
{
    int64_t L = axis_w ? g->W : g->H, O = axis_w ? g->OW : g->OH;
    if (g->adaptive) {
        *lo = o * L / O;
        *hi = ((o + 1) * L + O - 1) / O;
        *padded = *hi - *lo;
        return;
    }
    int64_t k = axis_w ? g->kw : g->kh, s = axis_w ? g->sw : g->sh, p = axis_w ? g->pw : g->ph;
    int64_t start = o * s - p;
    int64_t end = start + k < L + p ? start + k : L + p;
    *padded = end > start ? end - start : 0;
    *lo = start > 0 ? start : 0;
    *hi = end < L ? end : L;
    if (*hi < *lo) {
        *hi = *lo;
    }
}

static inline int64_t
avg_divisor(const pool_geom *g, int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t hpad,
            int64_t wpad)
{
    return g->include_pad && !g->adaptive ? hpad * wpad : (h1 - h0) * (w1 - w0);
}

/* 2x2 windows, stride 2, no padding, and every window fully inside the plane. */
static inline int
is_plain_2x2(const pool_geom *g)
{
    return !g->adaptive && g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 &&
           g->pw == 0 && 2 * g->OH <= g->H && 2 * g->OW <= g->W;
}

/* Store mode: the cells in no 2x2 window (a last odd column, a last odd row) get 0. */
static void
zero_uncovered(const pool_geom *g, void *dx, size_t esz)
{
    char *p = dx;
    int64_t cw = 2 * g->OW, ch = 2 * g->OH;
    for (int64_t h = 0; cw < g->W && h < ch; h++) {
        memset(p + (size_t)(h * g->W + cw) * esz, 0, (size_t)(g->W - cw) * esz);
    }
    if (ch < g->H) {
        memset(p + (size_t)(ch * g->W) * esz, 0, (size_t)((g->H - ch) * g->W) * esz);
    }
}

/* Portable 2x2 kernels. Same rule as argmax_: the later element wins only if greater, or NaN
 * against a number; windows are reduced as (a, b), (c, d), then the pair. */
#define DEFINE_MAX22(T, SFX)                                                                       \
    TY_CLONES static void max22_fwd_##SFX(const pool_geom *g, const T *plane, T *y)                \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            const T *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W;                                  \
            T *yr = y + oh * g->OW;                                                                \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];          \
                T m1 = (b > a || (b != b && a == a)) ? b : a;                                      \
                T m2 = (d > c || (d != d && c == c)) ? d : c;                                      \
                yr[ow] = (m2 > m1 || (m2 != m2 && m1 == m1)) ? m2 : m1;                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* store: each cell becomes 0 + its share (the bits of adding onto a zeroed dx). */            \
    TY_CLONES static void max22_bwd_##SFX(const pool_geom *g, const T *plane, const T *dy, T *dx,  \
                                          int store)                                               \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            const T *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W;                                  \
            T *d0 = dx + 2 * oh * g->W, *d1 = d0 + g->W;                                           \
            const T *dyr = dy + oh * g->OW;                                                        \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];          \
                int pb = b > a || (b != b && a == a), pd = d > c || (d != d && c == c);            \
                T m1 = pb ? b : a, m2 = pd ? d : c;                                                \
                int second = m2 > m1 || (m2 != m2 && m1 == m1);                                    \
                T v = dyr[ow], z = 0;                                                              \
                T *e0 = d0 + 2 * ow, *e1 = d1 + 2 * ow;                                            \
                e0[0] = (store ? z : e0[0]) + ((!second && !pb) ? v : z);                          \
                e0[1] = (store ? z : e0[1]) + ((!second && pb) ? v : z);                           \
                e1[0] = (store ? z : e1[0]) + ((second && !pd) ? v : z);                           \
                e1[1] = (store ? z : e1[1]) + ((second && pd) ? v : z);                            \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_MAX22(float, f32)
DEFINE_MAX22(double, f64)

#ifdef POOL_X86
/* ---- f32, AVX-512: 16 windows per step, even and odd columns split with permutes ---- */

/* Lanes of a step: out for y and dy, lo / hi for the 32 input columns. */
typedef struct lanes16 {
    __mmask16 out, lo, hi;
} lanes16;

typedef struct win16 {
    __m512 m1, m2;            /* the maxima of the top and bottom pairs */
    __mmask16 pb, pd, second; /* b beat a, d beat c, the bottom pair won */
} win16;

static lanes16
lanes16_of(int64_t n)
{
    lanes16 l = {0xFFFF, 0xFFFF, 0xFFFF};
    if (n < 16) {
        l.out = (__mmask16)((1u << n) - 1);
        l.lo = n >= 8 ? 0xFFFF : (__mmask16)((1u << 2 * n) - 1);
        l.hi = n > 8 ? (__mmask16)((1u << (2 * n - 16)) - 1) : 0;
    }
    return l;
}

/* b beats a: NLE_UQ is "greater or unordered"; masking by ORD(a, a) keeps a NaN a. */
INLINE AVX512 __mmask16
beats16(__m512 a, __m512 b)
{
    return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(a, a, _CMP_ORD_Q), b, a, _CMP_NLE_UQ);
}

INLINE AVX512 win16
win16_load(const float *r0, const float *r1, lanes16 l)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __m512 x0 = _mm512_maskz_loadu_ps(l.lo, r0), x1 = _mm512_maskz_loadu_ps(l.hi, r0 + 16);
    __m512 y0 = _mm512_maskz_loadu_ps(l.lo, r1), y1 = _mm512_maskz_loadu_ps(l.hi, r1 + 16);
    __m512 a = _mm512_permutex2var_ps(x0, ev, x1), b = _mm512_permutex2var_ps(x0, od, x1);
    __m512 c = _mm512_permutex2var_ps(y0, ev, y1), d = _mm512_permutex2var_ps(y0, od, y1);
    win16 w;
    w.pb = beats16(a, b);
    w.pd = beats16(c, d);
    w.m1 = _mm512_mask_blend_ps(w.pb, a, b);
    w.m2 = _mm512_mask_blend_ps(w.pd, c, d);
    w.second = beats16(w.m1, w.m2);
    return w;
}

/* One dx row of 16 windows: v where sel_e (even columns) / sel_o (odd), else 0, added onto
 * dx or onto 0. */
INLINE AVX512 void
row16_bwd(float *d, __m512 v, __mmask16 sel_e, __mmask16 sel_o, lanes16 l, int store)
{
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_add_epi32(il, _mm512_set1_epi32(8));
    __m512 e = _mm512_maskz_mov_ps(sel_e, v), o = _mm512_maskz_mov_ps(sel_o, v);
    __m512 b0 = store ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(l.lo, d);
    __m512 b1 = store ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(l.hi, d + 16);
    _mm512_mask_storeu_ps(d, l.lo, _mm512_add_ps(b0, _mm512_permutex2var_ps(e, il, o)));
    _mm512_mask_storeu_ps(d + 16, l.hi, _mm512_add_ps(b1, _mm512_permutex2var_ps(e, ih, o)));
}

AVX512 static void
max22_fwd_f32_avx512(const pool_geom *g, const float *plane, float *y)
{
    const lanes16 full = lanes16_of(16), tail = lanes16_of(g->OW % 16);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W;
        float *yr = y + oh * g->OW;
        int64_t j = 0;
        for (; j + 16 <= g->OW; j += 16) {
            win16 w = win16_load(r0 + 2 * j, r1 + 2 * j, full);
            _mm512_storeu_ps(yr + j, _mm512_mask_blend_ps(w.second, w.m1, w.m2));
        }
        if (j < g->OW) {
            win16 w = win16_load(r0 + 2 * j, r1 + 2 * j, tail);
            _mm512_mask_storeu_ps(yr + j, tail.out, _mm512_mask_blend_ps(w.second, w.m1, w.m2));
        }
    }
}

INLINE AVX512 void
step16_bwd(const float *r0, const float *r1, const float *dy, float *d0, float *d1, lanes16 l,
           int store)
{
    win16 w = win16_load(r0, r1, l);
    __m512 v = _mm512_maskz_loadu_ps(l.out, dy);
    __mmask16 s = w.second, ns = (__mmask16)~s;
    row16_bwd(d0, v, (__mmask16)(ns & ~w.pb), (__mmask16)(ns & w.pb), l, store);
    row16_bwd(d1, v, (__mmask16)(s & ~w.pd), (__mmask16)(s & w.pd), l, store);
}

AVX512 static void
max22_bwd_f32_avx512(const pool_geom *g, const float *plane, const float *dy, float *dx,
                     int store)
{
    const lanes16 full = lanes16_of(16), tail = lanes16_of(g->OW % 16);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W, *dyr = dy + oh * g->OW;
        float *d0 = dx + 2 * oh * g->W, *d1 = d0 + g->W;
        int64_t j = 0;
        for (; j + 16 <= g->OW; j += 16) {
            step16_bwd(r0 + 2 * j, r1 + 2 * j, dyr + j, d0 + 2 * j, d1 + 2 * j, full, store);
        }
        if (j < g->OW) {
            step16_bwd(r0 + 2 * j, r1 + 2 * j, dyr + j, d0 + 2 * j, d1 + 2 * j, tail, store);
        }
    }
}

/* ---- f32, AVX2: 8 windows per step. shuffle_ps splits even and odd columns within 128-bit
 * halves, so the windows sit in lane order 0 1 4 5 2 3 6 7 (perm8 maps it to and from
 * natural order); unpacklo / unpackhi undo the split exactly. ---- */

typedef struct lanes8 {
    __m256i out, lo, hi; /* maskload / maskstore masks of a partial step */
} lanes8;

typedef struct win8 {
    __m256 m1, m2, pb, pd, second; /* as in win16, the masks as all-ones lanes */
} win8;

AVX2 static lanes8
lanes8_of(int64_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int lo = n >= 4 ? 8 : (int)(2 * n), hi = n > 4 ? (int)(2 * n - 8) : 0;
    lanes8 l;
    l.out = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
    l.lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(lo), idx);
    l.hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx);
    return l;
}

INLINE AVX2 __m256
perm8(__m256 v)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
}

INLINE AVX2 __m256
load8(const float *p, __m256i m, int full)
{
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

INLINE AVX2 void
store8(float *p, __m256i m, __m256 v, int full)
{
    if (full) {
        _mm256_storeu_ps(p, v);
    } else {
        _mm256_maskstore_ps(p, m, v);
    }
}

INLINE AVX2 __m256
beats8(__m256 a, __m256 b)
{
    return _mm256_and_ps(_mm256_cmp_ps(a, a, _CMP_ORD_Q), _mm256_cmp_ps(b, a, _CMP_NLE_UQ));
}

INLINE AVX2 win8
win8_load(const float *r0, const float *r1, const lanes8 *l, int full)
{
    __m256 x0 = load8(r0, l->lo, full), x1 = load8(r0 + 8, l->hi, full);
    __m256 y0 = load8(r1, l->lo, full), y1 = load8(r1 + 8, l->hi, full);
    __m256 a = _mm256_shuffle_ps(x0, x1, 0x88), b = _mm256_shuffle_ps(x0, x1, 0xDD);
    __m256 c = _mm256_shuffle_ps(y0, y1, 0x88), d = _mm256_shuffle_ps(y0, y1, 0xDD);
    win8 w;
    w.pb = beats8(a, b);
    w.pd = beats8(c, d);
    w.m1 = _mm256_blendv_ps(a, b, w.pb);
    w.m2 = _mm256_blendv_ps(c, d, w.pd);
    w.second = beats8(w.m1, w.m2);
    return w;
}

INLINE AVX2 void
step8_fwd(const float *r0, const float *r1, float *y, const lanes8 *l, int full)
{
    win8 w = win8_load(r0, r1, l, full);
    store8(y, l->out, perm8(_mm256_blendv_ps(w.m1, w.m2, w.second)), full);
}

AVX2 static void
max22_fwd_f32_avx2(const pool_geom *g, const float *plane, float *y)
{
    const lanes8 tail = lanes8_of(g->OW % 8);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W;
        float *yr = y + oh * g->OW;
        int64_t j = 0;
        for (; j + 8 <= g->OW; j += 8) {
            step8_fwd(r0 + 2 * j, r1 + 2 * j, yr + j, &tail, 1);
        }
        if (j < g->OW) {
            step8_fwd(r0 + 2 * j, r1 + 2 * j, yr + j, &tail, 0);
        }
    }
}

/* e / o: the shares of the even / odd columns (0 where not selected). */
INLINE AVX2 void
row8_bwd(float *d, __m256 e, __m256 o, const lanes8 *l, int full, int store)
{
    __m256 b0 = store ? _mm256_setzero_ps() : load8(d, l->lo, full);
    __m256 b1 = store ? _mm256_setzero_ps() : load8(d + 8, l->hi, full);
    store8(d, l->lo, _mm256_add_ps(b0, _mm256_unpacklo_ps(e, o)), full);
    store8(d + 8, l->hi, _mm256_add_ps(b1, _mm256_unpackhi_ps(e, o)), full);
}

INLINE AVX2 void
step8_bwd(const float *r0, const float *r1, const float *dy, float *d0, float *d1,
          const lanes8 *l, int full, int store)
{
    win8 w = win8_load(r0, r1, l, full);
    __m256 v = perm8(load8(dy, l->out, full)), s = w.second;
    row8_bwd(d0, _mm256_andnot_ps(_mm256_or_ps(s, w.pb), v),
             _mm256_and_ps(_mm256_andnot_ps(s, w.pb), v), l, full, store);
    row8_bwd(d1, _mm256_and_ps(_mm256_andnot_ps(w.pd, s), v),
             _mm256_and_ps(_mm256_and_ps(s, w.pd), v), l, full, store);
}

AVX2 static void
max22_bwd_f32_avx2(const pool_geom *g, const float *plane, const float *dy, float *dx, int store)
{
    const lanes8 tail = lanes8_of(g->OW % 8);
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const float *r0 = plane + 2 * oh * g->W, *r1 = r0 + g->W, *dyr = dy + oh * g->OW;
        float *d0 = dx + 2 * oh * g->W, *d1 = d0 + g->W;
        int64_t j = 0;
        for (; j + 8 <= g->OW; j += 8) {
            step8_bwd(r0 + 2 * j, r1 + 2 * j, dyr + j, d0 + 2 * j, d1 + 2 * j, &tail, 1, store);
        }
        if (j < g->OW) {
            step8_bwd(r0 + 2 * j, r1 + 2 * j, dyr + j, d0 + 2 * j, d1 + 2 * j, &tail, 0, store);
        }
    }
}
#endif /* POOL_X86 */

/* ---- choosing the kernels written with intrinsics ---- */

static ty_isa_override isa_forced;

static ty_isa
isa_now(void)
{
    return ty_isa_override_get(&isa_forced);
}

ty_isa
ty_pool_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

static void
max22_fwd_plane_f32(const pool_ctx *c, const float *plane, float *y)
{
#ifdef POOL_X86
    if (c->isa == TY_ISA_AVX512) {
        max22_fwd_f32_avx512(&c->g, plane, y);
        return;
    }
    if (c->isa == TY_ISA_AVX2) {
        max22_fwd_f32_avx2(&c->g, plane, y);
        return;
    }
#endif
    max22_fwd_f32(&c->g, plane, y);
}

static void
max22_bwd_plane_f32(const pool_ctx *c, const float *plane, const float *dy, float *dx)
{
#ifdef POOL_X86
    if (c->isa == TY_ISA_AVX512) {
        max22_bwd_f32_avx512(&c->g, plane, dy, dx, c->store);
        return;
    }
    if (c->isa == TY_ISA_AVX2) {
        max22_bwd_f32_avx2(&c->g, plane, dy, dx, c->store);
        return;
    }
#endif
    max22_bwd_f32(&c->g, plane, dy, dx, c->store);
}

static void
max22_fwd_plane_f64(const pool_ctx *c, const double *plane, double *y)
{
    max22_fwd_f64(&c->g, plane, y);
}

static void
max22_bwd_plane_f64(const pool_ctx *c, const double *plane, const double *dy, double *dx)
{
    max22_bwd_f64(&c->g, plane, dy, dx, c->store);
}

/* Separable max pooling for strided windows other than the plain 2x2: per input row, the
 * first maximum over each output's kw columns (the H pass), then the first maximum of those
 * over the window's rows in order (the V pass). Picking the first maximum (a later value wins
 * only if greater, or NaN against a number) is associative over concatenation, so row
 * segments first and rows in order pick exactly the element the row-major scan of argmax_
 * picks: the same bits, signed zeros and NaN payloads included. Padding is -inf, which never
 * displaces an earlier value. Each row is first dealt into sw column phases, so both passes
 * read contiguously and vectorise. */
#define DEFINE_SEPMAX(T, SFX)                                                                      \
    static inline T first_max_##SFX(T a, T b)                                                      \
    {                                                                                              \
        return (b > a || (b != b && a == a)) ? b : a;                                              \
    }                                                                                              \
                                                                                                   \
    /* Columns of one phase: outputs plus the window's reach past them. */                         \
    static int64_t sep_cols_##SFX(const pool_geom *g)                                              \
    {                                                                                              \
        return g->OW + (g->kw - 1) / g->sw + 1;                                                    \
    }                                                                                              \
                                                                                                   \
    TY_CLONES static void sep_hpass_##SFX(const pool_geom *g, const T *xr, T *ph, T *hr)           \
    {                                                                                              \
        int64_t Q = sep_cols_##SFX(g);                                                             \
        for (int64_t b = 0; b < g->sw; b++) { /* v in [lo, hi): input columns v*sw + b - pw */  \
            T *d = ph + b * Q;                                                                     \
            int64_t lo = g->pw > b ? (g->pw - b + g->sw - 1) / g->sw : 0;                          \
            int64_t hi = g->W + g->pw > b ? (g->W + g->pw - b + g->sw - 1) / g->sw : 0;            \
            int64_t v = 0;                                                                         \
            hi = hi < Q ? hi : Q;                                                                  \
            for (; v < lo && v < Q; v++) {                                                         \
                d[v] = (T)-INFINITY;                                                               \
            }                                                                                      \
            const T *src = xr + b - g->pw + v * g->sw;                                             \
            if (g->sw == 1) {                                                                      \
                for (int64_t j = 0; j < hi - v; j++) {                                             \
                    d[v + j] = src[j];                                                             \
                }                                                                                  \
            } else {                                                                               \
                for (int64_t j = 0; j < hi - v; j++) {                                             \
                    d[v + j] = src[j * g->sw];                                                     \
                }                                                                                  \
            }                                                                                      \
            for (v = hi > v ? hi : v; v < Q; v++) {                                                \
                d[v] = (T)-INFINITY;                                                               \
            }                                                                                      \
        }                                                                                          \
        for (int64_t ow = 0; ow < g->OW; ow++) {                                                   \
            hr[ow] = ph[ow];                                                                       \
        }                                                                                          \
        for (int64_t k = 1; k < g->kw; k++) {                                                      \
            const T *src = ph + (k % g->sw) * Q + k / g->sw;                                       \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                hr[ow] = first_max_##SFX(hr[ow], src[ow]);                                         \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    TY_CLONES static void sep_vpass_##SFX(const pool_geom *g, const T *hb, T *y)                   \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                   \
            int64_t h0, h1, hpad;                                                                  \
            window_1d(g, 0, oh, &h0, &h1, &hpad);                                                  \
            T *yr = y + oh * g->OW;                                                                \
            for (int64_t ow = 0; ow < g->OW; ow++) {                                               \
                yr[ow] = h1 > h0 ? hb[h0 * g->OW + ow] : (T)-INFINITY;                             \
            }                                                                                      \
            for (int64_t h = h0 + 1; h < h1; h++) {                                                \
                const T *hr = hb + h * g->OW;                                                      \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    yr[ow] = first_max_##SFX(yr[ow], hr[ow]);                                      \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Returns 0 (nothing done) without memory for the scratch. */                                 \
    static int sepmax_planes_##SFX(const pool_ctx *c, int64_t begin, int64_t end)                  \
    {                                                                                              \
        const pool_geom *g = &c->g;                                                                \
        size_t phn = (size_t)(g->sw * sep_cols_##SFX(g)), n = phn + (size_t)(g->H * g->OW);         \
        T *buf = malloc(n * sizeof(T));                                                            \
        if (!buf) {                                                                                \
            return 0;                                                                              \
        }                                                                                          \
        for (int64_t p = begin; p < end; p++) {                                                    \
            const T *plane = (const T *)c->x + p * g->H * g->W;                                    \
            for (int64_t h = 0; h < g->H; h++) {                                                   \
                sep_hpass_##SFX(g, plane + h * g->W, buf, buf + phn + h * g->OW);                  \
            }                                                                                      \
            sep_vpass_##SFX(g, buf + phn, (T *)c->out + p * g->OH * g->OW);                        \
        }                                                                                          \
        free(buf);                                                                                 \
        return 1;                                                                                  \
    }

DEFINE_SEPMAX(float, f32)
DEFINE_SEPMAX(double, f64)

/* ---- f32 max pooling with 3-wide windows at column stride 2 (ResNet's 3x3/2 stem pool) ----
 * The separable order of DEFINE_SEPMAX (so the same picks, the same bits), with explicit
 * vectors: each input row is copied once into a -inf padded row, its even and odd columns are
 * split with permutes, and output ow gets first_max(first_max(x[2ow], x[2ow+1]), x[2ow+2]) of
 * the padded row. Each input row's result goes once into a ring of at least kh rows on the
 * stack (all in L1), from which the V pass folds each output row's window rows in order. No
 * heap; plane by plane, so the chunks of run_planes (fixed by the shape) decide the split.
 * The generic ISA keeps the separable C loops, which pick the same elements. */
#ifdef POOL_X86
enum { K3_ROW_MAX = 2048, K3_RING_MAX = 4096, K3_KH_MAX = 8, K3_PREFETCH_ROWS = 4 };

typedef struct k3_geom {
    int64_t owr;   /* OW rounded up to 16: the width of a ring row */
    int64_t slots; /* ring rows: a power of two >= kh, so row h goes to slot h & (slots - 1) */
    int64_t padn;  /* floats of the padded row that the H pass reads */
} k3_geom;

static int
k3_fits(const pool_geom *g, k3_geom *k)
{
    if (g->adaptive || g->kw != 3 || g->sw != 2 || g->kh < 1 || g->kh > K3_KH_MAX || g->pw < 0) {
        return 0;
    }
    k->owr = (g->OW + 15) / 16 * 16;
    k->slots = 1;
    while (k->slots < g->kh) {
        k->slots *= 2;
    }
    k->padn = 2 * k->owr + 2;
    return g->pw + g->W <= K3_ROW_MAX && k->padn <= K3_ROW_MAX &&
           k->slots * k->owr <= K3_RING_MAX;
}

/* -inf everywhere; rows are then copied to pad + pw, so the -inf around them stays. */
static void
k3_pad_init(const pool_geom *g, const k3_geom *k, float *pad)
{
    int64_t n = k->padn > g->pw + g->W ? k->padn : g->pw + g->W;
    for (int64_t i = 0; i < n; i++) {
        pad[i] = -INFINITY;
    }
}

/* Two ways to take the first maximum: exactly (the NaN rule), or by max_ps, whose
 * "src1 > src2 ? src1 : src2" is the same pick when neither operand is NaN (a later value wins
 * only if greater, so ties and signed zeros keep the earlier one) and costs one instruction
 * instead of two compares and a blend. Rows holding no NaN take max_ps. */
INLINE AVX512 __m512
first_max16(__m512 a, __m512 b, int exact)
{
    return exact ? _mm512_mask_blend_ps(beats16(a, b), a, b) : _mm512_max_ps(b, a);
}

/* The H pass of one padded row into out; returns whether the row holds a NaN (then out was
 * made by the exact rule). unord(v0, v1) checks 32 columns with one compare; the last two
 * columns of the reach are read only by w0 / w1 of the last step. */
INLINE AVX512 int
k3_hrow16(const k3_geom *k, const float *pad, float *out, int exact)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __mmask16 nan = 0;
    for (int64_t j = 0; j < k->owr; j += 16) {
        const float *p = pad + 2 * j;
        __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
        __m512 w0 = _mm512_loadu_ps(p + 2), w1 = _mm512_loadu_ps(p + 18);
        __m512 e = _mm512_permutex2var_ps(v0, ev, v1), o = _mm512_permutex2var_ps(v0, od, v1);
        __m512 e2 = _mm512_permutex2var_ps(w0, ev, w1);
        nan |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
        _mm512_storeu_ps(out + j, first_max16(first_max16(e, o, exact), e2, exact));
    }
    return nan || isnan(pad[2 * k->owr]) || isnan(pad[2 * k->owr + 1]);
}

AVX512 static int
k3_hrow_avx512(const k3_geom *k, const float *pad, float *out)
{
    return k3_hrow16(k, pad, out, 0) && k3_hrow16(k, pad, out, 1);
}

/* y row = the first maximum of the window's rows (ring rows, in order; -inf for none). */
INLINE AVX512 void
k3_vrow16(int64_t OW, const float *const *rows, int64_t nrows, float *yr, int exact)
{
    for (int64_t j = 0; j < OW; j += 16) {
        int64_t n = OW - j < 16 ? OW - j : 16;
        __m512 m = nrows > 0 ? _mm512_loadu_ps(rows[0] + j) : _mm512_set1_ps(-INFINITY);
        for (int64_t r = 1; r < nrows; r++) {
            m = first_max16(m, _mm512_loadu_ps(rows[r] + j), exact);
        }
        _mm512_mask_storeu_ps(yr + j, (__mmask16)((1u << n) - 1), m);
    }
}

AVX512 static void
k3_vrow_avx512(int64_t OW, const float *const *rows, int64_t nrows, float *yr, int exact)
{
    if (exact) {
        k3_vrow16(OW, rows, nrows, yr, 1);
    } else {
        k3_vrow16(OW, rows, nrows, yr, 0);
    }
}

INLINE AVX2 __m256
first_max8(__m256 a, __m256 b, int exact)
{
    return exact ? _mm256_blendv_ps(a, b, beats8(a, b)) : _mm256_max_ps(b, a);
}

/* shuffle_ps deals the even / odd columns of 16 in 64-bit blocks 0 2 1 3; perm8 puts them
 * back in order. */
INLINE AVX2 int
k3_hrow8(const k3_geom *k, const float *pad, float *out, int exact)
{
    __m256 nan = _mm256_setzero_ps();
    for (int64_t j = 0; j < k->owr; j += 8) {
        const float *p = pad + 2 * j;
        __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
        __m256 w0 = _mm256_loadu_ps(p + 2), w1 = _mm256_loadu_ps(p + 10);
        __m256 e = _mm256_shuffle_ps(v0, v1, 0x88), o = _mm256_shuffle_ps(v0, v1, 0xDD);
        __m256 e2 = _mm256_shuffle_ps(w0, w1, 0x88);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v0, v1, _CMP_UNORD_Q));
        _mm256_storeu_ps(out + j, perm8(first_max8(first_max8(e, o, exact), e2, exact)));
    }
    return _mm256_movemask_ps(nan) || isnan(pad[2 * k->owr]) || isnan(pad[2 * k->owr + 1]);
}

AVX2 static int
k3_hrow_avx2(const k3_geom *k, const float *pad, float *out)
{
    return k3_hrow8(k, pad, out, 0) && k3_hrow8(k, pad, out, 1);
}

INLINE AVX2 void
k3_vrow8(int64_t OW, const float *const *rows, int64_t nrows, float *yr, int exact)
{
    const lanes8 tail = lanes8_of(OW % 8);
    for (int64_t j = 0; j < OW; j += 8) {
        __m256 m = nrows > 0 ? _mm256_loadu_ps(rows[0] + j) : _mm256_set1_ps(-INFINITY);
        for (int64_t r = 1; r < nrows; r++) {
            m = first_max8(m, _mm256_loadu_ps(rows[r] + j), exact);
        }
        store8(yr + j, tail.out, m, j + 8 <= OW);
    }
}

AVX2 static void
k3_vrow_avx2(int64_t OW, const float *const *rows, int64_t nrows, float *yr, int exact)
{
    if (exact) {
        k3_vrow8(OW, rows, nrows, yr, 1);
    } else {
        k3_vrow8(OW, rows, nrows, yr, 0);
    }
}

/* Two padded rows: row h + 1 is copied in before row h is read, so the H pass's loads (which
 * straddle the copy's shifted stores) never wait on store forwarding, which cost more than the
 * pass itself. staged[i]: the row pad i holds. */
typedef struct k3_pads {
    float *buf[2];
    int64_t staged[2];
} k3_pads;

/* The rows ahead of the one being copied, pulled into L1: the copy otherwise waited on each
 * row's cache misses (the input of a ResNet stem pool, 3 MiB, comes from L3 or memory). */
static void
k3_prefetch_row(const pool_geom *g, const float *plane, int64_t r)
{
    if (r >= g->H) {
        return;
    }
    const char *p = (const char *)(plane + r * g->W);
    for (int64_t b = 0; b < g->W * (int64_t)sizeof(float); b += 64) {
        _mm_prefetch(p + b, _MM_HINT_T0);
    }
}

static const float *
k3_stage(const pool_geom *g, k3_pads *pads, const float *plane, int64_t h)
{
    for (int64_t r = h; r <= h + 1 && r < g->H; r++) {
        if (pads->staged[r & 1] != r) {
            memcpy(pads->buf[r & 1] + g->pw, plane + r * g->W, (size_t)g->W * sizeof(float));
            pads->staged[r & 1] = r;
            k3_prefetch_row(g, plane, r + K3_PREFETCH_ROWS);
        }
    }
    return pads->buf[h & 1];
}

/* Rows are computed in increasing order and a window spans at most kh <= slots rows, so the
 * ring still holds all of [h0, h1) when output row oh needs them. nan[s]: ring slot s came from a row
 * holding a NaN, so windows over it take the exact rule. */
static void
k3_plane(const pool_ctx *c, const k3_geom *k, const float *plane, float *y, float *const *pad,
         float *ring)
{
    const pool_geom *g = &c->g;
    const float *rows[K3_KH_MAX];
    int nan[K3_KH_MAX];
    k3_pads pads = {{pad[0], pad[1]}, {-1, -1}};
    int64_t next = 0;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t h0, h1, hpad;
        window_1d(g, 0, oh, &h0, &h1, &hpad);
        for (int64_t h = next > h0 ? next : h0; h < h1; h++) {
            int64_t s = h & (k->slots - 1);
            const float *row = k3_stage(g, &pads, plane, h);
            nan[s] = c->isa == TY_ISA_AVX512 ? k3_hrow_avx512(k, row, ring + s * k->owr)
                                             : k3_hrow_avx2(k, row, ring + s * k->owr);
        }
        next = h1 > next ? h1 : next;
        int exact = 0;
        for (int64_t h = h0; h < h1; h++) {
            rows[h - h0] = ring + (h & (k->slots - 1)) * k->owr;
            exact |= nan[h & (k->slots - 1)];
        }
        if (c->isa == TY_ISA_AVX512) {
            k3_vrow_avx512(g->OW, rows, h1 - h0, y + oh * g->OW, exact);
        } else {
            k3_vrow_avx2(g->OW, rows, h1 - h0, y + oh * g->OW, exact);
        }
    }
}
#endif /* POOL_X86 */

/* Returns 0 (nothing done) where the kernel does not apply: generic ISA, other shapes. */
static int
k3_planes_f32(const pool_ctx *c, int64_t begin, int64_t end)
{
#ifdef POOL_X86
    k3_geom k;
    if ((c->isa != TY_ISA_AVX512 && c->isa != TY_ISA_AVX2) || !k3_fits(&c->g, &k)) {
        return 0;
    }
    _Alignas(64) float pad0[K3_ROW_MAX], pad1[K3_ROW_MAX];
    _Alignas(64) float ring[K3_RING_MAX];
    float *const pad[2] = {pad0, pad1};
    const pool_geom *g = &c->g;
    k3_pad_init(g, &k, pad0);
    k3_pad_init(g, &k, pad1);
    for (int64_t p = begin; p < end; p++) {
        k3_plane(c, &k, (const float *)c->x + p * g->H * g->W, (float *)c->out + p * g->OH * g->OW,
                 pad, ring);
    }
    return 1;
#else
    (void)c;
    (void)begin;
    (void)end;
    return 0;
#endif
}

static int
k3_planes_f64(const pool_ctx *c, int64_t begin, int64_t end)
{
    (void)c;
    (void)begin;
    (void)end;
    return 0;
}

/* Global average pooling (one window holding the whole plane, divisor H*W), 16 planes at a
 * time on AVX-512: lane j sums plane j in the generic order (row by row, from 0) and divides
 * the same way, so the bits are the generic loop's. A 7x7 plane is otherwise one chain of 49
 * dependent adds. Returns how many planes from begin it did (whole groups of 16). */
static int
is_global_avg(const pool_ctx *c)
{
    const pool_geom *g = &c->g;
    int64_t h0, h1, hp, w0, w1, wp;
    if (c->is_max || g->OH != 1 || g->OW != 1 || g->H * g->W >= (1 << 24) / 16) {
        return 0;
    }
    window_1d(g, 0, 0, &h0, &h1, &hp);
    window_1d(g, 1, 0, &w0, &w1, &wp);
    return h0 == 0 && h1 == g->H && w0 == 0 && w1 == g->W &&
           avg_divisor(g, h0, h1, w0, w1, hp, wp) == g->H * g->W && g->H * g->W > 0;
}

#ifdef POOL_X86
AVX512 static void
global_avg16_avx512(const float *x, int64_t hw, float *y)
{
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)hw));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t k = 0; k < hw; k++) {
        sum = _mm512_add_ps(sum, _mm512_i32gather_ps(idx, x + k, 4));
    }
    _mm512_storeu_ps(y, _mm512_div_ps(sum, _mm512_set1_ps((float)hw)));
}
#endif

static int64_t
global_avg16_f32(const pool_ctx *c, int64_t begin, int64_t end)
{
    int64_t done = 0;
#ifdef POOL_X86
    const pool_geom *g = &c->g;
    if (c->isa == TY_ISA_AVX512 && is_global_avg(c)) {
        int64_t hw = g->H * g->W;
        for (; begin + done + 16 <= end; done += 16) {
            global_avg16_avx512((const float *)c->x + (begin + done) * hw, hw,
                                (float *)c->out + begin + done);
        }
    }
#else
    (void)c;
    (void)begin;
    (void)end;
#endif
    return done;
}

static int64_t
global_avg16_f64(const pool_ctx *c, int64_t begin, int64_t end)
{
    (void)c;
    (void)begin;
    (void)end;
    return 0;
}

#define DEFINE_POOL(T, SFX)                                                                        \
    /* Index in the plane of the window's maximum (first max; a NaN beats any number, first        \
     * NaN wins), or -1 for an empty window. */                                                    \
    static inline int64_t argmax_##SFX(const T *plane, int64_t W, int64_t h0, int64_t h1,          \
                                       int64_t w0, int64_t w1)                                     \
    {                                                                                              \
        int64_t best = -1;                                                                         \
        T m = 0;                                                                                   \
        for (int64_t h = h0; h < h1; h++) {                                                        \
            const T *row = plane + h * W;                                                          \
            for (int64_t w = w0; w < w1; w++) {                                                    \
                T v = row[w];                                                                      \
                if (best < 0 || v > m || (isnan(v) && !isnan(m))) {                                \
                    best = h * W + w;                                                              \
                    m = v;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return best;                                                                               \
    }                                                                                              \
                                                                                                   \
    static void pool_fwd_##SFX(void *ctx, int64_t begin, int64_t end)                              \
    {                                                                                              \
        const pool_ctx *c = ctx;                                                                   \
        const pool_geom *g = &c->g;                                                                \
        if (c->is_max && is_plain_2x2(g)) {                                                        \
            for (int64_t p = begin; p < end; p++) {                                                \
                max22_fwd_plane_##SFX(c, (const T *)c->x + p * g->H * g->W,                        \
                                      (T *)c->out + p * g->OH * g->OW);                            \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        if (c->is_max && k3_planes_##SFX(c, begin, end)) {                                         \
            return;                                                                                \
        }                                                                                          \
        if (c->is_max && !g->adaptive && sepmax_planes_##SFX(c, begin, end)) {                     \
            return;                                                                                \
        }                                                                                          \
        begin += global_avg16_##SFX(c, begin, end);                                                \
        for (int64_t p = begin; p < end; p++) {                                                    \
            const T *plane = (const T *)c->x + p * g->H * g->W;                                    \
            T *y = (T *)c->out + p * g->OH * g->OW;                                                \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                int64_t h0, h1, hpad;                                                              \
                window_1d(g, 0, oh, &h0, &h1, &hpad);                                              \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    int64_t w0, w1, wpad;                                                          \
                    window_1d(g, 1, ow, &w0, &w1, &wpad);                                          \
                    if (c->is_max) {                                                               \
                        int64_t idx = argmax_##SFX(plane, g->W, h0, h1, w0, w1);                   \
                        y[oh * g->OW + ow] = idx < 0 ? (T)-INFINITY : plane[idx];                  \
                        continue;                                                                  \
                    }                                                                              \
                    T sum = 0;                                                                     \
                    for (int64_t h = h0; h < h1; h++) {                                            \
                        for (int64_t w = w0; w < w1; w++) {                                        \
                            sum += plane[h * g->W + w];                                            \
                        }                                                                          \
                    }                                                                              \
                    int64_t div = avg_divisor(g, h0, h1, w0, w1, hpad, wpad);                      \
                    y[oh * g->OW + ow] = div > 0 ? sum / (T)div : (T)0;                            \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void pool_bwd_##SFX(void *ctx, int64_t begin, int64_t end)                              \
    {                                                                                              \
        const pool_ctx *c = ctx;                                                                   \
        const pool_geom *g = &c->g;                                                                \
        if (c->is_max && is_plain_2x2(g)) {                                                        \
            for (int64_t p = begin; p < end; p++) {                                                \
                T *dx = (T *)c->out + p * g->H * g->W;                                             \
                max22_bwd_plane_##SFX(c, (const T *)c->x + p * g->H * g->W,                        \
                                      (const T *)c->dy + p * g->OH * g->OW, dx);                   \
                if (c->store) {                                                                    \
                    zero_uncovered(g, dx, sizeof(T));                                              \
                }                                                                                  \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = begin; p < end; p++) {                                                    \
            const T *plane = c->is_max ? (const T *)c->x + p * g->H * g->W : NULL;                 \
            const T *dy = (const T *)c->dy + p * g->OH * g->OW;                                    \
            T *dx = (T *)c->out + p * g->H * g->W;                                                 \
            for (int64_t oh = 0; oh < g->OH; oh++) {                                               \
                int64_t h0, h1, hpad;                                                              \
                window_1d(g, 0, oh, &h0, &h1, &hpad);                                              \
                for (int64_t ow = 0; ow < g->OW; ow++) {                                           \
                    int64_t w0, w1, wpad;                                                          \
                    window_1d(g, 1, ow, &w0, &w1, &wpad);                                          \
                    T d = dy[oh * g->OW + ow];                                                     \
                    if (c->is_max) {                                                               \
                        int64_t idx = argmax_##SFX(plane, g->W, h0, h1, w0, w1);                   \
                        if (idx >= 0) {                                                            \
                            dx[idx] += d;                                                          \
                        }                                                                          \
                        continue;                                                                  \
                    }                                                                              \
                    int64_t div = avg_divisor(g, h0, h1, w0, w1, hpad, wpad);                      \
                    if (div <= 0) {                                                                \
                        continue;                                                                  \
                    }                                                                              \
                    T share = d / (T)div;                                                          \
                    for (int64_t h = h0; h < h1; h++) {                                            \
                        for (int64_t w = w0; w < w1; w++) {                                        \
                            dx[h * g->W + w] += share;                                             \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    void ty_maxpool2d_##SFX(const T *x, int64_t planes, int64_t H, int64_t W, int64_t kh,          \
                            int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,            \
                            int64_t OH, int64_t OW, T *y)                                          \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, 0}, 1, x, NULL, y, isa_now(), 0};  \
        run_planes(&c, planes, pool_fwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_maxpool2d_bwd_##SFX(const T *x, const T *dy, int64_t planes, int64_t H, int64_t W,     \
                                int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,        \
                                int64_t pw, int64_t OH, int64_t OW, T *dx)                         \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, 0}, 1, x, dy, dx, isa_now(), 0};   \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_maxpool2d_2x2_bwd_##SFX(const T *x, const T *dy, int64_t planes, int64_t H, int64_t W, \
                                    int64_t OH, int64_t OW, T *dx)                                 \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, 2, 2, 2, 2, 0, 0, 0, 0}, 1, x, dy, dx, isa_now(), 1};         \
        if (OH <= 0 || OW <= 0) {                                                                  \
            memset(dx, 0, (size_t)(planes * H * W) * sizeof(T));                                   \
            return;                                                                                \
        }                                                                                          \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_avgpool2d_##SFX(const T *x, int64_t planes, int64_t H, int64_t W, int64_t kh,          \
                            int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,            \
                            int64_t OH, int64_t OW, int count_include_pad, T *y)                   \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, count_include_pad != 0},           \
                      0, x, NULL, y, isa_now(), 0};                                                \
        run_planes(&c, planes, pool_fwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_avgpool2d_bwd_##SFX(const T *dy, int64_t planes, int64_t H, int64_t W, int64_t kh,     \
                                int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,        \
                                int64_t OH, int64_t OW, int count_include_pad, T *dx)              \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, count_include_pad != 0},           \
                      0, NULL, dy, dx, TY_ISA_GENERIC, 0};                                            \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_adaptive_pool2d_##SFX(const T *x, int64_t planes, int64_t H, int64_t W, int64_t OH,    \
                                  int64_t OW, int is_max, T *y)                                    \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, 0, 0, 1, 1, 0, 0, 1, 0}, is_max != 0, x, NULL, y,             \
                      isa_now(), 0};                                                               \
        run_planes(&c, planes, pool_fwd_##SFX);                                                    \
    }                                                                                              \
                                                                                                   \
    void ty_adaptive_pool2d_bwd_##SFX(const T *x, const T *dy, int64_t planes, int64_t H,          \
                                      int64_t W, int64_t OH, int64_t OW, int is_max, T *dx)        \
    {                                                                                              \
        pool_ctx c = {{H, W, OH, OW, 0, 0, 1, 1, 0, 0, 1, 0}, is_max != 0, x, dy, dx,              \
                      TY_ISA_GENERIC, 0};                                                             \
        run_planes(&c, planes, pool_bwd_##SFX);                                                    \
    }

/* Splits planes over threads, enough planes per chunk to pay for the hand-off. */
static void
run_planes(pool_ctx *c, int64_t planes, ty_range_fn fn)
{
    const pool_geom *g = &c->g;
    if (planes <= 0 || g->OH <= 0 || g->OW <= 0) {
        return;
    }
    int64_t win = g->adaptive ? (g->H / g->OH + 2) * (g->W / g->OW + 2) : g->kh * g->kw;
    int64_t per_plane = g->OH * g->OW * (win > 0 ? win : 1) + g->H * g->W;
    ty_parallel_for(planes, MIN_CHUNK_WORK / per_plane + 1, fn, c);
}

DEFINE_POOL(float, f32)
DEFINE_POOL(double, f64)
