/* float32 exp, tanh and log, each written once as a recipe and spelled three ways: AVX-512
 * (16 lanes), AVX2 + FMA (8 lanes) and scalar C with fmaf. Each lane does the same operations
 * in the same order with one rounding each (fused multiply-adds where the recipe says so), so
 * the three give the same bits for every input, NaN included (softmax, the elementwise exp,
 * tanh and log and the ops built on them).
 *
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two
 * parts, the first short so n times it is exact), exp(r) by its Taylor polynomial of degree 7
 * (truncation below 1e-8 relative). 2^n is applied as two factors 2^(n/2) so the scale stays
 * a normal float down to the subnormal results and up to overflow, which the products round
 * once. x is clamped first to where the result is 0 or inf (NaN passes the clamps).
 *
 * Measured against float64 on every 1009th float (tests/python/test_elemw_vexp.py checks
 * every 8191st and the edges): exp at most 1 ulp (0.86 seen), subnormal results within 1 of
 * the subnormal spacing, exp(+inf) = inf, exp(-inf) = 0, overflow to inf from 88.7228 on,
 * underflow to 0 below -103.97; tanh at most 3 ulp (2.91 seen, near |x| = 2^-5); log at most
 * 1 ulp (0.76 seen). */
#ifndef TY_KERNELS_CPU_VMATH_H
#define TY_KERNELS_CPU_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define TY_VEXP_LO (-110.0f)
#define TY_VEXP_HI 89.0f
#define TY_VEXP_LOG2E 1.44269504088896341f
#define TY_VEXP_LN2_HI 0.693359375f
#define TY_VEXP_LN2_LO (-2.12194440054690583e-4f)
#define TY_VEXP_C7 (1.0f / 5040)
#define TY_VEXP_C6 (1.0f / 720)
#define TY_VEXP_C5 (1.0f / 120)
#define TY_VEXP_C4 (1.0f / 24)
#define TY_VEXP_C3 (1.0f / 6)

