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

#endif
