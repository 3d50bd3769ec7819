/* Direct float32 1x1 convolution (conv1x1.h).
 *
 * Work: units of (image, group of pixel chunks, block of output channels), fixed by the shape
 * and the ISA's vector width. A pixel chunk is a few whole vectors of one image's plane (the
 * chunks share the vectors out evenly, so 13 vectors become 4 + 3 + 3 + 3, not 4 + 4 + 4 + 1);
 * a group is the chunks of up to GROUP_PIXELS pixels (a whole 14x14 plane). Inside a unit the
 * input channels go in blocks of K_BLOCK; each register tile of output channels runs over the
 * group's chunks in turn, so its weight rows come from memory once per group, and the image
 * rows (K_BLOCK x the group) stay in L2. A tile keeps its outputs in registers over a block
 * and stores them between blocks (exactly: a float). */
#include <math.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/cpu/conv1x1.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define C1_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) inline
#endif

/* K_BLOCK: input channels per block, at most (1024 x 64 floats of image rows: 256 KiB, in
 * L2; MobileNetV2's layers run in one block: 0.14 against 0.165 ms for 160 -> 960 at 7x7 in
 * blocks of 80). PREFETCH: the weight rows, read once and cold in a network, are fetched
 * this many floats ahead (320 -> 1280 at 7x7 in the model, one thread: 0.50 -> 0.43 ms). */
enum {
    K_BLOCK = 1024,
    PREFETCH = 64,
    UNIT_TILES = 4,     /* tiles of output channels per unit, at most */
    GROUP_PIXELS = 256, /* pixels of a unit, at most (whole chunks; at least one) */
};

/* One tile: rows output channels by cols pixels, over kn input channels. w: the tile's first
 * weight row (ldw apart) at its block's first channel; x: the block's first image row (ldx
 * apart) at the chunk's first pixel; y likewise (ldy apart). first: start the chains at +0,
 * else continue from y. */
typedef void (*tile_fn)(int rows, int64_t cols, int64_t kn, const float *w, int64_t ldw,
                        const float *x, int64_t ldx, float *y, int64_t ldy, int first);

typedef struct c1x1_isa {
    tile_fn tile;
    int lanes, max_vecs, tile_rows; /* a chunk has at most max_vecs vectors of lanes floats */
} c1x1_isa;

/* ---- portable: the same chains, one fmaf per product ---- */
TY_CLONES static void
tile_generic(int rows, int64_t cols, int64_t kn, const float *w, int64_t ldw, const float *x,
             int64_t ldx, float *y, int64_t ldy, int first)
{
    for (int r = 0; r < rows; r++) {
        float *yr = y + r * ldy;
        for (int64_t p = 0; first && p < cols; p++) {
            yr[p] = 0.0f;
        }
        for (int64_t k = 0; k < kn; k++) {
            float wv = w[r * ldw + k];
            const float *xk = x + k * ldx;
            for (int64_t p = 0; p < cols; p++) {
                yr[p] = fmaf(wv, xk[p], yr[p]);
            }
        }
    }
}

#ifdef C1_X86
/* ---- AVX-512: up to 6 rows x 4 vectors of 16 in registers ---- */
enum { R512 = 6, V512 = 4 };

AVX512 static INLINE void
tile512(const int R, const int NV, __mmask16 tail, int64_t kn, const float *w, int64_t ldw,
        const float *x, int64_t ldx, float *y, int64_t ldy, int first)
{
    __m512 acc[R512][V512];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? tail : (__mmask16)0xFFFF;
            acc[r][v] = first ? _mm512_setzero_ps()
                              : _mm512_maskz_loadu_ps(m, y + r * ldy + 16 * v);
        }
    }
    for (int64_t k = 0; k < kn; k++) {
        if ((k & 15) == 0) { /* each weight row's line PREFETCH floats ahead */
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(w + r * ldw + k + PREFETCH), _MM_HINT_T0);
            }
        }
        __m512 xv[V512];
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? tail : (__mmask16)0xFFFF;
            xv[v] = _mm512_maskz_loadu_ps(m, x + k * ldx + 16 * v);
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 b = _mm512_set1_ps(w[r * ldw + k]);
            #pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                acc[r][v] = _mm512_fmadd_ps(b, xv[v], acc[r][v]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? tail : (__mmask16)0xFFFF;
            _mm512_mask_storeu_ps(y + r * ldy + 16 * v, m, acc[r][v]);
        }
    }
}

#define T512(R, NV)                                                                                \
    case (R) * 8 + (NV):                                                                           \
        tile512(R, NV, tail, kn, w, ldw, x, ldx, y, ldy, first);                                   \
        break;
#define T512_ROWS(R) T512(R, 1) T512(R, 2) T512(R, 3) T512(R, 4)

