/* Register-tile layouts for the f32 AVX-512 GEMM micro-kernel, measured against the FMA peak
 * of the same thread: which share of the peak each layout reaches with its operands in L1
 * (one A and one B micro-panel) and with B streaming from L2 (8 B panels per A panel), the
 * situation of the real k loop. Times are the thread's CPU time, so other load on a shared
 * machine mostly drops out.
 *
 *   R x 16V: R rows of A broadcast, V vectors of 16 floats of B, R*V accumulators.
 *   "emb":   the broadcasts folded into the multiply-adds ({1to16} memory operands), one
 *            load per multiply-add instead of one per row.
 *   "bregs": the 12 x 32 tile with one B row held in registers (no B loads in the loop):
 *            what the broadcasts alone cost.
 *
 *   cc -O2 benchmarks/gemm_layouts.c -o /tmp/gemm_layouts && /tmp/gemm_layouts [kc]
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))
#define ROWS_14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

static double
cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define DECL(i)                                                                                    \
    __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0;                    \
    __m512 c##i##3 = c##i##0, c##i##4 = c##i##0, c##i##5 = c##i##0;
#define FMA1(i, v)                                                                                 \
    if ((v) < V) {                                                                                 \
        if (EMB) {                                                                                 \
            __asm__("vfmadd231ps %1%{1to16%}, %2, %0"                                              \
                    : "+v"(c##i##v)                                                                \
                    : "m"(a[i]), "v"(b##v));                                                       \
        } else {                                                                                   \
            c##i##v = _mm512_fmadd_ps(av, b##v, c##i##v);                                          \
        }                                                                                          \
    }
#define FMA_ROW(i)                                                                                 \
    if ((i) < R) {                                                                                 \
        __m512 av = _mm512_set1_ps(a[i]);                                                          \
        FMA1(i, 0) FMA1(i, 1) FMA1(i, 2) FMA1(i, 3) FMA1(i, 4) FMA1(i, 5)                          \
    }
#define STORE1(i, v)                                                                               \
    if ((v) < V) {                                                                                 \
        _mm512_storeu_ps(cr + 16 * (v), _mm512_add_ps(_mm512_loadu_ps(cr + 16 * (v)), c##i##v));  \
    }
#define STORE_ROW(i)                                                                               \
    if ((i) < R) {                                                                                 \
        float *cr = c + (i) * ldc;                                                                 \
        STORE1(i, 0) STORE1(i, 1) STORE1(i, 2) STORE1(i, 3) STORE1(i, 4) STORE1(i, 5)              \
    }
#define LOAD_B(v) __m512 b##v = (v) < V ? _mm512_loadu_ps(b + 16 * (v)) : _mm512_setzero_ps();

/* acc(i, v) += a[p*R + i] * b[p*16V + 16v ...] for p < kc; B rows are prefetched 8 ahead as
 * in gemm_x86.c. With BREGS, every p uses B's first row. */
INLINE AVX512 void
tile(const int R, const int V, const int EMB, const int BREGS, long kc, const float *a,
     const float *b, float *c, long ldc)
{
    ROWS_14(DECL)
    for (long p = 0; p < kc; p++) {
        LOAD_B(0) LOAD_B(1) LOAD_B(2) LOAD_B(3) LOAD_B(4) LOAD_B(5)
        if (!BREGS) {
            _mm_prefetch((const char *)(b + 16 * V * 8), _MM_HINT_T0);
        }
        ROWS_14(FMA_ROW)
        a += R;
        b += BREGS ? 0 : 16 * V; /* BREGS: the same B row, loaded once out of the loop */
    }
    ROWS_14(STORE_ROW)
}

typedef void (*kernel_fn)(long kc, const float *a, const float *b, float *c, long ldc);

#define KERNEL(NAME, R, V, EMB, BREGS)                                                             \
    static AVX512 __attribute__((noinline)) void NAME(long kc, const float *a, const float *b,     \
                                                      float *c, long ldc)                          \
    {                                                                                              \
        tile(R, V, EMB, BREGS, kc, a, b, c, ldc);                                                  \
    }
KERNEL(k12x32, 12, 2, 0, 0)
KERNEL(k14x32, 14, 2, 0, 0)
KERNEL(k8x48, 8, 3, 0, 0)
KERNEL(k6x64, 6, 4, 0, 0)
KERNEL(k4x96, 4, 6, 0, 0)
KERNEL(k12x32e, 12, 2, 1, 0)
KERNEL(k8x48e, 8, 3, 1, 0)
KERNEL(k6x64e, 6, 4, 1, 0)
KERNEL(k12x32b, 12, 2, 0, 1)

