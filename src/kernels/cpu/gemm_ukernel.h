/* GEMM micro-kernels (private to kernels/cpu/gemm*.c).
 *
 * A micro-kernel computes one MR x NR tile from packed panels:
 *     acc(i, j) = sum over p in [0, kc), in order, of a[p*MR + i] * b[p*NR + j]  (fused)
 *     C(i, j) = add ? C(i, j) + acc(i, j) : acc(i, j),  C(i, j) = c[i*ldc + j].
 * Every lane does the same operations, so a tile's position never changes its bits. */
#ifndef TY_KERNELS_CPU_GEMM_UKERNEL_H
#define TY_KERNELS_CPU_GEMM_UKERNEL_H

#include <stdint.h>

typedef void (*ty_cpu_gemm_ukernel)(int64_t kc, const void *a, const void *b, void *c,
                                    int64_t ldc, int add);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TY_GEMM_X86 1
/* AVX-512: 12 x 32 (f32) and 12 x 16 (f64) tiles; the _8 and _4 variants compute only the
 * first 8 or 4 rows of a 12-wide A panel, for the M edge. */
void ty_cpu_gemm_ukernel_f32_avx512(int64_t kc, const void *a, const void *b, void *c,
                                    int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_8(int64_t kc, const void *a, const void *b, void *c,
                                      int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_4(int64_t kc, const void *a, const void *b, void *c,
                                      int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f64_avx512(int64_t kc, const void *a, const void *b, void *c,
                                    int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f64_avx512_8(int64_t kc, const void *a, const void *b, void *c,
                                      int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f64_avx512_4(int64_t kc, const void *a, const void *b, void *c,
                                      int64_t ldc, int add);
/* The same 12 x 32 tile (and its first 8 or 4 rows) with B read in place, its rows ldb apart
 * (B(p, j) = b[p*ldb + j]), for products too short in M to repay packing B. */
typedef void (*ty_cpu_gemm_ukernel_rb)(int64_t kc, const float *a, const float *b, int64_t ldb,
                                       float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_rb12(int64_t kc, const float *a, const float *b, int64_t ldb,
                                         float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_rb8(int64_t kc, const float *a, const float *b, int64_t ldb,
                                        float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_rb4(int64_t kc, const float *a, const float *b, int64_t ldb,
                                        float *c, int64_t ldc, int add);
/* The 12 x 32 tile for a B read in place whose rows would evict each other from L1 (see
 * gemm.c's b_copy): _rbp12 is rb12 that also stores the B rows it reads as a packed 32-wide
 * panel at bp (64-byte aligned), bp[p*32 + j] = b[p*ldb + j]; _pf12 is the packed kernel that
 * also prefetches one line, pf + p*pfld, into L2 at each step p < kc. */
typedef void (*ty_cpu_gemm_ukernel_rbp)(int64_t kc, const float *a, const float *b, int64_t ldb,
                                        float *bp, float *c, int64_t ldc, int add);
typedef void (*ty_cpu_gemm_ukernel_pf)(int64_t kc, const float *a, const float *b, const char *pf,
                                       int64_t pfld, float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_rbp12(int64_t kc, const float *a, const float *b,
                                          int64_t ldb, float *bp, float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_pf12(int64_t kc, const float *a, const float *b,
                                         const char *pf, int64_t pfld, float *c, int64_t ldc,
                                         int add);
/* The same for AVX2's 6 x 16 tile (a packed panel's rows 16 floats apart; rb4: rows 0..3). */
void ty_cpu_gemm_ukernel_f32_avx2_rb6(int64_t kc, const float *a, const float *b, int64_t ldb,
                                      float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx2_rb4(int64_t kc, const float *a, const float *b, int64_t ldb,
                                      float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx2_rbp6(int64_t kc, const float *a, const float *b, int64_t ldb,
                                       float *bp, float *c, int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx2_pf6(int64_t kc, const float *a, const float *b,
                                      const char *pf, int64_t pfld, float *c, int64_t ldc,
                                      int add);
/* f32 AVX-512 12 x 32 tiles reading A in place, A(i, p) = a[i*rsa + p], for exactly R rows
 * (table index R in 1..12; entry 0 is NULL). B is a packed 32-wide panel as above. */
typedef void (*ty_cpu_gemm_ukernel_ra)(int64_t kc, const float *a, int64_t rsa, const float *b,
                                       float *c, int64_t ldc, int add);
extern const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx512_ra[13];
/* The same R x 16: the left half of the 32-wide B panel, for a last panel of <= 16 columns;
 * in place (_ra_half, by R) and from 12-wide packed A panels (_h12, _h8, _h4: first rows). */
extern const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx512_ra_half[13];
void ty_cpu_gemm_ukernel_f32_avx512_h12(int64_t kc, const void *a, const void *b, void *c,
                                        int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_h8(int64_t kc, const void *a, const void *b, void *c,
                                       int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx512_h4(int64_t kc, const void *a, const void *b, void *c,
                                       int64_t ldc, int add);
/* AVX2 + FMA: 6 x 16 (f32) and 6 x 8 (f64) tiles; _4 computes the first 4 rows of a 6-wide
 * A panel. */
void ty_cpu_gemm_ukernel_f32_avx2(int64_t kc, const void *a, const void *b, void *c,
                                  int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f32_avx2_4(int64_t kc, const void *a, const void *b, void *c,
                                    int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f64_avx2(int64_t kc, const void *a, const void *b, void *c,
                                  int64_t ldc, int add);
void ty_cpu_gemm_ukernel_f64_avx2_4(int64_t kc, const void *a, const void *b, void *c,
                                    int64_t ldc, int add);

/* AVX2 + FMA 6 x 16 tiles reading A in place for exactly R rows (index R in 1..6; entry 0
 * is NULL), B a packed 16-wide panel; _half: R x 8, the panel's left half. */
extern const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx2_ra[7];
extern const ty_cpu_gemm_ukernel_ra ty_cpu_gemm_ukernel_f32_avx2_ra_half[7];

/* Packs rows contiguous along k: dst[p*width + i] = src[i*rs + p] for i < len, p < kc, and
 * 0 for len <= i < width; width <= 32. */
void ty_cpu_transpose_f32_avx512(const float *src, int64_t rs, int64_t len, int64_t kc,
                                 int width, float *dst);

/* f32 matrix-vector products (see gemm_x86.c): for j < n,
 *   acc = sum over k < K, in order, of x[k*incx] * W(k, j)   (one fused chain from 0)
 *   y[j*incy] = add ? y[j*incy] + acc : acc
 * with W(k, j) = w[k*rs + j] (rows) or w[j*cs + k] (cols). */
typedef void (*ty_cpu_gemv_fn)(int64_t n, int64_t K, const float *x, int64_t incx,
                               const float *w, int64_t rs, float *y, int64_t incy, int add);
void ty_cpu_gemv_rows_f32_avx512(int64_t n, int64_t K, const float *x, int64_t incx,
                                 const float *w, int64_t rs, float *y, int64_t incy, int add);
void ty_cpu_gemv_cols_f32_avx512(int64_t n, int64_t K, const float *x, int64_t incx,
                                 const float *w, int64_t cs, float *y, int64_t incy, int add);
void ty_cpu_gemv_rows_f32_avx2(int64_t n, int64_t K, const float *x, int64_t incx,
                               const float *w, int64_t rs, float *y, int64_t incy, int add);

/* C(i, j) for i < rows, j < cols <= TY_GEMM_RA_COLS_MAX with A in place (A(i, p) =
 * a[i*lda + p]) and B(p, j) = b[p*ldb + j]: per element the operations of the _ra tiles (one
 * fused chain from 0 over kc, then C = add ? C + acc : acc), with rows in the vector lanes. */
enum { TY_GEMM_RA_COLS_MAX = 4 };
typedef void (*ty_cpu_gemm_ra_cols_fn)(int64_t rows, int64_t kc, const float *a, int64_t lda,
                                       const float *b, int64_t ldb, int cols, float *c,
                                       int64_t ldc, int add);
void ty_cpu_gemm_ra_cols_f32_avx512(int64_t rows, int64_t kc, const float *a, int64_t lda,
                                    const float *b, int64_t ldb, int cols, float *c, int64_t ldc,
                                    int add);
/* The same with 8-row groups in AVX2 vectors. */
void ty_cpu_gemm_ra_cols_f32_avx2(int64_t rows, int64_t kc, const float *a, int64_t lda,
                                  const float *b, int64_t ldb, int cols, float *c, int64_t ldc,
                                  int add);
/* f32 products read in place, without packing (see gemm_x86.c): one K block of
 *   acc = sum over p < kc, in order, of A(i, p) * b[p*rsb + j]   (one fused chain from 0)
 *   C(i, j) = add ? C(i, j) + acc : acc
 * for i < M, j < N, with A(i, p) = a[i*rsa + p*csa] and C(i, j) = c[i*ldc + j]: per element,
 * the operations of the packed micro-kernels of the same family. AVX2: kc <= 256, its K block. */
typedef void (*ty_cpu_gemm_small_fn)(int64_t M, int64_t N, int64_t kc, const float *a,
                                     int64_t rsa, int64_t csa, const float *b, int64_t rsb,
                                     float *c, int64_t ldc, int add);
void ty_cpu_gemm_small_f32_avx512(int64_t M, int64_t N, int64_t kc, const float *a, int64_t rsa,
                                  int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc,
                                  int add);
void ty_cpu_gemm_small_f32_avx2(int64_t M, int64_t N, int64_t kc, const float *a, int64_t rsa,
                                int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc,
                                int add);
/* The same for M <= 8 and B contiguous along k, B(k, j) = b[j*csb + k], with A packed 8 wide
 * (at[p*8 + i] = A(i, p), 32-byte aligned; rows past M are zero). AVX2 + FMA, used by both
 * families: an fma is an fma at any vector width. */
void ty_cpu_gemm_small_nt_f32_avx2(int64_t M, int64_t N, int64_t kc, const float *at,
                                   const float *b, int64_t csb, float *c, int64_t ldc, int add);
#endif

#endif
