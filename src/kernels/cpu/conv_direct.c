/* Direct dense convolution: see conv_direct.h. */
#include <string.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/conv_direct.h"
#include "kernels/cpu/transpose16.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CD_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#endif

enum {
    MAX_TAPS = 1024,        /* KH*KW the kernel takes (its tap offsets live on the stack) */
    TILE_Q = 64,            /* wide pixels of one register tile, at most (AVX-512: 4 x 16) */
    MAX_ROWS = 8,           /* output channels of one register tile, at most */
    GROUP_BLOCKS = 4,       /* channel blocks (of a tile's rows) per task */
    CHUNK_TILES = 4,        /* register tiles of wide pixels per task */
    CBLOCK_TAPS = 144,      /* channels x taps per pass over a tile (16 channels at 3x3) */
    ONE_PASS_KC = 160,      /* up to here, channels x taps in one pass */
    MIN_TASK_FMAS = 1 << 16, /* multiply-adds per parallel chunk, at least */
    ROWS8_MIN_WIDE = 1024,  /* wide pixels from which AVX-512 may take 8-row tiles */
};

/* The scratch layout: per channel sh*sw sub-planes of P floats, each Rq x Sq cells. */
typedef struct cd_plan {
    const ty_direct_geom *g;
    int64_t Rq, Sq, P, cs;  /* cs = sh*sw*P: one channel */
    int64_t wide;           /* (OH - 1)*Sq + OW */
    int64_t taps, kc;       /* KH*KW, C*KH*KW */
    int64_t off[MAX_TAPS];  /* tap t's offset from the channel's scratch */
    int rows, vec;          /* the register tile: output channels x lanes */
    int64_t nob, ngroups;   /* channel blocks of rows, groups of GROUP_BLOCKS of them */
    int64_t span, chunk_q;  /* wide pixels of a tile call and of a task */
    int64_t cblock;         /* input channels per pass over a tile */
    const float *x, *w;
    const float *packed;    /* the lanes path's weights packed once (pack_range), or NULL */
    float *y, *ws;
    int64_t split_end;      /* cells of each sub-plane split_range writes: P or Rq*Sq */
    const ty_gemm_epilogue_f32 *epi;
    /* AVX2's lanes path reads the image in place: outputs oh in [ih0, ih1) x ow in [iw0, iw1)
     * have their windows inside it; the nb others (the border) read patches, taps floats a
     * pixel and a channel, row-major, copied into ws with the padding's zeros */
    int64_t ih0, ih1, iw0, iw1, nb;
} cd_plan;

/* Where a register tile whose chains are final goes straight to y (AVX-512, sub-plane rows of
 * at least 16 wide pixels): each vector of wide pixels touches at most two output rows, so it
 * is at most two masked stores per channel row, lane i of run r at row[o] + at[v][r] + i; the
 * junk columns and the lanes past the tile are masked off. Saves the copy through a buffer
 * (a third of the 3x3/2 stem's time). */
typedef struct cd_dst {
    float *row[MAX_ROWS]; /* the output plane of each channel row of the tile */
    int nrows;
    int64_t at[TILE_Q / 16][2];
    uint16_t m[TILE_Q / 16][2];
} cd_dst;

static int64_t
ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Whether the AVX-512 register tiles run (6 or 8 channel rows of 16-lane vectors). */
static int
avx512_tiles(const cd_plan *p)
{
    return p->vec == 16 && p->rows >= 6;
}

/* The register tile of the ISA in use (the GEMM's: TY_ISA caps it, tests force it) for
 * output channels x vector lanes; AVX2 and AVX-512 give the same bits. */
static void
tile_shape(int *rows, int *vec)
{
    ty_isa isa = ty_gemm_get_isa();
    *rows = isa >= TY_ISA_AVX512 ? 6 : 4;
    *vec = isa >= TY_ISA_AVX512 ? 16 : isa >= TY_ISA_AVX2 ? 8 : 16;
}

/* The outputs [*lo, *hi) of n whose windows (k taps dil apart, from o*stride - pad) lie in
 * [0, in). */
static void
inside_outputs(int64_t n, int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil,
               int64_t *lo, int64_t *hi)
{
    int64_t last = in - 1 + pad - (k - 1) * dil; /* o*stride <= last */
    *hi = last < 0 ? 0 : last / stride + 1;
    *hi = *hi < n ? *hi : n;
    *lo = ceil_div(pad, stride);
    *lo = *lo < *hi ? *lo : *hi;
}

/* The plan's sizes; 0 when they overflow or the kernel cannot take the geometry. */
static int
plan_sizes(const ty_direct_geom *g, cd_plan *p)
{
    /* every size below 2^20 (larger layers take im2col): no product below can overflow */
    const int64_t lim = (int64_t)1 << 40, dim = (int64_t)1 << 20;
    const int64_t sizes[] = {g->C, g->H, g->W, g->OC, g->KH, g->KW, g->sh, g->sw,
                             g->ph, g->pw, g->dh, g->dw, g->OH, g->OW};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i] < 0 || sizes[i] >= dim) {
            return 0;
        }
    }
    if (g->KH * g->KW > MAX_TAPS || g->OH < 1 || g->OW < 1 || g->sh < 1 || g->sw < 1) {
        return 0;
    }
    p->g = g;
    p->Rq = ceil_div(g->H + 2 * g->ph, g->sh);
    p->Sq = ceil_div(g->W + 2 * g->pw, g->sw);
    p->wide = (g->OH - 1) * p->Sq + g->OW;
    p->taps = g->KH * g->KW;
    p->kc = g->C * p->taps;
    int64_t reach = ((g->KH - 1) * g->dh / g->sh) * p->Sq + (g->KW - 1) * g->dw / g->sw;
    int64_t need = p->wide + TILE_Q + reach; /* a tile reads up to a vector past the end */
    int64_t P = p->Rq * p->Sq > need ? p->Rq * p->Sq : need;
    p->P = ceil_div(P, 16) * 16;
    if (p->P > lim / (g->sh * g->sw) || p->P * g->sh * g->sw > lim / (g->C > 0 ? g->C : 1)) {
        return 0;
    }
    p->cs = g->sh * g->sw * p->P;
    inside_outputs(g->OH, g->H, g->KH, g->sh, g->ph, g->dh, &p->ih0, &p->ih1);
    inside_outputs(g->OW, g->W, g->KW, g->sw, g->pw, g->dw, &p->iw0, &p->iw1);
    p->nb = g->OH * g->OW - (p->ih1 - p->ih0) * (p->iw1 - p->iw0);
    return 1;
}

/* Floats per channel of the border patches (AVX2's lanes path: windows of at most 9 taps),
 * else 0. The outputs number at most (H + 2ph) x (W + 2pw): 9 per cell cannot overflow. */
static int64_t
patch_floats(const cd_plan *p)
{
    return p->taps <= 9 ? p->nb * p->taps : 0;
}

size_t
ty_conv_direct_ws_floats(const ty_direct_geom *g)
{
    cd_plan p;
    if (!plan_sizes(g, &p)) {
        return 0;
    }
    int64_t per = p.cs > patch_floats(&p) ? p.cs : patch_floats(&p);
    return (size_t)(per * (g->C > 0 ? g->C : 1));
}

/* ---- the padded, split copy of the image ---- */
#ifdef CD_X86
/* d[j] = s[2j] for j < n, reading s[0, 2n - 1) only: pairs of vectors picked apart by one
 * permutation (a scalar loop took the 7x7/2 stem 4%). */
AVX512 static void
take_even_avx512(const float *s, int64_t n, float *d)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                          2, 0);
    int64_t j = 0;
    for (; 2 * j + 32 <= 2 * n - 1; j += 16) {
        __m512 a = _mm512_loadu_ps(s + 2 * j), b = _mm512_loadu_ps(s + 2 * j + 16);
        _mm512_storeu_ps(d + j, _mm512_permutex2var_ps(a, even, b));
    }
    if (j < n) {
        int64_t e = 2 * (n - j) - 1; /* source elements left, 1 to 31 */
        __mmask16 ma = (__mmask16)(e >= 16 ? 0xFFFFu : (1u << e) - 1);
        __mmask16 mb = (__mmask16)(e > 16 ? (1u << (e - 16)) - 1 : 0u);
        __m512 a = _mm512_maskz_loadu_ps(ma, s + 2 * j);
        __m512 b = _mm512_maskz_loadu_ps(mb, s + 2 * j + 16);
        _mm512_mask_storeu_ps(d + j, (__mmask16)((1u << (n - j)) - 1),
                              _mm512_permutex2var_ps(a, even, b));
    }
}
#endif

/* d[j] = s[j*step] for j < n. */
#ifdef CD_X86
/* AVX2: d[j] = s[2*j] for j < n, eight at a time by in-lane shuffles and one permute. A
 * scalar loop spent a quarter of the direct 3x3/2 stem's time on the split (Zen 3). */
