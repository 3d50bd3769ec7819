/* Winograd F(m x m, 3 x 3) for m = 2 and m = 4, with the transforms of Lavin & Gray (2015):
 * an alpha x alpha input tile d (alpha = m + 2) gives an m x m output tile
 *     Y = A^T [(G g G^T) . (B^T d B)] A.
 * F(2,3):  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *          G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *          A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4,3):  B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *                 0 4 0 -5 0 1]
 *          G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6;
 *                 0 0 1]
 *          A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Each product with a transform matrix is written out as one C expression (zero entries
 * skipped), so every element is a fixed sequence of operations.
 *
 * Layouts (xi = alpha*i + j indexes the transformed tile, t = th*tW + tw the output tile, n the
 * image within a chunk of nb images, P = nb*T):
 *   U[xi][oc][c] = (G g G^T)[i][j]   V[xi][c][n*T + t] = (B^T d B)[i][j]   M[xi] = U[xi] @ V[xi]
 * The weights are transformed once per call; the images go through in chunks whose size
 * depends on the shapes only, so the GEMMs are (OC x C) @ (C x P) with P of a few hundred
 * even when an image has few tiles. Where all the images fit one chunk and U is large, U is
 * made, multiplied and dropped block by block of output channels instead (fused_range).
 * The input and output transforms are separable: a pass along each input row over a whole
 * row of tiles, then a pass across the alpha rows, with the tiles of a group of images in the
 * vector lanes (group_images). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/conv_winograd.h"
#include "kernels/cpu/gemm.h"

enum { MAX_ALPHA = 6 };

/* ---- the 1-d transforms, one function per (variant, matrix) ----
 * in: alpha (or 3) vectors of n values at stride `is`; out: vectors at stride `os`. Each
 * vector gets its own restrict pointer, or the compiler cannot prove the streams apart and
 * leaves the loops scalar. */

#define R_ const float *restrict
#define W_ float *restrict

TY_CLONES static void
bt2_(R_ d0, R_ d1, R_ d2, R_ d3, W_ v0, W_ v1, W_ v2, W_ v3, int64_t n)
{
    for (int64_t t = 0; t < n; t++) {
        v0[t] = d0[t] - d2[t];
        v1[t] = d1[t] + d2[t];
        v2[t] = d2[t] - d1[t];
        v3[t] = d1[t] - d3[t];
    }
}

static void
bt2(const float *d, int64_t is, float *v, int64_t os, int64_t n)
{
    bt2_(d, d + is, d + 2 * is, d + 3 * is, v, v + os, v + 2 * os, v + 3 * os, n);
}

TY_CLONES static void
bt4_(R_ d0, R_ d1, R_ d2, R_ d3, R_ d4, R_ d5, W_ v0, W_ v1, W_ v2, W_ v3, W_ v4, W_ v5,
     int64_t n)
{
    for (int64_t t = 0; t < n; t++) {
        v0[t] = 4.0f * d0[t] - 5.0f * d2[t] + d4[t];
        v1[t] = -4.0f * d1[t] - 4.0f * d2[t] + d3[t] + d4[t];
        v2[t] = 4.0f * d1[t] - 4.0f * d2[t] - d3[t] + d4[t];
        v3[t] = -2.0f * d1[t] - d2[t] + 2.0f * d3[t] + d4[t];
        v4[t] = 2.0f * d1[t] - d2[t] - 2.0f * d3[t] + d4[t];
        v5[t] = 4.0f * d1[t] - 5.0f * d3[t] + d5[t];
    }
}

static void
bt4(const float *d, int64_t is, float *v, int64_t os, int64_t n)
{
    bt4_(d, d + is, d + 2 * is, d + 3 * is, d + 4 * is, d + 5 * is, v, v + os, v + 2 * os,
         v + 3 * os, v + 4 * os, v + 5 * os, n);
}

TY_CLONES static void
g2_(R_ g0, R_ g1, R_ g2, W_ u0, W_ u1, W_ u2, W_ u3, int64_t n)
{
    for (int64_t t = 0; t < n; t++) {
        u0[t] = g0[t];
        u1[t] = 0.5f * (g0[t] + g1[t] + g2[t]);
        u2[t] = 0.5f * (g0[t] - g1[t] + g2[t]);
        u3[t] = g2[t];
    }
}

static void
g2(const float *g, int64_t is, float *u, int64_t os, int64_t n)
{
    g2_(g, g + is, g + 2 * is, u, u + os, u + 2 * os, u + 3 * os, n);
}

TY_CLONES static void
g4_(R_ g0, R_ g1, R_ g2, W_ u0, W_ u1, W_ u2, W_ u3, W_ u4, W_ u5, int64_t n)
{
    const float q = 1.0f / 4, s = 1.0f / 6, tw = 1.0f / 12, tf = 1.0f / 24;
    for (int64_t t = 0; t < n; t++) {
        u0[t] = q * g0[t];
        u1[t] = -s * (g0[t] + g1[t] + g2[t]);
        u2[t] = -s * (g0[t] - g1[t] + g2[t]);
        u3[t] = tf * g0[t] + tw * g1[t] + s * g2[t];
        u4[t] = tf * g0[t] - tw * g1[t] + s * g2[t];
        u5[t] = g2[t];
    }
}

static void
g4(const float *g, int64_t is, float *u, int64_t os, int64_t n)
{
    g4_(g, g + is, g + 2 * is, u, u + os, u + 2 * os, u + 3 * os, u + 4 * os, u + 5 * os, n);
}

