/* Expands scalar.def into typed inner loops, plus conversion and where loops. */
#include <stdint.h>
#include <string.h>
#include <tgmath.h>

#include "base/base.h"
#include "base/threadpool.h"
#include "kernels/cpu/elemw_cpu.h"
#include "kernels/cpu/elemw_vec.h"
#include "base/isa.h"

/* ---- integer helpers: defined results where C leaves them undefined ---- */
static inline int64_t
ty_wadd(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}
static inline int64_t
ty_wsub(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}
static inline int64_t
ty_wmul(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a * (uint64_t)b);
}
static inline int64_t
ty_wneg(int64_t a)
{
    return (int64_t)(0 - (uint64_t)a);
}
/* Integer division by zero yields 0 (as numpy does), INT64_MIN / -1 wraps. */
static inline int64_t
ty_ifloordiv(int64_t a, int64_t b)
{
    if (b == 0) {
        return 0;
    }
    if (b == -1) {
        return ty_wneg(a);
    }
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
static inline int64_t
ty_imod(int64_t a, int64_t b)
{
    if (b == 0 || b == -1) {
        return 0;
    }
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
static inline int64_t
ty_ipow(int64_t a, int64_t e)
{
    if (e < 0) {
        return a == 1 ? 1 : (a == -1 ? ((e & 1) ? -1 : 1) : 0);
    }
    int64_t r = 1;
    while (e) {
        if (e & 1) {
            r = ty_wmul(r, a);
        }
        a = ty_wmul(a, a);
        e >>= 1;
    }
    return r;
}
static inline int64_t
ty_sat_d(double v)
{
    if (v != v) {
        return 0;
    }
    if (v <= -9223372036854775808.0) {
        return INT64_MIN;
    }
    if (v >= 9223372036854775807.0) {
        return INT64_MAX;
    }
    return (int64_t)v;
}
/* clip is minimum(maximum(x, lo), hi), as NumPy's and MegEngine's: hi wins when lo > hi. */
static inline int64_t
ty_iclip(int64_t x, double lo, double hi)
{
    int64_t r = (double)x < lo ? ty_sat_d(ceil(lo)) : x;
    return (double)r > hi ? ty_sat_d(floor(hi)) : r;
}
/* the float clip propagates a NaN x or bound, as NumPy's maximum/minimum do */
#define GEN_FCLIP(T, SFX)                                                                          \
    static inline T ty_fclip_##SFX(T x, T lo, T hi)                                                \
    {                                                                                              \
        T r = (x != x || x > lo) ? x : lo;                                                         \
        return (r != r || r < hi) ? r : hi;                                                        \
    }
GEN_FCLIP(float, f)
GEN_FCLIP(double, d)
#define ty_fclip(x, lo, hi) _Generic((x), float: ty_fclip_f, default: ty_fclip_d)(x, lo, hi)
/* Float floor division and remainder as NumPy's divmod: the remainder takes the divisor's sign
 * (a zero remainder too), x // 0 is x / 0 and x % 0 is NaN, an infinite dividend gives NaN,
 * and the quotient is snapped to the integer nearest (x - x % y) / y. */
#define GEN_FDIVMOD(T, SFX)                                                                        \
    static inline T ty_fdivmod_##SFX(T a, T b, T *mod)                                             \
    {                                                                                              \
        T m = fmod(a, b);                                                                          \
        if (b == 0) {                                                                              \
            *mod = m;                                                                              \
            return a / b;                                                                          \
        }                                                                                          \
        T div = (a - m) / b;                                                                       \
        if (m != 0) { /* NaN included */                                                           \
            if ((b < 0) != (m < 0)) {                                                              \
                m += b;                                                                            \
                div -= 1;                                                                          \
            }                                                                                      \
        } else {                                                                                   \
            m = copysign((T)0, b);                                                                 \
        }                                                                                          \
        *mod = m;                                                                                  \
        if (div == 0) {                                                                            \
            return copysign((T)0, a / b);                                                          \
        }                                                                                          \
        T q = floor(div);                                                                          \
        return div - q > (T)0.5 ? q + 1 : q;                                                       \
    }                                                                                              \
    static inline T ty_ffloordiv_##SFX(T a, T b)                                                   \
    {                                                                                              \
        T m;                                                                                       \
        return ty_fdivmod_##SFX(a, b, &m);                                                         \
    }                                                                                              \
    static inline T ty_fmod_floor_##SFX(T a, T b)                                                  \
    {                                                                                              \
        T m;                                                                                       \
        (void)ty_fdivmod_##SFX(a, b, &m);                                                          \
        return m;                                                                                  \
    }
GEN_FDIVMOD(float, f)
GEN_FDIVMOD(double, d)
#define ty_ffloordiv(x, y) _Generic((x), float: ty_ffloordiv_f, default: ty_ffloordiv_d)(x, y)
#define ty_fmod_floor(x, y) _Generic((x), float: ty_fmod_floor_f, default: ty_fmod_floor_d)(x, y)

/* ---- loops compiled per instruction set ----
 * EW_LOOP(name) { body } defines a ty_elemw_loop (parameters n, p, s, pv) whose body is
 * compiled for AVX-512, AVX2 and baseline x86-64, one picked per call from ty_cpu_isa(), so
 * TY_ISA forces it (GCC's target_clones would pick by cpuid alone). The C is the same in each
 * and contraction is off, so the three give the same bits. */
#define EW_PARAMS int64_t n, char *const *p, const int64_t *s, const double *pv
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
static inline ty_elemw_loop
ew_pick(ty_elemw_loop avx512, ty_elemw_loop avx2, ty_elemw_loop base)
{
    ty_isa isa = ty_cpu_isa();
    return isa >= TY_ISA_AVX512 ? avx512 : isa >= TY_ISA_AVX2 ? avx2 : base;
}
#define EW_LOOP(NAME)                                                                              \
    static inline __attribute__((always_inline)) void NAME##_body(EW_PARAMS);                      \
    __attribute__((target("avx512f"))) static void NAME##_avx512(EW_PARAMS)                        \
    {                                                                                              \
        NAME##_body(n, p, s, pv);                                                                  \
    }                                                                                              \
    __attribute__((target("avx2"))) static void NAME##_avx2(EW_PARAMS)                             \
    {                                                                                              \
        NAME##_body(n, p, s, pv);                                                                  \
    }                                                                                              \
    static void NAME##_base(EW_PARAMS)                                                             \
    {                                                                                              \
        NAME##_body(n, p, s, pv);                                                                  \
    }                                                                                              \
    static void NAME(EW_PARAMS)                                                                    \
    {                                                                                              \
        ew_pick(NAME##_avx512, NAME##_avx2, NAME##_base)(n, p, s, pv);                             \
    }                                                                                              \
    static inline __attribute__((always_inline)) void NAME##_body(EW_PARAMS)
#else
#define EW_LOOP(NAME) static void NAME(EW_PARAMS)
#endif

/* ---- dtype lists: G(dtype, storage, compute, load, store, select) ---- */
#define ID(v) (v)
#define LD_F16(v) ty_f16_to_f32(v)
#define ST_F16(v) ty_f32_to_f16(v)
#define LD_BF16(v) ty_bf16_to_f32(v)
#define ST_BF16(v) ty_f32_to_bf16(v)
#define SEL_F(f, i) (f)
#define SEL_I(f, i) (i)
#define K(v) ((CT)(v))

#define FOR_FLT(G, ...)                                                                            \
    G(TY_FLOAT32, float, float, ID, ID, SEL_F, __VA_ARGS__)                                        \
    G(TY_FLOAT64, double, double, ID, ID, SEL_F, __VA_ARGS__)                                      \
    G(TY_FLOAT16, uint16_t, float, LD_F16, ST_F16, SEL_F, __VA_ARGS__)                             \
    G(TY_BFLOAT16, uint16_t, float, LD_BF16, ST_BF16, SEL_F, __VA_ARGS__)
#define FOR_INT(G, ...)                                                                            \
    G(TY_INT8, int8_t, int64_t, ID, (int8_t), SEL_I, __VA_ARGS__)                                  \
    G(TY_UINT8, uint8_t, int64_t, ID, (uint8_t), SEL_I, __VA_ARGS__)                               \
    G(TY_INT16, int16_t, int64_t, ID, (int16_t), SEL_I, __VA_ARGS__)                               \
    G(TY_INT32, int32_t, int64_t, ID, (int32_t), SEL_I, __VA_ARGS__)                               \
    G(TY_INT64, int64_t, int64_t, ID, ID, SEL_I, __VA_ARGS__)
/* a bool byte other than 0/1 (from DLPack or a NumPy view) reads as true */
#define LD_BOOL(v) ((int64_t)((v) != 0))
#define FOR_BOOL(G, ...) G(TY_BOOL, uint8_t, int64_t, LD_BOOL, (uint8_t), SEL_I, __VA_ARGS__)
#define FOR_ANY(G, ...) FOR_FLT(G, __VA_ARGS__) FOR_INT(G, __VA_ARGS__)
#define FOR_ALL(G, ...) FOR_ANY(G, __VA_ARGS__) FOR_BOOL(G, __VA_ARGS__)
#define FOR_CLASS_ANY FOR_ANY
#define FOR_CLASS_FLT FOR_FLT
#define FOR_CLASS_INT FOR_INT

/* ---- loop bodies ---- */
#define PARAMS_PROLOGUE                                                                            \
    const double p0 = pv ? pv[0] : 0.0, p1 = pv ? pv[1] : 0.0;                                     \
    (void)p0;                                                                                      \
    (void)p1;

/* Hand-vectorized float32 loops (elemw_vec.h) that the generated loops hand over to, where
 * those were scalar libm calls; the index and the dtype test are constants, so every other
 * loop compiles without the test. */
static const ty_elemw_loop vec_f32[TY_OP_COUNT] = {
    [TY_OP_EXP] = ty_ew_exp_f32,
    [TY_OP_SIGMOID] = ty_ew_sigmoid_f32,
    [TY_OP_SILU] = ty_ew_silu_f32,
    [TY_OP_TANH] = ty_ew_tanh_f32,
    [TY_OP_LOG] = ty_ew_log_f32,
};

#define GEN_UNARY(DT, S, C, LD, ST, SEL, OP, FE, IE)                                               \
    EW_LOOP(u_##OP##_##DT)                                                                         \
    {                                                                                              \
        typedef C CT;                                                                              \
        if (DT == TY_FLOAT32 && vec_f32[TY_OP_##OP]) {                                             \
            vec_f32[TY_OP_##OP](n, p, s, pv);                                                      \
            return;                                                                                \
        }                                                                                          \
        PARAMS_PROLOGUE                                                                            \
        S *o = (S *)p[0];                                                                          \
        const S *xs = (const S *)p[1];                                                             \
        int64_t so = s[0], sx = s[1];                                                              \
        if (so == 1 && sx == 1) {                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                CT x = LD(xs[i]);                                                                  \
                o[i] = ST(SEL(FE, IE));                                                            \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                CT x = LD(xs[i * sx]);                                                             \
                o[i * so] = ST(SEL(FE, IE));                                                       \
            }                                                                                      \
        }                                                                                          \
    }

/* Binary loops specialise the common layouts so the compiler vectorises them. */
#define GEN_BINLIKE(NAME, DT, S, OS, C, LD, OST, EXPRV)                                            \
    EW_LOOP(NAME)                                                                                  \
    {                                                                                              \
        typedef C CT;                                                                              \
        PARAMS_PROLOGUE                                                                            \
        OS *o = (OS *)p[0];                                                                        \
        const S *xs = (const S *)p[1], *ys = (const S *)p[2];                                      \
        int64_t so = s[0], sx = s[1], sy = s[2];                                                   \
        if (so == 1 && sx == 1 && sy == 1) {                                                       \
            for (int64_t i = 0; i < n; i++) {                                                      \
                CT x = LD(xs[i]), y = LD(ys[i]);                                                   \
                o[i] = OST(EXPRV);                                                                 \
            }                                                                                      \
        } else if (so == 1 && sx == 1 && sy == 0) {                                                \
            CT y = LD(ys[0]);                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                CT x = LD(xs[i]);                                                                  \
                o[i] = OST(EXPRV);                                                                 \
            }                                                                                      \
        } else if (so == 1 && sx == 0 && sy == 1) {                                                \
            CT x = LD(xs[0]);                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                CT y = LD(ys[i]);                                                                  \
                o[i] = OST(EXPRV);                                                                 \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                CT x = LD(xs[i * sx]), y = LD(ys[i * sy]);                                         \
                o[i * so] = OST(EXPRV);                                                            \
            }                                                                                      \
        }                                                                                          \
    }

#define GEN_BINARY(DT, S, C, LD, ST, SEL, OP, FE, IE)                                              \
    GEN_BINLIKE(b_##OP##_##DT, DT, S, S, C, LD, ST, SEL(FE, IE))
#define GEN_CMP(DT, S, C, LD, ST, SEL, OP, E) GEN_BINLIKE(b_##OP##_##DT, DT, S, uint8_t, C, LD, (uint8_t), E)
#define GEN_LOGIC(DT, S, C, LD, ST, SEL, OP, E) GEN_BINLIKE(b_##OP##_##DT, DT, S, uint8_t, C, LD, (uint8_t), E)
#define GEN_PRED(DT, S, C, LD, ST, SEL, OP, FE, IE)                                                \
    static void u_##OP##_##DT(int64_t n, char *const *p, const int64_t *s, const double *pv)       \
    {                                                                                              \
        typedef C CT;                                                                              \
        PARAMS_PROLOGUE                                                                            \
        uint8_t *o = (uint8_t *)p[0];                                                              \
        const S *xs = (const S *)p[1];                                                             \
        for (int64_t i = 0; i < n; i++) {                                                          \
            CT x = LD(xs[i * s[1]]);                                                               \
            (void)x;                                                                               \
            o[i * s[0]] = (uint8_t)(SEL(FE, IE));                                                  \
        }                                                                                          \
    }

#define TY_UNARY(OP, CLS, FE, IE) FOR_CLASS_##CLS(GEN_UNARY, OP, FE, IE)
#define TY_BINARY(OP, CLS, FE, IE) FOR_CLASS_##CLS(GEN_BINARY, OP, FE, IE)
#define TY_CMP(OP, E) FOR_ALL(GEN_CMP, OP, E)
#define TY_LOGIC(OP, E) FOR_BOOL(GEN_LOGIC, OP, E)
#define TY_PRED(OP, FE, IE) FOR_ALL(GEN_PRED, OP, FE, IE)
#include "kernels/scalar.def"
#undef TY_UNARY
#undef TY_BINARY
#undef TY_CMP
#undef TY_LOGIC
#undef TY_PRED

/* ---- the table ---- */
#define ENTRY_U(DT, S, C, LD, ST, SEL, OP, ...) [DT] = u_##OP##_##DT,
#define ENTRY_B(DT, S, C, LD, ST, SEL, OP, ...) [DT] = b_##OP##_##DT,
#define TY_UNARY(OP, CLS, FE, IE)                                                                  \
    [TY_OP_##OP] = {TY_EW_UNARY, TY_EWC_##CLS, {FOR_CLASS_##CLS(ENTRY_U, OP)}},
#define TY_BINARY(OP, CLS, FE, IE)                                                                 \
    [TY_OP_##OP] = {TY_EW_BINARY, TY_EWC_##CLS, {FOR_CLASS_##CLS(ENTRY_B, OP)}},
#define TY_CMP(OP, E) [TY_OP_##OP] = {TY_EW_CMP, TY_EWC_ANY, {FOR_ALL(ENTRY_B, OP)}},
#define TY_LOGIC(OP, E) [TY_OP_##OP] = {TY_EW_LOGIC, TY_EWC_ANY, {FOR_BOOL(ENTRY_B, OP)}},
#define TY_PRED(OP, FE, IE) [TY_OP_##OP] = {TY_EW_PRED, TY_EWC_ANY, {FOR_ALL(ENTRY_U, OP)}},
const ty_elemw_info ty_elemw_table[TY_OP_COUNT] = {
#include "kernels/scalar.def"
};
#undef TY_UNARY
#undef TY_BINARY
#undef TY_CMP
#undef TY_LOGIC
#undef TY_PRED

/* ---- conversion loops: one per (from, to) pair ---- */
#define LDF_F16(v) ((double)ty_f16_to_f32(v))
#define LDF_BF16(v) ((double)ty_bf16_to_f32(v))
#define LDF_ID(v) ((double)(v))
/* G(dtype, storage, is_float, load-as-double) */
#define CONV_TYPES(G, ...)                                                                         \
    G(TY_FLOAT32, float, 1, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_FLOAT64, double, 1, LDF_ID, __VA_ARGS__)                                                  \
    G(TY_FLOAT16, uint16_t, 1, LDF_F16, __VA_ARGS__)                                               \
    G(TY_BFLOAT16, uint16_t, 1, LDF_BF16, __VA_ARGS__)                                             \
    G(TY_INT8, int8_t, 0, LDF_ID, __VA_ARGS__)                                                     \
    G(TY_UINT8, uint8_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_INT16, int16_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_INT32, int32_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_INT64, int64_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_BOOL, uint8_t, 0, LDF_ID, __VA_ARGS__)
#define CONV_TYPES2(G, ...)                                                                        \
    G(TY_FLOAT32, float, 1, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_FLOAT64, double, 1, LDF_ID, __VA_ARGS__)                                                  \
    G(TY_FLOAT16, uint16_t, 1, LDF_F16, __VA_ARGS__)                                               \
    G(TY_BFLOAT16, uint16_t, 1, LDF_BF16, __VA_ARGS__)                                             \
    G(TY_INT8, int8_t, 0, LDF_ID, __VA_ARGS__)                                                     \
    G(TY_UINT8, uint8_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_INT16, int16_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_INT32, int32_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_INT64, int64_t, 0, LDF_ID, __VA_ARGS__)                                                   \
    G(TY_BOOL, uint8_t, 0, LDF_ID, __VA_ARGS__)

/* Same-kind integer conversions go through int64 so large values stay exact. */
static inline void
conv_store(void *dst, ty_dtype to, int from_float, double d, int64_t i)
{
    if (from_float || ty_dtype_is_float(to)) {
        ty_store_f64(dst, to, from_float ? d : (double)i);
        return;
    }
    switch (to) {
    case TY_INT8: *(int8_t *)dst = (int8_t)i; break;
    case TY_UINT8: *(uint8_t *)dst = (uint8_t)i; break;
    case TY_INT16: *(int16_t *)dst = (int16_t)i; break;
    case TY_INT32: *(int32_t *)dst = (int32_t)i; break;
    case TY_INT64: *(int64_t *)dst = i; break;
    case TY_BOOL: *(uint8_t *)dst = i != 0; break;
    default: break;
    }
}

#define GEN_CONV_INNER(TO, TS, TF, TLD, FROM, FS, FF, FLD)                                         \
    static void c_##FROM##_##TO(int64_t n, char *const *p, const int64_t *s, const double *pv)     \
    {                                                                                              \
        (void)pv;                                                                                  \
        TS *o = (TS *)p[0];                                                                        \
        const FS *x = (const FS *)p[1];                                                            \
        for (int64_t k = 0; k < n; k++) {                                                          \
            FS v = x[k * s[1]];                                                                    \
            /* a float source never goes through int64 (out of range: UB; stores saturate) */    \
            int64_t iv = FROM == TY_BOOL ? (int64_t)(v != 0) : FF ? 0 : (int64_t)v;                \
            conv_store(&o[k * s[0]], TO, FF, FF ? FLD(v) : 0.0, FF ? 0 : iv);                      \
        }                                                                                          \
    }
#define GEN_CONV_ROW(FROM, FS, FF, FLD, ...) CONV_TYPES2(GEN_CONV_INNER, FROM, FS, FF, FLD)
CONV_TYPES(GEN_CONV_ROW)

#define CONV_CELL(TO, TS, TF, TLD, FROM) [TO] = c_##FROM##_##TO,
#define CONV_ROWS(FROM, FS, FF, FLD, ...) [FROM] = {CONV_TYPES2(CONV_CELL, FROM)},
static const ty_elemw_loop conv_table[TY_DTYPE_COUNT][TY_DTYPE_COUNT] = {CONV_TYPES(CONV_ROWS)};

/* Same-dtype copies move bytes; a few common casts are direct (exact in C). */
#define GEN_COPY(T)                                                                                \
    EW_LOOP(copy_##T)                                                                              \
    {                                                                                              \
        (void)pv;                                                                                  \
        T *o = (T *)p[0];                                                                          \
        const T *x = (const T *)p[1];                                                              \
        if (s[0] == 1 && s[1] == 1) {                                                              \
            memcpy(o, x, (size_t)n * sizeof(T));                                                   \
        } else if (s[0] == 1 && s[1] == 0) {                                                       \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i] = x[0];                                                                       \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i * s[0]] = x[i * s[1]];                                                         \
            }                                                                                      \
        }                                                                                          \
    }
GEN_COPY(uint8_t)
GEN_COPY(uint16_t)
GEN_COPY(uint32_t)
GEN_COPY(uint64_t)

/* A bool copy writes canonical bytes: a nonzero byte (from DLPack or a NumPy view) becomes 1. */
EW_LOOP(copy_bool)
{
    (void)pv;
    uint8_t *o = (uint8_t *)p[0];
    const uint8_t *x = (const uint8_t *)p[1];
    if (s[0] == 1 && s[1] == 1) {
        for (int64_t i = 0; i < n; i++) {
            o[i] = x[i] != 0;
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        o[i * s[0]] = x[i * s[1]] != 0;
    }
}

#define GEN_CAST(NAME, TO, FROM)                                                                   \
    static void NAME(int64_t n, char *const *p, const int64_t *s, const double *pv)                \
    {                                                                                              \
        (void)pv;                                                                                  \
        TO *o = (TO *)p[0];                                                                        \
        const FROM *x = (const FROM *)p[1];                                                        \
        for (int64_t i = 0; i < n; i++) {                                                          \
            o[i * s[0]] = (TO)x[i * s[1]];                                                         \
        }                                                                                          \
    }
GEN_CAST(cast_f32_f64, float, double)
GEN_CAST(cast_f64_f32, double, float)
GEN_CAST(cast_i32_f32, float, int32_t)
GEN_CAST(cast_i32_f64, double, int32_t)

ty_elemw_loop
ty_cpu_convert_loop(ty_dtype from, ty_dtype to)
{
    if ((unsigned)from >= TY_DTYPE_COUNT || (unsigned)to >= TY_DTYPE_COUNT) {
        return NULL;
    }
    if (from == TY_BOOL && to == TY_BOOL) {
        return copy_bool;
    }
    if (from == to) {
        switch (ty_dtype_size(from)) {
        case 1: return copy_uint8_t;
        case 2: return copy_uint16_t;
        case 4: return copy_uint32_t;
        case 8: return copy_uint64_t;
        default: break;
        }
    }
    if (from == TY_FLOAT64 && to == TY_FLOAT32) {
        return cast_f32_f64;
    }
    if (from == TY_FLOAT32 && to == TY_FLOAT64) {
        return cast_f64_f32;
    }
    if (from == TY_INT32 && to == TY_FLOAT32) {
        return cast_i32_f32;
    }
    if (from == TY_INT32 && to == TY_FLOAT64) {
        return cast_i32_f64;
    }
    return conv_table[from][to];
}

/* ---- where ---- */
#define GEN_WHERE(T)                                                                               \
    EW_LOOP(w_##T)                                                                                 \
    {                                                                                              \
        (void)pv;                                                                                  \
        T *o = (T *)p[0];                                                                          \
        const uint8_t *c = (const uint8_t *)p[1];                                                  \
        const T *x = (const T *)p[2], *y = (const T *)p[3];                                        \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i] = c[i] ? x[i] : y[i];                                                         \
            }                                                                                      \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 0) {                             \
            const T y0 = y[0];                                                                     \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i] = c[i] ? x[i] : y0;                                                           \
            }                                                                                      \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 1) {                             \
            const T x0 = x[0];                                                                     \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i] = c[i] ? x0 : y[i];                                                           \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];                             \
            }                                                                                      \
        }                                                                                          \
    }