AVX2 static void
take_even_avx2(const float *s, int64_t n, float *d)
{
    int64_t j = 0;
    for (; 2 * j + 15 <= 2 * n - 2; j += 8) {
        __m256 a = _mm256_loadu_ps(s + 2 * j), b = _mm256_loadu_ps(s + 2 * j + 8);
        __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)); /* a0 a2 b0 b2 a4 a6 b4 b6 */
        e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(d + j, e);
    }
    for (; j < n; j++) {
        d[j] = s[2 * j];
    }
}

/* AVX2: memcpy of n floats inline; store_tile's runs are a few dozen floats, where libc's
 * memcpy calls cost the 3x3/2 stem about 12% (Zen 3). */
AVX2 static void
copy_floats_avx2(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    }
    for (; i < n; i++) {
        dst[i] = src[i];
    }
}
#endif

static void
take_strided(const cd_plan *p, const float *s, int64_t step, int64_t n, float *d)
{
#ifdef CD_X86
    if (step == 2 && avx512_tiles(p)) {
        take_even_avx512(s, n, d);
        return;
    }
    if (step == 2 && p->vec == 8) {
        take_even_avx2(s, n, d);
        return;
    }
#endif
    for (int64_t j = 0; j < n; j++) {
        d[j] = s[j * step];
    }
}

/* Zeros d[i] for i in [from, to). */
static void
zero_floats(float *d, int64_t from, int64_t to)
{
    if (to > from) {
        memset(d + from, 0, sizeof(float) * (size_t)(to - from));
    }
}

/* Pieces u = c*sh + a of the copy: channel c's sub-planes of row phase a (a*sw .. a*sw + sw
 * - 1), its input rows h with (h + ph) % sh == a copied in and every other cell zeroed, each
 * written once (a 3-channel stem's copy is memory-bound: zeroing it all first wrote it twice).
 * By phase, not by channel: a 3-channel stem's copy is 6 pieces, not 3 for two threads. Each
 * sub-plane is written up to p->split_end cells: the wide-pixel tiles read up to a vector past
 * its last row, the lanes tiles never. Short rows (a 7x7 output's sub-planes) are copied cell
 * by cell: the calls per row cost more than the copy. */
enum { SPLIT_SHORT_ROW = 12 }; /* cells per sub-plane row below which a loop copies them */

static void
split_range(void *ctx, int64_t begin, int64_t end)
{
    const cd_plan *p = ctx;
    const ty_direct_geom *g = p->g;
    for (int64_t u = begin; u < end; u++) {
        int64_t c = u / g->sh, a = u % g->sh;
        float *dst = p->ws + c * p->cs + a * g->sw * p->P;
        const float *src = p->x + c * g->H * g->W;
        int64_t h0 = ((a - g->ph) % g->sh + g->sh) % g->sh; /* the first input row, if < H */
        int64_t nrows = h0 < g->H ? (g->H - 1 - h0) / g->sh + 1 : 0;
        int64_t r0 = (h0 + g->ph) / g->sh; /* its sub-plane row; the others follow it */
        for (int64_t b = 0; b < g->sw; b++) { /* phase b: every sw-th column, in order */
            float *plane = dst + b * p->P;
            int64_t w0 = ((b - g->pw) % g->sw + g->sw) % g->sw;
            int64_t n = w0 < g->W ? (g->W - w0 + g->sw - 1) / g->sw : 0;
            int64_t col = (w0 + g->pw) / g->sw;
            zero_floats(plane, 0, nrows > 0 ? r0 * p->Sq : p->split_end);
            for (int64_t i = 0; i < nrows; i++) {
                float *row = plane + (r0 + i) * p->Sq;
                const float *s = src + (h0 + i * g->sh) * g->W + w0;
                if (p->Sq < SPLIT_SHORT_ROW) {
                    for (int64_t v = 0; v < p->Sq; v++) {
                        row[v] = v >= col && v < col + n ? s[(v - col) * g->sw] : 0.0f;
                    }
                    continue;
                }
                zero_floats(row, 0, col);
                if (g->sw == 1) {
                    memcpy(row + col, s, sizeof(float) * (size_t)n);
                } else {
                    take_strided(p, s, g->sw, n, row + col);
                }
                zero_floats(row, col + n, p->Sq);
            }
            zero_floats(plane, nrows > 0 ? (r0 + nrows) * p->Sq : p->split_end, p->split_end);
        }
    }
}

/* ---- register tiles: the chains of channel rows o, wide pixels q0 + i, over the channels
 * [c0, c1): out[o*TILE_Q + i] holds the chain so far (started at 0 when c0 == 0) and gets it
 * continued. Stored and reloaded values are exact, so splitting the channels changes no bit. */

/* Generic C: acc = acc + w*x, 16 lanes. */
static void
tile_generic(const cd_plan *p, const float *const *w, int64_t q0, int64_t c0, int64_t c1,
             float *out)
{
    float acc[4][16];
    for (int o = 0; o < 4; o++) {
        for (int i = 0; i < 16; i++) {
            acc[o][i] = c0 == 0 ? 0.0f : out[o * TILE_Q + i];
        }
    }
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = p->ws + c * p->cs + q0;
        for (int64_t t = 0; t < p->taps; t++) {
            const float *xs = xc + p->off[t];
            int64_t k = c * p->taps + t;
            for (int o = 0; o < 4; o++) {
                float wv = w[o][k];
                for (int i = 0; i < 16; i++) {
                    acc[o][i] = acc[o][i] + wv * xs[i];
                }
            }
        }
    }
    for (int o = 0; o < 4; o++) {
        memcpy(out + o * TILE_Q, acc[o], sizeof acc[o]);
    }
}

#ifdef CD_X86
/* AVX2: 4 channel rows x NV vectors of 8, the chains in named variables and the inputs loaded
 * before the weights are broadcast one row at a time (12 chains + 3 inputs + 1 weight: AVX2's
 * 16 registers): kept in an array (acc[4][NV]) with 4 weights live, GCC stored all twelve
 * chains to the stack on every tap (a Zen 3 ran the 7x7/2 stem at 26 GFLOP/s, a quarter of
 * its peak, one thread). */
#define FMA_ROW(o, wo)                                                                             \
    do {                                                                                           \
        __m256 b = _mm256_broadcast_ss(wo);                                                        \
        a##o##0 = _mm256_fmadd_ps(b, x0, a##o##0);                                                 \
        a##o##1 = nv > 1 ? _mm256_fmadd_ps(b, x1, a##o##1) : a##o##1;                              \
        a##o##2 = nv > 2 ? _mm256_fmadd_ps(b, x2, a##o##2) : a##o##2;                              \
    } while (0)

/* The first lanes (1 to 8) of v to d: a plain store when all 8 (Zen 3 runs masked stores as
 * many micro-ops), else a masked one (only a row's last vector when OW is not a multiple of 8). */
