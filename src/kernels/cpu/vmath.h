/* float32 exp written once as a recipe and spelled three ways: AVX-512 (16 lanes), AVX2 + FMA
 * (8 lanes) and scalar C with fmaf. Each lane does the same operations in the same order with
 * one rounding each (fused multiply-adds where the recipe says so), so the three give the
 * same bits for every input, NaN included as NaN (softmax, the elementwise exp and the ops
 * built on it).
 *
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two
 * parts, the first short so n times it is exact), exp(r) by its Taylor polynomial of degree 7
 * (truncation below 1e-8 relative). 2^n is applied as two factors 2^(n/2) so the scale stays
 * a normal float down to the subnormal results and up to overflow, which the products round
 * once. x is clamped first to where the result is 0 or inf (NaN passes the clamps). Measured
 * against float64 on every 1009th float of its range (tests/python/test_elemw_vexp.py): at most
 * 1 ulp (0.86 seen), subnormal results within 1 of the subnormal spacing; exp(+inf) = inf,
 * exp(-inf) = 0, overflow to inf from 88.7228 on, underflow to 0 below -103.97. */
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
#endif

#endif