AVX512 static void
tile_avx512(int rows, int64_t cols, int64_t kn, const float *w, int64_t ldw, const float *x,
            int64_t ldx, float *y, int64_t ldy, int first)
{
    int nv = (int)((cols + 15) / 16);
    int rem = (int)(cols - 16 * (nv - 1));
    __mmask16 tail = (__mmask16)(rem == 16 ? 0xFFFF : (1u << rem) - 1);
    switch (rows * 8 + nv) {
        T512_ROWS(1) T512_ROWS(2) T512_ROWS(3) T512_ROWS(4) T512_ROWS(5) T512_ROWS(6)
    default:
        break;
    }
}

/* ---- AVX2: up to 4 rows x 3 vectors of 8 ---- */
enum { R256 = 4, V256 = 3 };

AVX2 static INLINE __m256
load256(const float *p, int full, __m256i mask)
{
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

AVX2 static INLINE void
tile256(const int R, const int NV, __m256i tail, int64_t kn, const float *w, int64_t ldw,
        const float *x, int64_t ldx, float *y, int64_t ldy, int first)
{
    __m256 acc[R256][V256];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            acc[r][v] = first ? _mm256_setzero_ps()
                              : load256(y + r * ldy + 8 * v, v < NV - 1, tail);
        }
    }
    for (int64_t k = 0; k < kn; k++) {
        if ((k & 15) == 0) {
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(w + r * ldw + k + PREFETCH), _MM_HINT_T0);
            }
        }
        __m256 xv[V256];
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            xv[v] = load256(x + k * ldx + 8 * v, v < NV - 1, tail);
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 b = _mm256_broadcast_ss(w + r * ldw + k);
            #pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                acc[r][v] = _mm256_fmadd_ps(b, xv[v], acc[r][v]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            if (v < NV - 1) {
                _mm256_storeu_ps(y + r * ldy + 8 * v, acc[r][v]);
            } else {
                _mm256_maskstore_ps(y + r * ldy + 8 * v, tail, acc[r][v]);
            }
        }
    }
}

#define T256(R, NV)                                                                                \
    case (R) * 8 + (NV):                                                                           \
        tile256(R, NV, tail, kn, w, ldw, x, ldx, y, ldy, first);                                   \
        break;
#define T256_ROWS(R) T256(R, 1) T256(R, 2) T256(R, 3)

AVX2 static void
tile_avx2(int rows, int64_t cols, int64_t kn, const float *w, int64_t ldw, const float *x,
          int64_t ldx, float *y, int64_t ldy, int first)
{
    int nv = (int)((cols + 7) / 8);
    int rem = (int)(cols - 8 * (nv - 1));
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane); /* lanes < rem */
    switch (rows * 8 + nv) {
        T256_ROWS(1) T256_ROWS(2) T256_ROWS(3) T256_ROWS(4)
    default:
        break;
    }
}
#endif

static ty_isa_override isa_forced;

ty_isa
ty_conv1x1_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

static c1x1_isa
pick_isa(void)
{
#ifdef C1_X86
    ty_isa isa = ty_isa_override_get(&isa_forced);
    if (isa == TY_ISA_AVX512) {
        return (c1x1_isa){tile_avx512, 16, V512, R512};
    }
    if (isa == TY_ISA_AVX2) {
        return (c1x1_isa){tile_avx2, 8, V256, R256};
    }
#endif
    return (c1x1_isa){tile_generic, 16, 4, 4};
}

/* ---- units ---- */
typedef struct c1x1_run {
    ty_c1x1_geom g;
    c1x1_isa k;
    const float *x, *w;
    float *y;
    const ty_gemm_epilogue_f32 *epi;
    int64_t vecs, chunks;          /* per plane: vectors, pixel chunks */
    int64_t group, groups;         /* chunks per unit, and units across a plane */
    int64_t blocks, block_rows;    /* blocks of output channels */
    int64_t kblock;                /* input channels per block */
} c1x1_run;

/* Pixels [*p0, *p1) of chunk ci. */
static void
chunk_pixels(const c1x1_run *r, int64_t ci, int64_t *p0, int64_t *p1)
{
    int64_t base = r->vecs / r->chunks, extra = r->vecs % r->chunks;
    int64_t v0 = ci * base + (ci < extra ? ci : extra), nv = base + (ci < extra);
    *p0 = v0 * r->k.lanes;
    *p1 = (v0 + nv) * r->k.lanes < r->g.P ? (v0 + nv) * r->k.lanes : r->g.P;
}

/* Unit u: image n, a group of chunks, a block of output channels. Each tile of rows runs over
 * all the group's chunks in turn, so its weight rows are fetched once (from memory, cold in a
 * network) and then stay in L1 while the image rows come from L2. */
