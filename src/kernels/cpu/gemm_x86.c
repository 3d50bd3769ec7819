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

/* ---- f32 matrix-vector products (M == 1 or N == 1) ----
 * y[j] for W(k, j) = w[k*rs + j] ("rows") or w[j*cs + k] ("cols"), read in place (without
 * AVX-512, gemm.c transposes a matrix that is contiguous along k into the rows form first).
 * acc = sum over k, in order, of x[k*incx] * W(k, j) as one fused multiply-add chain starting
 * from 0, then y[j*incy] = add ? y + acc : acc: exactly what the packed micro-kernels do for
 * one K block, so a row of a product has the same bits here as in the packed path. Each
 * output depends only on its own column, so the thread split never matters.
 *
 * Rows form: columns are done in blocks whose accumulators stay in L1 while the k loop
 * streams each matrix row sequentially (register blocking would walk down the matrix a page
 * per row). Four rows per pass keep the accumulator traffic low; each element still sees one
 * fused multiply-add per k, in k order. */
enum { GEMV_BLOCK = 4096 }; /* 16 KiB of accumulators */

AVX512 void
ty_cpu_gemv_rows_f32_avx512(int64_t n, int64_t K, const float *x, int64_t incx, const float *w,
                            int64_t rs, float *y, int64_t incy, int add)
{
    _Alignas(64) float acc[GEMV_BLOCK];
    for (int64_t j0 = 0; j0 < n; j0 += GEMV_BLOCK) {
        int64_t nb = n - j0 < GEMV_BLOCK ? n - j0 : GEMV_BLOCK;
        int64_t full = nb / 16 * 16;
        __mmask16 tail = (__mmask16)((1u << (nb - full)) - 1);
        for (int64_t j = 0; j < nb; j++) {
            acc[j] = 0.0f;
        }
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) {
            __m512 x0 = _mm512_set1_ps(x[k * incx]), x1 = _mm512_set1_ps(x[(k + 1) * incx]);
            __m512 x2 = _mm512_set1_ps(x[(k + 2) * incx]), x3 = _mm512_set1_ps(x[(k + 3) * incx]);
            const float *w0 = w + k * rs + j0, *w1 = w0 + rs, *w2 = w1 + rs, *w3 = w2 + rs;
            for (int64_t j = 0; j < full; j += 16) {
                __m512 t = _mm512_load_ps(acc + j);
                t = _mm512_fmadd_ps(x0, _mm512_loadu_ps(w0 + j), t);
                t = _mm512_fmadd_ps(x1, _mm512_loadu_ps(w1 + j), t);
                t = _mm512_fmadd_ps(x2, _mm512_loadu_ps(w2 + j), t);
                t = _mm512_fmadd_ps(x3, _mm512_loadu_ps(w3 + j), t);
                _mm512_store_ps(acc + j, t);
            }
            if (tail) {
                __m512 t = _mm512_maskz_loadu_ps(tail, acc + full);
                t = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(tail, w0 + full), t);
                t = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(tail, w1 + full), t);
                t = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(tail, w2 + full), t);
                t = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(tail, w3 + full), t);
                _mm512_mask_storeu_ps(acc + full, tail, t);
            }
        }
        for (; k < K; k++) {
            __m512 x0 = _mm512_set1_ps(x[k * incx]);
            const float *w0 = w + k * rs + j0;
            for (int64_t j = 0; j < full; j += 16) {
                __m512 t = _mm512_load_ps(acc + j);
                _mm512_store_ps(acc + j, _mm512_fmadd_ps(x0, _mm512_loadu_ps(w0 + j), t));
            }
            if (tail) {
                __m512 t = _mm512_maskz_loadu_ps(tail, acc + full);
                t = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(tail, w0 + full), t);
                _mm512_mask_storeu_ps(acc + full, tail, t);
            }
        }
        for (int64_t j = 0; j < nb; j++) {
            float *yj = y + (j0 + j) * incy;
            *yj = add ? *yj + acc[j] : acc[j];
        }
    }
}

/* Transposes 16 rows of 16 floats in registers: on return r[p][i] is the old r[i][p]. */
INLINE AVX512 void
transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4g + c], 128-bit lane L: rows 4g..4g+3 at column 4L + c */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* The same chains for W(k, j) = w[j*cs + k] (the matrix contiguous along k): 16 outputs at a
 * time, each 16 x 16 block transposed in registers so that lane i carries output i's chain.
 * (Running several groups of 16 together, for more independent chains, was slower: more
 * concurrent row streams than the prefetchers follow.) */