AVX2 static inline __attribute__((always_inline)) void
store_lanes_avx2(float *d, __m256 v, int lanes)
{
    if (lanes == 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(d, m, v);
}

AVX2 static inline __attribute__((always_inline)) void
tile_avx2_body(const cd_plan *p, const float *const *w, int64_t q0, int64_t c0, int64_t c1,
               float *out, int64_t ld, int nrows, int lanes, const int nv)
{
    __m256 a00, a01, a02, a10, a11, a12, a20, a21, a22, a30, a31, a32;
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = a30 = a31 = a32 = _mm256_setzero_ps();
    if (c0 > 0) {
#define LOAD_ROW(o)                                                                                \
    a##o##0 = _mm256_loadu_ps(out + o * ld);                                                       \
    a##o##1 = nv > 1 ? _mm256_loadu_ps(out + o * ld + 8) : a##o##1;                                \
    a##o##2 = nv > 2 ? _mm256_loadu_ps(out + o * ld + 16) : a##o##2;
        LOAD_ROW(0) LOAD_ROW(1) LOAD_ROW(2) LOAD_ROW(3)
#undef LOAD_ROW
    }
    const int64_t k0 = c0 * p->taps;
    const float *w0 = w[0] + k0, *w1 = w[1] + k0, *w2 = w[2] + k0, *w3 = w[3] + k0;
    const int64_t *off = p->off, taps = p->taps;
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = p->ws + c * p->cs + q0;
        for (int64_t t = 0; t < taps; t++) {
            const float *xs = xc + off[t];
            __m256 x0 = _mm256_loadu_ps(xs);
            __m256 x1 = nv > 1 ? _mm256_loadu_ps(xs + 8) : x0;
            __m256 x2 = nv > 2 ? _mm256_loadu_ps(xs + 16) : x0;
            FMA_ROW(0, w0 + t);
            FMA_ROW(1, w1 + t);
            FMA_ROW(2, w2 + t);
            FMA_ROW(3, w3 + t);
        }
        w0 += taps, w1 += taps, w2 += taps, w3 += taps;
    }
#define STORE_ROW(o)                                                                               \
    if (o < nrows) {                                                                               \
        store_lanes_avx2(out + o * ld, a##o##0, nv > 1 ? 8 : lanes);                               \
        if (nv > 1) {                                                                              \
            store_lanes_avx2(out + o * ld + 8, a##o##1, nv > 2 ? 8 : lanes);                       \
        }                                                                                          \
        if (nv > 2) {                                                                              \
            store_lanes_avx2(out + o * ld + 16, a##o##2, lanes);                                   \
        }                                                                                          \
    }
    STORE_ROW(0) STORE_ROW(1) STORE_ROW(2) STORE_ROW(3)
#undef STORE_ROW
}
#undef FMA_ROW

/* The tile into a buffer (out, TILE_Q floats a row, every lane) or, rows_range_avx2, straight
 * into the output planes (ld apart, nrows rows, the last vector's first lanes only). */
#define DEFINE_TILE_AVX2(NV)                                                                       \
    AVX2 static void tile_avx2_##NV(const cd_plan *p, const float *const *w, int64_t q0,           \
                                    int64_t c0, int64_t c1, float *out)                            \
    {                                                                                              \
        tile_avx2_body(p, w, q0, c0, c1, out, TILE_Q, 4, 8, NV);                                   \
    }                                                                                              \
    AVX2 static void tile_y_avx2_##NV(const cd_plan *p, const float *const *w, int64_t q0,         \
                                      float *out, int nrows, int lanes)                            \
    {                                                                                              \
        tile_avx2_body(p, w, q0, 0, p->g->C, out, p->g->OH * p->g->OW, nrows, lanes, NV);          \
    }
DEFINE_TILE_AVX2(1)
DEFINE_TILE_AVX2(2)
DEFINE_TILE_AVX2(3)

/* AVX-512: 6 channel rows x NV vectors of 16. */
#define DEFINE_TILE_AVX512(NV)                                                                     \
    AVX512 static void tile_avx512_##NV(const cd_plan *p, const float *const *w, int64_t q0,       \
                                        int64_t c0, int64_t c1, float *out, const cd_dst *d)       \
    {                                                                                              \
        __m512 acc[6][NV];                                                                         \
        for (int o = 0; o < 6; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                acc[o][v] = c0 == 0 ? _mm512_setzero_ps()                                          \
                                    : _mm512_loadu_ps(out + o * TILE_Q + 16 * v);                  \
            }                                                                                      \
        }                                                                                          \
        const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];        \
        const int64_t taps = p->taps, cs = p->cs;                                                  \
        const int64_t *off = p->off;                                                               \
        int64_t k = c0 * taps; /* one index for the six rows: few scalar ops per tap */            \
        for (int64_t c = c0; c < c1; c++) {                                                        \
            const float *xc = p->ws + c * cs + q0;                                                 \
            for (int64_t t = 0; t < taps; t++, k++) {                                              \
                const float *xs = xc + off[t];                                                     \
                __m512 b0 = _mm512_set1_ps(w0[k]), b1 = _mm512_set1_ps(w1[k]);                     \
                __m512 b2 = _mm512_set1_ps(w2[k]), b3 = _mm512_set1_ps(w3[k]);                     \
                __m512 b4 = _mm512_set1_ps(w4[k]), b5 = _mm512_set1_ps(w5[k]);                     \
                for (int v = 0; v < (NV); v++) { /* one vector of x live at a time: no spills */   \
                    __m512 xv = _mm512_loadu_ps(xs + 16 * v);                                      \
                    acc[0][v] = _mm512_fmadd_ps(b0, xv, acc[0][v]);                                \
                    acc[1][v] = _mm512_fmadd_ps(b1, xv, acc[1][v]);                                \
                    acc[2][v] = _mm512_fmadd_ps(b2, xv, acc[2][v]);                                \
                    acc[3][v] = _mm512_fmadd_ps(b3, xv, acc[3][v]);                                \
                    acc[4][v] = _mm512_fmadd_ps(b4, xv, acc[4][v]);                                \
                    acc[5][v] = _mm512_fmadd_ps(b5, xv, acc[5][v]);                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int o = 0; o < 6; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                if (!d) {                                                                          \
                    _mm512_storeu_ps(out + o * TILE_Q + 16 * v, acc[o][v]);                        \
                } else if (o < d->nrows) {                                                         \
                    _mm512_mask_storeu_ps(d->row[o] + d->at[v][0], d->m[v][0], acc[o][v]);         \
                    _mm512_mask_storeu_ps(d->row[o] + d->at[v][1], d->m[v][1], acc[o][v]);         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_TILE_AVX512(1)
DEFINE_TILE_AVX512(2)
DEFINE_TILE_AVX512(3)
DEFINE_TILE_AVX512(4)

/* AVX-512: 8 channel rows x NV <= 3 vectors of 16, for output channel counts that 8 divides
 * better than 6 (MobileNetV2's 32-channel stem computed 36 rows with 6); the x vectors of a
 * tap are loaded first, then each row's weight broadcast into them (28 registers). The same
 * chains as the 6-row tile. */
#define DEFINE_TILE8_AVX512(NV)                                                                    \
    AVX512 static void tile8_avx512_##NV(const cd_plan *p, const float *const *w, int64_t q0,      \
                                         int64_t c0, int64_t c1, float *out, const cd_dst *d)      \
    {                                                                                              \
        __m512 acc[8][NV];                                                                         \
        for (int o = 0; o < 8; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                acc[o][v] = c0 == 0 ? _mm512_setzero_ps()                                          \
                                    : _mm512_loadu_ps(out + o * TILE_Q + 16 * v);                  \
            }                                                                                      \
        }                                                                                          \
        const int64_t taps = p->taps, cs = p->cs;                                                  \
        const int64_t *off = p->off;                                                               \
        int64_t k = c0 * taps;                                                                     \
        for (int64_t c = c0; c < c1; c++) {                                                        \
            const float *xc = p->ws + c * cs + q0;                                                 \
            for (int64_t t = 0; t < taps; t++, k++) {                                              \
                const float *xs = xc + off[t];                                                     \
                __m512 xv[NV];                                                                     \
                for (int v = 0; v < (NV); v++) {                                                   \
                    xv[v] = _mm512_loadu_ps(xs + 16 * v);                                          \
                }                                                                                  \
                for (int o = 0; o < 8; o++) {                                                      \
                    __m512 b = _mm512_set1_ps(w[o][k]);                                            \
                    for (int v = 0; v < (NV); v++) {                                               \
                        acc[o][v] = _mm512_fmadd_ps(b, xv[v], acc[o][v]);                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int o = 0; o < 8; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                if (!d) {                                                                          \
                    _mm512_storeu_ps(out + o * TILE_Q + 16 * v, acc[o][v]);                        \
                } else if (o < d->nrows) {                                                         \
                    _mm512_mask_storeu_ps(d->row[o] + d->at[v][0], d->m[v][0], acc[o][v]);         \
                    _mm512_mask_storeu_ps(d->row[o] + d->at[v][1], d->m[v][1], acc[o][v]);         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_TILE8_AVX512(1)
DEFINE_TILE8_AVX512(2)
DEFINE_TILE8_AVX512(3)
#endif

typedef void (*tile_fn)(const cd_plan *, const float *const *, int64_t, int64_t, int64_t,
                        float *);
typedef void (*tile512_fn)(const cd_plan *, const float *const *, int64_t, int64_t, int64_t,
                           float *, const cd_dst *);

/* One register tile of nq <= TILE_Q wide pixels from q0 (the whole vectors covering them),
 * channels [c0, c1), into out, or into y through d (AVX-512 only; NULL: out). */
static void
run_tile(const cd_plan *p, const float *const *w, int64_t q0, int nq, int64_t c0, int64_t c1,
         float *out, const cd_dst *d)
{
#ifdef CD_X86
    int nv = (nq + p->vec - 1) / p->vec;
    if (p->vec == 16 && p->rows == 8) {
        static const tile512_fn fns[3] = {tile8_avx512_1, tile8_avx512_2, tile8_avx512_3};
        fns[nv - 1](p, w, q0, c0, c1, out, d);
        return;
    }
    if (p->vec == 16 && p->rows == 6) {
        static const tile512_fn fns[4] = {tile_avx512_1, tile_avx512_2, tile_avx512_3,
                                          tile_avx512_4};
        fns[nv - 1](p, w, q0, c0, c1, out, d);
        return;
    }
    if (p->vec == 8) {
        static const tile_fn fns[3] = {tile_avx2_1, tile_avx2_2, tile_avx2_3};
        for (int at = 0; at < nv; at += 3) { /* up to 24 pixels a call */
            int n = nv - at < 3 ? nv - at : 3;
            fns[n - 1](p, w, q0 + 8 * at, c0, c1, out + 8 * at);
        }
        return;
    }
#endif
    (void)d;
    for (int at = 0; at < nq; at += 16) {
        tile_generic(p, w, q0 + at, c0, c1, out + at);
    }
}

#ifdef CD_X86
/* memcpy of n floats with 16-lane loads and stores, the last masked: the runs store_tile
 * copies are a few dozen floats, and libc's memcpy calls cost the 7x7/2 stem 6%. */
AVX512 static void
copy_floats_avx512(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
    }
}
#endif

static void
copy_floats(const cd_plan *p, float *dst, const float *src, int64_t n)
{
#ifdef CD_X86
    if (avx512_tiles(p)) {
        copy_floats_avx512(dst, src, n);
        return;
    }
    if (p->vec == 8) {
        copy_floats_avx2(dst, src, n);
        return;
    }
#endif
    memcpy(dst, src, sizeof(float) * (size_t)n);
}

/* The tile's valid outputs (wide pixels [q0, q0 + nq), channels [oc0, oc0 + nrows)) to y. */
static void
store_tile(const cd_plan *p, const float *tile, int64_t oc0, int nrows, int64_t q0, int nq)
{
    const ty_direct_geom *g = p->g;
    const int64_t ohw = g->OH * g->OW;
    for (int64_t q = q0; q < q0 + nq;) {
        int64_t oh = q / p->Sq, ow = q % p->Sq;
        int64_t run = p->Sq - ow < q0 + nq - q ? p->Sq - ow : q0 + nq - q;
        int64_t len = ow < g->OW ? (g->OW - ow < run ? g->OW - ow : run) : 0;
        for (int o = 0; o < nrows && len > 0; o++) {
            copy_floats(p, p->y + (oc0 + o) * ohw + oh * g->OW + ow, tile + o * TILE_Q + (q - q0),
                        len);
        }
        q += run;
    }
}

/* The first output pixel (oh*OW + ow) at or after wide pixel q. */
static int64_t
pixel_at(const cd_plan *p, int64_t q)
{
    int64_t ow = q % p->Sq;
    return q / p->Sq * p->g->OW + (ow < p->g->OW ? ow : p->g->OW);
}

/* The weight rows of channel block ob; rows past OC repeat the last one (never stored). */
static int
block_rows(const cd_plan *p, int64_t ob, const float **w)
{
    int64_t oc0 = ob * p->rows;
    int nrows = p->g->OC - oc0 < p->rows ? (int)(p->g->OC - oc0) : p->rows;
    for (int o = 0; o < p->rows; o++) {
        w[o] = p->w + (oc0 + (o < nrows ? o : nrows - 1)) * p->kc;
    }
    return nrows;
}

/* The stores of a tile of nq wide pixels from q0 straight to y (cd_dst), for each of its
 * vectors; the rows are set per channel block. */
static void
dst_lanes(const cd_plan *p, int64_t q0, int nq, cd_dst *d)
{
    const ty_direct_geom *g = p->g;
    for (int v = 0; v * 16 < nq; v++) {
        int64_t q = q0 + 16 * v, oh = q / p->Sq, ow = q % p->Sq;
        int64_t lanes = nq - 16 * v < 16 ? nq - 16 * v : 16; /* lanes in the tile */
        int64_t a = ow < g->OW ? (g->OW - ow < lanes ? g->OW - ow : lanes) : 0;
        int64_t s = p->Sq - ow; /* the lane of the next row's column 0 */
        d->at[v][0] = oh * g->OW + ow;
        d->m[v][0] = (uint16_t)((1u << a) - 1);
        d->at[v][1] = (oh + 1) * g->OW - s;
        d->m[v][1] = 0;
        if (s < lanes) { /* lanes [s, e) of the next row */
            int64_t e = s + g->OW < lanes ? s + g->OW : lanes;
            d->m[v][1] = (uint16_t)(((1u << e) - 1) & ~((1u << s) - 1));
        }
    }
}

/* Whether the tiles store their final chains straight to y: AVX-512, all channels in one
 * pass, a vector of wide pixels spanning at most two output rows. */
static int
direct_store(const cd_plan *p)
{
    return avx512_tiles(p) && p->cblock >= p->g->C && p->Sq >= 16;
}

/* Task t: the channel blocks of group t % ngroups over wide pixel chunk t / ngroups. Per
 * register tile the input channels go in blocks small enough for their image window to stay
 * in L1 while every channel block of the group reads it (the chains carried in buf). */
static void
task_range(void *ctx, int64_t begin, int64_t end)
{
    const cd_plan *p = ctx;
    const ty_direct_geom *g = p->g;
    float buf[GROUP_BLOCKS][MAX_ROWS * TILE_Q];
    const int to_y = direct_store(p);
    for (int64_t t = begin; t < end; t++) {
        int64_t ob0 = t % p->ngroups * GROUP_BLOCKS, qa = t / p->ngroups * p->chunk_q;
        int64_t nb = p->nob - ob0 < GROUP_BLOCKS ? p->nob - ob0 : GROUP_BLOCKS;
        int64_t qb = qa + p->chunk_q < p->wide ? qa + p->chunk_q : p->wide;
        for (int64_t q = qa; q < qb; q += p->span) {
            int nq = (int)(qb - q < p->span ? qb - q : p->span);
            cd_dst d;
            if (to_y) {
                dst_lanes(p, q, nq, &d);
            }
            for (int64_t c0 = 0; c0 == 0 || c0 < g->C; c0 += p->cblock) { /* C = 0: zeros */
                int64_t c1 = c0 + p->cblock < g->C ? c0 + p->cblock : g->C;
                for (int64_t b = 0; b < nb; b++) {
                    const float *w[MAX_ROWS];
                    d.nrows = block_rows(p, ob0 + b, w);
                    for (int o = 0; to_y && o < d.nrows; o++) {
                        d.row[o] = p->y + ((ob0 + b) * p->rows + o) * g->OH * g->OW;
                    }
                    run_tile(p, w, q, nq, c0, c1, buf[b], to_y ? &d : NULL);
                }
            }
            for (int64_t b = 0; b < nb && !to_y; b++) {
                const float *w[MAX_ROWS];
                store_tile(p, buf[b], (ob0 + b) * p->rows, block_rows(p, ob0 + b, w), q, nq);
            }
        }
        int64_t pa = pixel_at(p, qa), pb = pixel_at(p, qb), oc0 = ob0 * p->rows;
        int64_t ocs = (ob0 + nb) * p->rows < g->OC ? nb * p->rows : g->OC - oc0;
        if (p->epi && pb > pa) {
            p->epi->fn(p->epi->ctx, oc0, pa, ocs, pb - pa, p->y + oc0 * g->OH * g->OW + pa,
                       g->OH * g->OW);
        }
    }
}

#ifdef CD_X86
/* AVX2, all input channels in one pass (a stem's short window sum): tasks of whole output
 * rows, whose register tiles (24 pixels of one row) store their final chains straight into
 * y. Through the wide-pixel buffer and its copy a third of the 3x3/2 stem's time went to
 * storing (Zen 3, one thread). Task t: channel group t % ngroups over rows chunk t / ngroups. */
enum { ROWS_TASK_PX = 192 }; /* output pixels of a task, about (whole rows) */

AVX2 static void
rows_range_avx2(void *ctx, int64_t begin, int64_t end)
{
    typedef void (*tile_y_fn)(const cd_plan *, const float *const *, int64_t, float *, int, int);
    static const tile_y_fn fns[3] = {tile_y_avx2_1, tile_y_avx2_2, tile_y_avx2_3};
    const cd_plan *p = ctx;
    const ty_direct_geom *g = p->g;
    const int64_t ohw = g->OH * g->OW;
    for (int64_t t = begin; t < end; t++) {
        int64_t ob0 = t % p->ngroups * GROUP_BLOCKS, r0 = t / p->ngroups * p->chunk_q;
        int64_t nb = p->nob - ob0 < GROUP_BLOCKS ? p->nob - ob0 : GROUP_BLOCKS;
        int64_t r1 = r0 + p->chunk_q < g->OH ? r0 + p->chunk_q : g->OH;
        for (int64_t oh = r0; oh < r1; oh++) {
            for (int64_t ow = 0; ow < g->OW; ow += 24) {
                int n = (int)(g->OW - ow < 24 ? g->OW - ow : 24), nv = (n + 7) / 8;
                for (int64_t b = 0; b < nb; b++) {
                    const float *w[MAX_ROWS];
                    int nrows = block_rows(p, ob0 + b, w);
                    float *out = p->y + (ob0 + b) * p->rows * ohw + oh * g->OW + ow;
                    fns[nv - 1](p, w, oh * p->Sq + ow, out, nrows, n - 8 * (nv - 1));
                }
            }
        }
        int64_t oc0 = ob0 * p->rows;
        int64_t ocs = (ob0 + nb) * p->rows < g->OC ? nb * p->rows : g->OC - oc0;
        if (p->epi && r1 > r0) {
            p->epi->fn(p->epi->ctx, oc0, r0 * g->OW, ocs, (r1 - r0) * g->OW,
                       p->y + oc0 * ohw + r0 * g->OW, ohw);
        }
    }
}

/* The rows path over the split image: chunk_q is rows per task here. */
static void
run_rows_avx2(cd_plan *p)
{
    const ty_direct_geom *g = p->g;
    p->chunk_q = ceil_div(ROWS_TASK_PX, g->OW);
    int64_t tasks = p->ngroups * ceil_div(g->OH, p->chunk_q);
    double task_fmas = (double)(GROUP_BLOCKS * p->rows) * (double)p->kc *
                       (double)(p->chunk_q * g->OW);
    int64_t grain = task_fmas >= MIN_TASK_FMAS ? 1 : (int64_t)(MIN_TASK_FMAS / task_fmas) + 1;
    ty_parallel_for(tasks, grain, rows_range_avx2, p);
}
#endif

/* ---- output channels in the lanes (AVX-512) ----
 * Where the wide pixels waste lanes (a 7x7 output is 61 wide pixels, 4 vectors for 49
 * outputs), the vectors run over 16 output channels instead and each output pixel's input is
 * broadcast: a register tile is OL_VECS vectors of channels x OL_PX pixels, any pixels of the
 * plane (their wide-pixel positions listed), so no lane is padding but an output-channel tail.
 * The weights come channel-major (OC, C*taps) and are transposed per task into kbuf, OL_KROWS
 * (channel, tap) rows of OL_OCS channels, by 16 x 16 register transposes. Each output is the
 * same chain as the wide-pixel tiles' (over c, then the taps, from 0, fma), so the bits are
 * the same and the choice between the two is free. */
enum {
    OL_OCS = 64,      /* output channels of a task: 4 vectors */
    OL_VECS = 4,
    OL_PX = 6,        /* pixels of a register tile */
    OL_KROWS = 144,    /* (channel, tap) rows of weights per pass: 16 channels at 3x3 */
    OL_CHUNK_PX = 196, /* pixels of a task, at most (a 14x14 plane: its weights transposed once) */
    /* AVX2: (channel, tap) rows per pass, 8 channels at 3x3: a pass's image window (8
     * channels' sub-plane rows of a 196-pixel chunk: 30 KB at 56x56) and a slice's weights
     * (4.5 KB) stay nearer L1. Zen 3, one thread, packed, best of 6 alternating rounds,
     * against 16 channels: ResNet-50's 128 -> 128 3x3/2 at 56 2.76 against 2.95 ms,
     * 256 -> 256 at 28 2.83 against 2.89, 512 -> 512 at 14 3.43 against 3.50. */
    OL_KROWS_AVX2 = 72,
};

/* AVX2: where a tile's inputs lie: tap t of pixel i of channel c at base + c*cs + off[t] +
 * q[i] (the image itself for the inside pixels, the patches for the border). */
typedef struct ol_view {
    const float *base;
    int64_t cs, taps;
    const int64_t *off;
} ol_view;

typedef struct ol_plan {
    const cd_plan *p;
    int64_t ocb, chunks, chunk_px; /* channel blocks, pixel chunks, pixels per chunk */
    int64_t cblock;                /* input channels per pass */
    int64_t offx[9], offb[9];      /* AVX2: the taps' offsets in the image and in a patch */
    ol_view inside, border;        /* AVX2: the image in place, the border's patches */
} ol_plan;

#ifdef CD_X86
/* Whether the lanes path takes the layer: AVX-512, a window of at most 3x3 (the 7x7 stem
 * measured 10% slower: its 64 channels' weights were transposed again for every pixel chunk),
 * enough output channels to fill the vectors, and enough multiply-adds per output to pay for
 * its store, which moves every output through a scalar transpose: with fewer than
 * LANES_MIN_KC of them on a plane larger than LANES_MAX_PX_SHORT pixels, the wide pixels
 * waste little and measured faster (one thread: MobileNetV2's 3 -> 32 3x3/2 stem at 224 0.52
 * -> 0.36 ms, ShuffleNetV2's 3 -> 24 0.48 -> 0.29). */
enum { LANES_MIN_KC = 64, LANES_MAX_PX_SHORT = 1024 };

static int
lanes_take(const cd_plan *p)
{
    const ty_direct_geom *g = p->g;
    if (p->vec == 8) { /* AVX2: not the stems, whose whole-row tiles store straight to y */
        return p->taps <= 9 && g->OC >= 16 && p->kc >= LANES_MIN_KC;
    }
    return p->vec == 16 && p->rows == 6 && p->taps <= 9 && g->OC >= 16 &&
           (p->kc >= LANES_MIN_KC || g->OH * g->OW <= LANES_MAX_PX_SHORT);
}

/* dst[j*ldd + i] = src_i[j] for i < 16 (rows past nrows read as 0), j < ncols <= 16 (rows j
 * past ncols not written): src_i = src + i*lds. */
AVX512 static void
transpose16(const float *src, int64_t lds, int nrows, int ncols, float *dst, int64_t ldd)
{
    const __mmask16 cm = (__mmask16)((1u << ncols) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; i++) {
        r[i] = i < nrows ? _mm512_maskz_loadu_ps(cm, src + i * lds) : _mm512_setzero_ps();
    }
    ty_transpose16_f32(r);
    for (int j = 0; j < ncols; j++) {
        _mm512_storeu_ps(dst + j * ldd, r[j]);
    }
}

/* kbuf[(k - k0)*OL_OCS + o] = w[(oc0 + o)*kc + k] for k in [k0, k1), o < nv*16 (0 past OC),
 * by 16 x 16 blocks. */
AVX512 static void
gather_weights(const cd_plan *p, int64_t oc0, int nv, int64_t k0, int64_t k1, float *kbuf)
{
    for (int v = 0; v < nv; v++) {
        int64_t o = oc0 + 16 * v, rows = p->g->OC - o < 16 ? p->g->OC - o : 16;
        for (int64_t k = k0; k < k1; k += 16) {
            int cols = (int)(k1 - k < 16 ? k1 - k : 16);
            transpose16(p->w + o * p->kc + k, p->kc, (int)rows, cols,
                        kbuf + (k - k0) * OL_OCS + 16 * v, OL_OCS);
        }
    }
}

/* AVX2: the weights in slices of 16 channels, each contiguous (a tile reads one slice, 64 B
 * a row: in gather_weights' 256-byte rows a pass's slice spread over all of kbuf's 36 KB, more
 * than a Zen 3's L1): kbuf[v*ldv + (k - k0)*16 + o] = w[(oc0 + 16*v + o)*kc + k], by 8 x 8
 * register transposes, the blocks at the edges (channels past OC: zeros; a last partial
 * block of k) element by element. */
AVX2 static void
transpose8_avx2(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8];
    for (int i = 0; i < 8; i++) {
        r[i] = _mm256_loadu_ps(src + i * lds);
    }
    ty_transpose8_f32(r);
    for (int i = 0; i < 8; i++) {
        _mm256_storeu_ps(dst + i * ldd, r[i]);
    }
}

AVX2 static void
gather_weights_avx2(const cd_plan *p, int64_t oc0, int nv, int64_t k0, int64_t k1, float *kbuf,
                    int64_t ldv)
{
    for (int64_t o = 0; o < 16 * (int64_t)nv; o += 8) {
        int64_t rows = p->g->OC - (oc0 + o); /* may be <= 0: all zeros */
        const float *src = p->w + (oc0 + o) * p->kc;
        float *dst = kbuf + o / 16 * ldv + o % 16;
        int64_t k = k0;
        for (; rows >= 8 && k + 8 <= k1; k += 8) {
            transpose8_avx2(src + k, p->kc, dst + (k - k0) * 16, 16);
        }
        for (; k < k1; k++) {
            for (int64_t i = 0; i < 8; i++) {
                dst[(k - k0) * 16 + i] = i < rows ? src[i * p->kc + k] : 0.0f;
            }
        }
    }
}

/* Prefetches into L2 the weights of rows [k0, k1) of output channels [oc0, oc0 + ocs), the
 * next pass's: 64 rows kc apart are more streams than the hardware prefetcher follows, and
 * the transposes waited on them (a 512-channel layer's 9.4 MB come from L3 or memory). */
static void
prefetch_weights(const cd_plan *p, int64_t oc0, int64_t ocs, int64_t k0, int64_t k1)
{
    for (int64_t o = oc0; o < oc0 + ocs && k1 > k0; o++) {
        const char *row = (const char *)(p->w + o * p->kc + k0);
        const char *last = (const char *)(p->w + o * p->kc + k1 - 1);
        for (; row <= last; row += 64) {
            _mm_prefetch(row, _MM_HINT_T1);
        }
        _mm_prefetch(last, _MM_HINT_T1);
    }
}

/* Prefetches n floats of packed weights from p into L2: the next pass's, one contiguous run. */
static void
prefetch_packed(const float *p, int64_t n)
{
    const char *c = (const char *)p, *end = (const char *)(p + n);
    for (; c < end; c += 64) {
        _mm_prefetch(c, _MM_HINT_T1);
    }
}

/* The packed weights of the blocks [begin, end) of OL_OCS output channels: block b at
 * b*OL_OCS*kc, laid out as gather_weights lays out a pass, over all of kc. */
static void
pack_range(void *ctx, int64_t begin, int64_t end)
{
    const cd_plan *p = ctx;
    float *packed = (float *)p->packed;
    for (int64_t b = begin; b < end; b++) {
        int64_t oc0 = b * OL_OCS, ocs = p->g->OC - oc0 < OL_OCS ? p->g->OC - oc0 : OL_OCS;
        int nv = (int)((ocs + 15) / 16); /* gather_weights zeroes their lanes past OC */
        if (p->vec == 8) { /* slices of 16 channels, kc rows each */
            gather_weights_avx2(p, oc0, nv, 0, p->kc, packed + oc0 * p->kc, 16 * p->kc);
            memset(packed + oc0 * p->kc + nv * 16 * p->kc, 0,
                   sizeof(float) * (size_t)((OL_VECS - nv) * 16 * p->kc));
            continue;
        }
        gather_weights(p, oc0, nv, 0, p->kc, packed + oc0 * p->kc);
        for (int v = nv; v < OL_VECS; v++) { /* vectors past OC, never read: zeros */
            for (int64_t k = 0; k < p->kc; k++) {
                memset(packed + oc0 * p->kc + k * OL_OCS + 16 * v, 0, 16 * sizeof(float));
            }
        }
    }
}

/* One register tile: pixels at wide positions q[0..px), channels [c0, c1) of kbuf's pass;
 * acc rows of out (OL_OCS floats per pixel) hold the chains so far (started at 0 when
 * first). */
AVX512 static inline __attribute__((always_inline)) void
ol_tile(const cd_plan *p, const float *kbuf, const int64_t *q, int64_t c0, int64_t c1,
        int first, float *out, const int nv, const int px)
{
    __m512 acc[OL_VECS][OL_PX];
    for (int i = 0; i < px; i++) {
        for (int v = 0; v < nv; v++) {
            acc[v][i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(out + i * OL_OCS + 16 * v);
        }
    }
    const int64_t taps = p->taps, cs = p->cs;
    const int64_t *off = p->off;
    const float *wk = kbuf;
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = p->ws + c * cs;
        for (int64_t t = 0; t < taps; t++, wk += OL_OCS) {
            const float *xs = xc + off[t];
            __m512 wv[OL_VECS];
            for (int v = 0; v < nv; v++) {
                wv[v] = _mm512_loadu_ps(wk + 16 * v);
            }
            for (int i = 0; i < px; i++) {
                __m512 b = _mm512_set1_ps(xs[q[i]]);
                for (int v = 0; v < nv; v++) {
                    acc[v][i] = _mm512_fmadd_ps(wv[v], b, acc[v][i]);
                }
            }
        }
    }
    for (int i = 0; i < px; i++) {
        for (int v = 0; v < nv; v++) {
            _mm512_storeu_ps(out + i * OL_OCS + 16 * v, acc[v][i]);
        }
    }
}

typedef void (*ol_fn)(const cd_plan *, const float *, const int64_t *, int64_t, int64_t, int,
                      float *);
#define OL_FN(NV, PX)                                                                              \
    AVX512 static void ol_tile_##NV##_##PX(const cd_plan *p, const float *kbuf, const int64_t *q, \
                                           int64_t c0, int64_t c1, int first, float *out)         \
    {                                                                                              \
        ol_tile(p, kbuf, q, c0, c1, first, out, NV, PX);                                           \
    }
#define OL_FNS(NV) OL_FN(NV, 1) OL_FN(NV, 2) OL_FN(NV, 3) OL_FN(NV, 4) OL_FN(NV, 5) OL_FN(NV, 6)
OL_FNS(1)
OL_FNS(2)
OL_FNS(3)
OL_FNS(4)
#undef OL_FNS
#undef OL_FN
#define OL_ROW(NV) {ol_tile_##NV##_1, ol_tile_##NV##_2, ol_tile_##NV##_3, ol_tile_##NV##_4,         \
                    ol_tile_##NV##_5, ol_tile_##NV##_6}
static const ol_fn ol_fns[OL_VECS][OL_PX] = {OL_ROW(1), OL_ROW(2), OL_ROW(3), OL_ROW(4)};
#undef OL_ROW

/* AVX2: one register tile of 16 channels (one slice of gather_weights_avx2: two vectors) x PX
 * pixels, 12 chains at most, pixel i's chains in out's row r[i]; ol_pass runs it slice by
 * slice, so a slice's weights stay in L1 across the chunk's pixels. */
AVX2 static inline __attribute__((always_inline)) void
ol_tile_avx2(const ol_view *vw, const float *kbuf, const int64_t *q, const int64_t *r,
             int64_t c0, int64_t c1, int first, float *out, const int px)
{
    /* named chains, not arrays: GCC stored an array's twelve to the stack on every tap
     * (30 GFLOP/s, one thread, Zen 3) */
    __m256 l0, l1, l2, l3, l4, l5, h0, h1, h2, h3, h4, h5;
    l0 = l1 = l2 = l3 = l4 = l5 = h0 = h1 = h2 = h3 = h4 = h5 = _mm256_setzero_ps();
#define OL_LOAD(i)                                                                                 \
    if (!first && (i) < px) {                                                                      \
        l##i = _mm256_loadu_ps(out + r[i] * OL_OCS);                                               \
        h##i = _mm256_loadu_ps(out + r[i] * OL_OCS + 8);                                           \
    }
    OL_LOAD(0) OL_LOAD(1) OL_LOAD(2) OL_LOAD(3) OL_LOAD(4) OL_LOAD(5)
#undef OL_LOAD
    const int64_t taps = vw->taps, cs = vw->cs;
    const int64_t *off = vw->off;
    const int64_t q0 = q[0], q1 = px > 1 ? q[1] : 0, q2 = px > 2 ? q[2] : 0;
    const int64_t q3 = px > 3 ? q[3] : 0, q4 = px > 4 ? q[4] : 0, q5 = px > 5 ? q[5] : 0;
    const float *wk = kbuf;
    for (int64_t c = c0; c < c1; c++) {
        const float *xc = vw->base + c * cs;
        for (int64_t t = 0; t < taps; t++, wk += 16) {
            const float *xs = xc + off[t];
            __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
#define OL_FMA(i)                                                                                  \
    if ((i) < px) {                                                                                \
        __m256 b = _mm256_broadcast_ss(xs + q##i);                                                 \
        l##i = _mm256_fmadd_ps(w0, b, l##i);                                                       \
        h##i = _mm256_fmadd_ps(w1, b, h##i);                                                       \
    }
            OL_FMA(0) OL_FMA(1) OL_FMA(2) OL_FMA(3) OL_FMA(4) OL_FMA(5)
#undef OL_FMA
        }
    }
#define OL_STORE(i)                                                                                \
    if ((i) < px) {                                                                                \
        _mm256_storeu_ps(out + r[i] * OL_OCS, l##i);                                               \
        _mm256_storeu_ps(out + r[i] * OL_OCS + 8, h##i);                                           \
    }
    OL_STORE(0) OL_STORE(1) OL_STORE(2) OL_STORE(3) OL_STORE(4) OL_STORE(5)
#undef OL_STORE
}

typedef void (*ol_avx2_fn)(const ol_view *, const float *, const int64_t *, const int64_t *,
                           int64_t, int64_t, int, float *);
#define OL_FN_AVX2(PX)                                                                             \
    AVX2 static void ol_tile_avx2_##PX(const ol_view *vw, const float *kbuf, const int64_t *q,    \
                                       const int64_t *r, int64_t c0, int64_t c1, int first,       \
                                       float *out)                                                \
    {                                                                                              \
        ol_tile_avx2(vw, kbuf, q, r, c0, c1, first, out, PX);                                      \
    }
OL_FN_AVX2(1)
OL_FN_AVX2(2)
OL_FN_AVX2(3)
OL_FN_AVX2(4)
OL_FN_AVX2(5)
OL_FN_AVX2(6)
#undef OL_FN_AVX2
static const ol_avx2_fn ol_fns_avx2[OL_PX] = {ol_tile_avx2_1, ol_tile_avx2_2, ol_tile_avx2_3,
                                              ol_tile_avx2_4, ol_tile_avx2_5, ol_tile_avx2_6};

/* AVX2: y[o*ldy + i] = out[i*OL_OCS + o] for o < ocs, i < n, by 8 x 8 register transposes,
 * the edges (a last partial block of pixels or channels) element by element; the scalar
 * transpose took 4% of ResNet-50's 128 -> 128 3x3/2 at 56 (Zen 3, perf). */
AVX2 static void
store_out_avx2(const float *out, int64_t ocs, int64_t n, float *y, int64_t ldy)
{
    int64_t o = 0;
    for (; o + 8 <= ocs; o += 8) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            transpose8_avx2(out + i * OL_OCS + o, OL_OCS, y + o * ldy + i, ldy);
        }
        for (; i < n; i++) {
            for (int64_t k = 0; k < 8; k++) {
                y[(o + k) * ldy + i] = out[i * OL_OCS + o + k];
            }
        }
    }
    for (; o < ocs; o++) {
        for (int64_t i = 0; i < n; i++) {
            y[o * ldy + i] = out[i * OL_OCS + o];
        }
    }
}

/* The pixels of AVX2 tile j of T = ceil(n / 6) over n pixels: as even as T tiles go (a 7x7
 * output: 4 x 6 + 5 x 5, not 8 x 6 + 1, whose 2-chain tile waits on the fma latency: 512 ->
 * 512 3x3/2 at 14 3.36 against 3.50 ms, one thread, Zen 3; a border of 13: 5 + 4 + 4). */
static int
tile_px_avx2(int64_t n, int64_t T, int64_t j)
{
    return (int)(n / T + (j < n % T ? 1 : 0));
}

/* AVX2: the pass's tiles, slice by slice (kb's slices ldv floats apart). pf: the next pass's
 * packed weights (npf floats a slice) or NULL, prefetched a share before each tile: issued
 * all at once (576 lines a pass at 512 channels) they held up the pass on the misses they
 * queued (512 -> 512 3x3/2 at 14, one thread, 8-channel passes: 2.94 against 3.43 ms). */
static void
ol_pass_avx2(const ol_view *vw, const float *kb, int64_t ldv, const int64_t *q, const int64_t *r,
             int64_t n, int64_t c0, int64_t c1, int nv, float *out, const float *pf, int64_t npf)
{
    if (n < 1) {
        return;
    }
    int64_t T = ceil_div(n, OL_PX), share = ceil_div(npf, 16 * T) * 16; /* whole lines */
    for (int v = 0; v < nv; v++) {
        for (int64_t i = 0, j = 0; i < n; j++) {
            int px = tile_px_avx2(n, T, j);
            if (pf && j * share < npf) {
                prefetch_packed(pf + v * ldv + j * share,
                                npf - j * share < share ? npf - j * share : share);
            }
            ol_fns_avx2[px - 1](vw, kb + v * ldv, q + i, r + i, c0, c1, c0 == 0, out + 16 * v);
            i += px;
        }
    }
}

/* One pass of channels [c0, c1) over pixels [p0, p1) of the chunk (out's rows from p0). */
static void
ol_pass(const ol_plan *op, const float *kb, const int64_t *q, int64_t p0, int64_t p1,
        int64_t c0, int64_t c1, int nv, float *out)
{
    for (int64_t i = p0; i < p1; i += OL_PX) {
        int px = (int)(p1 - i < OL_PX ? p1 - i : OL_PX);
        ol_fns[nv - 1][px - 1](op->p, kb, q + (i - p0), c0, c1, c0 == 0, out + (i - p0) * OL_OCS);
    }
}

/* AVX2: a chunk's pixels, those whose windows lie inside the image (qi: their offsets in it)
 * and the border's (qb: their patches'), each with its row of the chunk's out (ri, rb). */
typedef struct ol_pixels {
    int64_t qi[OL_CHUNK_PX], ri[OL_CHUNK_PX], qb[OL_CHUNK_PX], rb[OL_CHUNK_PX];
    int64_t ni, nb;
} ol_pixels;

/* Border outputs before output i (row-major): i less the inside ones. */
static int64_t
border_before(const cd_plan *p, int64_t i)
{
    int64_t oh = i / p->g->OW, ow = i % p->g->OW, iw = p->iw1 - p->iw0;
    int64_t rows = (oh < p->ih0 ? p->ih0 : oh > p->ih1 ? p->ih1 : oh) - p->ih0;
    int64_t inside = rows * iw;
    if (oh >= p->ih0 && oh < p->ih1) {
        inside += (ow < p->iw0 ? p->iw0 : ow > p->iw1 ? p->iw1 : ow) - p->iw0;
    }
    return i - inside;
}

/* px = the pixels [p0, p1) of the plane, inside and border. */
static void
chunk_pixels_avx2(const cd_plan *p, int64_t p0, int64_t p1, ol_pixels *px)
{
    const ty_direct_geom *g = p->g;
    int64_t b = border_before(p, p0);
    px->ni = px->nb = 0;
    for (int64_t i = p0; i < p1; i++) {
        int64_t oh = i / g->OW, ow = i % g->OW;
        if (oh >= p->ih0 && oh < p->ih1 && ow >= p->iw0 && ow < p->iw1) {
            px->qi[px->ni] = (oh * g->sh - g->ph) * g->W + ow * g->sw - g->pw;
            px->ri[px->ni++] = i - p0;
        } else {
            px->qb[px->nb] = b++ * p->taps;
            px->rb[px->nb++] = i - p0;
        }
    }
}

/* Task t: output channels [64*(t / chunks), +64) over pixel chunk t % chunks; the chains
 * carried in out between passes over the input channels; then out's channels to y and the
 * epilogue over the block. */
static void
ol_range(void *ctx, int64_t begin, int64_t end)
{
    const ol_plan *op = ctx;
    const cd_plan *p = op->p;
    const ty_direct_geom *g = p->g;
    const int64_t ohw = g->OH * g->OW;
    _Alignas(64) float kbuf[OL_KROWS * OL_OCS];     /* 36 KB */
    _Alignas(64) float out[OL_CHUNK_PX * OL_OCS];   /* 49 KB: [pixel][channel] */
    int64_t q[OL_CHUNK_PX];
    ol_pixels px;
    for (int64_t t = begin; t < end; t++) {
        int64_t oc0 = t / op->chunks * OL_OCS, p0 = t % op->chunks * op->chunk_px;
        int64_t p1 = p0 + op->chunk_px < ohw ? p0 + op->chunk_px : ohw;
        int64_t ocs = g->OC - oc0 < OL_OCS ? g->OC - oc0 : OL_OCS;
        int nv = (int)((ocs + 15) / 16);
        if (p->vec == 8) {
            chunk_pixels_avx2(p, p0, p1, &px);
        } else {
            for (int64_t i = p0; i < p1; i++) {
                q[i - p0] = i / g->OW * p->Sq + i % g->OW;
            }
        }
        const int64_t taps = p->taps;
        const float *packed = p->packed ? p->packed + oc0 * p->kc : NULL; /* its block */
        for (int64_t c0 = 0; c0 == 0 || c0 < g->C; c0 += op->cblock) { /* C = 0: zeros */
            int64_t c1 = c0 + op->cblock < g->C ? c0 + op->cblock : g->C;
            int64_t c2 = c1 + op->cblock < g->C ? c1 + op->cblock : g->C;
            const float *kb = kbuf, *pf = NULL;
            int64_t ldv = 16 * OL_KROWS; /* AVX2's slices */
            if (packed && p->vec == 8) {
                ldv = 16 * p->kc;
                kb = packed + c0 * taps * 16;
                pf = kb + (c1 - c0) * taps * 16; /* ol_pass_avx2 prefetches it */
            } else if (packed) {
                kb = packed + c0 * taps * OL_OCS;
                prefetch_packed(packed + c1 * taps * OL_OCS, (c2 - c1) * taps * OL_OCS);
            } else {
                if (p->vec == 8) {
                    gather_weights_avx2(p, oc0, nv, c0 * taps, c1 * taps, kbuf, ldv);
                } else {
                    gather_weights(p, oc0, nv, c0 * taps, c1 * taps, kbuf);
                }
                prefetch_weights(p, oc0, ocs, c1 * taps, c2 * taps);
            }
            if (p->vec == 8) {
                int64_t npf = (c2 - c1) * taps * 16;
                ol_pass_avx2(&op->inside, kb, ldv, px.qi, px.ri, px.ni, c0, c1, nv, out, pf, npf);
                ol_pass_avx2(&op->border, kb, ldv, px.qb, px.rb, px.nb, c0, c1, nv, out,
                             px.ni > 0 ? NULL : pf, npf);
            } else {
                ol_pass(op, kb, q, p0, p1, c0, c1, nv, out);
            }
        }
        if (p->vec == 8) {
            store_out_avx2(out, ocs, p1 - p0, p->y + oc0 * ohw + p0, ohw);
        } else {
            for (int64_t o = 0; o < ocs; o++) {
                float *yo = p->y + (oc0 + o) * ohw;
                for (int64_t i = p0; i < p1; i++) {
                    yo[i] = out[(i - p0) * OL_OCS + o];
                }
            }
        }
        if (p->epi) {
            p->epi->fn(p->epi->ctx, oc0, p0, ocs, p1 - p0, p->y + oc0 * ohw + p0, ohw);
        }
    }
}

/* One border output's patch of channel image xc: its taps row-major, 0 in the padding. */
static float *
patch_one(const ty_direct_geom *g, const float *xc, int64_t oh, int64_t ow, float *d)
{
    int64_t iw0 = ow * g->sw - g->pw;
    for (int64_t kh = 0; kh < g->KH; kh++) {
        int64_t ih = oh * g->sh - g->ph + kh * g->dh;
        if (ih < 0 || ih >= g->H) {
            for (int64_t kw = 0; kw < g->KW; kw++) {
                *d++ = 0.0f;
            }
            continue;
        }
        const float *row = xc + ih * g->W;
        for (int64_t kw = 0, iw = iw0; kw < g->KW; kw++, iw += g->dw) {
            *d++ = iw >= 0 && iw < g->W ? row[iw] : 0.0f;
        }
    }
    return d;
}

/* AVX2's lanes path: the border outputs' patches of channels [begin, end) into ws: channel
 * c's at c*nb*taps, each border output's taps row-major, 0 where they fall in the padding.
 * Instead of the split copy of the whole image: with it the copy took 5-7% of ResNet's
 * 3x3/2 layers at 56 and 28 (perf); reading the image in place, the patches take 4% (their
 * rows' first touch of the image) and the layers ran, one thread, best of 8 alternating
 * rounds, 64->128 at 56 1.36 against 1.39 ms, 128->256 at 28 1.35 against 1.37, 128->128 at
 * 56 2.71 against 2.79, 256->256 at 28 2.70 against 2.76; at 14 even (1.38 against 1.40,
 * 2.83 against 2.84). */
static void
patch_range(void *ctx, int64_t begin, int64_t end)
{
    const cd_plan *p = ctx;
    const ty_direct_geom *g = p->g;
    for (int64_t c = begin; c < end; c++) {
        const float *xc = p->x + c * g->H * g->W;
        float *d = p->ws + c * patch_floats(p);
        for (int64_t oh = 0; oh < g->OH; oh++) {
            int row_inside = oh >= p->ih0 && oh < p->ih1 && p->iw1 > p->iw0;
            for (int64_t ow = 0; ow < g->OW; ow++) {
                if (row_inside && ow == p->iw0) {
                    ow = p->iw1 - 1; /* on to the border's right part */
                    continue;
                }
                d = patch_one(g, xc, oh, ow, d);
            }
        }
    }
}

/* The lanes path: over the split image in p->ws (AVX-512), or over the image in place and the
 * border's patches in p->ws (AVX2). Tasks: blocks of 64 output channels times chunks of at
 * most OL_CHUNK_PX pixels, both fixed by the shape. */
static void
run_lanes(const cd_plan *p)
{
    const ty_direct_geom *g = p->g;
    const int64_t ohw = g->OH * g->OW;
    ol_plan op = {.p = p, .ocb = ceil_div(g->OC, OL_OCS), .chunks = ceil_div(ohw, OL_CHUNK_PX)};
    op.chunk_px = ceil_div(ceil_div(ohw, op.chunks), OL_PX) * OL_PX; /* near-equal chunks */
    op.chunk_px = op.chunk_px < OL_CHUNK_PX ? op.chunk_px : OL_CHUNK_PX;
    op.chunks = ceil_div(ohw, op.chunk_px);
    op.cblock = (p->vec == 8 ? OL_KROWS_AVX2 : OL_KROWS) / p->taps;
    for (int64_t kh = 0, t = 0; kh < g->KH && p->vec == 8; kh++) {
        for (int64_t kw = 0; kw < g->KW; kw++, t++) {
            op.offx[t] = kh * g->dh * g->W + kw * g->dw;
            op.offb[t] = t;
        }
    }
    op.inside = (ol_view){.base = p->x, .cs = g->H * g->W, .taps = p->taps, .off = op.offx};
    op.border = (ol_view){.base = p->ws, .cs = patch_floats(p), .taps = p->taps, .off = op.offb};
    double task_fmas = (double)OL_OCS * (double)p->kc * (double)op.chunk_px;
    int64_t grain = task_fmas >= MIN_TASK_FMAS ? 1 : (int64_t)(MIN_TASK_FMAS / task_fmas) + 1;
    ty_parallel_for(op.ocb * op.chunks, grain, ol_range, &op);
}
#endif

/* The plan of g with its register tile; 0 when the kernel cannot take g. */
static int
plan_of(const ty_direct_geom *g, cd_plan *p)
{
    if (g->OC < 1 || !plan_sizes(g, p)) {
        return 0;
    }
    tile_shape(&p->rows, &p->vec);
    return 1;
}

size_t
ty_conv_direct_packed_floats(const ty_direct_geom *g)
{
#ifdef CD_X86
    cd_plan p;
    if (plan_of(g, &p) && lanes_take(&p)) {
        return (size_t)(ceil_div(g->OC, OL_OCS) * OL_OCS * p.kc);
    }
#else
    (void)g;
#endif
    return 0;
}

void
ty_conv_direct_pack_f32(const ty_direct_geom *g, const float *w, float *packed)
{
#ifdef CD_X86
    cd_plan p;
    if (!plan_of(g, &p) || !lanes_take(&p)) {
        return;
    }
    p.w = w;
    p.packed = packed;
    ty_parallel_for(ceil_div(g->OC, OL_OCS), 1, pack_range, &p);
#else
    (void)g, (void)w, (void)packed;
#endif
}

void
ty_conv_direct_f32(const ty_direct_geom *g, const float *x, const float *w,
                   const float *packed, float *y, float *ws, const ty_gemm_epilogue_f32 *epi)
{
    cd_plan p;
    if (!plan_of(g, &p)) {
        return;
    }
    p.x = x;
    p.w = w;
    p.packed = packed;
    p.y = y;
    p.ws = ws;
    p.epi = epi;
    for (int64_t kh = 0, t = 0; kh < g->KH; kh++) {
        for (int64_t kw = 0; kw < g->KW; kw++, t++) {
            int64_t a = kh * g->dh % g->sh, b = kw * g->dw % g->sw;
            p.off[t] = (a * g->sw + b) * p.P + (kh * g->dh / g->sh) * p.Sq + kw * g->dw / g->sw;
        }
    }
    int lanes = 0;
#ifdef CD_X86
    lanes = lanes_take(&p);
    if (lanes && p.vec == 8) { /* the image in place: only the border's windows copied */
        if (patch_floats(&p) > 0) { /* no border (no padding, say): nothing to copy */
            ty_parallel_for(g->C, (1 << 14) / patch_floats(&p) + 1, patch_range, &p);
        }
        run_lanes(&p);
        return;
    }
#endif
    p.split_end = lanes ? p.Rq * p.Sq : p.P;
    int64_t piece = p.cs / g->sh; /* split_range's pieces: of at least about 16K floats */
    ty_parallel_for(g->C * g->sh, (1 << 14) / (piece > 0 ? piece : 1) + 1, split_range, &p);
#ifdef CD_X86
    if (lanes) {
        run_lanes(&p);
        return;
    }
#endif
    p.packed = NULL; /* the lanes path's only */
    /* 8 rows where they compute fewer rows past OC, on planes large enough that their
     * 48-pixel tiles' tails cost little (a 7x7 plane's 61 wide pixels: 48 + 13) */
    if (avx512_tiles(&p) && ceil_div(g->OC, 8) * 8 < ceil_div(g->OC, 6) * 6 &&
        p.wide >= ROWS8_MIN_WIDE) {
        p.rows = 8; /* the same chains as 6 rows */
    }
    p.nob = ceil_div(g->OC, p.rows);
    p.ngroups = ceil_div(p.nob, GROUP_BLOCKS);
    p.span = p.vec == 8 || p.rows == 8 ? 48 : TILE_Q;
    p.chunk_q = CHUNK_TILES * p.span;
    p.cblock = CBLOCK_TAPS / p.taps > 0 ? CBLOCK_TAPS / p.taps : 1;
    if (p.kc <= ONE_PASS_KC && g->C > 0) { /* a 3-channel 7x7 stem: its window fits L1 */
        p.cblock = g->C;
    }
#ifdef CD_X86
    if (p.vec == 8 && p.cblock >= g->C && g->C > 0) {
        run_rows_avx2(&p);
        return;
    }
#endif
    int64_t tasks = p.ngroups * ceil_div(p.wide, p.chunk_q);
    double task_fmas = (double)(GROUP_BLOCKS * p.rows) * (double)p.kc * (double)p.chunk_q;
    int64_t grain = task_fmas >= MIN_TASK_FMAS ? 1 : (int64_t)(MIN_TASK_FMAS / task_fmas) + 1;
    ty_parallel_for(tasks, grain, task_range, &p);
}