static const struct {
    const char *name;
    kernel_fn fn;
    int rows, vecs;
} layouts[] = {
    {"12x32", k12x32, 12, 2},          {"14x32", k14x32, 14, 2},
    {"8x48", k8x48, 8, 3},             {"6x64", k6x64, 6, 4},
    {"4x96", k4x96, 4, 6},             {"12x32 emb", k12x32e, 12, 2},
    {"8x48 emb", k8x48e, 8, 3},        {"6x64 emb", k6x64e, 6, 4},
    {"12x32 bregs", k12x32b, 12, 2},
};

/* 24 independent multiply-add chains, no loads: the FMA peak of this thread. Named variables
 * (an array would be spilled), and an empty asm per step so no chain is folded or merged. */
#define CHAINS_12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define CH_DECL(i) __m512 x##i = _mm512_set1_ps((float)(i)), y##i = x##i;
#define CH_STEP(i)                                                                                 \
    x##i = _mm512_fmadd_ps(x##i, m, d);                                                            \
    y##i = _mm512_fmadd_ps(y##i, m, d);
#define CH_SUM(i) s = _mm512_add_ps(s, _mm512_add_ps(x##i, y##i));

static AVX512 __attribute__((noinline)) float
chains(long iters)
{
    const __m512 m = _mm512_set1_ps(0.999f), d = _mm512_set1_ps(1e-7f);
    CHAINS_12(CH_DECL)
    for (long it = 0; it < iters; it++) {
        CHAINS_12(CH_STEP)
        __asm__ volatile(""
                         : "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3), "+v"(x4), "+v"(x5), "+v"(x6),
                           "+v"(x7), "+v"(x8), "+v"(x9), "+v"(x10), "+v"(x11));
        __asm__ volatile(""
                         : "+v"(y0), "+v"(y1), "+v"(y2), "+v"(y3), "+v"(y4), "+v"(y5), "+v"(y6),
                           "+v"(y7), "+v"(y8), "+v"(y9), "+v"(y10), "+v"(y11));
    }
    __m512 s = _mm512_setzero_ps();
    CHAINS_12(CH_SUM)
    return _mm512_reduce_add_ps(s);
}

static double
peak_gflops(void)
{
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_s();
        sink += chains(2000000);
        double gf = 2.0 * 16 * 24 * 2000000 / (cpu_s() - t0) * 1e-9;
        best = gf > best ? gf : best;
    }
    (void)sink;
    return best;
}

/* Best GFLOP/s of `panels` B panels swept by one A panel, over a few 0.1 s samples. */
static double
layout_gflops(int li, long kc, int panels, const float *a, const float *b, float *c)
{
    const int R = layouts[li].rows, V = layouts[li].vecs;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        long calls = 0;
        double t0 = cpu_s(), t;
        do {
            for (int q = 0; q < panels; q++) {
                layouts[li].fn(kc, a, b + (long)q * kc * 16 * V, c, 128);
            }
            calls += panels;
            t = cpu_s() - t0;
        } while (t < 0.1);
        double gf = 2.0 * R * 16 * V * kc * calls / t * 1e-9;
        best = gf > best ? gf : best;
    }
    return best;
}

int
main(int argc, char **argv)
{
    long kc = argc > 1 ? atol(argv[1]) : 512;
    if (kc < 16 || kc > 4096) {
        fprintf(stderr, "kc must be in 16..4096\n");
        return 2;
    }
    float *a = aligned_alloc(64, sizeof(float) * 16 * (size_t)kc);
    float *b = aligned_alloc(64, sizeof(float) * 96 * 8 * (size_t)kc + 4096);
    float *c = aligned_alloc(64, sizeof(float) * 16 * 128);
    if (!a || !b || !c) {
        return 1;
    }
    for (long i = 0; i < 16 * kc; i++) {
        a[i] = 1e-3f;
    }
    for (long i = 0; i < 96 * 8 * kc + 1024; i++) {
        b[i] = 1e-3f;
    }
    memset(c, 0, sizeof(float) * 16 * 128);
    printf("kc = %ld; share of the FMA peak measured just before each line (thread CPU time)\n",
           kc);
    printf("%-12s %10s %10s %8s %10s %8s\n", "layout", "peak GF/s", "L1 GF/s", "L1 %",
           "L2 GF/s", "L2 %");
    for (int li = 0; li < (int)(sizeof(layouts) / sizeof(layouts[0])); li++) {
        double peak = peak_gflops();
        double l1 = layout_gflops(li, kc, 1, a, b, c);
        double l2 = layout_gflops(li, kc, 8, a, b, c);
        printf("%-12s %10.1f %10.1f %7.1f%% %10.1f %7.1f%%\n", layouts[li].name, peak, l1,
               100 * l1 / peak, l2, 100 * l2 / peak);
    }
    free(a);
    free(b);
    free(c);
    return 0;
}