AVX512 void
ty_cpu_gemv_cols_f32_avx512(int64_t n, int64_t K, const float *x, int64_t incx, const float *w,
                            int64_t cs, float *y, int64_t incy, int add)
{
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        int nj = n - j0 < 16 ? (int)(n - j0) : 16;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            int kt = K - k < 16 ? (int)(K - k) : 16;
            __mmask16 m = (__mmask16)((1u << kt) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                r[i] = i < nj ? _mm512_maskz_loadu_ps(m, w + (j0 + i) * cs + k)
                              : _mm512_setzero_ps();
            }
            transpose16(r);
            for (int p = 0; p < kt; p++) {
                acc = _mm512_fmadd_ps(_mm512_set1_ps(x[(k + p) * incx]), r[p], acc);
            }
        }
        float out[16];
        _mm512_storeu_ps(out, acc);
        for (int i = 0; i < nj; i++) {
            float *yj = y + (j0 + i) * incy;
            *yj = add ? *yj + out[i] : out[i];
        }
    }
}

AVX2 void
ty_cpu_gemv_rows_f32_avx2(int64_t n, int64_t K, const float *x, int64_t incx, const float *w,
                          int64_t rs, float *y, int64_t incy, int add)
{
    _Alignas(64) float acc[GEMV_BLOCK];
    for (int64_t j0 = 0; j0 < n; j0 += GEMV_BLOCK) {
        int64_t nb = n - j0 < GEMV_BLOCK ? n - j0 : GEMV_BLOCK;
        int64_t full = nb / 8 * 8;
        for (int64_t j = 0; j < nb; j++) {
            acc[j] = 0.0f;
        }
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) {
            __m256 x0 = _mm256_set1_ps(x[k * incx]), x1 = _mm256_set1_ps(x[(k + 1) * incx]);
            __m256 x2 = _mm256_set1_ps(x[(k + 2) * incx]), x3 = _mm256_set1_ps(x[(k + 3) * incx]);
            const float *w0 = w + k * rs + j0, *w1 = w0 + rs, *w2 = w1 + rs, *w3 = w2 + rs;
            for (int64_t j = 0; j < full; j += 8) {
                __m256 t = _mm256_load_ps(acc + j);
                t = _mm256_fmadd_ps(x0, _mm256_loadu_ps(w0 + j), t);
                t = _mm256_fmadd_ps(x1, _mm256_loadu_ps(w1 + j), t);
                t = _mm256_fmadd_ps(x2, _mm256_loadu_ps(w2 + j), t);
                t = _mm256_fmadd_ps(x3, _mm256_loadu_ps(w3 + j), t);
                _mm256_store_ps(acc + j, t);
            }
            for (int64_t j = full; j < nb; j++) {
                __m128 t = _mm_set_ss(acc[j]);
                t = _mm_fmadd_ss(_mm256_castps256_ps128(x0), _mm_set_ss(w0[j]), t);
                t = _mm_fmadd_ss(_mm256_castps256_ps128(x1), _mm_set_ss(w1[j]), t);
                t = _mm_fmadd_ss(_mm256_castps256_ps128(x2), _mm_set_ss(w2[j]), t);
                t = _mm_fmadd_ss(_mm256_castps256_ps128(x3), _mm_set_ss(w3[j]), t);
                acc[j] = _mm_cvtss_f32(t);
            }
        }
        for (; k < K; k++) {
            __m256 x0 = _mm256_set1_ps(x[k * incx]);
            const float *w0 = w + k * rs + j0;
            for (int64_t j = 0; j < full; j += 8) {
                __m256 t = _mm256_load_ps(acc + j);
                _mm256_store_ps(acc + j, _mm256_fmadd_ps(x0, _mm256_loadu_ps(w0 + j), t));
            }
            for (int64_t j = full; j < nb; j++) {
                __m128 t = _mm_fmadd_ss(_mm256_castps256_ps128(x0), _mm_set_ss(w0[j]),
                                        _mm_set_ss(acc[j]));
                acc[j] = _mm_cvtss_f32(t);
            }
        }
        for (int64_t j = 0; j < nb; j++) {
            float *yj = y + (j0 + j) * incy;
            *yj = add ? *yj + acc[j] : acc[j];
        }
    }
}

#else
/* Keeps the translation unit non-empty (ISO C) on other architectures. */
typedef int ty_gemm_x86_unused;
#endif