TY_CLONES static void
at2_(R_ m0, R_ m1, R_ m2, R_ m3, W_ y0, W_ y1, int64_t n)
{
    for (int64_t t = 0; t < n; t++) {
        y0[t] = m0[t] + m1[t] + m2[t];
        y1[t] = m1[t] - m2[t] - m3[t];
    }
}

static void
at2(const float *m, int64_t is, float *y, int64_t os, int64_t n)
{
    at2_(m, m + is, m + 2 * is, m + 3 * is, y, y + os, n);
}

TY_CLONES static void
at4_(R_ m0, R_ m1, R_ m2, R_ m3, R_ m4, R_ m5, W_ y0, W_ y1, W_ y2, W_ y3, int64_t n)
{
    for (int64_t t = 0; t < n; t++) {
        y0[t] = m0[t] + m1[t] + m2[t] + m3[t] + m4[t];
        y1[t] = m1[t] - m2[t] + 2.0f * m3[t] - 2.0f * m4[t];
        y2[t] = m1[t] + m2[t] + 4.0f * m3[t] + 4.0f * m4[t];
        y3[t] = m1[t] - m2[t] + 8.0f * m3[t] - 8.0f * m4[t] + m5[t];
    }
}

static void
at4(const float *m, int64_t is, float *y, int64_t os, int64_t n)
{
    at4_(m, m + is, m + 2 * is, m + 3 * is, m + 4 * is, m + 5 * is, y, y + os, y + 2 * os,
         y + 3 * os, n);
}

#undef R_
#undef W_

typedef void (*pass_fn)(const float *in, int64_t is, float *out, int64_t os, int64_t n);

typedef struct variant {
    int m, alpha;
    pass_fn bt, g, at;
} variant;

static const variant F23 = {2, 4, bt2, g2, at2};
static const variant F43 = {4, 6, bt4, g4, at4};

static const variant *
variant_of(int m)
{
    return m == 4 ? &F43 : &F23;
}

/* ---- the run ---- */

enum { MIN_GEMM_COLS = 256 }; /* images per chunk: enough for this many GEMM columns */

typedef struct wino_run {
    const ty_wino_geom *g;
    const variant *v;
    int64_t tH, tW, T, nxi; /* tiles down (in the band), across, in one image's band; alpha^2 */
    int64_t th0;            /* the band's first tile row (bands: see bands_of) */
    int64_t n0, nb, P;      /* the chunk: images [n0, n0 + nb), P = nb*T GEMM columns */
    const float *x, *w;
    float *y, *U, *V, *M;
    const ty_gemm_epilogue_f32 *epi;
    _Atomic int failed;
} wino_run;

static int64_t
tiles_of(const ty_wino_geom *g, int m)
{
    return ((g->OH + m - 1) / m) * ((g->OW + m - 1) / m);
}

/* Images per chunk: a function of the shapes only. */
static int64_t
chunk_images(const ty_wino_geom *g, int m)
{
    int64_t T = tiles_of(g, m), nb = (MIN_GEMM_COLS + T - 1) / T;
    return nb < g->N ? nb : (g->N > 0 ? g->N : 1);
}

/* The row stride of U[xi] (OC x C): C, or C + 16 when C floats are a multiple of 512 bytes,
 * whose rows would fall into a few L1 sets; the GEMM reads 12 such rows at once when it reads
 * U in place (ResNet's 512-channel 4x4 layer at batch 32 spent a tenth of a training step
 * there). The bits do not depend on it. */
static int64_t
u_stride(const ty_wino_geom *g)
{
    return g->C % 128 == 0 ? g->C + 16 : g->C;
}

/* The fused path (fused_range) takes layers whose images all fit one chunk and whose
 * transformed weights are larger than FUSED_U_BYTES; it transforms them in blocks of about
 * that size, in whole 12-row GEMM micro-tiles. Shapes only. */
enum { FUSED_U_BYTES = 1 << 20 };

static int64_t
oc_block(const ty_wino_geom *g, int m)
{
    int64_t per_oc = (int64_t)(m + 2) * (m + 2) * u_stride(g) * (int64_t)sizeof(float);
    int64_t ob = FUSED_U_BYTES / per_oc / 12 * 12;
    return ob > 12 ? ob : 12;
}

/* The fused path's blocks: an even count (two threads take equal halves) of about oc_block
 * channels each, block b from fused_edge(b) to fused_edge(b + 1), edges on whole 12-row
 * micro-tiles (nearest to an equal split), the last at OC. Shapes only; a GEMM's bits do not
 * depend on its rows, so the blocks never change the results. (Blocks of oc_block channels
 * and one short block left ResNet's 256-channel 14x14 layer 70% on one of two threads.) */
static int64_t
fused_blocks(const ty_wino_geom *g, int m)
{
    int64_t ob = oc_block(g, m), n = (g->OC + ob - 1) / ob;
    return n > 1 ? n + n % 2 : 1;
}

static int64_t
fused_edge(const ty_wino_geom *g, int64_t nblk, int64_t b)
{
    if (b >= nblk) {
        return g->OC;
    }
    int64_t e = (b * g->OC + nblk * 6) / (nblk * 12) * 12;
    return e < g->OC ? e : g->OC;
}

/* Rows of the largest fused block. */
static int64_t
fused_max_rows(const ty_wino_geom *g, int64_t nblk)
{
    int64_t most = 0;
    for (int64_t b = 0; b < nblk; b++) {
        int64_t rows = fused_edge(g, nblk, b + 1) - fused_edge(g, nblk, b);
        most = rows > most ? rows : most;
    }
    return most;
}