GEN_WHERE(uint8_t)
GEN_WHERE(uint16_t)
GEN_WHERE(uint32_t)
GEN_WHERE(uint64_t)

ty_elemw_loop
ty_cpu_where_loop(size_t esize)
{
    switch (esize) {
    case 1: return w_uint8_t;
    case 2: return w_uint16_t;
    case 4: return w_uint32_t;
    case 8: return w_uint64_t;
    default: return NULL;
    }
}

/* ---- the N-d iterator ---- */
enum { MAX_OPS = 8, PAR_GRAIN = 1 << 15 };

typedef struct iter_ctx {
    int ndim; /* after coalescing; the last dim is the inner loop */
    int nops;
    int64_t shape[TY_MAX_DIMS];
    int64_t strides[MAX_OPS][TY_MAX_DIMS];
    size_t esize[MAX_OPS];
    char *data[MAX_OPS];
    ty_elemw_loop loop;
    const double *pv;
} iter_ctx;

/* Runs rows [begin, end) of the outer dimensions. */
static void
iter_rows(void *vctx, int64_t begin, int64_t end)
{
    const iter_ctx *c = vctx;
    int64_t inner = c->ndim ? c->shape[c->ndim - 1] : 1;
    int64_t s[MAX_OPS];
    char *p[MAX_OPS];
    for (int k = 0; k < c->nops; k++) {
        s[k] = c->ndim ? c->strides[k][c->ndim - 1] : 0;
    }
    for (int64_t row = begin; row < end; row++) {
        int64_t r = row;
        for (int k = 0; k < c->nops; k++) {
            p[k] = c->data[k];
        }
        for (int d = c->ndim - 2; d >= 0; d--) {
            int64_t idx = r % c->shape[d];
            r /= c->shape[d];
            for (int k = 0; k < c->nops; k++) {
                p[k] += idx * c->strides[k][d] * (int64_t)c->esize[k];
            }
        }
        c->loop(inner, p, s, c->pv);
    }
}

