/* Vectorized float32 exp, sigmoid, silu, tanh and log (elemw_vec.h). */
#include "kernels/cpu/elemw_vec.h"

#include "kernels/cpu/vmath.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EWV_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#endif

typedef enum ewv_kind { EWV_EXP, EWV_SIGMOID, EWV_SILU, EWV_TANH, EWV_LOG } ewv_kind;

/* Elements per gathered block of a strided call: the contiguous kernels run on it. */
enum { GATHER = 64 };

static ty_isa_override isa_forced;

ty_isa
ty_ew_vec_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

static inline float
apply_scalar(float x, ewv_kind kind)
{
    switch (kind) {
    case EWV_EXP: return ty_vexp_scalar(x);
    case EWV_SIGMOID: return 1.0f / (1.0f + ty_vexp_scalar(-x));
    case EWV_SILU: return x / (1.0f + ty_vexp_scalar(-x));
    case EWV_TANH: return ty_vtanh_scalar(x);
    default: return ty_vlog_scalar(x);
    }
}

static void
run_generic(const float *x, float *y, int64_t n, ewv_kind kind)
{
    for (int64_t i = 0; i < n; i++) {
        y[i] = apply_scalar(x[i], kind);
    }
}

#ifdef EWV_X86
AVX512 static inline __m512
apply512(__m512 x, ewv_kind kind)
{
    if (kind == EWV_EXP || kind == EWV_TANH || kind == EWV_LOG) {
        return kind == EWV_EXP ? ty_vexp512(x) : kind == EWV_TANH ? ty_vtanh512(x) : ty_vlog512(x);
    }
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 neg = _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)));
    __m512 d = _mm512_add_ps(one, ty_vexp512(neg));
    return _mm512_div_ps(kind == EWV_SIGMOID ? one : x, d);
}

AVX512 static void
run512(const float *x, float *y, int64_t n, ewv_kind kind)
{
    int64_t full = n & ~(int64_t)15;
    for (int64_t i = 0; i < full; i += 16) {
        _mm512_storeu_ps(y + i, apply512(_mm512_loadu_ps(x + i), kind));
    }
    if (full < n) {
        __mmask16 m = (__mmask16)((1u << (n - full)) - 1);
        _mm512_mask_storeu_ps(y + full, m, apply512(_mm512_maskz_loadu_ps(m, x + full), kind));
    }
}

AVX2 static inline __m256
apply256(__m256 x, ewv_kind kind)
{
    if (kind == EWV_EXP || kind == EWV_TANH || kind == EWV_LOG) {
        return kind == EWV_EXP ? ty_vexp256(x) : kind == EWV_TANH ? ty_vtanh256(x) : ty_vlog256(x);
    }
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 d = _mm256_add_ps(one, ty_vexp256(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f))));
    return _mm256_div_ps(kind == EWV_SIGMOID ? one : x, d);
}

AVX2 static void
run256(const float *x, float *y, int64_t n, ewv_kind kind)
{
    int64_t full = n & ~(int64_t)7;
    for (int64_t i = 0; i < full; i += 8) {
        _mm256_storeu_ps(y + i, apply256(_mm256_loadu_ps(x + i), kind));
    }
    if (full < n) {
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - full)), lane);
        _mm256_maskstore_ps(y + full, m, apply256(_mm256_maskload_ps(x + full, m), kind));
    }
}
#endif

/* y[0, n) = f(x[0, n)), both contiguous (y may be x) */
static void
run(const float *x, float *y, int64_t n, ewv_kind kind)
{
#ifdef EWV_X86
    ty_isa isa = ty_isa_override_get(&isa_forced);
    if (isa >= TY_ISA_AVX512) {
        run512(x, y, n, kind);
        return;
    }
    if (isa >= TY_ISA_AVX2) {
        run256(x, y, n, kind);
        return;
    }
#endif
    run_generic(x, y, n, kind);
}

/* A strided call goes through a local block per GATHER elements: the same per-element math. */
static void
loop(int64_t n, char *const *p, const int64_t *s, ewv_kind kind)
{
    float *o = (float *)p[0];
    const float *x = (const float *)p[1];
    if (s[0] == 1 && s[1] == 1) {
        run(x, o, n, kind);
        return;
    }
    float buf[GATHER];
    for (int64_t i0 = 0; i0 < n; i0 += GATHER) {
        int64_t len = n - i0 < GATHER ? n - i0 : GATHER;
        for (int64_t i = 0; i < len; i++) {
            buf[i] = x[(i0 + i) * s[1]];
        }
        run(buf, buf, len, kind);
        for (int64_t i = 0; i < len; i++) {
            o[(i0 + i) * s[0]] = buf[i];
        }
    }
}

void
ty_ew_exp_f32(int64_t n, char *const *p, const int64_t *s, const double *pv)
{
    (void)pv;
    loop(n, p, s, EWV_EXP);
}

void
ty_ew_sigmoid_f32(int64_t n, char *const *p, const int64_t *s, const double *pv)
{
    (void)pv;
    loop(n, p, s, EWV_SIGMOID);
}

void
ty_ew_silu_f32(int64_t n, char *const *p, const int64_t *s, const double *pv)
{
    (void)pv;
    loop(n, p, s, EWV_SILU);
}

void
ty_ew_tanh_f32(int64_t n, char *const *p, const int64_t *s, const double *pv)
{
    (void)pv;
    loop(n, p, s, EWV_TANH);
}

void
ty_ew_log_f32(int64_t n, char *const *p, const int64_t *s, const double *pv)
{
    (void)pv;
    loop(n, p, s, EWV_LOG);
}
