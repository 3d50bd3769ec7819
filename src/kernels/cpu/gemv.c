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

enum {
    KC_AVX512 = 512, /* the GEMM's K block per instruction set (gemm.c's configurations) */
    KC_AVX2 = 256,
    GROUPS = 4,                  /* groups of 8 outputs in flight */
    BLOCK_OUT = 8 * GROUPS,      /* outputs per block */
    MIN_CHUNK_FMAS = 1 << 16,    /* multiply-adds per parallel chunk, at least */
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

/* Outputs [j0, j0 + BLOCK_OUT) below N, every K block: whole groups of 8 outputs in vectors
 * over whole steps of 8 columns; the columns after the last whole step, and outputs after
 * the last whole group, continue the same chains one fmaf at a time. */
AVX2 static void
gemv_block(const gemv_run *r, int64_t j0)
{
    int64_t nj = r->N - j0 < BLOCK_OUT ? r->N - j0 : BLOCK_OUT;
    int groups = (int)(nj / 8);
    for (int64_t pc = 0; pc < r->K; pc += r->kcb) {
        int64_t end = r->K - pc < r->kcb ? r->K : pc + r->kcb, k = pc;
        __m256 acc[GROUPS];
        for (int g = 0; g < GROUPS; g++) {
            acc[g] = _mm256_setzero_ps();
        }
        if (groups == GROUPS && r->ldw % 512 == 0) {
            /* Rows a multiple of 2 KiB apart (K = 512, 1024, 2048) put the 32 rows' lines of a
             * step into one or two L1 sets of 8 ways, where they evicted one another before
             * use (1000 outputs, 2 threads, a Zen 3: 0.59-0.65 ms at K = 1024 against 0.2 at
             * K = 1280). So whole steps of 16 columns (a line of each row), group g a step
             * behind group g - 1, spread them over 4 sets: K = 512 0.07-0.19 -> 0.04-0.05 ms,
             * 1024 -> 0.16-0.25, 2048 1.13-1.55 -> 0.50-0.68. Each chain still runs in k
             * order. Other strides keep the plain loop (K = 1280 measured no better). */
            const int64_t steps = (end - pc) / 16;
            for (int64_t st = 0; st < steps + GROUPS - 1; st++) {
                for (int g = 0; g < GROUPS; g++) {
                    int64_t kb = st - g;
                    if (kb >= 0 && kb < steps) {
                        const float *w = r->W + (j0 + 8 * g) * r->ldw + pc + 16 * kb;
                        const float *x = r->x + (pc + 16 * kb) * r->incx;
                        acc[g] = group8(w, r->ldw, x, r->incx, acc[g]);
                        acc[g] = group8(w + 8, r->ldw, x + 8 * r->incx, r->incx, acc[g]);
                    }
                }
            }
            k = pc + 16 * steps;
        }
        if (groups == GROUPS) {
            for (; k + 8 <= end; k += 8) {
                const float *w = r->W + j0 * r->ldw + k, *x = r->x + k * r->incx;
#pragma GCC unroll 4
                for (int g = 0; g < GROUPS; g++) {
                    acc[g] = group8(w + 8 * g * r->ldw, r->ldw, x, r->incx, acc[g]);
                }
            }
        } else {
            for (; k + 8 <= end; k += 8) {
                for (int g = 0; g < groups; g++) {
                    acc[g] = group8(r->W + (j0 + 8 * g) * r->ldw + k, r->ldw,
                                    r->x + k * r->incx, r->incx, acc[g]);
                }
            }
        }
        float s[BLOCK_OUT];
        for (int g = 0; g < GROUPS; g++) {
            _mm256_storeu_ps(s + 8 * g, acc[g]);
        }
        for (int64_t i = 0; i < nj; i++) {
            const float *w = r->W + (j0 + i) * r->ldw;
            int64_t kk = i < 8 * groups ? k : pc; /* where this output's chain stands */
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
