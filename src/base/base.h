/* The base layer: what both the kernels and core need — status codes and the thread-local
 * error message, dtype facts and scalar conversions (f16/bf16), and (in their own headers)
 * the thread pool and CPU feature detection. It calls nothing of the layers above. */
#ifndef TY_BASE_H
#define TY_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "tianyuan/tianyuan.h"

/* ---- errors ---- */
/* Prefixes the current message with "<prefix>: " (used by the dispatcher to name the op). */
void ty_error_prefix(const char *prefix);

#define TY_CHECK(cond, st, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            return ty_set_error((st), __VA_ARGS__);                                                \
        }                                                                                          \
    } while (0)
#define TY_CHECK_GOTO(cond, st, ...)                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            status = ty_set_error((st), __VA_ARGS__);                                              \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
#define TY_TRY(expr)                                                                               \
    do {                                                                                           \
        ty_status try_st_ = (expr);                                                                \
        if (try_st_ != TY_OK) {                                                                    \
            return try_st_;                                                                        \
        }                                                                                          \
    } while (0)
#define TY_TRY_GOTO(expr)                                                                          \
    do {                                                                                           \
        status = (expr);                                                                           \
        if (status != TY_OK) {                                                                     \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Writes "(2, 3)" into buf. */
const char *ty_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
#define TY_SHAPE_BUF 160

/* ---- the calling thread's algorithm policy (policy.c) ---- */
/* Nonzero for the four ty_algo_policy values. */
int ty_algo_policy_valid(int p);
/* What a kernel choosing between algorithms consults: the thread's override (a runtime
 * session sets one for its run), else the process default (ty_set_algo_policy). */
ty_algo_policy ty_algo_policy_current(void);
/* Sets the thread's override (an invalid value, such as 0 returned by a first swap, removes
 * it) and returns the previous one. */
ty_algo_policy ty_algo_policy_swap(ty_algo_policy p);

/* ---- dtype helpers ---- */
ty_dtype ty_promote(ty_dtype a, ty_dtype b);
double ty_load_f64(const void *p, ty_dtype dt);
void ty_store_f64(void *p, ty_dtype dt, double v);
float ty_f16_to_f32(uint16_t h);
uint16_t ty_f32_to_f16(float f);
float ty_bf16_to_f32(uint16_t h);
uint16_t ty_f32_to_bf16(float f);

#endif