static void
unit_run(const c1x1_run *r, int64_t u)
{
    const ty_c1x1_geom *g = &r->g;
    int64_t n = u / (r->groups * r->blocks), rest = u % (r->groups * r->blocks);
    int64_t c0 = rest / r->blocks * r->group, o0 = rest % r->blocks * r->block_rows;
    int64_t c1 = r->chunks - c0 < r->group ? r->chunks : c0 + r->group;
    int64_t o1 = g->OC - o0 < r->block_rows ? g->OC : o0 + r->block_rows;
    int64_t q0, q1, p0, p1;
    chunk_pixels(r, c0, &q0, &p1);
    chunk_pixels(r, c1 - 1, &p0, &q1);
    const float *x = r->x + n * g->C * g->ldx;
    float *y = r->y + n * g->OC * g->P;
    for (int64_t o = o0; g->C == 0 && o < o1; o++) {
        for (int64_t p = q0; p < q1; p++) {
            y[o * g->P + p] = 0.0f;
        }
    }
    for (int64_t kb = 0; kb < g->C; kb += r->kblock) {
        int64_t kn = g->C - kb < r->kblock ? g->C - kb : r->kblock;
        for (int64_t o = o0; o < o1; o += r->k.tile_rows) {
            int rows = (int)(o1 - o < r->k.tile_rows ? o1 - o : r->k.tile_rows);
            for (int64_t ci = c0; ci < c1; ci++) {
                chunk_pixels(r, ci, &p0, &p1);
                r->k.tile(rows, p1 - p0, kn, r->w + o * g->C + kb, g->C,
                          x + kb * g->ldx + p0, g->ldx, y + o * g->P + p0, g->P, kb == 0);
            }
        }
    }
    if (r->epi) {
        r->epi->fn(r->epi->ctx, o0, q0, o1 - o0, q1 - q0, y + o0 * g->P + q0, g->P);
    }
}

static void
units_range(void *ctx, int64_t begin, int64_t end)
{
    for (int64_t u = begin; u < end; u++) {
        unit_run(ctx, u);
    }
}

void
ty_conv1x1_f32(const ty_c1x1_geom *g, const float *x, const float *w, float *y,
               const ty_gemm_epilogue_f32 *epi)
{
    if (g->N <= 0 || g->OC <= 0 || g->P <= 0) {
        return;
    }
    c1x1_run r = {.g = *g, .k = pick_isa(), .x = x, .w = w, .y = y, .epi = epi};
    r.g.ldx = g->ldx > g->P ? g->ldx : g->P;
    r.vecs = (g->P + r.k.lanes - 1) / r.k.lanes;
    r.chunks = (r.vecs + r.k.max_vecs - 1) / r.k.max_vecs;
    int64_t span = (int64_t)r.k.max_vecs * r.k.lanes;
    r.group = GROUP_PIXELS > span ? GROUP_PIXELS / span : 1;
    r.groups = (r.chunks + r.group - 1) / r.group;
    /* more tiles per unit only where there are many output channels: units for 2-3 threads */
    int64_t tiles = (g->OC + r.k.tile_rows - 1) / r.k.tile_rows;
    tiles = tiles >= 16 * UNIT_TILES ? UNIT_TILES : tiles >= 32 ? 2 : 1;
    r.block_rows = (int64_t)r.k.tile_rows * tiles;
    r.blocks = (g->OC + r.block_rows - 1) / r.block_rows;
    int64_t nkb = (g->C + K_BLOCK - 1) / K_BLOCK; /* equal blocks: no short last one */
    r.kblock = nkb > 0 ? (g->C + nkb - 1) / nkb : 1;
    ty_parallel_for(g->N * r.groups * r.blocks, 1, units_range, &r);
}

int64_t
ty_conv1x1_ldx(int64_t P)
{
    return (P + 15) / 16 * 16;
}

typedef struct gather_job {
    const float *x;
    int64_t H, W, sh, sw, OH, OW;
    float *dst;
    int64_t ldx;
} gather_job;

static void
gather_channels(void *ctx, int64_t c0, int64_t c1)
{
    const gather_job *j = ctx;
    for (int64_t c = c0; c < c1; c++) {
        const float *plane = j->x + c * j->H * j->W;
        float *d = j->dst + c * j->ldx;
        if (j->sh == 1 && j->sw == 1) {
            memcpy(d, plane, sizeof(float) * (size_t)(j->OH * j->OW));
            continue;
        }
        for (int64_t oh = 0; oh < j->OH; oh++) {
            const float *s = plane + oh * j->sh * j->W;
            for (int64_t ow = 0; ow < j->OW; ow++) {
                d[oh * j->OW + ow] = s[ow * j->sw];
            }
        }
    }
}

/* Channels of about this many floats make a parallel piece of the gather. */
enum { GATHER_PIECE = 1 << 14 };

void
ty_conv1x1_gather_f32(const float *x, int64_t C, int64_t H, int64_t W, int64_t sh, int64_t sw,
                      int64_t OH, int64_t OW, float *dst, int64_t ldx)
{
    gather_job j = {x, H, W, sh, sw, OH, OW, dst, ldx};
    int64_t per = OH * OW > 0 ? OH * OW : 1;
    ty_parallel_for(C, per >= GATHER_PIECE ? 1 : GATHER_PIECE / per, gather_channels, &j);
}