/* 2^k as a float for -126 <= k <= 127 (other k: some float; the recipe's p is NaN then) */
static inline float
ty_vexp_pow2(int32_t k)
{
    uint32_t bits = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The scalar spelling: the clamps as vmaxps/vminps order them (a NaN x passes), and where the
 * vector conversion gives INT32_MIN for NaN, the same here without the undefined cast. On a
 * CPU without FMA, fmaf is libm's (exact, slow: the generic path is for tests and old CPUs). */
static inline float
ty_vexp_scalar(float x)
{
    float t = TY_VEXP_LO > x ? TY_VEXP_LO : x;
    t = TY_VEXP_HI < t ? TY_VEXP_HI : t;
    float n = rintf(t * TY_VEXP_LOG2E);
    /* -(n c) + t as n (-c) + t: the same value, and a NaN n passes with its sign as through
     * vfnmadd */
    float r = fmaf(n, -TY_VEXP_LN2_HI, t);
    r = fmaf(n, -TY_VEXP_LN2_LO, r);
    float p = fmaf(TY_VEXP_C7, r, TY_VEXP_C6);
    p = fmaf(p, r, TY_VEXP_C5);
    p = fmaf(p, r, TY_VEXP_C4);
    p = fmaf(p, r, TY_VEXP_C3);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t ni = n == n ? (int32_t)n : INT32_MIN;
    int32_t n1 = (ni - (ni & 1)) / 2; /* ni >> 1 (floor), as the vector shift */
    return p * ty_vexp_pow2(n1) * ty_vexp_pow2(ni - n1);
}

/* ---- tanh(x) = sign(x) E / (E + 2), E = expm1(2|x|) ----
 * expm1(t) = 2^n (1 + s) - 1 = fma(2^n, s, 2^n - 1) with n, r as exp's and s = e^r - 1 =
 * r q(r), q by its Taylor polynomial of degree 7 (truncation below 1e-9 relative): no
 * cancellation near 0, so tanh keeps its relative accuracy down to the subnormals. 2|x| is
 * clamped to 20, where E / (E + 2) rounds to 1. The sign is x's sign bit (-0 stays -0, NaN
 * keeps its sign). */
#define TY_VTANH_HI 20.0f

static inline uint32_t
ty_vmath_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static inline float
ty_vmath_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static inline float
ty_vtanh_scalar(float x)
{
    uint32_t sign = ty_vmath_bits(x) & 0x80000000u;
    float a = ty_vmath_float(ty_vmath_bits(x) & 0x7fffffffu);
    float t = a + a;
    t = TY_VTANH_HI < t ? TY_VTANH_HI : t;
    float n = rintf(t * TY_VEXP_LOG2E);
    float r = fmaf(n, -TY_VEXP_LN2_HI, t);
    r = fmaf(n, -TY_VEXP_LN2_LO, r);
    float q = fmaf(1.0f / 40320, r, TY_VEXP_C7);
    q = fmaf(q, r, TY_VEXP_C6);
    q = fmaf(q, r, TY_VEXP_C5);
    q = fmaf(q, r, TY_VEXP_C4);
    q = fmaf(q, r, TY_VEXP_C3);
    q = fmaf(q, r, 0.5f);
    q = fmaf(q, r, 1.0f);
    float s = r * q;
    float p2 = ty_vexp_pow2(n == n ? (int32_t)n : INT32_MIN);
    float e = fmaf(p2, s, p2 - 1.0f);
    float y = e / (e + 2.0f);
    return ty_vmath_float(ty_vmath_bits(y) | sign);
}

/* ---- log(x) = k ln 2 + log(m), x = 2^k m, m in [sqrt(1/2), sqrt(2)) ----
 * With f = m - 1 (exact), s = f / (2 + f), z = s^2: log(m) = f - (hf - s (hf + R)), hf =
 * f^2 / 2 and R = 2 (z/3 + z^2/5 + ... + z^5/11) (fdlibm's arrangement, with the Taylor
 * coefficients: the terms beyond stay below 1e-10 relative), and k ln 2 in two parts, the
 * first exact for every k. Subnormal x are scaled by 2^23 first. log(+-0) = -inf, log(x < 0)
 * = NaN, log(inf) = inf, a NaN x is returned. */
#define TY_VLOG_MIN_NORMAL 1.17549435e-38f
#define TY_VLOG_SQRT2_BITS 0x3fb504f3
#define TY_VLOG_L1 (2.0f / 3)
#define TY_VLOG_L2 (2.0f / 5)
#define TY_VLOG_L3 (2.0f / 7)
#define TY_VLOG_L4 (2.0f / 9)
#define TY_VLOG_L5 (2.0f / 11)

static inline float
ty_vlog_scalar(float x)
{
    int tiny = x < TY_VLOG_MIN_NORMAL;
    uint32_t bits = ty_vmath_bits(tiny ? x * 8388608.0f : x);
    int32_t k = (int32_t)(bits >> 23 & 0xff) - (tiny ? 150 : 127);
    uint32_t mb = (bits & 0x007fffffu) | 0x3f800000u;
    int big = mb > TY_VLOG_SQRT2_BITS;
    mb = big ? mb - 0x00800000u : mb;
    k = big ? k + 1 : k;
    float f = ty_vmath_float(mb) - 1.0f;
    float s = f / (2.0f + f);
    float z = s * s;
    float R = fmaf(z, TY_VLOG_L5, TY_VLOG_L4);
    R = fmaf(R, z, TY_VLOG_L3);
    R = fmaf(R, z, TY_VLOG_L2);
    R = fmaf(R, z, TY_VLOG_L1);
    R = R * z;
    float hf = 0.5f * f * f;
    float dk = (float)k;
    float lo = s * (hf + R) + dk * TY_VEXP_LN2_LO;
    float y = dk * TY_VEXP_LN2_HI - ((hf - lo) - f);
    y = x == INFINITY ? INFINITY : y;
    y = x == 0.0f ? -INFINITY : y;
    y = x < 0.0f ? ty_vmath_float(0x7fc00000u) : y;
    return x != x ? x : y;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

__attribute__((target("avx512f"))) static inline __m512
ty_vexp_pow2_512(__m512i k)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23));
}