static int
fuses(const ty_wino_geom *g, int m)
{
    return chunk_images(g, m) >= g->N && g->OC > oc_block(g, m);
}

int
ty_conv_wino_fuses(const ty_wino_geom *g, int m)
{
    return fuses(g, m);
}

/* A single image on the unfused path goes through in bands of whole tile rows, each band's
 * input transform, products and output transform in turn, so V and M hold one band and stay
 * in cache from band to band. Whole, they were cold at every call: ResNet-50's first 64-channel
 * 56x56 layer of a run took 1.36 ms, the next ones of the same shape 0.7-0.77 (its 4.2 MB of
 * scratch, last touched a run before, read back 3x slower than theirs); in bands of about
 * BAND_BYTES of V and M all three layers measured 8-25% faster (2 threads, loaded machine).
 * On AVX2 (Zen 3) bands of 2 tile rows (28 GEMM columns: 16 + an edge of 12) made 22 parallel
 * regions of a layer, half of the model's, and small products: with bands of about
 * BAND_BYTES_AVX2 (that layer: 2 bands of 98 columns) it took 0.93 of the time (one thread,
 * median of 200 paired calls, the scratch and weights cold at every call as in the model; 4
 * bands 0.97, whole 0.99) and 0.95-0.99 in the deployed model (2 threads, 16 alternating
 * rounds, where the unchanged layers read 1.03-1.11). Shapes and ISA only; a GEMM's bits do
 * not depend on its columns, so the results are the unbanded ones. */
enum { BAND_BYTES = 1 << 19, BAND_BYTES_AVX2 = 1 << 21 };

static int64_t
band_bytes(void)
{
    return ty_cpu_isa() == TY_ISA_AVX2 ? BAND_BYTES_AVX2 : BAND_BYTES;
}

static int64_t
bands_of(const ty_wino_geom *g, int m)
{
    if (g->N != 1 || fuses(g, m)) {
        return 1;
    }
    const int64_t tH = (g->OH + m - 1) / m, tW = (g->OW + m - 1) / m;
    int64_t row = (int64_t)(m + 2) * (m + 2) * (g->C + g->OC) * tW * (int64_t)sizeof(float);
    int64_t rows = row > 0 && band_bytes() / row > 0 ? band_bytes() / row : 1;
    return (tH + rows - 1) / rows;
}

/* Band b's first tile row; band b runs to band_edge(b + 1). */
static int64_t
band_edge(int64_t tH, int64_t nbands, int64_t b)
{
    return b * tH / nbands;
}

/* Tiles of one chunk's V and M: nb images' tiles, or the largest band's. */
static int64_t
chunk_tiles(const ty_wino_geom *g, int m)
{
    int64_t nbands = bands_of(g, m), tH = (g->OH + m - 1) / m, tW = (g->OW + m - 1) / m;
    return nbands > 1 ? (tH + nbands - 1) / nbands * tW : tiles_of(g, m) * chunk_images(g, m);
}

/* On cache lines: malloc's 16-byte alignment (a large block sat 16 bytes past a line) split
 * every other 32-byte store of the AVX2 weight transform, and the fused GEMM's loads of U,
 * across two lines; aligned, ResNet-18's 256-channel 14x14 layer (m = 4, batch 1, one thread,
 * Zen 3) went from 1.42 to 1.36 ms (best of 6, alternating), the others within noise. */
static float *
scratch(wino_run *r, size_t floats)
{
    float *p = aligned_alloc(64, (sizeof(float) * floats + 63) / 64 * 64);
    if (!p) {
        atomic_store(&r->failed, 1);
    }
    return p;
}

size_t
ty_conv_wino_ws_floats(const ty_wino_geom *g, int m)
{
    size_t a = (size_t)m + 2, u, v, mm, sum, T;
    if (__builtin_mul_overflow((size_t)tiles_of(g, m), (size_t)chunk_images(g, m), &T)) {
        return 0;
    }
    T = (size_t)chunk_tiles(g, m); /* not above the product just checked */
    /* the fused path keeps no whole U or M */
    size_t uoc = fuses(g, m) ? 0 : (size_t)g->OC, moc = fuses(g, m) ? 0 : (size_t)g->OC;
    if (__builtin_mul_overflow(uoc, (size_t)u_stride(g), &u) ||
        __builtin_mul_overflow((size_t)g->C, T, &v) ||
        __builtin_mul_overflow(moc, T, &mm) || __builtin_add_overflow(u, v, &sum) ||
        __builtin_add_overflow(sum, mm, &sum) || __builtin_mul_overflow(sum, a * a, &sum)) {
        return 0;
    }
    return sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "kernels/cpu/transpose16.h"
/* gather_taps for 16 channels at a time with AVX-512 gathers (a copy: the same bits). */
__attribute__((target("avx512f"))) static int64_t
gather_taps_avx512(const float *k, int64_t C, float *taps)
{
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                            5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(9));
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        for (int q = 0; q < 9; q++) {
            _mm512_storeu_ps(taps + q * C + c, _mm512_i32gather_ps(idx, k + c * 9 + q, 4));
        }
    }
    return c;
}

/* The 9 taps of 8 channels' 3x3 kernels (72 floats from b), t[q] = tap q of each channel:
 * taps 0-7 as an 8 x 8 block transposed in registers, tap 8 one gather. */
__attribute__((target("avx2,fma"))) static inline void
taps8_avx2(const float *b, __m256 t[9])
{
    for (int i = 0; i < 8; i++) {
        t[i] = _mm256_loadu_ps(b + i * 9);
    }
    ty_transpose8_f32(t);
    t[8] = _mm256_i32gather_ps(b + 8, _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63), 4);
}