/* Splits one long inner dimension into chunks (ndim == 1). */
static void
iter_flat(void *vctx, int64_t begin, int64_t end)
{
    const iter_ctx *c = vctx;
    int64_t s[MAX_OPS];
    char *p[MAX_OPS];
    for (int k = 0; k < c->nops; k++) {
        s[k] = c->strides[k][0];
        p[k] = c->data[k] + begin * s[k] * (int64_t)c->esize[k];
    }
    c->loop(end - begin, p, s, c->pv);
}

static int
can_merge(const iter_ctx *c, int d)
{
    for (int k = 0; k < c->nops; k++) {
        if (c->strides[k][d] != c->strides[k][d + 1] * c->shape[d + 1]) {
            return 0;
        }
    }
    return 1;
}

static void
coalesce(iter_ctx *c)
{
    int nd = 0;
    for (int d = 0; d < c->ndim; d++) { /* drop size-1 dims */
        if (c->shape[d] != 1) {
            c->shape[nd] = c->shape[d];
            for (int k = 0; k < c->nops; k++) {
                c->strides[k][nd] = c->strides[k][d];
            }
            nd++;
        }
    }
    c->ndim = nd;
    for (int d = c->ndim - 2; d >= 0; d--) {
        if (can_merge(c, d)) {
            c->shape[d] *= c->shape[d + 1];
            for (int k = 0; k < c->nops; k++) {
                c->strides[k][d] = c->strides[k][d + 1];
            }
            for (int e = d + 1; e < c->ndim - 1; e++) {
                c->shape[e] = c->shape[e + 1];
                for (int k = 0; k < c->nops; k++) {
                    c->strides[k][e] = c->strides[k][e + 1];
                }
            }
            c->ndim--;
        }
    }
}

