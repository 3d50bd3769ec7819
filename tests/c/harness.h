/* A tiny test harness: TEST(name) registers a test; CHECK(cond) records a failure and
 * continues; REQUIRE(cond) records it and leaves the test. One binary runs every test. */
#ifndef TY_TEST_HARNESS_H
#define TY_TEST_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*ty_test_fn)(int *failures);
void ty_test_register(const char *name, ty_test_fn fn);

#define TEST(name)                                                                                 \
    static void test_##name(int *failures_);                                                      \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        ty_test_register(#name, test_##name);                                                      \
    }                                                                                              \
    static void test_##name(int *failures_)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            (*failures_)++;                                                                        \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond);           \
            (*failures_)++;                                                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Reproducible test data: xorshift64, one stream per test file; 53 random bits. */
static uint64_t ty_test_rng_state = 0x9E3779B97F4A7C15ull;

static inline uint64_t
ty_test_rand_bits(void)
{
    ty_test_rng_state ^= ty_test_rng_state << 13;
    ty_test_rng_state ^= ty_test_rng_state >> 7;
    ty_test_rng_state ^= ty_test_rng_state << 17;
    return ty_test_rng_state >> 11;
}

/* Uniform in [-1, 1), reproducible. */
static inline float
ty_test_rand_f32(void)
{
    return (float)((double)ty_test_rand_bits() / (double)(1ull << 52) - 1.0);
}

/* n floats of ty_test_rand_f32 (at least one allocated); the caller frees them. */
static inline float *
ty_test_rand_buf_f32(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; p != NULL && i < n; i++) {
        p[i] = ty_test_rand_f32();
    }
    return p;
}

#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol))
#define CHECK_OK(expr) REQUIRE((expr) == TY_OK)

/* An epilogue (ty_gemm_epilogue_f32's fn) that adds 1000 to each element it is handed and
 * counts the calls per element: 1 where ldc == P and (i0, j0) locate the element (rows P apart,
 * images `plane` elements apart), 100 otherwise. seen[] all 1 and the output y + 1000 mean
 * every output was handed over once, at its place. */
typedef struct ty_test_epi_probe {
    const float *y;
    int64_t P, plane;
    unsigned char *seen;
} ty_test_epi_probe;

static inline void
ty_test_probe_epi(const void *ctx, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float *c,
                  int64_t ldc)
{
    const ty_test_epi_probe *p = ctx;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            float *e = c + i * ldc + j;
            int64_t at = e - p->y;
            int located = ldc == p->P && at % p->plane == (i0 + i) * p->P + j0 + j;
            p->seen[at] += located ? 1 : 100;
            *e += 1000.0f;
        }
    }
}

#endif
