/* Direct dense convolution: see conv_direct.h. */
#include <string.h>

#include "base/isa.h"
#include "base/threadpool.h"
#include "kernels/cpu/conv_direct.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CD_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#endif

enum {
    MAX_TAPS = 1024,        /* KH*KW the kernel takes (its tap offsets live on the stack) */
    TILE_Q = 64,            /* wide pixels of one register tile, at most (AVX-512: 4 x 16) */
    MAX_ROWS = 6,           /* output channels of one register tile, at most */
    TASK_Q = 256,           /* wide pixels per task, about (whole output rows) */
    MIN_TASK_FMAS = 1 << 16, /* multiply-adds per parallel chunk, at least */
};

/* The scratch layout: per channel sh*sw sub-planes of P floats, each Rq x Sq cells. */
typedef struct cd_plan {
    const ty_direct_geom *g;
    int64_t Rq, Sq, P, cs;  /* cs = sh*sw*P: one channel */
    int64_t wide;           /* (OH - 1)*Sq + OW */
    int64_t taps, kc;       /* KH*KW, C*KH*KW */
    int64_t off[MAX_TAPS];  /* tap t's offset from the channel's scratch */
    int rows, vec;          /* the register tile: output channels x lanes */
    int64_t nob, rows_per_task, nrt;
    const float *x, *w;
    float *y, *ws;
    const ty_gemm_epilogue_f32 *epi;
} cd_plan;

static int64_t
ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
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

