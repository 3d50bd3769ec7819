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
#include "kernels/cpu/transpose16.h"

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

/* B rows are prefetched this many k steps ahead (1 KiB of a packed panel): a panel of 512
 * steps outgrows L1, and the in-place rows of an unpacked B are pages apart, where the
 * hardware prefetchers do not follow. */
enum { B_AHEAD = 8 };

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

/* B rows ldb apart: 32 for a packed panel, B's own row stride when read in place. With
 * BP, the B rows read are also stored to bp as a packed panel (bp[p*32 + j]); with PF, one
 * line at pf + p*pfld is prefetched into L2 per step, for a later tile. */
INLINE AVX512 void
f32_avx512_any(const int R, const int BP, const int PF, int64_t kc, const float *a,
               const float *b, int64_t ldb, float *bp, const char *pf, int64_t pfld, float *c,
               int64_t ldc, int add)
{
    PREFETCH_ROWS(R, 128)
    ROWS_12(F32_512_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = _mm512_loadu_ps(b + 16);
        _mm_prefetch((const char *)(b + ldb * B_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + ldb * B_AHEAD + 16), _MM_HINT_T0);
        if (BP) {
            _mm512_store_ps(bp, b0);
            _mm512_store_ps(bp + 16, b1);
            bp += 32;
        }
        if (PF) {
            _mm_prefetch(pf, _MM_HINT_T0);
            pf += pfld;
        }
        ROWS_12(F32_512_FMA)
        a += 12;
        b += ldb;
    }
    ROWS_12(F32_512_STORE)
}

INLINE AVX512 void
f32_avx512(const int R, int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
           int64_t ldc, int add)
{
    f32_avx512_any(R, 0, 0, kc, a, b, ldb, NULL, NULL, 0, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512_rbp12(int64_t kc, const float *a, const float *b, int64_t ldb,
                                     float *bp, float *c, int64_t ldc, int add)
{
    f32_avx512_any(12, 1, 0, kc, a, b, ldb, bp, NULL, 0, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512_pf12(int64_t kc, const float *a, const float *b, const char *pf,
                                    int64_t pfld, float *c, int64_t ldc, int add)
{
    f32_avx512_any(12, 0, 1, kc, a, b, 32, NULL, pf, pfld, c, ldc, add);
}

#define RB512(R)                                                                                   \
    AVX512 void ty_cpu_gemm_ukernel_f32_avx512_rb##R(int64_t kc, const float *a, const float *b,  \
                                                     int64_t ldb, float *c, int64_t ldc, int add) \
    {                                                                                              \
        f32_avx512(R, kc, a, b, ldb, c, ldc, add);                                                 \
    }
RB512(12)
RB512(8)
RB512(4)

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                               int add)
{
    f32_avx512(12, kc, a, b, 32, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512_8(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                                 int add)
{
    f32_avx512(8, kc, a, b, 32, c, ldc, add);
}

AVX512 void
ty_cpu_gemm_ukernel_f32_avx512_4(int64_t kc, const void *a, const void *b, void *c, int64_t ldc,
                                 int add)
{
    f32_avx512(4, kc, a, b, 32, c, ldc, add);
}

/* The same tile with A read where it lies, A(i, p) = a[i*rsa + p], for products too narrow
 * in N to repay packing A (a convolution's weights against few pixels). The R rows are
 * exactly the rows there are (nothing past M is read); per element the operations are the
 * packed kernel's. */
#define F32_512_FMA_RA(i)                                                                          \
    if ((i) < R) {                                                                                 \
        __m512 av = _mm512_set1_ps(a[(i) * rsa + p]);                                              \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                \
    }

INLINE AVX512 void
f32_avx512_ra(const int R, int64_t kc, const float *a, int64_t rsa, const float *b, float *c,
              int64_t ldc, int add)
{
    PREFETCH_ROWS(R, 128)
    ROWS_12(F32_512_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = _mm512_loadu_ps(b + 16);
        ROWS_12(F32_512_FMA_RA)
        b += 32;
    }
    ROWS_12(F32_512_STORE)
}

#define RA512(R)                                                                                   \
    static AVX512 void ra512_##R(int64_t kc, const float *a, int64_t rsa, const float *b,          \
                                 float *c, int64_t ldc, int add)                                   \
    {                                                                                              \
        f32_avx512_ra(R, kc, a, rsa, b, c, ldc, add);                                              \
    }
RA512(1)
RA512(2)
RA512(3)
RA512(4)
RA512(5)
RA512(6)
RA512(7)
RA512(8)
RA512(9)
RA512(10)
RA512(11)
RA512(12)

const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx512_ra[13] = {
    NULL,      ra512_1, ra512_2, ra512_3,  ra512_4,  ra512_5,  ra512_6,
    ra512_7,   ra512_8, ra512_9, ra512_10, ra512_11, ra512_12,
};

/* Half-width tiles (R x 16) for a last B panel of at most 16 columns: the left half of the
 * 32-wide packed panel, half the multiply-adds, each element's operations unchanged. A is a
 * packed 12-wide panel (_h) or read in place (_ra_h). */
#define F32_512_HDECL(i) __m512 c##i##0 = _mm512_setzero_ps();
#define F32_512_HFMA(i)                                                                            \
    if ((i) < R) {                                                                                 \
        c##i##0 = _mm512_fmadd_ps(_mm512_set1_ps(A_AT(i)), b0, c##i##0);                           \
    }
#define F32_512_HSTORE(i)                                                                          \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm512_add_ps(_mm512_loadu_ps(cr), c##i##0);                                 \
        }                                                                                          \
        _mm512_storeu_ps(cr, c##i##0);                                                             \
    }

INLINE AVX512 void
f32_avx512_half(const int R, int64_t kc, const float *a, int64_t rsa, const int packed,
                const float *b, float *c, int64_t ldc, int add)
{
    PREFETCH_ROWS(R, 64)
    ROWS_12(F32_512_HDECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b);
#define A_AT(i) (packed ? a[p * 12 + (i)] : a[(i) * rsa + p])
        ROWS_12(F32_512_HFMA)
#undef A_AT
        b += 32;
    }
    ROWS_12(F32_512_HSTORE)
}

#define HALF512(R)                                                                                 \
    static AVX512 void ra512h_##R(int64_t kc, const float *a, int64_t rsa, const float *b,         \
                                  float *c, int64_t ldc, int add)                                  \
    {                                                                                              \
        f32_avx512_half(R, kc, a, rsa, 0, b, c, ldc, add);                                         \
    }
