/* x86 GEMM micro-kernels. Each function carries its own target attribute, so the file builds
 * without -m flags and the dispatcher in gemm.c picks one with __builtin_cpu_supports.
 *
 * Layout: packed B rows are vectors along N, packed A values are broadcast, and each row of
 * the tile keeps two vector accumulators in registers for the whole k loop. The rows are
 * spelled out with X-macros because compilers do not reliably keep arrays of vectors in
 * registers. One always-inline body per family takes the row count R as a constant: the full
 * tile and the short M-edge variants (which read the same MR-wide A panels) are the same code
 * with rows cut off, so every element gets exactly the same operations in every variant. */
#include "kernels/cpu/gemm_ukernel.h"

#ifdef TY_GEMM_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#define ROWS_12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define ROWS_6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* Touch the C tile early so its lines arrive while the k loop runs. */
#define PREFETCH_ROWS(R, bytes)                                                                    \
    for (int i = 0; i < (R); i++) {                                                                \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                                    \
        _mm_prefetch((const char *)(c + i * ldc) + (bytes) - 1, _MM_HINT_T0);                      \
    }

/* ---- f32, AVX-512: 12 x 32 (A panels 12 wide) ---- */

#define F32_512_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define F32_512_FMA(i)                                                                             \
    if ((i) < R) {                                                                                 \
        __m512 av = _mm512_set1_ps(a[i]);                                                          \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                \
    }
#define F32_512_STORE(i)                                                                           \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm512_add_ps(_mm512_loadu_ps(cr), c##i##0);                                 \
            c##i##1 = _mm512_add_ps(_mm512_loadu_ps(cr + 16), c##i##1);                            \
        }                                                                                          \
        _mm512_storeu_ps(cr, c##i##0);                                                             \
        _mm512_storeu_ps(cr + 16, c##i##1);                                                        \
    }

INLINE AVX512 void
f32_avx512(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int add)
{
    PREFETCH_ROWS(R, 128)
    ROWS_12(F32_512_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = _mm512_loadu_ps(b + 16);
        ROWS_12(F32_512_FMA)
        a += 12;
        b += 32;
    }
    ROWS_12(F32_512_STORE)
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                               int add)
{
    f32_avx512(12, kc, a, b, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512_8(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                                 int add)
{
    f32_avx512(8, kc, a, b, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512_4(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                                 int add)
{
    f32_avx512(4, kc, a, b, c, ldc, add);
}

/* ---- f64, AVX-512: 12 x 16 (A panels 12 wide) ---- */

#define F64_512_DECL(i) __m512d c##i##0 = _mm512_setzero_pd(), c##i##1 = _mm512_setzero_pd();
#define F64_512_FMA(i)                                                                             \
    if ((i) < R) {                                                                                 \
        __m512d av = _mm512_set1_pd(a[i]);                                                         \
        c##i##0 = _mm512_fmadd_pd(av, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_pd(av, b1, c##i##1);                                                \
    }
#define F64_512_STORE(i)                                                                           \
    if ((i) < R) {                                                                                 \
        double *cr = c + (i) * ldc;                                                                \
        if (add) {                                                                                 \
            c##i##0 = _mm512_add_pd(_mm512_loadu_pd(cr), c##i##0);                                 \
            c##i##1 = _mm512_add_pd(_mm512_loadu_pd(cr + 8), c##i##1);                             \
        }                                                                                          \
        _mm512_storeu_pd(cr, c##i##0);                                                             \
        _mm512_storeu_pd(cr + 8, c##i##1);                                                         \
    }

INLINE AVX512 void
f64_avx512(const int R, int64_t kc, const double *a, const double *b, double *c, int64_t ldc,
           int add)
{
    PREFETCH_ROWS(R, 128)
    ROWS_12(F64_512_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512d b0 = _mm512_loadu_pd(b);
        __m512d b1 = _mm512_loadu_pd(b + 8);
        ROWS_12(F64_512_FMA)
        a += 12;
        b += 16;
    }
    ROWS_12(F64_512_STORE)
}

AVX512 void
ty_cpu_gemm_ukernel_f64_avx512(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                               int add)
{
    f64_avx512(12, kc, a, b, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f64_avx512_8(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                                 int add)
{
    f64_avx512(8, kc, a, b, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f64_avx512_4(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                                 int add)
{
    f64_avx512(4, kc, a, b, c, ldc, add);
}

/* ---- f32, AVX2 + FMA: 6 x 16 (A panels 6 wide) ---- */

#define F32_256_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
#define F32_256_FMA(i)                                                                             \
    if ((i) < R) {                                                                                 \
        __m256 av = _mm256_broadcast_ss(a + (i));                                                  \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                \
    }
#define F32_256_STORE(i)                                                                           \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm256_add_ps(_mm256_loadu_ps(cr), c##i##0);                                 \
            c##i##1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), c##i##1);                             \
        }                                                                                          \
        _mm256_storeu_ps(cr, c##i##0);                                                             \
        _mm256_storeu_ps(cr + 8, c##i##1);                                                         \
    }

INLINE AVX2 void
f32_avx2(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int add)
{
    PREFETCH_ROWS(R, 64)
    ROWS_6(F32_256_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        ROWS_6(F32_256_FMA)
        a += 6;
        b += 16;
    }
    ROWS_6(F32_256_STORE)
}

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                             int add)
{
    f32_avx2(6, kc, a, b, c, ldc, add);
}

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2_4(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                               int add)
{
    f32_avx2(4, kc, a, b, c, ldc, add);
}

/* ---- f64, AVX2 + FMA: 6 x 8 (A panels 6 wide) ---- */

#define F64_256_DECL(i) __m256d c##i##0 = _mm256_setzero_pd(), c##i##1 = _mm256_setzero_pd();
#define F64_256_FMA(i)                                                                             \
    if ((i) < R) {                                                                                 \
        __m256d av = _mm256_broadcast_sd(a + (i));                                                 \
        c##i##0 = _mm256_fmadd_pd(av, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_pd(av, b1, c##i##1);                                                \
    }
#define F64_256_STORE(i)                                                                           \
    if ((i) < R) {                                                                                 \
        double *cr = c + (i) * ldc;                                                                \
        if (add) {                                                                                 \
            c##i##0 = _mm256_add_pd(_mm256_loadu_pd(cr), c##i##0);                                 \
            c##i##1 = _mm256_add_pd(_mm256_loadu_pd(cr + 4), c##i##1);                             \
        }                                                                                          \
        _mm256_storeu_pd(cr, c##i##0);                                                             \
        _mm256_storeu_pd(cr + 4, c##i##1);                                                         \
    }

INLINE AVX2 void
f64_avx2(const int R, int64_t kc, const double *a, const double *b, double *c, int64_t ldc,
         int add)
{
    PREFETCH_ROWS(R, 64)
    ROWS_6(F64_256_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m256d b0 = _mm256_loadu_pd(b);
        __m256d b1 = _mm256_loadu_pd(b + 4);
        ROWS_6(F64_256_FMA)
        a += 6;
        b += 8;
    }
    ROWS_6(F64_256_STORE)
}

AVX2 void
ty_cpu_gemm_ukernel_f64_avx2(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                             int add)
{
    f64_avx2(6, kc, a, b, c, ldc, add);
}

AVX2 void
ty_cpu_gemm_ukernel_f64_avx2_4(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                               int add)
{
    f64_avx2(4, kc, a, b, c, ldc, add);
}

#else
/* Keeps the translation unit non-empty (ISO C) on other architectures. */
typedef int ty_gemm_x86_unused;
#endif
