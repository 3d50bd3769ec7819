/* x86 GEMM micro-kernels. Each function carries its own target attribute, so the file builds
 * without -m flags and the dispatcher in gemm.c picks one with __builtin_cpu_supports.
 *
 * Layout: packed B rows are vectors along N, packed A values are broadcast, and each row of
 * the tile keeps its accumulators in registers for the whole k loop. The rows are written out
 * by macros because the compilers do not reliably keep arrays of vectors in registers. */
#include "kernels/cpu/gemm_ukernel.h"

#ifdef TY_GEMM_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))

/* Touch the C tile early so its lines arrive while the k loop runs. */
#define PREFETCH_ROW(i, bytes)                                                                     \
    do {                                                                                           \
        _mm_prefetch((const char *)(c + (i) * ldc), _MM_HINT_T0);                                  \
        _mm_prefetch((const char *)(c + (i) * ldc) + (bytes) - 1, _MM_HINT_T0);                    \
    } while (0)

/* ---- f32, AVX-512: 12 x 32, 24 accumulators ---- */

#define F32_512_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps()
#define F32_512_FMA(i)                                                                             \
    do {                                                                                           \
        __m512 av = _mm512_set1_ps(a[i]);                                                          \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                \
    } while (0)
#define F32_512_STORE(i)                                                                           \
    do {                                                                                           \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm512_add_ps(_mm512_loadu_ps(cr), c##i##0);                                 \
            c##i##1 = _mm512_add_ps(_mm512_loadu_ps(cr + 16), c##i##1);                            \
        }                                                                                          \
        _mm512_storeu_ps(cr, c##i##0);                                                             \
        _mm512_storeu_ps(cr + 16, c##i##1);                                                        \
    } while (0)

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512(int64_t kc, const void *ap, const void *bp, void *cp, int64_t ldc,
                               int add)
{
    const float *a = ap;
    const float *b = bp;
    float *c = cp;
    for (int i = 0; i < 12; i++) {
        PREFETCH_ROW(i, 128);
    }
    F32_512_DECL(0);
    F32_512_DECL(1);
    F32_512_DECL(2);
    F32_512_DECL(3);
    F32_512_DECL(4);
    F32_512_DECL(5);
    F32_512_DECL(6);
    F32_512_DECL(7);
    F32_512_DECL(8);
    F32_512_DECL(9);
    F32_512_DECL(10);
    F32_512_DECL(11);
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = _mm512_loadu_ps(b + 16);
        F32_512_FMA(0);
        F32_512_FMA(1);
        F32_512_FMA(2);
        F32_512_FMA(3);
        F32_512_FMA(4);
        F32_512_FMA(5);
        F32_512_FMA(6);
        F32_512_FMA(7);
        F32_512_FMA(8);
        F32_512_FMA(9);
        F32_512_FMA(10);
        F32_512_FMA(11);
        a += 12;
        b += 32;
    }
    F32_512_STORE(0);
    F32_512_STORE(1);
    F32_512_STORE(2);
    F32_512_STORE(3);
    F32_512_STORE(4);
    F32_512_STORE(5);
    F32_512_STORE(6);
    F32_512_STORE(7);
    F32_512_STORE(8);
    F32_512_STORE(9);
    F32_512_STORE(10);
    F32_512_STORE(11);
}

/* ---- f64, AVX-512: 12 x 16, 24 accumulators ---- */

#define F64_512_DECL(i) __m512d c##i##0 = _mm512_setzero_pd(), c##i##1 = _mm512_setzero_pd()
#define F64_512_FMA(i)                                                                             \
    do {                                                                                           \
        __m512d av = _mm512_set1_pd(a[i]);                                                         \
        c##i##0 = _mm512_fmadd_pd(av, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_pd(av, b1, c##i##1);                                                \
    } while (0)
#define F64_512_STORE(i)                                                                           \
    do {                                                                                           \
        double *cr = c + (i) * ldc;                                                                \
        if (add) {                                                                                 \
            c##i##0 = _mm512_add_pd(_mm512_loadu_pd(cr), c##i##0);                                 \
            c##i##1 = _mm512_add_pd(_mm512_loadu_pd(cr + 8), c##i##1);                             \
        }                                                                                          \
        _mm512_storeu_pd(cr, c##i##0);                                                             \
        _mm512_storeu_pd(cr + 8, c##i##1);                                                         \
    } while (0)

AVX512 void
ty_cpu_gemm_ukernel_f64_avx512(int64_t kc, const void *ap, const void *bp, void *cp, int64_t ldc,
                               int add)
{
    const double *a = ap;
    const double *b = bp;
    double *c = cp;
    for (int i = 0; i < 12; i++) {
        PREFETCH_ROW(i, 128);
    }
    F64_512_DECL(0);
    F64_512_DECL(1);
    F64_512_DECL(2);
    F64_512_DECL(3);
    F64_512_DECL(4);
    F64_512_DECL(5);
    F64_512_DECL(6);
    F64_512_DECL(7);
    F64_512_DECL(8);
    F64_512_DECL(9);
    F64_512_DECL(10);
    F64_512_DECL(11);
    for (int64_t p = 0; p < kc; p++) {
        __m512d b0 = _mm512_loadu_pd(b);
        __m512d b1 = _mm512_loadu_pd(b + 8);
        F64_512_FMA(0);
        F64_512_FMA(1);
        F64_512_FMA(2);
        F64_512_FMA(3);
        F64_512_FMA(4);
        F64_512_FMA(5);
        F64_512_FMA(6);
        F64_512_FMA(7);
        F64_512_FMA(8);
        F64_512_FMA(9);
        F64_512_FMA(10);
        F64_512_FMA(11);
        a += 12;
        b += 16;
    }
    F64_512_STORE(0);
    F64_512_STORE(1);
    F64_512_STORE(2);
    F64_512_STORE(3);
    F64_512_STORE(4);
    F64_512_STORE(5);
    F64_512_STORE(6);
    F64_512_STORE(7);
    F64_512_STORE(8);
    F64_512_STORE(9);
    F64_512_STORE(10);
    F64_512_STORE(11);
}

/* ---- f32, AVX2 + FMA: 6 x 16, 12 accumulators ---- */

#define F32_256_DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps()
#define F32_256_FMA(i)                                                                             \
    do {                                                                                           \
        __m256 av = _mm256_broadcast_ss(a + (i));                                                  \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                \
    } while (0)
#define F32_256_STORE(i)                                                                           \
    do {                                                                                           \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm256_add_ps(_mm256_loadu_ps(cr), c##i##0);                                 \
            c##i##1 = _mm256_add_ps(_mm256_loadu_ps(cr + 8), c##i##1);                             \
        }                                                                                          \
        _mm256_storeu_ps(cr, c##i##0);                                                             \
        _mm256_storeu_ps(cr + 8, c##i##1);                                                         \
    } while (0)

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2(int64_t kc, const void *ap, const void *bp, void *cp, int64_t ldc,
                             int add)
{
    const float *a = ap;
    const float *b = bp;
    float *c = cp;
    for (int i = 0; i < 6; i++) {
        PREFETCH_ROW(i, 64);
    }
    F32_256_DECL(0);
    F32_256_DECL(1);
    F32_256_DECL(2);
    F32_256_DECL(3);
    F32_256_DECL(4);
    F32_256_DECL(5);
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        F32_256_FMA(0);
        F32_256_FMA(1);
        F32_256_FMA(2);
        F32_256_FMA(3);
        F32_256_FMA(4);
        F32_256_FMA(5);
        a += 6;
        b += 16;
    }
    F32_256_STORE(0);
    F32_256_STORE(1);
    F32_256_STORE(2);
    F32_256_STORE(3);
    F32_256_STORE(4);
    F32_256_STORE(5);
}

/* ---- f64, AVX2 + FMA: 6 x 8, 12 accumulators ---- */

#define F64_256_DECL(i) __m256d c##i##0 = _mm256_setzero_pd(), c##i##1 = _mm256_setzero_pd()
#define F64_256_FMA(i)                                                                             \
    do {                                                                                           \
        __m256d av = _mm256_broadcast_sd(a + (i));                                                 \
        c##i##0 = _mm256_fmadd_pd(av, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_pd(av, b1, c##i##1);                                                \
    } while (0)
#define F64_256_STORE(i)                                                                           \
    do {                                                                                           \
        double *cr = c + (i) * ldc;                                                                \
        if (add) {                                                                                 \
            c##i##0 = _mm256_add_pd(_mm256_loadu_pd(cr), c##i##0);                                 \
            c##i##1 = _mm256_add_pd(_mm256_loadu_pd(cr + 4), c##i##1);                             \
        }                                                                                          \
        _mm256_storeu_pd(cr, c##i##0);                                                             \
        _mm256_storeu_pd(cr + 4, c##i##1);                                                         \
    } while (0)

AVX2 void
ty_cpu_gemm_ukernel_f64_avx2(int64_t kc, const void *ap, const void *bp, void *cp, int64_t ldc,
                             int add)
{
    const double *a = ap;
    const double *b = bp;
    double *c = cp;
    for (int i = 0; i < 6; i++) {
        PREFETCH_ROW(i, 64);
    }
    F64_256_DECL(0);
    F64_256_DECL(1);
    F64_256_DECL(2);
    F64_256_DECL(3);
    F64_256_DECL(4);
    F64_256_DECL(5);
    for (int64_t p = 0; p < kc; p++) {
        __m256d b0 = _mm256_loadu_pd(b);
        __m256d b1 = _mm256_loadu_pd(b + 4);
        F64_256_FMA(0);
        F64_256_FMA(1);
        F64_256_FMA(2);
        F64_256_FMA(3);
        F64_256_FMA(4);
        F64_256_FMA(5);
        a += 6;
        b += 8;
    }
    F64_256_STORE(0);
    F64_256_STORE(1);
    F64_256_STORE(2);
    F64_256_STORE(3);
    F64_256_STORE(4);
    F64_256_STORE(5);
}

#else
/* Keeps the translation unit non-empty (ISO C) on other architectures. */
typedef int ty_gemm_x86_unused;
#endif
