/* Float32 matrix-vector product with the matrix contiguous along k (gemv.h). */
#include "kernels/cpu/gemv.h"

#include <math.h>

#include "base/threadpool.h"
#include "kernels/cpu/gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEMV_X86 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#endif

/* BLOCK_OUT: outputs a block, one group of 8 in one vector chain. The chain waits on the
 * multiply-add's latency, but W streams from memory (a classifier's weight is read once a
 * call) and the rows a block reads at once are that many streams: one thread, the weight
 * cold, best over 1 s, Zen 3, ms for 8 / 16 / 32 rows at once: 1000 x 1280 0.32-0.41 /
 * 0.34 / 0.69-0.89, 1000 x 2048 0.52-0.70 / 0.68-0.69 / 0.86-0.89, 1000 x 512 0.17-0.18 /
 * 0.20-0.36 / 0.35-0.53, 1000 x 1024 0.32-0.41 / 0.43-0.51 / 0.56-0.91; two threads 1280
 * 0.16-0.21 / 0.21-0.24 / 0.40-0.45, 2048 0.29-0.33 / 0.39 / 0.49-0.64. (32 rows, with the
 * groups skewed a step apart where rows are a multiple of 2 KiB apart, was the kernel before.) */
enum {
    KC_AVX512 = 512, /* the GEMM's K block per instruction set (gemm.c's configurations) */
    KC_AVX2 = 256,
    BLOCK_OUT = 8,
    MIN_CHUNK_FMAS = 1 << 16, /* multiply-adds per parallel chunk, at least */
};

typedef struct gemv_run {
    int64_t N, K, kcb, incx, ldw;
    const float *x, *W;
    float *y;
} gemv_run;

#ifdef GEMV_X86
/* acc (lane i: output j + i) continued over columns k .. k+7 of rows j .. j+7 (w: W(j, k)):
 * rows i and i + 4 loaded side by side into 256-bit halves, then each half transposed in its
 * 128-bit lanes, so t_p's lane i is W(j + i, k + p); the products added in k order. */
AVX2 static inline __attribute__((always_inline)) __m256
group8(const float *w, int64_t ldw, const float *x, int64_t incx, __m256 acc)
{
    for (int h = 0; h < 2; h++) {
        __m256 a[4];
        for (int i = 0; i < 4; i++) {
            a[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(w + i * ldw + 4 * h)),
                                        _mm_loadu_ps(w + (i + 4) * ldw + 4 * h), 1);
        }
        __m256 u0 = _mm256_unpacklo_ps(a[0], a[1]), u1 = _mm256_unpackhi_ps(a[0], a[1]);
        __m256 u2 = _mm256_unpacklo_ps(a[2], a[3]), u3 = _mm256_unpackhi_ps(a[2], a[3]);
        const float *xh = x + 4 * h * incx;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(xh[0]), _mm256_shuffle_ps(u0, u2, 0x44), acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(xh[incx]), _mm256_shuffle_ps(u0, u2, 0xEE), acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(xh[2 * incx]), _mm256_shuffle_ps(u1, u3, 0x44),
                              acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(xh[3 * incx]), _mm256_shuffle_ps(u1, u3, 0xEE),
                              acc);
    }
    return acc;
}

/* Stores (first block) or adds a block's sums s[0 .. n) to y, as the GEMM does. */
static void
put(float *y, const float *s, int n, int first)
{
    for (int i = 0; i < n; i++) {
        y[i] = first ? s[i] : y[i] + s[i];
    }
}

/* Outputs [j0, j0 + BLOCK_OUT) below N, every K block: a whole group of 8 outputs in a
 * vector over whole steps of 8 columns; the columns after the last whole step, and a block of
 * fewer outputs, continue the same chains one fmaf at a time. */
AVX2 static void
gemv_block(const gemv_run *r, int64_t j0)
{
    int64_t nj = r->N - j0 < BLOCK_OUT ? r->N - j0 : BLOCK_OUT;
    int whole = nj == BLOCK_OUT;
    for (int64_t pc = 0; pc < r->K; pc += r->kcb) {
        int64_t end = r->K - pc < r->kcb ? r->K : pc + r->kcb, k = pc;
        __m256 acc = _mm256_setzero_ps();
        for (; whole && k + 8 <= end; k += 8) {
            acc = group8(r->W + j0 * r->ldw + k, r->ldw, r->x + k * r->incx, r->incx, acc);
        }
        float s[BLOCK_OUT];
        _mm256_storeu_ps(s, acc);
        for (int64_t i = 0; i < nj; i++) {
            const float *w = r->W + (j0 + i) * r->ldw;
            int64_t kk = whole ? k : pc; /* where this output's chain stands */
            if (kk == pc) {
                s[i] = 0.0f;
            }
            for (; kk < end; kk++) {
                s[i] = fmaf(r->x[kk * r->incx], w[kk], s[i]);
            }
        }
        put(r->y + j0, s, (int)nj, pc == 0);
    }
}

static void
gemv_range(void *ctx, int64_t begin, int64_t end)
{
    for (int64_t b = begin; b < end; b++) {
        gemv_block(ctx, b * BLOCK_OUT);
    }
}
#endif

int
ty_gemv_t_f32(int64_t N, int64_t K, const float *x, int64_t incx, const float *W,
              int64_t ldw, float *y)
{
#ifdef GEMV_X86
    ty_isa isa = ty_gemm_get_isa();
    if ((isa != TY_ISA_AVX512 && isa != TY_ISA_AVX2) || N <= 0 || K <= 0) {
        return 0;
    }
    int64_t kc = isa == TY_ISA_AVX512 ? KC_AVX512 : KC_AVX2;
    int64_t nkb = (K + kc - 1) / kc;
    gemv_run r = {.N = N, .K = K, .kcb = (K + nkb - 1) / nkb, .incx = incx, .ldw = ldw,
                  .x = x, .W = W, .y = y};
    int64_t blocks = (N + BLOCK_OUT - 1) / BLOCK_OUT;
    int64_t grain = MIN_CHUNK_FMAS / (BLOCK_OUT * K) + 1;
    ty_parallel_for(blocks, grain, gemv_range, &r);
    return 1;
#else
    (void)N, (void)K, (void)x, (void)incx, (void)W, (void)ldw, (void)y;
    return 0;
#endif
}