__attribute__((target("avx512f"))) static inline __m512
ty_vexp512(__m512 x)
{
    /* vmaxps/vminps return the second operand when one is NaN: NaN stays NaN */
    __m512 t = _mm512_min_ps(_mm512_set1_ps(TY_VEXP_HI),
                             _mm512_max_ps(_mm512_set1_ps(TY_VEXP_LO), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(TY_VEXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(TY_VEXP_LN2_HI), t);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(TY_VEXP_LN2_LO), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(TY_VEXP_C7), r, _mm512_set1_ps(TY_VEXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(TY_VEXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(TY_VEXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(TY_VEXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i ni = _mm512_cvtps_epi32(n); /* n is integral; NaN gives INT32_MIN, p keeps NaN */
    __m512i n1 = _mm512_srai_epi32(ni, 1);
    __m512i n2 = _mm512_sub_epi32(ni, n1);
    return _mm512_mul_ps(_mm512_mul_ps(p, ty_vexp_pow2_512(n1)), ty_vexp_pow2_512(n2));
}

__attribute__((target("avx512f"))) static inline __m512
ty_vtanh512(__m512 x)
{
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    __m512 a = _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MAX)));
    __m512 t = _mm512_min_ps(_mm512_set1_ps(TY_VTANH_HI), _mm512_add_ps(a, a));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(TY_VEXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-TY_VEXP_LN2_HI), t);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-TY_VEXP_LN2_LO), r);
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 40320), r, _mm512_set1_ps(TY_VEXP_C7));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(TY_VEXP_C6));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(TY_VEXP_C5));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(TY_VEXP_C4));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(TY_VEXP_C3));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.5f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0f));
    __m512 s = _mm512_mul_ps(r, q);
    __m512 p2 = ty_vexp_pow2_512(_mm512_cvtps_epi32(n));
    __m512 e = _mm512_fmadd_ps(p2, s, _mm512_sub_ps(p2, _mm512_set1_ps(1.0f)));
    __m512 y = _mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.0f)));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

__attribute__((target("avx512f"))) static inline __m512
ty_vlog512(__m512 x)
{
    __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(TY_VLOG_MIN_NORMAL), _CMP_LT_OQ);
    __m512i bits = _mm512_castps_si512(
        _mm512_mask_mul_ps(x, tiny, x, _mm512_set1_ps(8388608.0f)));
    __m512i k = _mm512_sub_epi32(
        _mm512_and_si512(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(0xff)),
        _mm512_mask_blend_epi32(tiny, _mm512_set1_epi32(127), _mm512_set1_epi32(150)));
    __m512i mb = _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)),
                                 _mm512_set1_epi32(0x3f800000));
    __mmask16 big = _mm512_cmpgt_epi32_mask(mb, _mm512_set1_epi32(TY_VLOG_SQRT2_BITS));
    mb = _mm512_mask_sub_epi32(mb, big, mb, _mm512_set1_epi32(0x00800000));
    k = _mm512_mask_add_epi32(k, big, k, _mm512_set1_epi32(1));
    __m512 f = _mm512_sub_ps(_mm512_castsi512_ps(mb), _mm512_set1_ps(1.0f));
    __m512 s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0f), f));
    __m512 z = _mm512_mul_ps(s, s);
    __m512 R = _mm512_fmadd_ps(z, _mm512_set1_ps(TY_VLOG_L5), _mm512_set1_ps(TY_VLOG_L4));
    R = _mm512_fmadd_ps(R, z, _mm512_set1_ps(TY_VLOG_L3));
    R = _mm512_fmadd_ps(R, z, _mm512_set1_ps(TY_VLOG_L2));
    R = _mm512_fmadd_ps(R, z, _mm512_set1_ps(TY_VLOG_L1));
    R = _mm512_mul_ps(R, z);
    __m512 hf = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), f), f);
    __m512 dk = _mm512_cvtepi32_ps(k);
    __m512 lo = _mm512_add_ps(_mm512_mul_ps(s, _mm512_add_ps(hf, R)),
                              _mm512_mul_ps(dk, _mm512_set1_ps(TY_VEXP_LN2_LO)));
    __m512 y = _mm512_sub_ps(_mm512_mul_ps(dk, _mm512_set1_ps(TY_VEXP_LN2_HI)),
                             _mm512_sub_ps(_mm512_sub_ps(hf, lo), f));
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ),
                           _mm512_set1_ps(INFINITY));
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ),
                           _mm512_set1_ps(-INFINITY));
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ),
                           _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