/* The plan's sizes; 0 when they overflow or the kernel cannot take the geometry. */
static int
plan_sizes(const ty_direct_geom *g, cd_plan *p)
{
    const int64_t lim = (int64_t)1 << 40;
    if (g->KH * g->KW > MAX_TAPS || g->C > lim || g->H > lim || g->W > lim || g->OH < 1 ||
        g->OW < 1) {
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
    return 1;
}

size_t
ty_conv_direct_ws_floats(const ty_direct_geom *g)
{
    cd_plan p;
    if (!plan_sizes(g, &p)) {
        return 0;
    }
    return (size_t)(p.cs * (g->C > 0 ? g->C : 1));
}

/* ---- the padded, split copy of the image ---- */
static void
split_range(void *ctx, int64_t begin, int64_t end)
{
    const cd_plan *p = ctx;
    const ty_direct_geom *g = p->g;
    for (int64_t c = begin; c < end; c++) {
        float *dst = p->ws + c * p->cs;
        const float *src = p->x + c * g->H * g->W;
        memset(dst, 0, sizeof(float) * (size_t)p->cs);
        for (int64_t h = 0; h < g->H; h++) {
            int64_t ih = h + g->ph;
            float *row = dst + (ih % g->sh) * g->sw * p->P + (ih / g->sh) * p->Sq;
            const float *s = src + h * g->W;
            if (g->sw == 1) {
                memcpy(row + g->pw, s, sizeof(float) * (size_t)g->W);
                continue;
            }
            for (int64_t b = 0; b < g->sw; b++) { /* phase b: every sw-th column, in order */
                int64_t w0 = ((b - g->pw) % g->sw + g->sw) % g->sw;
                float *d = row + b * p->P + (w0 + g->pw) / g->sw;
                for (int64_t w = w0; w < g->W; w += g->sw) {
                    *d++ = s[w];
                }
            }
        }
    }
}

/* ---- register tiles: out[o*TILE_Q + i] = the chain of wide pixel q0 + i, channel row o ---- */

/* Generic C: acc = acc + w*x, 16 lanes. */
static void
tile_generic(const cd_plan *p, const float *const *w, int64_t q0, int nq, float *out)
{
    float acc[4][16];
    memset(acc, 0, sizeof acc);
    (void)nq;
    for (int64_t c = 0; c < p->g->C; c++) {
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
/* AVX2: 4 channel rows x NV vectors of 8. */
#define DEFINE_TILE_AVX2(NV)                                                                       \
    AVX2 static void tile_avx2_##NV(const cd_plan *p, const float *const *w, int64_t q0,           \
                                    float *out)                                                    \
    {                                                                                              \
        __m256 acc[4][NV];                                                                         \
        for (int o = 0; o < 4; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                acc[o][v] = _mm256_setzero_ps();                                                   \
            }                                                                                      \
        }                                                                                          \
        const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];                                \
        for (int64_t c = 0; c < p->g->C; c++) {                                                    \
            const float *xc = p->ws + c * p->cs + q0;                                              \
            for (int64_t t = 0; t < p->taps; t++, w0++, w1++, w2++, w3++) {                        \
                const float *xs = xc + p->off[t];                                                  \
                __m256 xv[NV];                                                                     \
                for (int v = 0; v < (NV); v++) {                                                   \
                    xv[v] = _mm256_loadu_ps(xs + 8 * v);                                           \
                }                                                                                  \
                __m256 b0 = _mm256_broadcast_ss(w0), b1 = _mm256_broadcast_ss(w1);                \
                __m256 b2 = _mm256_broadcast_ss(w2), b3 = _mm256_broadcast_ss(w3);                 \
                for (int v = 0; v < (NV); v++) {                                                   \
                    acc[0][v] = _mm256_fmadd_ps(b0, xv[v], acc[0][v]);                             \
                    acc[1][v] = _mm256_fmadd_ps(b1, xv[v], acc[1][v]);                             \
                    acc[2][v] = _mm256_fmadd_ps(b2, xv[v], acc[2][v]);                             \
                    acc[3][v] = _mm256_fmadd_ps(b3, xv[v], acc[3][v]);                             \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (int o = 0; o < 4; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                _mm256_storeu_ps(out + o * TILE_Q + 8 * v, acc[o][v]);                            \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_TILE_AVX2(1)
DEFINE_TILE_AVX2(2)
DEFINE_TILE_AVX2(3)

/* AVX-512: 6 channel rows x NV vectors of 16. */
#define DEFINE_TILE_AVX512(NV)                                                                     \
    AVX512 static void tile_avx512_##NV(const cd_plan *p, const float *const *w, int64_t q0,       \
                                        float *out)                                                \
    {                                                                                              \
        __m512 acc[6][NV];                                                                         \
        for (int o = 0; o < 6; o++) {                                                              \
            for (int v = 0; v < (NV); v++) {                                                       \
                acc[o][v] = _mm512_setzero_ps();                                                   \
            }                                                                                      \
        }                                                                                          \
        const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];        \
        for (int64_t c = 0; c < p->g->C; c++) {                                                    \
            const float *xc = p->ws + c * p->cs + q0;                                              \
            for (int64_t t = 0; t < p->taps; t++, w0++, w1++, w2++, w3++, w4++, w5++) {            \
                const float *xs = xc + p->off[t];                                                  \
                __m512 b0 = _mm512_set1_ps(*w0), b1 = _mm512_set1_ps(*w1);                         \
                __m512 b2 = _mm512_set1_ps(*w2), b3 = _mm512_set1_ps(*w3);                         \
                __m512 b4 = _mm512_set1_ps(*w4), b5 = _mm512_set1_ps(*w5);                         \
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
                _mm512_storeu_ps(out + o * TILE_Q + 16 * v, acc[o][v]);                            \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_TILE_AVX512(1)
DEFINE_TILE_AVX512(2)
DEFINE_TILE_AVX512(3)
DEFINE_TILE_AVX512(4)
#endif

/* One register tile of nq <= TILE_Q wide pixels from q0 (the whole vectors covering them). */
static void
run_tile(const cd_plan *p, const float *const *w, int64_t q0, int nq, float *out)
{
#ifdef CD_X86
    int nv = (nq + p->vec - 1) / p->vec;
    if (p->vec == 16 && p->rows == 6) {
        switch (nv) {
        case 1: tile_avx512_1(p, w, q0, out); return;
        case 2: tile_avx512_2(p, w, q0, out); return;
        case 3: tile_avx512_3(p, w, q0, out); return;
        default: tile_avx512_4(p, w, q0, out); return;
        }
    }
    if (p->vec == 8) {
        for (int at = 0; at < nv; at += 3) { /* up to 24 pixels a call */
            int n = nv - at < 3 ? nv - at : 3;
            void (*fn)(const cd_plan *, const float *const *, int64_t, float *) =
                n == 1 ? tile_avx2_1 : n == 2 ? tile_avx2_2 : tile_avx2_3;
            fn(p, w, q0 + 8 * at, out + 8 * at);
        }
        return;
    }
#endif
    for (int at = 0; at < nq; at += 16) {
        tile_generic(p, w, q0 + at, nq - at, out + at);
    }
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
            memcpy(p->y + (oc0 + o) * ohw + oh * g->OW + ow, tile + o * TILE_Q + (q - q0),
                   sizeof(float) * (size_t)len);
        }
        q += run;
    }
}

/* Task t: channel block t % nob, output rows [r0, r1) of row chunk t / nob. */
static void
task_range(void *ctx, int64_t begin, int64_t end)
{
    const cd_plan *p = ctx;
    const ty_direct_geom *g = p->g;
    float tile[MAX_ROWS * TILE_Q];
    for (int64_t t = begin; t < end; t++) {
        int64_t oc0 = t % p->nob * p->rows, r0 = t / p->nob * p->rows_per_task;
        int64_t r1 = r0 + p->rows_per_task < g->OH ? r0 + p->rows_per_task : g->OH;
        int nrows = g->OC - oc0 < p->rows ? (int)(g->OC - oc0) : p->rows;
        const float *w[MAX_ROWS];
        for (int o = 0; o < p->rows; o++) { /* rows past OC repeat the last one, unstored */
            w[o] = p->w + (oc0 + (o < nrows ? o : nrows - 1)) * p->kc;
        }
        int64_t qa = r0 * p->Sq, qb = (r1 - 1) * p->Sq + g->OW;
        int64_t span = p->vec == 16 && p->rows == 6 ? TILE_Q : p->vec == 8 ? 48 : TILE_Q;
        for (int64_t q = qa; q < qb; q += span) {
            int nq = (int)(qb - q < span ? qb - q : span);
            run_tile(p, w, q, nq, tile);
            store_tile(p, tile, oc0, nrows, q, nq);
        }
        if (p->epi) {
            p->epi->fn(p->epi->ctx, oc0, r0 * g->OW, nrows, (r1 - r0) * g->OW,
                       p->y + oc0 * g->OH * g->OW + r0 * g->OW, g->OH * g->OW);
        }
    }
}

void
ty_conv_direct_f32(const ty_direct_geom *g, const float *x, const float *w, float *y,
                   float *ws, const ty_gemm_epilogue_f32 *epi)
{
    cd_plan p;
    if (g->OC < 1 || !plan_sizes(g, &p)) {
        return;
    }
    tile_shape(&p.rows, &p.vec);
    p.x = x;
    p.w = w;
    p.y = y;
    p.ws = ws;
    p.epi = epi;
    for (int64_t kh = 0, t = 0; kh < g->KH; kh++) {
        for (int64_t kw = 0; kw < g->KW; kw++, t++) {
            int64_t a = kh * g->dh % g->sh, b = kw * g->dw % g->sw;
            p.off[t] = (a * g->sw + b) * p.P + (kh * g->dh / g->sh) * p.Sq + kw * g->dw / g->sw;
        }
    }
    int64_t copy_grain = (1 << 14) / (p.cs > 0 ? p.cs : 1) + 1;
    ty_parallel_for(g->C, copy_grain, split_range, &p);
    p.nob = ceil_div(g->OC, p.rows);
    p.rows_per_task = ceil_div(TASK_Q, p.Sq);
    p.nrt = ceil_div(g->OH, p.rows_per_task);
    double task_fmas = (double)p.rows * (double)p.kc * (double)(p.rows_per_task * p.Sq);
    int64_t grain = task_fmas >= MIN_TASK_FMAS ? 1 : (int64_t)(MIN_TASK_FMAS / task_fmas) + 1;
    ty_parallel_for(p.nob * p.nrt, grain, task_range, &p);
}