/* The weights come cold from memory (ResNet-18's are larger than L3) and the 16 or 36 U store
 * streams beside them leave the hardware prefetcher behind: fetching 8 iterations (2.3 KB)
 * ahead took ResNet-18's 512- and 256-channel layers at batch 1 from 4.17 to 3.71 and 1.55 to
 * 1.42 ms (m = 4), 2.47 to 2.37 ms (m = 2) (one thread, Zen 3; 4 or 16 iterations ahead
 * measured about the same). */
enum { W_PREFETCH_FLOATS = 576 };

__attribute__((target("avx2,fma"))) static inline void
prefetch_weights(const float *b)
{
    for (int line = 0; line < 72; line += 16) {
        _mm_prefetch((const char *)(b + W_PREFETCH_FLOATS + line), _MM_HINT_T0);
    }
}

/* gather_taps for 8 channels at a time on AVX2 (a copy: the same bits). The compiler's clone
 * of gather_taps moved one float at a time; it took 14% of ResNet-18's 512-channel 7x7 layer
 * on Winograd (perf, Zen 3, 2 threads). */
__attribute__((target("avx2,fma"))) static int64_t
gather_taps_avx2(const float *k, int64_t C, float *taps)
{
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
        __m256 t[9];
        taps8_avx2(k + c * 9, t);
        for (int q = 0; q < 9; q++) {
            _mm256_storeu_ps(taps + q * C + c, t[q]);
        }
    }
    return c;
}

/* g2_'s expressions on 8 lanes, in its order of operations (the same bits). */
__attribute__((target("avx2,fma"))) static inline void
g2_avx2(__m256 g0, __m256 g1, __m256 g2, __m256 u[4])
{
    const __m256 half = _mm256_set1_ps(0.5f);
    u[0] = g0;
    u[1] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_add_ps(g0, g1), g2));
    u[2] = _mm256_mul_ps(half, _mm256_add_ps(_mm256_sub_ps(g0, g1), g2));
    u[3] = g2;
}

/* NAME: F(T-2,3)'s U[xi][c] = (G g G^T)[i][j] for channels [0, C rounded down to 8) of one
 * output channel's kernels k, 8 at a time in registers: the taps transposed, G (GROW, one
 * column of T) down the kernel's columns, then along each row, as transform_weights computes
 * them through memory (the same bits). u: plane floats between xi. Returns the channels done.
 * Straight from the weights to U, it skips the tap and (G g) rows that the generic passes
 * write and read back. */
