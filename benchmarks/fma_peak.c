/* FP32 peak probe: GFLOP/s of independent fused multiply-add chains, one set per thread, with
 * the widest vectors this CPU runs (AVX-512, else AVX2 + FMA). 24 chains per thread (12 on
 * AVX2) hide the FMA latency on two FMA ports (latency 4 x 2 ports = 8 needed; more covers
 * slower parts). AVX2 has 16 vector registers: 24 chains spilled to the stack there and the
 * probe read 111-163 GFLOP/s on a Zen 3 whose SGEMM ran at 175.
 * Prints one line: "<GFLOP/s of all threads> <isa> <threads>". benchmarks/gemm.py builds and
 * runs it; by hand:
 *
 *   cc -O2 -pthread benchmarks/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak [threads [ms]]
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { CHAINS = 24, CHAINS_AVX2 = 12, INNER = 1000 };

typedef struct probe {
    long iters;
    int avx512;
    double seconds;
    float sink;
} probe;

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Each chain feeds itself, so the compiler can neither fold nor merge them; the unroll
 * pragma keeps all of them in registers. */
__attribute__((target("avx512f"))) static float
chains_avx512(long iters)
{
    __m512 acc[CHAINS];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS; c++) {
        acc[c] = _mm512_set1_ps((float)c);
    }
    for (long i = 0; i < iters; i++) {
        for (int r = 0; r < INNER; r++) {
#pragma GCC unroll 24
            for (int c = 0; c < CHAINS; c++) {
                acc[c] = _mm512_fmadd_ps(acc[c], a, b);
            }
        }
    }
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) {
        s = _mm512_add_ps(s, acc[c]);
    }
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float
chains_avx2(long iters)
{
    __m256 acc[CHAINS_AVX2];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < CHAINS_AVX2; c++) {
        acc[c] = _mm256_set1_ps((float)c);
    }
    for (long i = 0; i < iters; i++) {
        for (int r = 0; r < INNER; r++) {
#pragma GCC unroll 12
            for (int c = 0; c < CHAINS_AVX2; c++) {
                acc[c] = _mm256_fmadd_ps(acc[c], a, b);
            }
        }
    }
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS_AVX2; c++) {
        s = _mm256_add_ps(s, acc[c]);
    }
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

static void *
run(void *arg)
{
    probe *p = arg;
    double t0 = now_s();
    p->sink = p->avx512 ? chains_avx512(p->iters) : chains_avx2(p->iters);
    p->seconds = now_s() - t0;
    return NULL;
}

/* GFLOP/s of `threads` threads each running `iters` outer iterations (the slowest sets it). */
static double
measure(int threads, long iters, int avx512)
{
    pthread_t tid[64];
    probe p[64];
    for (int t = 0; t < threads; t++) {
        p[t] = (probe){.iters = iters, .avx512 = avx512};
        if (pthread_create(&tid[t], NULL, run, &p[t]) != 0) {
            return 0;
        }
    }
    double worst = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        worst = p[t].seconds > worst ? p[t].seconds : worst;
    }
    double per_iter = avx512 ? (double)CHAINS * 16 : (double)CHAINS_AVX2 * 8;
    double flops = (double)threads * (double)iters * INNER * per_iter * 2;
    return flops / worst * 1e-9;
}

int
main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    double budget_ms = argc > 2 ? atof(argv[2]) : 300;
    if (threads < 1 || threads > 64) {
        fprintf(stderr, "threads: 1..64\n");
        return 1;
    }
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        fprintf(stderr, "needs AVX2 + FMA\n");
        return 1;
    }
    /* Calibrate: double the work until one thread's run takes 20 ms (thread start-up is then
     * noise), then size each of 5 samples to a fifth of the budget and keep the best (other
     * load on a shared machine only lowers a sample). */
    long iters = 1;
    double one = 0;
    for (;;) {
        double t0 = now_s();
        measure(1, iters, avx512);
        one = now_s() - t0;
        if (one >= 0.02 || iters > (1L << 40)) {
            break;
        }
        iters *= 2;
    }
    iters = (long)((double)iters * budget_ms * 1e-3 / 5 / one);
    iters = iters < 1 ? 1 : iters;
    double best = 0;
    for (int s = 0; s < 5; s++) {
        double g = measure(threads, iters, avx512);
        best = g > best ? g : best;
    }
    printf("%.1f %s %d\n", best, avx512 ? "avx512" : "avx2", threads);
    return 0;
}