__attribute__((target("avx2,fma"))) static inline __m256
ty_vexp_pow2_256(__m256i k)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

__attribute__((target("avx2,fma"))) static inline __m256
ty_vexp256(__m256 x)
{
    __m256 t = _mm256_min_ps(_mm256_set1_ps(TY_VEXP_HI),
                             _mm256_max_ps(_mm256_set1_ps(TY_VEXP_LO), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(TY_VEXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(TY_VEXP_LN2_HI), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(TY_VEXP_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(TY_VEXP_C7), r, _mm256_set1_ps(TY_VEXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TY_VEXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TY_VEXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(TY_VEXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    return _mm256_mul_ps(_mm256_mul_ps(p, ty_vexp_pow2_256(n1)), ty_vexp_pow2_256(n2));
}
__attribute__((target("avx2,fma"))) static inline __m256
ty_vtanh256(__m256 x)
{
    __m256 sign = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN)));
    __m256 a = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MAX)));
    __m256 t = _mm256_min_ps(_mm256_set1_ps(TY_VTANH_HI), _mm256_add_ps(a, a));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(TY_VEXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-TY_VEXP_LN2_HI), t);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-TY_VEXP_LN2_LO), r);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 40320), r, _mm256_set1_ps(TY_VEXP_C7));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(TY_VEXP_C6));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(TY_VEXP_C5));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(TY_VEXP_C4));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(TY_VEXP_C3));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
    __m256 s = _mm256_mul_ps(r, q);
    __m256 p2 = ty_vexp_pow2_256(_mm256_cvtps_epi32(n));
    __m256 e = _mm256_fmadd_ps(p2, s, _mm256_sub_ps(p2, _mm256_set1_ps(1.0f)));
    __m256 y = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f)));
    return _mm256_or_ps(y, sign);
}

__attribute__((target("avx2,fma"))) static inline __m256
ty_vlog256(__m256 x)
{
    __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(TY_VLOG_MIN_NORMAL), _CMP_LT_OQ);
    __m256i bits = _mm256_castps_si256(
        _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(8388608.0f)), tiny));
    __m256i k = _mm256_sub_epi32(
        _mm256_and_si256(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(0xff)),
        _mm256_blendv_epi8(_mm256_set1_epi32(127), _mm256_set1_epi32(150),
                           _mm256_castps_si256(tiny)));
    __m256i mb = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)),
                                 _mm256_set1_epi32(0x3f800000));
    __m256i big = _mm256_cmpgt_epi32(mb, _mm256_set1_epi32(TY_VLOG_SQRT2_BITS));
    mb = _mm256_sub_epi32(mb, _mm256_and_si256(big, _mm256_set1_epi32(0x00800000)));
    k = _mm256_sub_epi32(k, big); /* big lanes are -1 */
    __m256 f = _mm256_sub_ps(_mm256_castsi256_ps(mb), _mm256_set1_ps(1.0f));
    __m256 s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0f), f));
    __m256 z = _mm256_mul_ps(s, s);
    __m256 R = _mm256_fmadd_ps(z, _mm256_set1_ps(TY_VLOG_L5), _mm256_set1_ps(TY_VLOG_L4));
    R = _mm256_fmadd_ps(R, z, _mm256_set1_ps(TY_VLOG_L3));
    R = _mm256_fmadd_ps(R, z, _mm256_set1_ps(TY_VLOG_L2));
    R = _mm256_fmadd_ps(R, z, _mm256_set1_ps(TY_VLOG_L1));
    R = _mm256_mul_ps(R, z);
    __m256 hf = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), f), f);
    __m256 dk = _mm256_cvtepi32_ps(k);
    __m256 lo = _mm256_add_ps(_mm256_mul_ps(s, _mm256_add_ps(hf, R)),
                              _mm256_mul_ps(dk, _mm256_set1_ps(TY_VEXP_LN2_LO)));
    __m256 y = _mm256_sub_ps(_mm256_mul_ps(dk, _mm256_set1_ps(TY_VEXP_LN2_HI)),
                             _mm256_sub_ps(_mm256_sub_ps(hf, lo), f));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY),
                         _mm256_cmp_ps(x, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(-INFINITY),
                         _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ));
    y = _mm256_blendv_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)),
                         _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

#endif