#define WEIGHTS_AVX2(NAME, T, GROW)                                                                \
    __attribute__((target("avx2,fma"))) static int64_t NAME(const float *k, int64_t C, float *u, \
                                                             int64_t plane)                       \
    {                                                                                              \
        int64_t c = 0;                                                                             \
        for (; c + 8 <= C; c += 8) {                                                               \
            __m256 t[9], gc[3][T], ur[T];                                                          \
            prefetch_weights(k + c * 9);                                                           \
            taps8_avx2(k + c * 9, t);                                                              \
            for (int col = 0; col < 3; col++) { /* gc[col][i] = (G g)[i][col] */                   \
                GROW(t[col], t[3 + col], t[6 + col], gc[col]);                                     \
            }                                                                                      \
            for (int i = 0; i < (T); i++) {                                                        \
                GROW(gc[0][i], gc[1][i], gc[2][i], ur);                                            \
                for (int j = 0; j < (T); j++) {                                                    \
                    _mm256_storeu_ps(u + (i * (T) + j) * plane + c, ur[j]);                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return c;                                                                                  \
    }

WEIGHTS_AVX2(weights_f23_avx2, 4, g2_avx2)

/* g4_'s expressions on 8 lanes, in its order of operations (the same bits). */
__attribute__((target("avx2,fma"))) static inline void
g4_avx2(__m256 g0, __m256 g1, __m256 g2, __m256 u[6])
{
    const float q = 1.0f / 4, s = 1.0f / 6, tw = 1.0f / 12, tf = 1.0f / 24;
    const __m256 vs = _mm256_set1_ps(s), vtw = _mm256_set1_ps(tw), vtf = _mm256_set1_ps(tf);
    const __m256 vns = _mm256_set1_ps(-s);
    __m256 a = _mm256_mul_ps(vtf, g0), b = _mm256_mul_ps(vtw, g1), c = _mm256_mul_ps(vs, g2);
    u[0] = _mm256_mul_ps(_mm256_set1_ps(q), g0);
    u[1] = _mm256_mul_ps(vns, _mm256_add_ps(_mm256_add_ps(g0, g1), g2));
    u[2] = _mm256_mul_ps(vns, _mm256_add_ps(_mm256_sub_ps(g0, g1), g2));
    u[3] = _mm256_add_ps(_mm256_add_ps(a, b), c);
    u[4] = _mm256_add_ps(_mm256_sub_ps(a, b), c);
    u[5] = g2;
}

WEIGHTS_AVX2(weights_f43_avx2, 6, g4_avx2)
#endif

/* taps[q*C + c] = k[c*9 + q]: one output channel's 3x3 kernels, tap-major. */
TY_CLONES static void
gather_taps(const float *restrict k, int64_t C, float *restrict taps, int64_t c0)
{
    for (int q = 0; q < 9; q++) { /* channels [c0, C) */
        for (int64_t c = c0; c < C; c++) {
            taps[q * C + c] = k[c * 9 + q];
        }
    }
}

/* Channels transformed at a time: their taps and (G g) stay in L1 (27 rows of them). */
enum { W_CHUNK = 128 };

/* U[xi][oc - oc0][c] at u (plane floats between xi) for output channels [oc0, oc1): with
 * the channels in the vector lanes, W_CHUNK at a time, the kernel taps are first gathered into
 * 9 rows. taps: (9 + 3 alpha) W_CHUNK floats of scratch. */
static void
transform_weights(const wino_run *r, int64_t oc0, int64_t oc1, float *u, int64_t plane,
                  float *taps)
{
    const int64_t C = r->g->C, ldu = u_stride(r->g), a = r->v->alpha;
    for (int64_t oc = oc0; oc < oc1; oc++) {
        int64_t cs = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (ty_cpu_isa() == TY_ISA_AVX2) {
            cs = (a == 4 ? weights_f23_avx2 : weights_f43_avx2)(r->w + oc * C * 9, C,
                                                                u + (oc - oc0) * ldu, plane);
        }
#endif
        for (; cs < C; cs += W_CHUNK) {
            const int64_t n = C - cs < W_CHUNK ? C - cs : W_CHUNK;
            const float *k = r->w + (oc * C + cs) * 9;
            float *gt = taps + 9 * n; /* (G g): a rows x 3 columns, each n long */
            int64_t c0 = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
            if (ty_cpu_isa() >= TY_ISA_AVX512) {
                c0 = gather_taps_avx512(k, n, taps);
            } else if (ty_cpu_isa() >= TY_ISA_AVX2) {
                c0 = gather_taps_avx2(k, n, taps);
            }
#endif
            gather_taps(k, n, taps, c0);
            for (int col = 0; col < 3; col++) { /* G g: down the kernel's columns */
                r->v->g(taps + col * n, 3 * n, gt + col * n, 3 * n, n);
            }
            for (int i = 0; i < a; i++) { /* (G g) G^T along each row, into U[i*a + j][oc] */
                r->v->g(gt + i * 3 * n, n, u + i * a * plane + (oc - oc0) * ldu + cs, plane, n);
            }
        }
    }
}

/* All of U for output channels [begin, end). */
static void
weights_range(void *ctx, int64_t begin, int64_t end)
{
    wino_run *r = ctx;
    float *taps = scratch(r, (size_t)(9 + 3 * r->v->alpha) * W_CHUNK);
    if (taps) {
        transform_weights(r, begin, end, r->U + begin * u_stride(r->g),
                          r->g->OC * u_stride(r->g), taps);
        free(taps);
    }
}

/* Input row ih of one channel, zero-padded: p[q] = x[ih][q - pw] for q < len. */
static void
padded_row(const ty_wino_geom *g, const float *plane, int64_t ih, int64_t len, float *p)
{
    memset(p, 0, sizeof(float) * (size_t)len);
    if (ih < 0 || ih >= g->H || g->pw >= len) {
        return;
    }
    int64_t n = g->W < len - g->pw ? g->W : len - g->pw; /* columns past the tiles unused */
    memcpy(p + g->pw, plane + ih * g->W, sizeof(float) * (size_t)n);
}

/* sp[j*stride + tw] = p[m*tw + j] for j < alpha, tw < tW: a padded row split into the alpha
 * strided sequences the tiles of a tile row read. */
TY_CLONES static void
split_row(const float *restrict p, int64_t m, int64_t a, int64_t tW, float *restrict sp,
          int64_t stride)
{
    if (m == 2) { /* a 2-way deinterleave; sequences 2 and 3 are 0 and 1 shifted by a tile */
        float *s0 = sp, *s1 = sp + stride, *s2 = sp + 2 * stride, *s3 = sp + 3 * stride;
        for (int64_t tw = 0; tw < tW; tw++) {
            s0[tw] = p[2 * tw];
            s1[tw] = p[2 * tw + 1];
        }
        for (int64_t tw = 0; tw + 1 < tW; tw++) {
            s2[tw] = s0[tw + 1];
            s3[tw] = s1[tw + 1];
        }
        s2[tW - 1] = p[2 * tW];
        s3[tW - 1] = p[2 * tW + 1];
        return;
    }
    if (m == 4) { /* a 4-way deinterleave; sequences 4 and 5 are 0 and 1 shifted by a tile */
        float *s0 = sp, *s1 = sp + stride, *s2 = sp + 2 * stride, *s3 = sp + 3 * stride;
        float *s4 = sp + 4 * stride, *s5 = sp + 5 * stride;
        for (int64_t tw = 0; tw < tW; tw++) {
            s0[tw] = p[4 * tw];
            s1[tw] = p[4 * tw + 1];
            s2[tw] = p[4 * tw + 2];
            s3[tw] = p[4 * tw + 3];
        }
        for (int64_t tw = 0; tw + 1 < tW; tw++) {
            s4[tw] = s0[tw + 1];
            s5[tw] = s1[tw + 1];
        }
        s4[tW - 1] = p[4 * tW];
        s5[tW - 1] = p[4 * tW + 1];
        return;
    }
    for (int64_t j = 0; j < a; j++) {
        for (int64_t tw = 0; tw < tW; tw++) {
            sp[j * stride + tw] = p[m * tw + j];
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* Lanes [0, 16) of the padded row from 16k: row[q - pw] where that lies in [0, W) and
 * q < len, else 0. A masked load from the first valid element (nothing outside the row is
 * read), shifted up to its lane. */
__attribute__((target("avx512f"))) static inline __m512
padded_chunk(const float *row, int64_t W, int64_t pw, int64_t len, int64_t k)
{
    int64_t lo = 16 * k > pw ? 16 * k : pw, hi = pw + W < len ? pw + W : len;
    hi = hi < 16 * k + 16 ? hi : 16 * k + 16;
    if (hi <= lo) {
        return _mm512_setzero_ps();
    }
    __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << (hi - lo)) - 1), row + (lo - pw));
    int64_t shift = lo - 16 * k;
    if (shift == 0) {
        return v;
    }
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    return _mm512_maskz_permutexvar_ps((__mmask16)(0xFFFFu << shift),
                                       _mm512_sub_epi32(lane, _mm512_set1_epi32((int)shift)), v);
}

/* padded_row then split_row in registers, for the rows of up to 48 padded floats a small
 * image has (F(4,3) with up to 8 tiles across, F(2,3) with up to 16): the row loaded in three
 * 16-lane chunks (padded_chunk), each sequence picked out by a permutation, the sequences that
 * run one element past the 32 loaded by the two first chunks taking that element from the
 * third. Returns 0 for other rows. The same values. */
__attribute__((target("avx512f"))) static int
split_padded_row_avx512(const ty_wino_geom *g, const float *plane, int64_t ih, int64_t m,
                        int64_t tW, float *sp, int64_t stride)
{
    const int64_t len = m * tW + 2;
    if (!((m == 4 && tW <= 8) || (m == 2 && tW <= 16))) {
        return 0;
    }
    __m512 q0 = _mm512_setzero_ps(), q1 = q0, q2 = q0;
    if (ih >= 0 && ih < g->H) {
        const float *row = plane + ih * g->W;
        q0 = padded_chunk(row, g->W, g->pw, len, 0);
        q1 = padded_chunk(row, g->W, g->pw, len, 1);
        q2 = padded_chunk(row, g->W, g->pw, len, 2);
    }
    const __m512i step = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i idx0 = _mm512_mullo_epi32(step, _mm512_set1_epi32((int)m));
    const __mmask16 out = (__mmask16)((1u << tW) - 1);
    const int64_t last = 32 / m - 1; /* the lane whose shifted element is the 33rd */
    for (int64_t j = 0; j < m + 2; j++) {
        __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32((int)j));
        __m512 v = _mm512_permutex2var_ps(q0, idx, q1);
        if (j >= m) { /* lane `last` reads element 32 + (j - m): the third chunk's */
            v = _mm512_mask_permutexvar_ps(v, (__mmask16)(1u << last),
                                           _mm512_set1_epi32((int)(j - m)), q2);
        }
        _mm512_mask_storeu_ps(sp + j * stride, out, v);
    }
    return 1;
}
#endif

/* Images per transform item: enough that an item's tiles fill LANE_COLS vector lanes (a deep
 * layer's 4x4 image has one tile), and no more than the chunk's nb. Shapes only. */
enum { LANE_COLS = 64 };

static int64_t
group_images(const wino_run *r, int64_t nb)
{
    int64_t gi = (LANE_COLS + r->T - 1) / r->T;
    return gi < nb ? gi : nb;
}

/* V for items [begin, end) of (channel, group of gi images of the chunk). Per item,
 * D[k][j][l] = d_l[k][j] (the element (k, j) of tile l = n*T + t) is gathered from padded
 * rows; then the row pass runs over each k and the column pass over each j, with the group's
 * tiles in the vector lanes. */
static void
input_range(void *ctx, int64_t begin, int64_t end)
{
    wino_run *r = ctx;
    const ty_wino_geom *g = r->g;
    const int64_t m = r->v->m, a = r->v->alpha, tW = r->tW, T = r->T, len = m * tW + 2;
    const int64_t xs = g->C * r->P, nb = r->P / T, gi = group_images(r, nb);
    const int64_t groups = (nb + gi - 1) / gi;
    float *p = scratch(r, (size_t)(len + 2 * a * a * gi * T));
    if (!p) {
        return;
    }
    float *d = p + len; /* D[k][j][l] */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const int avx512 = ty_cpu_isa() >= TY_ISA_AVX512;
#endif
    for (int64_t item = begin; item < end; item++) {
        int64_t c = item / groups, n0 = item % groups * gi;
        int64_t n1 = n0 + gi < nb ? n0 + gi : nb, L = (n1 - n0) * T;
        float *rt = d + a * a * L; /* row pass: R[k][j][l] */
        for (int64_t n = n0; n < n1; n++) {
            const float *plane = r->x + (r->n0 + n) * g->xstride + c * g->H * g->W;
            for (int64_t th = 0; th < r->tH; th++) {
                for (int64_t k = 0; k < a; k++) {
                    int64_t ih = m * (r->th0 + th) - g->ph + k;
                    float *sp = d + k * a * L + (n - n0) * T + th * tW;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
                    if (avx512 && split_padded_row_avx512(g, plane, ih, m, tW, sp, L)) {
                        continue;
                    }
#endif
                    padded_row(g, plane, ih, len, p);
                    split_row(p, m, a, tW, sp, L);
                }
            }
        }
        for (int64_t k = 0; k < a; k++) {
            r->v->bt(d + k * a * L, L, rt + k * a * L, L, L);
        }
        for (int64_t j = 0; j < a; j++) { /* V[i*alpha + j] = B^T over k of R[k][j] */
            r->v->bt(rt + j * L, a * L, r->V + j * xs + c * r->P + n0 * T, a * xs, L);
        }
    }
    free(p);
}

/* The alpha^2 products M[xi] (OC x T) = U[xi] (OC x C) @ V[xi] (C x T). */
static void
gemm_range(void *ctx, int64_t begin, int64_t end)
{
    wino_run *r = ctx;
    const int64_t C = r->g->C, OC = r->g->OC, P = r->P, ldu = u_stride(r->g);
    for (int64_t xi = begin; xi < end; xi++) {
        ty_gemm_f32(OC, P, C, r->U + xi * OC * ldu, ldu, 1, r->V + xi * C * P, P, 1,
                    r->M + xi * OC * P, P, 0);
    }
}

/* row[m*tw + jj] = src[jj*T + tw] for tw < tW, jj < m: m vectors of tiles' columns
 * interleaved into one output row. */
TY_CLONES static void
interleave_row(const float *restrict src, int64_t T, int64_t m, int64_t tW, float *restrict row)
{
    if (m == 4) {
        for (int64_t tw = 0; tw < tW; tw++) {
            row[4 * tw] = src[tw];
            row[4 * tw + 1] = src[T + tw];
            row[4 * tw + 2] = src[2 * T + tw];
            row[4 * tw + 3] = src[3 * T + tw];
        }
        return;
    }
    for (int64_t tw = 0; tw < tW; tw++) {
        for (int64_t jj = 0; jj < m; jj++) {
            row[m * tw + jj] = src[jj * T + tw];
        }
    }
}

/* Output channel oc of chunk image n from its transformed tiles yt (Y[i][jj] at stride L
 * apart, the image's T tiles contiguous): each tile row's m x m tiles interleaved into m
 * output rows, then the epilogue over each row. */
static void
output_image(const wino_run *r, int64_t oc, int64_t n, const float *yt, int64_t L, float *row)
{
    const ty_wino_geom *g = r->g;
    const int64_t m = r->v->m, tW = r->tW;
    float *plane = r->y + (r->n0 + n) * g->ystride + oc * g->OH * g->OW;
    for (int64_t th = 0; th < r->tH; th++) {
        const int64_t oh0 = m * (r->th0 + th); /* the tile row's first output row */
        for (int64_t i = 0; i < m && oh0 + i < g->OH; i++) {
            float *dst = plane + (oh0 + i) * g->OW;
            if (m * tW == g->OW) { /* no partial tile: straight into y */
                interleave_row(yt + i * m * L + th * tW, L, m, tW, dst);
            } else {
                interleave_row(yt + i * m * L + th * tW, L, m, tW, row);
                memcpy(dst, row, sizeof(float) * (size_t)g->OW);
            }
            if (r->epi) {
                r->epi->fn(r->epi->ctx, oc, (oh0 + i) * g->OW, 1, g->OW, dst, g->OW);
            }
        }
    }
}

/* y for items [begin, end) of (output channel, group of gi images) from the products M of the
 * output channels from oc_base on (ms floats between xi): the column pass A^T over each j and
 * the row pass along each of the m rows, with the group's tiles in the vector lanes; then each
 * image's tiles go to its output plane. */
static void
output_items(wino_run *r, const float *M, int64_t ms, int64_t oc_base, int64_t begin,
             int64_t end)
{
    const int64_t m = r->v->m, a = r->v->alpha, tW = r->tW, T = r->T;
    const int64_t nb = r->P / T, gi = group_images(r, nb), groups = (nb + gi - 1) / gi;
    float *ct = scratch(r, (size_t)(m * a * gi * T + m * m * gi * T + m * tW));
    if (!ct) {
        return;
    }
    for (int64_t item = begin; item < end; item++) {
        int64_t oc = item / groups, n0 = item % groups * gi;
        int64_t n1 = n0 + gi < nb ? n0 + gi : nb, L = (n1 - n0) * T;
        float *yt = ct + m * a * L; /* Y[i][jj][l] */
        float *row = yt + m * m * L;
        const float *mt = M + (oc - oc_base) * r->P + n0 * T;
        for (int64_t j = 0; j < a; j++) { /* ct[i][j] = (A^T M)[i][j] */
            r->v->at(mt + j * ms, a * ms, ct + j * L, a * L, L);
        }
        for (int64_t i = 0; i < m; i++) {
            r->v->at(ct + i * a * L, L, yt + i * m * L, L, L);
        }
        for (int64_t n = n0; n < n1; n++) {
            output_image(r, oc, n, yt + (n - n0) * T, L, row);
        }
    }
    free(ct);
}

/* output_items over all of M (OC x P per xi). */
static void
output_range(void *ctx, int64_t begin, int64_t end)
{
    wino_run *r = ctx;
    output_items(r, r->M, r->g->OC * r->P, 0, begin, end);
}

/* The fused path: output-channel blocks [begin, end) of OC_BLOCK channels. Per block its
 * transformed weights, into one scratch block that stays in L2 from block to block, the
 * alpha^2 GEMMs of its products, into another such block, and its output transform, so
 * neither U nor M is written out whole (U at 512 channels is 38 MB, and writing then reading
 * it took more time than the GEMMs; a whole M is cold at every call). A GEMM's bits do not
 * depend on where it writes, so the results are the unfused path's. */
static void
fused_range(void *ctx, int64_t begin, int64_t end)
{
    wino_run *r = ctx;
    const ty_wino_geom *g = r->g;
    const int64_t nblk = fused_blocks(g, r->v->m), ob = fused_max_rows(g, nblk);
    const int64_t C = g->C, ldu = u_stride(g), plane = ob * ldu;
    const int64_t P = r->P, nb = P / r->T, gi = group_images(r, nb), groups = (nb + gi - 1) / gi;
    const int64_t mplane = ob * P; /* the block's products: M[xi][oc - oc0][P] */
    float *u = scratch(r, (size_t)(r->nxi * (plane + mplane) + (9 + 3 * r->v->alpha) * W_CHUNK));
    if (!u) {
        return;
    }
    float *mb = u + r->nxi * plane, *taps = mb + r->nxi * mplane;
    for (int64_t blk = begin; blk < end; blk++) {
        int64_t oc0 = fused_edge(g, nblk, blk), oc1 = fused_edge(g, nblk, blk + 1);
        if (oc1 <= oc0) {
            continue;
        }
        transform_weights(r, oc0, oc1, u, plane, taps);
        for (int64_t xi = 0; xi < r->nxi; xi++) {
            ty_gemm_f32(oc1 - oc0, P, C, u + xi * plane, ldu, 1, r->V + xi * C * P, P, 1,
                        mb + xi * mplane, P, 0);
        }
        output_items(r, mb, mplane, oc0, oc0 * groups, oc1 * groups);
    }
    free(u);
}

size_t
ty_conv_wino_u_floats(const ty_wino_geom *g, int m)
{
    const variant *v = variant_of(m);
    return (size_t)(v->alpha * v->alpha * g->OC * u_stride(g));
}

/* The grain of the weight transform: about 64 KiB of results per chunk, so small layers stay
 * on one thread. */
static int64_t
weights_grain(const wino_run *r)
{
    return 16384 / (r->nxi * r->g->C + 1) + 1;
}

int
ty_conv_wino_weights_f32(const ty_wino_geom *g, int m, const float *w, float *U)
{
    const variant *v = variant_of(m);
    wino_run r = {.g = g, .v = v, .nxi = v->alpha * v->alpha, .w = w, .U = U};
    atomic_init(&r.failed, 0);
    ty_parallel_for(g->OC, weights_grain(&r), weights_range, &r);
    return atomic_load(&r.failed) ? -1 : 0;
}

/* ty_conv_wino_f32, with the transformed weight U given (not NULL: the unfused path only). */
static int
wino_run_f32(const ty_wino_geom *g, int m, const float *x, const float *w, const float *U,
             float *y, float *ws, const ty_gemm_epilogue_f32 *epi)
{
    const variant *v = variant_of(m);
    wino_run r = {.g = g, .v = v, .tH = (g->OH + v->m - 1) / v->m,
                  .tW = (g->OW + v->m - 1) / v->m, .nxi = v->alpha * v->alpha,
                  .nb = chunk_images(g, m), .x = x, .w = w, .y = y, .epi = epi};
    r.T = r.tH * r.tW;
    r.U = ws;
    r.V = r.U + (fuses(g, m) ? 0 : r.nxi * g->OC * u_stride(g));
    r.M = r.V + r.nxi * g->C * chunk_tiles(g, m);
    atomic_init(&r.failed, 0);
    if (fuses(g, m)) { /* one chunk of images: see fused_range */
        r.n0 = 0;
        r.P = g->N * r.T;
        int64_t gi = group_images(&r, g->N), groups = (g->N + gi - 1) / gi;
        ty_parallel_for(groups * g->C, 16384 / (r.nxi * gi * r.T + 1) + 1, input_range, &r);
        ty_parallel_for(fused_blocks(g, m), 1, fused_range, &r);
        return atomic_load(&r.failed) ? -1 : 0;
    }
    if (U) {
        r.U = (float *)U; /* read only: weights_range is the one writer of U */
    } else {
        ty_parallel_for(g->OC, weights_grain(&r), weights_range, &r);
    }
    const int64_t nbands = bands_of(g, m), tH = r.tH;
    for (int64_t b = 0; nbands > 1 && b < nbands && !atomic_load(&r.failed); b++) {
        r.n0 = 0;
        r.th0 = band_edge(tH, nbands, b);
        r.tH = band_edge(tH, nbands, b + 1) - r.th0;
        r.T = r.tH * r.tW;
        r.P = r.T;
        int64_t grain = 16384 / (r.nxi * r.T + 1) + 1;
        ty_parallel_for(g->C, grain, input_range, &r);
        ty_parallel_for(r.nxi, 1, gemm_range, &r);
        ty_parallel_for(g->OC, grain, output_range, &r);
    }
    for (r.n0 = 0; nbands == 1 && r.n0 < g->N && !atomic_load(&r.failed); r.n0 += r.nb) {
        int64_t nb = g->N - r.n0 < r.nb ? g->N - r.n0 : r.nb;
        r.P = nb * r.T;
        int64_t gi = group_images(&r, nb), groups = (nb + gi - 1) / gi;
        int64_t grain = 16384 / (r.nxi * gi * r.T + 1) + 1;
        ty_parallel_for(groups * g->C, grain, input_range, &r);
        ty_parallel_for(r.nxi, 1, gemm_range, &r);
        ty_parallel_for(groups * g->OC, grain, output_range, &r);
    }
    return atomic_load(&r.failed) ? -1 : 0;
}

int
ty_conv_wino_f32(const ty_wino_geom *g, int m, const float *x, const float *w, float *y,
                 float *ws, const ty_gemm_epilogue_f32 *epi)
{
    return wino_run_f32(g, m, x, w, NULL, y, ws, epi);
}

int
ty_conv_wino_f32_u(const ty_wino_geom *g, int m, const float *x, const float *U, float *y,
                   float *ws, const ty_gemm_epilogue_f32 *epi)
{
    return wino_run_f32(g, m, x, NULL, U, y, ws, epi);
}