HALF512(1)
HALF512(2)
HALF512(3)
HALF512(4)
HALF512(5)
HALF512(6)
HALF512(7)
HALF512(8)
HALF512(9)
HALF512(10)
HALF512(11)
HALF512(12)

const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx512_ra_half[13] = {
    NULL,      ra512h_1, ra512h_2, ra512h_3,  ra512h_4,  ra512h_5,  ra512h_6,
    ra512h_7,  ra512h_8, ra512h_9, ra512h_10, ra512h_11, ra512h_12,
};

#define HALF512P(R)                                                                                \
    AVX512 void ty_cpu_gemm_ukernel_f32_avx512_h##R(int64_t kc, const void *a, const void *b,      \
                                                    void *c, int64_t ldc, int add)                 \
    {                                                                                              \
        f32_avx512_half(R, kc, a, 0, 1, b, c, ldc, add);                                           \
    }
HALF512P(12)
HALF512P(8)
HALF512P(4)

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

/* The 6 x 16 tile, B's rows ldb apart: 16 for a packed panel; with RB, B read in place, each
 * row's 64 bytes (two lines unless aligned) fetched B_AHEAD steps ahead, and with BP also
 * stored to bp as a packed panel (bp[p*16 + j]); with PF one line at pf + p*pfld is fetched
 * per step, for a later tile. The same operations per element whichever the flags. */
INLINE AVX2 void
f32_avx2_any(const int R, const int RB, const int BP, const int PF, int64_t kc, const float *a,
             const float *b, int64_t ldb, float *bp, const char *pf, int64_t pfld, float *c,
             int64_t ldc, int add)
{
    PREFETCH_ROWS(R, 64)
    ROWS_6(F32_256_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        if (RB) {
            _mm_prefetch((const char *)(b + ldb * B_AHEAD), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + ldb * B_AHEAD + 15), _MM_HINT_T0);
        }
        if (BP) {
            _mm256_store_ps(bp, b0);
            _mm256_store_ps(bp + 8, b1);
            bp += 16;
        }
        if (PF) {
            _mm_prefetch(pf, _MM_HINT_T0);
            pf += pfld;
        }
        ROWS_6(F32_256_FMA)
        a += 6;
        b += ldb;
    }
    ROWS_6(F32_256_STORE)
}

INLINE AVX2 void
f32_avx2(const int R, int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int add)
{
    f32_avx2_any(R, 0, 0, 0, kc, a, b, 16, NULL, NULL, 0, c, ldc, add);
}

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2_rbp6(int64_t kc, const float *a, const float *b, int64_t ldb,
                                  float *bp, float *c, int64_t ldc, int add)
{
    f32_avx2_any(6, 1, 1, 0, kc, a, b, ldb, bp, NULL, 0, c, ldc, add);
}

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2_pf6(int64_t kc, const float *a, const float *b, const char *pf,
                                 int64_t pfld, float *c, int64_t ldc, int add)
{
    f32_avx2_any(6, 0, 0, 1, kc, a, b, 16, NULL, pf, pfld, c, ldc, add);
}

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2_rb6(int64_t kc, const float *a, const float *b, int64_t ldb,
                                 float *c, int64_t ldc, int add)
{
    f32_avx2_any(6, 1, 0, 0, kc, a, b, ldb, NULL, NULL, 0, c, ldc, add);
}

AVX2 void
ty_cpu_gemm_ukernel_f32_avx2_rb4(int64_t kc, const float *a, const float *b, int64_t ldb,
                                 float *c, int64_t ldc, int add)
{
    f32_avx2_any(4, 1, 0, 0, kc, a, b, ldb, NULL, NULL, 0, c, ldc, add);
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

/* The 6 x 16 tile with A read where it lies, A(i, p) = a[i*rsa + p], for exactly R rows,
 * and its left half (R x 8, HALF) for a last B panel of at most 8 columns; B is a packed
 * 16-wide panel. Per element the packed kernel's operations. */
#define F32_256_FMA_RA(i)                                                                          \
    if ((i) < R) {                                                                                 \
        __m256 av = _mm256_broadcast_ss(a##i + p);                                                 \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                \
        if (!HALF) {                                                                               \
            c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                            \
        }                                                                                          \
    }
#define F32_256_HSTORE(i)                                                                          \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm256_add_ps(_mm256_loadu_ps(cr), c##i##0);                                 \
        }                                                                                          \
        _mm256_storeu_ps(cr, c##i##0);                                                             \
    }

INLINE AVX2 void
f32_avx2_ra(const int R, const int HALF, int64_t kc, const float *a, int64_t rsa, const float *b,
            float *c, int64_t ldc, int add)
{
    const float *a0 = a, *a1 = a0 + rsa, *a2 = a1 + rsa, *a3 = a2 + rsa, *a4 = a3 + rsa;
    const float *a5 = a4 + rsa;
    PREFETCH_ROWS(R, HALF ? 32 : 64)
    ROWS_6(F32_256_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = HALF ? b0 : _mm256_loadu_ps(b + 8);
        ROWS_6(F32_256_FMA_RA)
        b += 16;
    }
    if (HALF) {
        ROWS_6(F32_256_HSTORE)
    } else {
        ROWS_6(F32_256_STORE)
    }
}

#define RA256(R)                                                                                   \
    static AVX2 void ra256_##R(int64_t kc, const float *a, int64_t rsa, const float *b, float *c,  \
                               int64_t ldc, int add)                                               \
    {                                                                                              \
        f32_avx2_ra(R, 0, kc, a, rsa, b, c, ldc, add);                                             \
    }                                                                                              \
    static AVX2 void ra256h_##R(int64_t kc, const float *a, int64_t rsa, const float *b, float *c, \
                                int64_t ldc, int add)                                              \
    {                                                                                              \
        f32_avx2_ra(R, 1, kc, a, rsa, b, c, ldc, add);                                             \
    }
