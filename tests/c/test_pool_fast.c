/* The 2x2 stride-2 max-pool kernels (portable C, AVX2, AVX-512) against the generic path,
 * bitwise: ties, NaNs with distinct payloads, signed zeros, infinities, odd sizes, row tails.
 * The generic reference is adaptive pooling of the covered top-left 2*OH x 2*OW block, whose
 * windows are the same 2x2 ones. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/pool.h"

static uint32_t
rnd_u32(void)
{
    return (uint32_t)ty_test_rand_bits();
}

/* Small integers (many ties), signed zeros, infinities and NaNs whose payloads tell which
 * one was picked. */
static double
tricky(int nan_ok)
{
    uint32_t r = rnd_u32() % 100;
    if (r < 6) {
        return (r & 1) ? -0.0 : 0.0;
    }
    if (r < 9) {
        return (r & 1) ? INFINITY : -INFINITY;
    }
    if (r < 13 && nan_ok) {
        return -NAN; /* payloads are set by the callers */
    }
    return (double)((int)(rnd_u32() % 5) - 2);
}

#define DEFINE_FILL(T, SFX, UT, QNAN)                                                              \
    static void fill_##SFX(T *p, int64_t n, int nan_ok)                                            \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++) {                                                          \
            p[i] = (T)tricky(nan_ok);                                                              \
            if (isnan(p[i])) {                                                                     \
                UT bits = (UT)QNAN | (UT)(rnd_u32() % 1000 + 1);                                   \
                if (rnd_u32() & 1) {                                                               \
                    bits |= (UT)1 << (8 * sizeof(UT) - 1);                                         \
                }                                                                                  \
                memcpy(&p[i], &bits, sizeof bits);                                                 \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_FILL(float, f32, uint32_t, 0x7FC00000u)
DEFINE_FILL(double, f64, uint64_t, 0x7FF8000000000000ull)

/* Index (0..3, row-major) of the window's pick: the later value wins only if greater, or NaN
 * against a number. */
#define DEFINE_PICK(T, SFX)                                                                        \
    static int pick_##SFX(const T *r0, const T *r1)                                                \
    {                                                                                              \
        T v[4] = {r0[0], r0[1], r1[0], r1[1]};                                                     \
        int k = 0;                                                                                 \
        for (int i = 1; i < 4; i++) {                                                              \
            if (v[i] > v[k] || (isnan(v[i]) && !isnan(v[k]))) {                                    \
                k = i;                                                                             \
            }                                                                                      \
        }                                                                                          \
        return k;                                                                                  \
    }

DEFINE_PICK(float, f32)
DEFINE_PICK(double, f64)

typedef struct fast_case {
    int64_t planes, H, W;
} fast_case;

enum { GUARD = 256 }; /* bytes of 0x5A after an output buffer */

static void *
guarded(size_t bytes)
{
    unsigned char *p = malloc(bytes + GUARD);
    memset(p, 0x5A, bytes + GUARD);
    return p;
}

static int
guard_intact(const void *p, size_t bytes)
{
    const unsigned char *g = (const unsigned char *)p + bytes;
    for (int i = 0; i < GUARD; i++) {
        if (g[i] != 0x5A) {
            return 0;
        }
    }
    return 1;
}

/* References of one case: y and the stored dx (generic path), dx added onto pre (oracle). */
#define DEFINE_REFS(T, SFX)                                                                        \
    static void crop_##SFX(const fast_case *fc, const T *x, T *xc, int64_t OH, int64_t OW,         \
                           int back)                                                               \
    {                                                                                              \
        for (int64_t p = 0; p < fc->planes; p++) {                                                 \
            for (int64_t h = 0; h < 2 * OH; h++) {                                                 \
                for (int64_t w = 0; w < 2 * OW; w++) {                                             \
                    int64_t i = (p * fc->H + h) * fc->W + w, j = (p * 2 * OH + h) * 2 * OW + w;    \
                    if (back) {                                                                    \
                        ((T *)x)[i] = xc[j];                                                       \
                    } else {                                                                       \
                        xc[j] = x[i];                                                              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void generic_##SFX(const fast_case *fc, const T *x, const T *dy, T *y, T *dx)           \
    {                                                                                              \
        int64_t OH = fc->H / 2, OW = fc->W / 2, n = fc->planes * 4 * OH * OW;                      \
        T *xc = malloc(sizeof(T) * (size_t)n), *dxc = calloc((size_t)n, sizeof(T));                \
        crop_##SFX(fc, x, xc, OH, OW, 0);                                                          \
        ty_adaptive_pool2d_##SFX(xc, fc->planes, 2 * OH, 2 * OW, OH, OW, 1, y);                    \
        ty_adaptive_pool2d_bwd_##SFX(xc, dy, fc->planes, 2 * OH, 2 * OW, OH, OW, 1, dxc);          \
        memset(dx, 0, sizeof(T) * (size_t)(fc->planes * fc->H * fc->W));                           \
        crop_##SFX(fc, dx, dxc, OH, OW, 1);                                                        \
        free(xc);                                                                                  \
        free(dxc);                                                                                 \
    }                                                                                              \
                                                                                                   \
    /* What the old 2x2 kernel did: every cell of a window gets pre + (picked ? dy : 0). */        \
    static void added_##SFX(const fast_case *fc, const T *x, const T *dy, T *dx)                   \
    {                                                                                              \
        int64_t OH = fc->H / 2, OW = fc->W / 2, W = fc->W;                                         \
        for (int64_t p = 0; p < fc->planes; p++) {                                                 \
            for (int64_t oh = 0; oh < OH; oh++) {                                                  \
                for (int64_t ow = 0; ow < OW; ow++) {                                              \
                    int64_t i0 = (p * fc->H + 2 * oh) * W + 2 * ow;                                \
                    int k = pick_##SFX(x + i0, x + i0 + W);                                        \
                    T v = dy[(p * OH + oh) * OW + ow], z = 0;                                      \
                    for (int c = 0; c < 4; c++) {                                                  \
                        dx[i0 + (c / 2) * W + c % 2] += c == k ? v : z;                            \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_REFS(float, f32)
DEFINE_REFS(double, f64)

/* One case under the ISA in use; the bits that differ: 1 forward, 2 backward stored onto
 * garbage, 4 backward added onto pre, 8 a write past the end of y or dx. */
#define DEFINE_RUN(T, SFX)                                                                         \
    static unsigned run_case_##SFX(const fast_case *fc)                                            \
    {                                                                                              \
        int64_t P = fc->planes, H = fc->H, W = fc->W, OH = H / 2, OW = W / 2;                      \
        size_t nx = (size_t)(P * H * W), ny = (size_t)(P * OH * OW);                               \
        T *x = malloc(sizeof(T) * nx), *dy = malloc(sizeof(T) * ny);                               \
        T *pre = malloc(sizeof(T) * nx);                                                           \
        T *y = guarded(sizeof(T) * ny), *yref = malloc(sizeof(T) * ny);                            \
        T *dx = guarded(sizeof(T) * nx), *dxref = malloc(sizeof(T) * nx);                          \
        fill_##SFX(x, (int64_t)nx, 1);                                                             \
        fill_##SFX(dy, (int64_t)ny, 1);                                                            \
        fill_##SFX(pre, (int64_t)nx, 0); /* NaN + NaN keeps either payload: no NaN in pre */       \
        generic_##SFX(fc, x, dy, yref, dxref);                                                     \
        memset(y, 0x5A, sizeof(T) * ny);                                                           \
        ty_maxpool2d_##SFX(x, P, H, W, 2, 2, 2, 2, 0, 0, OH, OW, y);                               \
        unsigned bad = (unsigned)(memcmp(y, yref, sizeof(T) * ny) != 0);                           \
        memset(dx, 0x5A, sizeof(T) * nx);                                                          \
        ty_maxpool2d_2x2_bwd_##SFX(x, dy, P, H, W, OH, OW, dx);                                    \
        bad |= (unsigned)(memcmp(dx, dxref, sizeof(T) * nx) != 0) << 1;                            \
        memcpy(dxref, pre, sizeof(T) * nx);                                                        \
        added_##SFX(fc, x, dy, dxref);                                                             \
        memcpy(dx, pre, sizeof(T) * nx);                                                           \
        ty_maxpool2d_bwd_##SFX(x, dy, P, H, W, 2, 2, 2, 2, 0, 0, OH, OW, dx);                      \
        bad |= (unsigned)(memcmp(dx, dxref, sizeof(T) * nx) != 0) << 2;                            \
        int intact = guard_intact(y, sizeof(T) * ny) && guard_intact(dx, sizeof(T) * nx);          \
        bad |= (unsigned)!intact << 3;                                                             \
        free(x);                                                                                   \
        free(dy);                                                                                  \
        free(pre);                                                                                 \
        free(y);                                                                                   \
        free(yref);                                                                                \
        free(dx);                                                                                  \
        free(dxref);                                                                               \
        return bad;                                                                                \
    }

DEFINE_RUN(float, f32)
DEFINE_RUN(double, f64)

static const fast_case fast_cases[] = {
    {1, 2, 2},  {3, 2, 3},  {2, 3, 2},   {5, 5, 5},     {3, 4, 31},  {2, 7, 32},  {3, 6, 33},
    {2, 3, 34}, {4, 4, 35}, {2, 5, 63},  {1, 4, 64},    {2, 3, 65},  {3, 9, 14},  {2, 8, 15},
    {2, 2, 16}, {2, 2, 17}, {70, 28, 28}, {130, 14, 14}, {3, 29, 29}, {2, 6, 100}, {1, 3, 130},
};

TEST(maxpool2d_2x2_fast_paths_match_generic_bitwise)
{
    int threads = ty_get_num_threads();
    for (ty_isa isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_pool_set_isa(isa) != isa) {
            continue; /* the CPU cannot run it */
        }
        for (int t = 1; t <= 2; t++) {
            CHECK_OK(ty_set_num_threads(t));
            for (size_t i = 0; i < sizeof fast_cases / sizeof fast_cases[0]; i++) {
                const fast_case *fc = &fast_cases[i];
                unsigned bad32 = run_case_f32(fc), bad64 = run_case_f64(fc);
                if (bad32 || bad64) {
                    fprintf(stderr, "  isa %d, %d threads, %lld x %lld x %lld: differs %u / %u\n",
                            isa, t, (long long)fc->planes, (long long)fc->H, (long long)fc->W,
                            bad32, bad64);
                }
                CHECK(!bad32 && !bad64);
            }
        }
    }
    ty_pool_set_isa(TY_ISA_AUTO);
    CHECK_OK(ty_set_num_threads(threads));
}

TEST(maxpool2d_2x2_set_isa_falls_back)
{
    ty_isa best = ty_pool_set_isa(TY_ISA_AUTO);
    CHECK(best >= TY_ISA_GENERIC && best <= TY_ISA_AVX512);
    CHECK(ty_pool_set_isa(TY_ISA_GENERIC) == TY_ISA_GENERIC);
    CHECK(ty_pool_set_isa(99) == best);
    CHECK(ty_pool_set_isa(-1) == best);
}

/* ---- strided max pooling (the separable path) against a row-major scan, bitwise ---- */

typedef struct sep_case {
    int64_t planes, H, W, kh, kw, sh, sw, ph, pw;
} sep_case;

#define DEFINE_SEP_CHECK(T, SFX)                                                                   \
    /* The first maximum in row-major window order (argmax_'s rule), -inf for no cell. */        \
    static T scan_##SFX(const T *plane, const sep_case *k, int64_t oh, int64_t ow)                 \
    {                                                                                              \
        T m = (T)-INFINITY;                                                                        \
        int any = 0;                                                                               \
        for (int64_t i = 0; i < k->kh; i++) {                                                      \
            for (int64_t j = 0; j < k->kw; j++) {                                                  \
                int64_t h = oh * k->sh - k->ph + i, w = ow * k->sw - k->pw + j;                    \
                if (h < 0 || h >= k->H || w < 0 || w >= k->W) {                                    \
                    continue;                                                                      \
                }                                                                                  \
                T v = plane[h * k->W + w];                                                         \
                if (!any || v > m || (isnan(v) && !isnan(m))) {                                    \
                    m = v;                                                                         \
                    any = 1;                                                                       \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return m;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* nans: 0 none (the kernels' max_ps rows), 1 many, 2 two in the data (rows of both kinds     \
     * in one window), 3 in the last column only (read by a kernel's last step alone). */        \
    static int sep_ok_##SFX(const sep_case *k, int nans)                                           \
    {                                                                                              \
        int64_t OH = (k->H + 2 * k->ph - k->kh) / k->sh + 1;                                       \
        int64_t OW = (k->W + 2 * k->pw - k->kw) / k->sw + 1;                                       \
        size_t nx = (size_t)(k->planes * k->H * k->W), ny = (size_t)(k->planes * OH * OW);         \
        T *x = malloc(sizeof(T) * nx), *y = guarded(sizeof(T) * ny), *ref = malloc(sizeof(T) * ny); \
        fill_##SFX(x, (int64_t)nx, nans == 1);                                                     \
        if (nans == 2) {                                                                           \
            x[nx / 3] = (T)NAN;                                                                    \
            x[2 * nx / 3] = -(T)NAN;                                                               \
        }                                                                                          \
        for (int64_t h = 0; nans == 3 && h < k->H; h += 2) {                                       \
            x[h * k->W + k->W - 1] = (T)NAN;                                                       \
        }                                                                                          \
        for (int64_t p = 0; p < k->planes; p++) {                                                  \
            for (int64_t o = 0; o < OH * OW; o++) {                                                \
                ref[p * OH * OW + o] = scan_##SFX(x + p * k->H * k->W, k, o / OW, o % OW);         \
            }                                                                                      \
        }                                                                                          \
        ty_maxpool2d_##SFX(x, k->planes, k->H, k->W, k->kh, k->kw, k->sh, k->sw, k->ph, k->pw, OH, \
                           OW, y);                                                                 \
        int ok = !memcmp(y, ref, sizeof(T) * ny) && guard_intact(y, sizeof(T) * ny);               \
        free(x);                                                                                   \
        free(y);                                                                                   \
        free(ref);                                                                                 \
        return ok;                                                                                 \
    }

DEFINE_SEP_CHECK(float, f32)
DEFINE_SEP_CHECK(double, f64)

/* Every ISA (the 3-wide stride-2 column kernels of AVX2 / AVX-512, the separable C loops) and
 * both thread counts: widths around the vector tails (OW of 7, 8, 9, 15, 16, 17, 32, 33), odd and
 * even sizes, padding 0 / 1 / 2, window rows of 1 to 5, row strides 1 to 3; planes with no
 * NaN, many, and two. */
TEST(maxpool2d_strided_matches_row_major_scan_bitwise)
{
    static const sep_case cases[] = {
        {1, 7, 9, 3, 3, 2, 2, 1, 1},    {3, 14, 14, 3, 3, 2, 2, 1, 1}, {2, 12, 11, 3, 3, 1, 1, 1, 1},
        {1, 8, 8, 2, 2, 1, 1, 0, 0},    {2, 10, 13, 3, 3, 3, 3, 0, 0}, {1, 5, 5, 5, 5, 2, 2, 2, 2},
        {1, 9, 20, 2, 2, 3, 3, 1, 1},   {1, 4, 6, 1, 1, 1, 1, 0, 0},   {2, 9, 10, 3, 2, 2, 1, 1, 0},
        {1, 33, 70, 3, 3, 2, 2, 1, 1},  {1, 3, 3, 3, 3, 2, 2, 1, 1},   {2, 2, 40, 2, 4, 1, 3, 1, 2},
        {2, 112, 112, 3, 3, 2, 2, 1, 1}, {1, 15, 15, 3, 3, 2, 2, 0, 0}, {1, 16, 16, 3, 3, 2, 2, 1, 1},
        {1, 17, 17, 3, 3, 2, 2, 0, 0},  {1, 18, 32, 3, 3, 2, 2, 1, 1}, {1, 11, 34, 3, 3, 2, 2, 1, 1},
        {1, 9, 35, 3, 3, 2, 2, 0, 0},   {1, 6, 66, 3, 3, 2, 2, 1, 1},  {1, 13, 31, 3, 3, 1, 2, 1, 1},
        {1, 12, 29, 5, 3, 3, 2, 2, 1},  {1, 7, 19, 1, 3, 1, 2, 0, 2},  {2, 5, 2, 3, 3, 2, 2, 1, 1},
        {1, 1, 1, 3, 3, 2, 2, 1, 1},    {1, 20, 17, 2, 2, 2, 2, 1, 1}, {1, 10, 11, 3, 3, 1, 1, 0, 0},
        {1, 9, 33, 3, 3, 2, 2, 0, 0},   {1, 5, 65, 3, 3, 2, 2, 0, 0},  {1, 4, 17, 3, 3, 2, 2, 0, 0},
    };
    int threads = ty_get_num_threads();
    for (ty_isa isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_pool_set_isa(isa) != isa) {
            continue;
        }
        for (int t = 1; t <= 2; t++) {
            CHECK_OK(ty_set_num_threads(t));
            for (size_t i = 0; i < sizeof cases / sizeof cases[0] * 4; i++) {
                const sep_case *k = &cases[i / 4];
                int nans = (int)(i % 4), ok32 = sep_ok_f32(k, nans), ok64 = sep_ok_f64(k, nans);
                if (!ok32 || !ok64) {
                    fprintf(stderr, "  isa %d, case %zu, nans %d, %d threads: f32 %s, f64 %s\n",
                            isa, i / 4, nans, t, ok32 ? "ok" : "differs", ok64 ? "ok" : "differs");
                }
                CHECK(ok32 && ok64);
            }
        }
    }
    ty_pool_set_isa(TY_ISA_AUTO);
    CHECK_OK(ty_set_num_threads(threads));
}

/* ---- global average pooling: the 16-plane AVX-512 path against the portable loop ---- */

TEST(global_avg_pool_paths_match_bitwise)
{
    static const int64_t shapes[][3] = {{35, 7, 7}, {16, 1, 1}, {40, 14, 14}, {17, 3, 5}};
    int threads = ty_get_num_threads();
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t P = shapes[i][0], H = shapes[i][1], W = shapes[i][2];
        float *x = malloc(sizeof(float) * (size_t)(P * H * W));
        float *ref = malloc(sizeof(float) * (size_t)(2 * P)), *y = guarded(sizeof(float) * (size_t)P);
        for (int64_t k = 0; k < P * H * W; k++) {
            x[k] = (float)tricky(0) + (float)(rnd_u32() % 1000) / 997.0f; /* inexact sums */
        }
        ty_pool_set_isa(TY_ISA_GENERIC);
        CHECK_OK(ty_set_num_threads(1));
        ty_adaptive_pool2d_f32(x, P, H, W, 1, 1, 0, ref);
        ty_avgpool2d_f32(x, P, H, W, H, W, 1, 1, 0, 0, 1, 1, 1, ref + P);
        CHECK(!memcmp(ref, ref + P, sizeof(float) * (size_t)P)); /* one sum, two entry points */
        for (ty_isa isa = TY_ISA_AVX2; isa <= TY_ISA_AVX512; isa++) {
            if (ty_pool_set_isa(isa) != isa) {
                continue;
            }
            for (int t = 1; t <= 2; t++) {
                CHECK_OK(ty_set_num_threads(t));
                ty_adaptive_pool2d_f32(x, P, H, W, 1, 1, 0, y);
                CHECK(!memcmp(y, ref, sizeof(float) * (size_t)P));
                ty_avgpool2d_f32(x, P, H, W, H, W, 1, 1, 0, 0, 1, 1, 0, y);
                CHECK(!memcmp(y, ref, sizeof(float) * (size_t)P));
                CHECK(guard_intact(y, sizeof(float) * (size_t)P));
            }
        }
        free(x);
        free(ref);
        free(y);
    }
    ty_pool_set_isa(TY_ISA_AUTO);
    CHECK_OK(ty_set_num_threads(threads));
}