void
ty_cpu_iterate(int ndim, const int64_t *shape, int nops, char *const *data,
               const int64_t (*strides)[TY_MAX_DIMS], const size_t *esize, ty_elemw_loop loop,
               const double *pv)
{
    iter_ctx c;
    int64_t total = 1;
    c.ndim = ndim;
    c.nops = nops;
    c.loop = loop;
    c.pv = pv;
    for (int d = 0; d < ndim; d++) {
        c.shape[d] = shape[d];
        total *= shape[d];
    }
    if (total == 0) {
        return;
    }
    for (int k = 0; k < nops; k++) {
        c.data[k] = data[k];
        c.esize[k] = esize[k];
        for (int d = 0; d < ndim; d++) {
            c.strides[k][d] = strides[k][d];
        }
    }
    coalesce(&c);
    if (c.ndim <= 1) {
        if (c.ndim == 0) {
            c.ndim = 1;
            c.shape[0] = 1;
            for (int k = 0; k < nops; k++) {
                c.strides[k][0] = 0;
            }
        }
        ty_parallel_for(c.shape[0], PAR_GRAIN, iter_flat, &c);
        return;
    }
    int64_t inner = c.shape[c.ndim - 1], rows = total / inner;
    int64_t grain = PAR_GRAIN / inner + 1;
    ty_parallel_for(rows, grain, iter_rows, &c);
}