RA256(1)
RA256(2)
RA256(3)
RA256(4)
RA256(5)
RA256(6)

const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx2_ra[7] = {
    NULL, ra256_1, ra256_2, ra256_3, ra256_4, ra256_5, ra256_6,
};
const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx2_ra_half[7] = {
    NULL, ra256h_1, ra256h_2, ra256h_3, ra256h_4, ra256h_5, ra256h_6,
};

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


/* dst[p*width + i] = src[i*rs + p] for i < len, p < kc, and 0 for len <= i < width
 * (width <= 32): a micro-panel of rows contiguous along k, 16 rows by 16 k steps at a time
 * transposed in registers (several times fewer instructions than 4 x 4 SSE blocks). */
AVX512 void
ty_cpu_transpose_f32_avx512(const float *src, int64_t rs, int64_t len, int64_t kc, int width,
                            float *dst)
{
    for (int i0 = 0; i0 < width; i0 += 16) {
        int ni = len - i0 < 16 ? (int)(len - i0) : 16; /* rows to read; <= 0: zeros only */
        int lanes = width - i0 < 16 ? width - i0 : 16;
        __mmask16 out = (__mmask16)((1u << lanes) - 1);
        for (int64_t k = 0; k < kc; k += 16) {
            int kt = kc - k < 16 ? (int)(kc - k) : 16;
            __mmask16 m = (__mmask16)((1u << kt) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                r[i] = i < ni ? _mm512_maskz_loadu_ps(m, src + (i0 + i) * rs + k)
                              : _mm512_setzero_ps();
            }
            ty_transpose16_f32(r);
            for (int p = 0; p < kt; p++) {
                _mm512_mask_storeu_ps(dst + (k + p) * width + i0, out, r[p]);
            }
        }
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
            ty_transpose16_f32(r);
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

/* The last few columns of a product with A read in place (a 7 x 7 image's 49 = 32 + 16 + 1
 * columns): rows in lanes, as in ty_cpu_gemv_cols_f32_avx512, with one accumulator per column
 * and each 16 x 16 block of A transposed once for all of them. The tile kernels would spend
 * a 16-lane multiply-add per row and k on each such column. */

/* x_j += B(p, j) * r (one step of each column's chain) for the first COLS columns, with
 * accumulators x0 .. x3 and bp = &B(p, 0) */
#define RA_COLS_STEP(x, r, bp)                                                                     \
    do {                                                                                           \
        x##0 = _mm512_fmadd_ps(_mm512_set1_ps((bp)[0]), (r), x##0);                                \
        if (COLS > 1) {                                                                            \
            x##1 = _mm512_fmadd_ps(_mm512_set1_ps((bp)[1]), (r), x##1);                            \
        }                                                                                          \
        if (COLS > 2) {                                                                            \
            x##2 = _mm512_fmadd_ps(_mm512_set1_ps((bp)[2]), (r), x##2);                            \
        }                                                                                          \
        if (COLS > 3) {                                                                            \
            x##3 = _mm512_fmadd_ps(_mm512_set1_ps((bp)[3]), (r), x##3);                            \
        }                                                                                          \
    } while (0)

/* C(i, j) (+)= lane i of x_j for i < ni, j < COLS */
#define RA_COLS_STORE(x, c, ni)                                                                    \
    do {                                                                                           \
        float out[TY_GEMM_RA_COLS_MAX][16];                                                        \
        _mm512_storeu_ps(out[0], x##0);                                                            \
        _mm512_storeu_ps(out[1], x##1);                                                            \
        _mm512_storeu_ps(out[2], x##2);                                                            \
        _mm512_storeu_ps(out[3], x##3);                                                            \
        for (int j = 0; j < COLS; j++) {                                                           \
            for (int i = 0; i < (ni); i++) {                                                       \
                float *cij = (c) + i * ldc + j;                                                    \
                *cij = add ? *cij + out[j][i] : out[j][i];                                         \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* r[p] lane i = A(i, p) for i < ni (0 for the other lanes), p < kt (0 beyond); with PF, the
 * rows' lines RA_COLS_AHEAD floats on are prefetched (16 rows far apart: 16 streams) */
enum { RA_COLS_AHEAD = 64 };
INLINE AVX512 void
ra_cols_block(const int PF, const float *a, int64_t lda, int ni, int kt, __m512 r[16])
{
    __mmask16 m = (__mmask16)((1u << kt) - 1);
    for (int i = 0; i < 16; i++) {
        r[i] = i < ni ? _mm512_maskz_loadu_ps(m, a + i * lda) : _mm512_setzero_ps();
        if (PF && i < ni) {
            _mm_prefetch((const char *)(a + i * lda + RA_COLS_AHEAD), _MM_HINT_T0);
        }
    }
    ty_transpose16_f32(r);
}

/* ni <= 16 rows from a. The column count is a constant of each body and full 16-step blocks
 * run a constant number of steps, so the accumulators and the transposed block stay in
 * registers (with a run-time column count the compiler kept the accumulators on the stack, a
 * store and a load in every step of the chains: one column of 49 took 16% of one thread's
 * 512 x 4608 x 49, four of 196 7%). A last, shorter block goes through a buffer, as its steps
 * beyond kt must not run (an added 0 * B could turn a -0 into +0, or an infinite B into
 * NaN). */
INLINE AVX512 void
ra_cols_group(const int COLS, int ni, int64_t kc, const float *a, int64_t lda, const float *b,
              int64_t ldb, float *c, int64_t ldc, int add)
{
    const int64_t kfull = kc / 16 * 16;
    __m512 x0 = _mm512_setzero_ps(), x1 = x0, x2 = x0, x3 = x0;
    __m512 r[16];
    for (int64_t k = 0; k < kfull; k += 16) {
        ra_cols_block(1, a + k, lda, ni, 16, r);
        for (int p = 0; p < 16; p++) {
            RA_COLS_STEP(x, r[p], b + (k + p) * ldb);
        }
    }
    if (kfull < kc) {
        int kt = (int)(kc - kfull);
        _Alignas(64) float t[16][16];
        ra_cols_block(0, a + kfull, lda, ni, kt, r);
        for (int p = 0; p < 16; p++) {
            _mm512_store_ps(t[p], r[p]);
        }
        for (int p = 0; p < kt; p++) {
            RA_COLS_STEP(x, _mm512_load_ps(t[p]), b + (kfull + p) * ldb);
        }
    }
    RA_COLS_STORE(x, c, ni);
}

/* ra_cols_group over two full groups of 16 rows at once, for columns enough that one
 * group's chains (COLS of them, a step each 4 cycles) would leave the FMA units waiting:
 * the first group's block is transposed into a buffer, the second's stays in registers. */
INLINE AVX512 void
ra_cols_pair(const int COLS, int64_t kc, const float *a, int64_t lda, const float *b,
             int64_t ldb, float *c, int64_t ldc, int add)
{
    const int64_t kfull = kc / 16 * 16;
    const float *a1 = a + 16 * lda;
    __m512 x0 = _mm512_setzero_ps(), x1 = x0, x2 = x0, x3 = x0;
    __m512 y0 = x0, y1 = x0, y2 = x0, y3 = x0;
    __m512 r[16];
    _Alignas(64) float t[16][16];
    for (int64_t k = 0; k < kc; k += 16) {
        int kt = k < kfull ? 16 : (int)(kc - k);
        ra_cols_block(1, a + k, lda, 16, kt, r);
        for (int p = 0; p < 16; p++) {
            _mm512_store_ps(t[p], r[p]);
        }
        ra_cols_block(1, a1 + k, lda, 16, kt, r);
        if (kt == 16) {
            for (int p = 0; p < 16; p++) {
                RA_COLS_STEP(x, _mm512_load_ps(t[p]), b + (k + p) * ldb);
                RA_COLS_STEP(y, r[p], b + (k + p) * ldb);
            }
        } else {
            for (int p = 0; p < kt; p++) {
                RA_COLS_STEP(x, _mm512_load_ps(t[p]), b + (k + p) * ldb);
            }
            for (int p = 0; p < 16; p++) {
                _mm512_store_ps(t[p], r[p]);
            }
            for (int p = 0; p < kt; p++) {
                RA_COLS_STEP(y, _mm512_load_ps(t[p]), b + (k + p) * ldb);
            }
        }
    }
    RA_COLS_STORE(x, c, 16);
    RA_COLS_STORE(y, c + 16 * ldc, 16);
}

INLINE AVX512 void
ra_cols_f32_avx512(const int COLS, int64_t rows, int64_t kc, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float *c, int64_t ldc, int add)
{
    int64_t i0 = 0;
    for (; COLS > 1 && rows - i0 >= 32; i0 += 32) {
        ra_cols_pair(COLS, kc, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc, add);
    }
    for (; i0 < rows; i0 += 16) {
        int ni = rows - i0 < 16 ? (int)(rows - i0) : 16;
        ra_cols_group(COLS, ni, kc, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc, add);
    }
}

_Static_assert(TY_GEMM_RA_COLS_MAX == 4, "ra_cols bodies cover 1 to 4 columns");

AVX512 void
ty_cpu_gemm_ra_cols_f32_avx512(int64_t rows, int64_t kc, const float *a, int64_t lda,
                               const float *b, int64_t ldb, int cols, float *c, int64_t ldc,
                               int add)
{
    switch (cols) {
    case 1:
        ra_cols_f32_avx512(1, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    case 2:
        ra_cols_f32_avx512(2, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    case 3:
        ra_cols_f32_avx512(3, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    default:
        ra_cols_f32_avx512(4, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
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

/* ---- f32 small products read in place (no packing) ----
 * For products so small that packing costs as much as the arithmetic. A is broadcast from
 * wherever it lies and B rows are loaded where they lie; each row of a tile keeps its
 * accumulators in registers for the whole k loop, starting from zero, and C gets the packed
 * kernels' store, so every element sees the packed path's operations. Tiles have at most 8
 * rows (the packed kernel's 12 measured slower here: the row addresses no longer fit in
 * registers); the M edge runs a body compiled for its row count. */

#define ROWS_8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

static inline __mmask16
lanes16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

#define S512_FMA(i)                                                                                \
    if ((i) < R) {                                                                                 \
        __m512 av = _mm512_set1_ps(a[(i) * rsa]);                                                  \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                                                \
    }
#define S512_STORE_MASKED(i)                                                                       \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        if (add) {                                                                                 \
            c##i##0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), c##i##0);                       \
            c##i##1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), c##i##1);                  \
        }                                                                                          \
        _mm512_mask_storeu_ps(cr, m0, c##i##0);                                                    \
        _mm512_mask_storeu_ps(cr + 16, m1, c##i##1);                                               \
    }

/* AVX-512, the last N % 64 columns: R x 32 tiles. At the N edge (full == 0) B and C are
 * masked to (m0, m1); whole tiles are not, as masked accesses measured slower. */
INLINE AVX512 void
small_f32_avx512(const int R, const int full, int64_t kc, const float *a, int64_t rsa,
                 int64_t csa, const float *b, int64_t rsb, __mmask16 m0, __mmask16 m1, float *c,
                 int64_t ldc, int add)
{
    ROWS_8(F32_512_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = full ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(m0, b);
        __m512 b1 = full ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(m1, b + 16);
        ROWS_8(S512_FMA)
        a += csa;
        b += rsb;
    }
    if (full) {
        ROWS_8(F32_512_STORE)
    } else {
        ROWS_8(S512_STORE_MASKED)
    }
}

/* Rows of whole R-row tiles (a multiple of R), one call for all of them. */
typedef void (*small512_fn)(int64_t rows, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                            const float *b, int64_t rsb, __mmask16 m0, __mmask16 m1, float *c,
                            int64_t ldc, int add);

#define SMALL512(R, F)                                                                             \
    static AVX512 void small512_##R##_##F(int64_t rows, int64_t kc, const float *a, int64_t rsa,   \
                                          int64_t csa, const float *b, int64_t rsb, __mmask16 m0,  \
                                          __mmask16 m1, float *c, int64_t ldc, int add)            \
    {                                                                                              \
        for (int64_t i = 0; i < rows; i += (R)) {                                                  \
            small_f32_avx512(R, F, kc, a + i * rsa, rsa, csa, b, rsb, m0, m1, c + i * ldc, ldc,    \
                             add);                                                                 \
        }                                                                                          \
    }
#define SMALL512_ROWS(R) SMALL512(R, 0) SMALL512(R, 1)
SMALL512_ROWS(1)
SMALL512_ROWS(2)
SMALL512_ROWS(3)
SMALL512_ROWS(4)
SMALL512_ROWS(5)
SMALL512_ROWS(6)
SMALL512_ROWS(7)
SMALL512_ROWS(8)

static const small512_fn small512[2][9] = {
    {NULL, small512_1_0, small512_2_0, small512_3_0, small512_4_0, small512_5_0, small512_6_0,
     small512_7_0, small512_8_0},
    {NULL, small512_1_1, small512_2_1, small512_3_1, small512_4_1, small512_5_1, small512_6_1,
     small512_7_1, small512_8_1},
};

/* AVX-512, whole 64-column slabs: R x 64 tiles (R <= 4), which measured a few percent faster
 * than 8 x 32: half the broadcasts per multiply-add. */
#define ROWS_4(X) X(0) X(1) X(2) X(3)
#define W512_DECL(i)                                                                               \
    __m512 d##i##0 = _mm512_setzero_ps(), d##i##1 = _mm512_setzero_ps();                           \
    __m512 d##i##2 = _mm512_setzero_ps(), d##i##3 = _mm512_setzero_ps();
#define W512_FMA(i)                                                                                \
    if ((i) < R) {                                                                                 \
        __m512 av = _mm512_set1_ps(a[(i) * rsa]);                                                  \
        d##i##0 = _mm512_fmadd_ps(av, b0, d##i##0);                                                \
        d##i##1 = _mm512_fmadd_ps(av, b1, d##i##1);                                                \
        d##i##2 = _mm512_fmadd_ps(av, b2, d##i##2);                                                \
        d##i##3 = _mm512_fmadd_ps(av, b3, d##i##3);                                                \
    }
#define W512_STORE_ONE(i, v)                                                                       \
    _mm512_storeu_ps(cr + 16 * (v),                                                                \
                     add ? _mm512_add_ps(_mm512_loadu_ps(cr + 16 * (v)), d##i##v) : d##i##v);
#define W512_STORE(i)                                                                              \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        W512_STORE_ONE(i, 0)                                                                       \
        W512_STORE_ONE(i, 1)                                                                       \
        W512_STORE_ONE(i, 2)                                                                       \
        W512_STORE_ONE(i, 3)                                                                       \
    }

INLINE AVX512 void
wide_f32_avx512(const int R, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                const float *b, int64_t rsb, float *c, int64_t ldc, int add)
{
    ROWS_4(W512_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        __m512 b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
        ROWS_4(W512_FMA)
        a += csa;
        b += rsb;
    }
    ROWS_4(W512_STORE)
}

typedef void (*wide512_fn)(int64_t rows, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                           const float *b, int64_t rsb, float *c, int64_t ldc, int add);

#define WIDE512(R)                                                                                 \
    static AVX512 void wide512_##R(int64_t rows, int64_t kc, const float *a, int64_t rsa,          \
                                   int64_t csa, const float *b, int64_t rsb, float *c,             \
                                   int64_t ldc, int add)                                           \
    {                                                                                              \
        for (int64_t i = 0; i < rows; i += (R)) {                                                  \
            wide_f32_avx512(R, kc, a + i * rsa, rsa, csa, b, rsb, c + i * ldc, ldc, add);          \
        }                                                                                          \
    }
WIDE512(1)
WIDE512(2)
WIDE512(3)
WIDE512(4)

static const wide512_fn wide512[5] = {NULL, wide512_1, wide512_2, wide512_3, wide512_4};

AVX512 void
ty_cpu_gemm_small_f32_avx512(int64_t M, int64_t N, int64_t kc, const float *a, int64_t rsa,
                             int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc,
                             int add)
{
    int64_t n64 = N / 64 * 64, m4 = M / 4 * 4, m8 = M / 8 * 8;
    for (int64_t j = 0; j < n64; j += 64) {
        if (m4 > 0) {
            wide512[4](m4, kc, a, rsa, csa, b + j, rsb, c + j, ldc, add);
        }
        if (m4 < M) {
            wide512[M - m4](M - m4, kc, a + m4 * rsa, rsa, csa, b + j, rsb, c + m4 * ldc + j,
                            ldc, add);
        }
    }
    /* the last N % 64 columns */
    for (int64_t j = n64; j < N; j += 32) {
        __mmask16 m0 = lanes16(N - j), m1 = lanes16(N - j - 16);
        int full = N - j >= 32;
        if (m8 > 0) {
            small512[full][8](m8, kc, a, rsa, csa, b + j, rsb, m0, m1, c + j, ldc, add);
        }
        if (m8 < M) {
            small512[full][M - m8](M - m8, kc, a + m8 * rsa, rsa, csa, b + j, rsb, m0, m1,
                                   c + m8 * ldc + j, ldc, add);
        }
    }
}

#define S256_FMA(i)                                                                                \
    if ((i) < R) {                                                                                 \
        __m256 av = _mm256_broadcast_ss(a + (i) * rsa);                                            \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);                                                \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);                                                \
    }

/* AVX2: R x 16 tiles, all 16 columns read from B and written to C. */
INLINE AVX2 void
small_f32_avx2(const int R, int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
               int64_t rsb, float *c, int64_t ldc, int add)
{
    ROWS_6(F32_256_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        ROWS_6(S256_FMA)
        a += csa;
        b += rsb;
    }
    ROWS_6(F32_256_STORE)
}

/* Rows of whole R-row tiles (a multiple of R), one call for all of them. */
typedef void (*small256_fn)(int64_t rows, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                            const float *b, int64_t rsb, float *c, int64_t ldc, int add);

#define SMALL256(R)                                                                                \
    static AVX2 void small256_##R(int64_t rows, int64_t kc, const float *a, int64_t rsa,           \
                                  int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc, \
                                  int add)                                                         \
    {                                                                                              \
        for (int64_t i = 0; i < rows; i += (R)) {                                                  \
            small_f32_avx2(R, kc, a + i * rsa, rsa, csa, b, rsb, c + i * ldc, ldc, add);           \
        }                                                                                          \
    }
SMALL256(1)
SMALL256(2)
SMALL256(3)
SMALL256(4)
SMALL256(5)
SMALL256(6)

static const small256_fn small256[7] = {
    NULL, small256_1, small256_2, small256_3, small256_4, small256_5, small256_6,
};

/* All M rows of 16 columns: whole 6-row tiles, then the edge. */
static AVX2 void
small256_cols(int64_t M, int64_t kc, const float *a, int64_t rsa, int64_t csa, const float *b,
              int64_t rsb, float *c, int64_t ldc, int add)
{
    int64_t m6 = M / 6 * 6;
    if (m6 > 0) {
        small256[6](m6, kc, a, rsa, csa, b, rsb, c, ldc, add);
    }
    if (m6 < M) {
        small256[M - m6](M - m6, kc, a + m6 * rsa, rsa, csa, b, rsb, c + m6 * ldc, ldc, add);
    }
}

/* The N edge (cols < 16): B's last columns copied into a zero-padded buffer, C through a
 * scratch tile, so the kernel reads and writes whole vectors (masked AVX2 stores are slow on
 * some cores). kc <= 256, the AVX2 K block. */
static AVX2 __attribute__((noinline)) void
small_f32_avx2_edge(int64_t M, int64_t cols, int64_t kc, const float *a, int64_t rsa,
                    int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc, int add)
{
    _Alignas(32) float bb[16 * 256];
    _Alignas(32) float t[6 * 16];
    for (int64_t p = 0; p < kc; p++) {
        for (int64_t j = 0; j < 16; j++) {
            bb[p * 16 + j] = j < cols ? b[p * rsb + j] : 0.0f;
        }
    }
    for (int64_t i = 0; i < M; i += 6) {
        int rows = M - i < 6 ? (int)(M - i) : 6;
        small256[rows](rows, kc, a + i * rsa, rsa, csa, bb, 16, t, 16, 0);
        for (int r = 0; r < rows; r++) {
            float *cr = c + (i + r) * ldc;
            for (int64_t j = 0; j < cols; j++) {
                cr[j] = add ? cr[j] + t[r * 16 + j] : t[r * 16 + j];
            }
        }
    }
}

AVX2 void
ty_cpu_gemm_small_f32_avx2(int64_t M, int64_t N, int64_t kc, const float *a, int64_t rsa,
                           int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc,
                           int add)
{
    int64_t full = N / 16 * 16;
    for (int64_t j = 0; j < full; j += 16) {
        small256_cols(M, kc, a, rsa, csa, b + j, rsb, c + j, ldc, add);
    }
    if (full < N && csa == 1 && N - full <= TY_GEMM_RA_COLS_MAX) {
        /* rows in lanes: a Winograd product's 49 = 48 + 1 or 196 = 192 + 4 tiles */
        ty_cpu_gemm_ra_cols_f32_avx2(M, kc, a, rsa, b + full, rsb, (int)(N - full), c + full,
                                     ldc, add);
    } else if (full < N) {
        small_f32_avx2_edge(M, N - full, kc, a, rsa, csa, b + full, rsb, c + full, ldc, add);
    }
}

/* x @ W^T with at most 8 rows, computed transposed: lane i of accumulator j carries C(i, j),
 * so W (B(k, j) = b[j*csb + k]) is broadcast where it lies and only A (packed 8 wide by the
 * caller) and the 8 x 8 result blocks are transposed. fma(b, a, acc) == fma(a, b, acc), so
 * the chains are those of the other kernels. */

/* C(i, j) for i < M, j < cols from r[i] = (C(i, 0), ..., C(i, 7)). */
static AVX2 void
nt_store(const __m256 r[8], int64_t M, int cols, float *c, int64_t ldc, int add)
{
    for (int64_t i = 0; i < M; i++) {
        float *cr = c + i * ldc;
        if (cols == 8) {
            _mm256_storeu_ps(cr, add ? _mm256_add_ps(_mm256_loadu_ps(cr), r[i]) : r[i]);
        } else {
            float t[8];
            _mm256_storeu_ps(t, r[i]);
            for (int j = 0; j < cols; j++) {
                cr[j] = add ? cr[j] + t[j] : t[j];
            }
        }
    }
}

#define NT_DECL(j) __m256 c##j = _mm256_setzero_ps();
#define NT_FMA(j)                                                                                  \
    if ((j) < R) {                                                                                 \
        c##j = _mm256_fmadd_ps(_mm256_broadcast_ss(b + (j) * csb), av, c##j);                      \
    }

/* Columns 0..R-1. R <= 8: the rows of W read together are csb apart, and 12 of them measured
 * twice as slow when csb is a multiple of 1024 (they share one L1 set). */
INLINE AVX2 void
nt_tile(const int R, int64_t M, int64_t kc, const float *at, const float *b, int64_t csb,
        float *c, int64_t ldc, int add)
{
    ROWS_8(NT_DECL)
    for (int64_t p = 0; p < kc; p++) {
        __m256 av = _mm256_load_ps(at + p * 8);
        ROWS_8(NT_FMA)
        b++;
    }
    __m256 r[8] = {c0, c1, c2, c3, c4, c5, c6, c7};
    ty_transpose8_f32(r);
    nt_store(r, M, R, c, ldc, add);
}

/* Columns of whole R-column tiles (a multiple of R), one call for all of them. */
typedef void (*nt_fn)(int64_t cols, int64_t M, int64_t kc, const float *at, const float *b,
                      int64_t csb, float *c, int64_t ldc, int add);

#define NT(R)                                                                                      \
    static AVX2 void nt_##R(int64_t cols, int64_t M, int64_t kc, const float *at, const float *b,  \
                            int64_t csb, float *c, int64_t ldc, int add)                           \
    {                                                                                              \
        for (int64_t j = 0; j < cols; j += (R)) {                                                  \
            nt_tile(R, M, kc, at, b + j * csb, csb, c + j, ldc, add);                              \
        }                                                                                          \
    }
NT(1)
NT(2)
NT(3)
NT(4)
NT(5)
NT(6)
NT(7)
NT(8)

static const nt_fn nt[9] = {NULL, nt_1, nt_2, nt_3, nt_4, nt_5, nt_6, nt_7, nt_8};

AVX2 void
ty_cpu_gemm_small_nt_f32_avx2(int64_t M, int64_t N, int64_t kc, const float *at, const float *b,
                              int64_t csb, float *c, int64_t ldc, int add)
{
    int64_t n8 = N / 8 * 8;
    if (n8 > 0) {
        nt[8](n8, M, kc, at, b, csb, c, ldc, add);
    }
    if (n8 < N) {
        nt[N - n8](N - n8, M, kc, at, b + n8 * csb, csb, c + n8, ldc, add);
    }
}

/* AVX2 rows-in-lanes kernel for the last 1 to 4 columns of a narrow product, A read in
 * place: 8 x 8 blocks of A are transposed in registers, so lane l of accumulator (g, j)
 * carries C(8g + l, j) and each step is one fma of the block's column with a broadcast B
 * value; fma(a, b, acc) == fma(b, a, acc), so the chains are the tiles' (one from 0 over kc,
 * then C = add ? C + acc : acc). G groups of 8 rows run together so that the chains of one
 * group, 4 cycles a step, overlap the other groups' transposes. The half-width 6 x 8 tile it
 * replaces computed 8 columns for 1: 96 rows x 256 steps of one column 6.8 -> 3.0 us, and
 * 512 x 2304 x 49 73 -> 85 GF/s (one thread, CPU time, Zen 3). Steps past kc never run (an
 * added 0 * B could turn a -0 into +0). */
#define RC_DECL(g)                                                                                 \
    __m256 x##g##0 = _mm256_setzero_ps(), x##g##1 = x##g##0, x##g##2 = x##g##0,                   \
           x##g##3 = x##g##0;
#define RC_STEP(g, r, bp)                                                                          \
    do {                                                                                           \
        x##g##0 = _mm256_fmadd_ps((r), _mm256_broadcast_ss((bp) + 0), x##g##0);                    \
        if (COLS > 1) {                                                                            \
            x##g##1 = _mm256_fmadd_ps((r), _mm256_broadcast_ss((bp) + 1), x##g##1);                \
        }                                                                                          \
        if (COLS > 2) {                                                                            \
            x##g##2 = _mm256_fmadd_ps((r), _mm256_broadcast_ss((bp) + 2), x##g##2);                \
        }                                                                                          \
        if (COLS > 3) {                                                                            \
            x##g##3 = _mm256_fmadd_ps((r), _mm256_broadcast_ss((bp) + 3), x##g##3);                \
        }                                                                                          \
    } while (0)
/* Group g over one block of KT steps at k (KT: 8, or the last block's kt). */
#define RC_GROUP(g, KT)                                                                            \
    if ((g) < G) {                                                                                 \
        __m256 r[8];                                                                               \
        rc_block(a + 8 * (g) * lda + k, lda, FULL ? 8 : ni[g], KT, r);                             \
        for (int p = 0; p < (KT); p++) {                                                           \
            RC_STEP(g, r[p], b + (k + p) * ldb);                                                   \
        }                                                                                          \
        /* one group at a time: interleaved, the compiler spilled their blocks */                  \
        __asm__ volatile("" ::: "memory");                                                         \
    }
#define RC_STORE(g)                                                                                \
    if ((g) < G) {                                                                                 \
        _Alignas(32) float out[4][8];                                                              \
        _mm256_store_ps(out[0], x##g##0);                                                          \
        _mm256_store_ps(out[1], x##g##1);                                                          \
        _mm256_store_ps(out[2], x##g##2);                                                          \
        _mm256_store_ps(out[3], x##g##3);                                                          \
        for (int i = 0; i < ni[g]; i++) {                                                          \
            float *ci = c + (8 * (g) + i) * ldc;                                                   \
            for (int j = 0; j < COLS; j++) {                                                       \
                ci[j] = add ? ci[j] + out[j][i] : out[j][i];                                       \
            }                                                                                      \
        }                                                                                          \
    }

/* r[p] = (A(0, p), ..., A(7, p)) for p < 8 from ni rows lda apart at a, kt <= 8 steps (lanes
 * past ni, and steps past kt, read as 0 and touch no memory). */
INLINE AVX2 void
rc_block(const float *a, int64_t lda, int ni, int kt, __m256 r[8])
{
    if (ni == 8 && kt == 8) {
        /* rows i and i + 4 in the two halves, so that only in-lane shuffles remain (the
         * lane-crossing ones measured a third of the kernel's time) */
        __m256 h[8], t[8];
        for (int i = 0; i < 4; i++) {
            h[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a + i * lda)),
                                        _mm_loadu_ps(a + (i + 4) * lda), 1);
            h[4 + i] = _mm256_insertf128_ps(
                _mm256_castps128_ps256(_mm_loadu_ps(a + i * lda + 4)),
                _mm_loadu_ps(a + (i + 4) * lda + 4), 1);
        }
        for (int g = 0; g < 8; g += 4) {
            t[g] = _mm256_unpacklo_ps(h[g], h[g + 1]);
            t[g + 1] = _mm256_unpackhi_ps(h[g], h[g + 1]);
            t[g + 2] = _mm256_unpacklo_ps(h[g + 2], h[g + 3]);
            t[g + 3] = _mm256_unpackhi_ps(h[g + 2], h[g + 3]);
            r[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
            r[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
            r[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
            r[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
        }
        return;
    }
    __m256i m =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(kt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int i = 0; i < 8; i++) {
        r[i] = i >= ni ? _mm256_setzero_ps()
               : kt == 8 ? _mm256_loadu_ps(a + i * lda)
                         : _mm256_maskload_ps(a + i * lda, m);
    }
    ty_transpose8_f32(r);
}

/* Rows [0, 8G) (those below rows) of the COLS columns. */
INLINE AVX2 void
rc_rows(const int COLS, const int G, const int FULL, int64_t rows, int64_t kc, const float *a,
        int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc, int add)
{
    int ni[4];
    for (int g = 0; g < 4; g++) {
        int64_t left = rows - 8 * g;
        ni[g] = left <= 0 ? 0 : left < 8 ? (int)left : 8;
    }
    RC_DECL(0)
    RC_DECL(1)
    RC_DECL(2)
    RC_DECL(3)
    const int64_t kfull = kc / 8 * 8;
    int64_t k = 0;
    for (; k < kfull; k += 8) {
        RC_GROUP(0, 8)
        RC_GROUP(1, 8)
        RC_GROUP(2, 8)
        RC_GROUP(3, 8)
    }
    if (k < kc) {
        const int kt = (int)(kc - k);
        RC_GROUP(0, kt)
        RC_GROUP(1, kt)
        RC_GROUP(2, kt)
        RC_GROUP(3, kt)
    }
    RC_STORE(0)
    RC_STORE(1)
    RC_STORE(2)
    RC_STORE(3)
}

/* Enough chains to fill the FMA units: 4 groups for 1 or 2 columns, 2 for 3 or 4 (registers). */
INLINE AVX2 void
rc_f32_avx2(const int COLS, int64_t rows, int64_t kc, const float *a, int64_t lda,
            const float *b, int64_t ldb, float *c, int64_t ldc, int add)
{
    const int G = COLS <= 2 ? 4 : 2;
    int64_t i0 = 0;
    for (; i0 + 8 * G <= rows; i0 += 8 * G) {
        rc_rows(COLS, G, 1, rows - i0, kc, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc, add);
    }
    /* The rest (a task's rows are rarely a multiple of 32): 2 or 3 groups together, empty
     * ones included, cost less than one at a time, whose chains leave the FMA units idle
     * (one thread, CPU time, 60 rows of 1 column, kc 256: 2.3 -> 1.95 us); one group alone. */
    if (G == 4 && rows - i0 > 8) {
        rc_rows(COLS, 4, 0, rows - i0, kc, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc, add);
        i0 = rows;
    }
    for (; i0 < rows; i0 += 8) {
        rc_rows(COLS, 1, 0, rows - i0, kc, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc, add);
    }
}

AVX2 void
ty_cpu_gemm_ra_cols_f32_avx2(int64_t rows, int64_t kc, const float *a, int64_t lda,
                             const float *b, int64_t ldb, int cols, float *c, int64_t ldc, int add)
{
    switch (cols) {
    case 1:
        rc_f32_avx2(1, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    case 2:
        rc_f32_avx2(2, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    case 3:
        rc_f32_avx2(3, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    default:
        rc_f32_avx2(4, rows, kc, a, lda, b, ldb, c, ldc, add);
        break;
    }
}

#else
/* Keeps the translation unit non-empty (ISO C) on other architectures. */
typedef int ty_gemm_x86_unused;
#endif
