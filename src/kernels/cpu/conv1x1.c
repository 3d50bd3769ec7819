/* Direct float32 1x1 convolution (conv1x1.h).
 *
 * AVX-512 and the portable code (AVX2 copies panels of the image instead: see its section).
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
#include "kernels/cpu/gemm_ukernel.h"
#include "kernels/cpu/transpose16.h"

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

/* ---- AVX2: the image packed in panels of 16 pixels, 6 rows x 2 vectors in registers ----
 * Reading the image rows where they lie costs AVX2 on large planes: rows P floats apart map
 * onto few L1 sets (56x56: 16 of 64; 112x112: 4), so a chunk's C rows evict each other. Each
 * unit copies a panel of 16 pixels over a block of input channels into a contiguous buffer
 * (at most PK_KB x 16 floats, 32 KiB, L1's size) and runs every register tile of its output
 * channels over it: 12 accumulators (Zen 3: 2 FMA pipes of latency 4 want at least 8), per
 * channel 2 vector loads and 6 weight broadcasts from the rows where they lie. Blocks of up to
 * 512 channels, not 256 (each tile stores and reloads its sums once a block; a unit's strip
 * of panels runs once a block): Zen 3, 2 threads, median of 120 paired calls, cold weights,
 * against 0.98-1.01 for the same code paired with itself, 512 -> 128 at 28x28 0.92-0.94,
 * 512 -> 256 0.89-0.97, 512 -> 2048 at 7x7 0.94-0.96, 1024 -> 256 and 1024 -> 512 at 14x14
 * 0.96-0.98, 2048 -> 512 at 7x7 0.97-0.99; one thread, 320 -> 1280 at 7x7 0.94, ShuffleNetV2's
 * 464 -> 1024 0.95-0.96, 960 -> 320 and 576 -> 96 0.99. Blocks of 64 or 128 channels read
 * 2-9% slower. */
enum {
    PK_W = 16,          /* pixels a panel */
    PK_R = 6,           /* output channels a register tile */
    PK_KB = 512,        /* input channels a block, at most */
    PK_STRIP = 16,      /* panels a unit, at most (256 pixels) */
    PK_BLOCK_TILES = 16, /* register tiles a unit, at most (96 output channels) */
    PK_MIN_UNITS = 12,  /* units a product wants for 2-3 threads */
    PK_FETCH_P = 64,    /* pixels a plane, at most, for pk_fetch_rows */
    PK_INPLACE_TILES = 6, /* tiles a product, at most, for pk_reads_in_place */
};

AVX2 static INLINE __m256i
pk_mask(int n)
{
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane); /* lanes < n */
}

AVX2 static INLINE void
pk_store(const int MASKED, float *p, __m256i m, __m256 v)
{
    if (MASKED) {
        _mm256_maskstore_ps(p, m, v);
    } else {
        _mm256_storeu_ps(p, v);
    }
}

/* A tile's share of an epilogue's batch norm chain (gemm.h's ty_epi_bn_f32), run on the
 * accumulators of the last channel block before the one store: the constants at the tile's
 * first output channel, res and out at its first element (ldy apart like y); keep_y: out is
 * another buffer, and y keeps the product. It replaces a pass over each stored panel
 * (fuse_chain.c's bn3_rows_avx2: 12-14% of deployed MobileNetV2's samples on one thread, 4%
 * of ResNet-50's); MobileNetV2 two threads, whole runs base/new 1.02-1.14x over 8 pairs, one
 * thread's CPU time 0.93-1.21x over 5 (the host was noisy). */
typedef struct pk_bn {
    const float *mean, *scale, *beta, *res;
    float *out;
    int res_order, act, keep_y;
} pk_bn;

/* The chain of pk_bn on R x NV accumulators: fuse_chain.c's bn3_loop_avx2 operation for
 * operation (sub, mul, add, each rounded; the residual add in its order; relu as
 * max(+0, v) + 0, relu6 then min(6, v)), so the same bits. */
AVX2 static INLINE void
pk_bn_store(const int R, const int NV, const int MASKED, __m256 acc[PK_R][2], const __m256i m[2],
            const pk_bn *bn, float *y, int64_t ldy)
{
    /* in locals: the stores (may_alias vectors) would make the compiler read bn again */
    const float *mean = bn->mean, *scale = bn->scale, *beta = bn->beta, *res = bn->res;
    float *out = bn->out;
    const int res_order = bn->res_order, act = bn->act, keep_y = bn->keep_y;
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        __m256 k0 = _mm256_broadcast_ss(mean + r), k1 = _mm256_broadcast_ss(scale + r);
        __m256 k2 = _mm256_broadcast_ss(beta + r);
        #pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            int64_t at = r * ldy + 8 * v;
            __m256 a = acc[r][v];
            if (keep_y) {
                pk_store(MASKED, y + at, m[v], a);
            }
            a = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(a, k0), k1), k2);
            if (res_order) {
                __m256 rv = MASKED ? _mm256_maskload_ps(res + at, m[v]) : _mm256_loadu_ps(res + at);
                a = res_order == 1 ? _mm256_add_ps(a, rv) : _mm256_add_ps(rv, a);
            }
            if (act) {
                a = _mm256_add_ps(_mm256_max_ps(zero, a), zero);
            }
            if (act == 2) {
                a = _mm256_min_ps(six, a);
            }
            pk_store(MASKED, out + at, m[v], a);
        }
    }
}

/* R rows x NV vectors of the panel xp (kn x 16, rows ldxp apart) against w (rows ldw apart),
 * into y (ldy apart), or through bn's chain (NULL: none); np pixels of the panel are real (MASKED:
 * fewer than 8 * NV). PF: fetch the weight rows ahead, for a unit's first panel, which reads
 * them cold from memory (the others find them in L1 or L2, where the fetches only cost: one
 * thread, best of 150 calls, 32 -> 16 at 112x112 0.190 -> 0.168 ms, 96 -> 24 at 56x56 0.174
 * -> 0.169; 7x7 with cold weights unchanged, 320 -> 1280 0.597-0.600 -> 0.604-0.605). */
AVX2 static INLINE void
pk_tile(const int R, const int NV, const int MASKED, const int PF, int np, int64_t kn,
        const float *w, int64_t ldw, const float *xp, int64_t ldxp, float *y, int64_t ldy,
        int first, const pk_bn *bn)
{
    __m256 acc[PK_R][2];
    __m256i m[2] = {pk_mask(np), pk_mask(np - 8)};
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            acc[r][v] = first    ? _mm256_setzero_ps()
                        : MASKED ? _mm256_maskload_ps(y + r * ldy + 8 * v, m[v])
                                 : _mm256_loadu_ps(y + r * ldy + 8 * v);
        }
    }
    for (int64_t k = 0; k < kn; k++) {
        if (PF && (k & 15) == 0) { /* each weight row's line PREFETCH floats ahead */
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(w + r * ldw + k + PREFETCH), _MM_HINT_T0);
            }
        }
        __m256 xv[2];
        #pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            xv[v] = _mm256_loadu_ps(xp + k * ldxp + 8 * v);
        }
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 b = _mm256_broadcast_ss(w + r * ldw + k);
            #pragma GCC unroll 2
            for (int v = 0; v < NV; v++) {
                acc[r][v] = _mm256_fmadd_ps(b, xv[v], acc[r][v]);
            }
        }
    }
    if (bn) {
        pk_bn_store(R, NV, MASKED, acc, m, bn, y, ldy);
        return;
    }
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            pk_store(MASKED, y + r * ldy + 8 * v, m[v], acc[r][v]);
        }
    }
}

#define PK(R, NV, M, PF)                                                                           \
    case (((R) * 2 + (NV) - 1) * 2 + (M)) * 2 + (PF):                                              \
        pk_tile(R, NV, M, PF, np, kn, w, ldw, xp, ldxp, y, ldy, first, bn);                        \
        break;
#define PK_ROWS(R)                                                                                 \
    PK(R, 1, 0, 0) PK(R, 1, 1, 0) PK(R, 2, 0, 0) PK(R, 2, 1, 0)                                    \
    PK(R, 1, 0, 1) PK(R, 1, 1, 1) PK(R, 2, 0, 1) PK(R, 2, 1, 1)

AVX2 static void
pk_tile_any(int rows, int np, int pf, int64_t kn, const float *w, int64_t ldw, const float *xp,
            int64_t ldxp, float *y, int64_t ldy, int first, const pk_bn *bn)
{
    int nv = np > 8 ? 2 : 1, masked = np < 8 * nv;
    switch (((rows * 2 + nv - 1) * 2 + masked) * 2 + (pf != 0)) {
        PK_ROWS(1) PK_ROWS(2) PK_ROWS(3) PK_ROWS(4) PK_ROWS(5) PK_ROWS(6)
    default:
        break;
    }
}

/* xp (kn x 16) = np pixels of kn image rows (ldx apart); lanes past np are +0. The next
 * panel's lines are fetched meanwhile, so they arrive while this one's tiles run (an image
 * of 56x56 and more is beyond L2, and its rows, one line a panel, are too many streams for
 * the hardware's prefetchers). */
AVX2 static void
pk_pack(const float *x, int64_t ldx, int np, int64_t kn, float *xp)
{
    if (np == PK_W) {
        for (int64_t k = 0; k < kn; k++) {
            _mm_prefetch((const char *)(x + k * ldx + PK_W), _MM_HINT_T0);
            _mm256_store_ps(xp + k * PK_W, _mm256_loadu_ps(x + k * ldx));
            _mm256_store_ps(xp + k * PK_W + 8, _mm256_loadu_ps(x + k * ldx + 8));
        }
        return;
    }
    __m256i m0 = pk_mask(np), m1 = pk_mask(np - 8);
    for (int64_t k = 0; k < kn; k++) {
        _mm256_store_ps(xp + k * PK_W, _mm256_maskload_ps(x + k * ldx, m0));
        _mm256_store_ps(xp + k * PK_W + 8, _mm256_maskload_ps(x + k * ldx + 8, m1));
    }
}

typedef struct pk_run {
    ty_c1x1_geom g;
    const float *x, *w;
    float *y;
    const ty_gemm_epilogue_f32 *epi;
    const ty_epi_bn_f32 *bn;       /* the epilogue's chain, run in the tiles; or NULL */
    int64_t panels, strip, strips; /* per plane: panels, panels a strip, strips */
    int64_t blocks;                /* units across the output channels (rows shared evenly) */
    int64_t kblock;                /* input channels a block */
    int inplace;                   /* whole panels read where they lie (pk_reads_in_place) */
} pk_run;

/* The last few pixels of a plane (7x7: 49 = 48 + 1; 14x14: 196 = 192 + 4) with the output
 * channels in the lanes (the GEMM's ra_cols kernel: 8-row blocks of the weight transposed in
 * registers, each pixel broadcast), over all C at once, so each output is the one chain from
 * +0. A panel tile spends a whole vector's multiply-add per row and channel on them (at 7x7
 * one FMA in 7 for 1 pixel in 49). One thread, best of 200-300 calls, weights warm / cold:
 * 7x7 320 -> 1280 0.549 -> 0.482 / 0.650 -> 0.588 ms, 160 -> 960 0.201 -> 0.178 / 0.241 ->
 * 0.222, 960 -> 160 0.214 -> 0.192 / 0.231 -> 0.209, ShuffleNetV2's 232 -> 232 0.070 ->
 * 0.062; 14x14 (4 pixels) 1-3%: 576 -> 96 0.248 -> 0.243, 64 -> 384 0.110 -> 0.107.
 * Where C is a multiple of 512 the weight rows are a multiple of 2 KiB apart, and the
 * kernel's 32 rows read together fall into 2 of L1's 64 sets (8 ways, pk_row_sets): the tail then
 * goes 8 rows at a time (each output's chain is the same, so are the bits). Zen 3, median
 * of paired calls, cold weights, 8 rows / 32: one thread 2048 -> 512 at 7x7 0.91, 1024 ->
 * 2048 0.93, 512 -> 2048 0.98, 1024 -> 256 at 14x14 0.99; two threads 0.92, 0.94, 0.99,
 * 0.93 (1024 -> 512 0.97). With C = 320, 960, 232 or 464 (no conflict) 8 rows at a time
 * read 2-6% slower (fewer chains), and with C = 256 about even. */
enum { PK_L1_SETS = 64, PK_LANES_MAX_SETS = 2, PK_LANES_SET_ROWS = 8 };

/* The L1 sets (of PK_L1_SETS, lines of 16 floats) that rows `apart` floats apart start in:
 * PK_L1_SETS / gcd(lines apart, PK_L1_SETS) where they start on lines, else all of them. */
static int64_t
pk_row_sets(int64_t apart)
{
    if (apart % PK_W != 0) {
        return PK_L1_SETS;
    }
    int64_t a = apart / PK_W, b = PK_L1_SETS;
    while (b != 0) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return PK_L1_SETS / a;
}

AVX2 static void
pk_lanes_tail(const pk_run *r, const float *x, float *y, int64_t o0, int64_t o1, int64_t p,
              int np)
{
    const ty_c1x1_geom *g = &r->g;
    const int64_t step = pk_row_sets(g->C) <= PK_LANES_MAX_SETS ? PK_LANES_SET_ROWS : o1 - o0;
    for (int64_t o = o0; o < o1; o += step) {
        int64_t n = o1 - o < step ? o1 - o : step;
        ty_cpu_gemm_ra_cols_f32_avx2(n, g->C, r->w + o * g->C, g->C, x + p, g->ldx, np,
                                     y + o * g->P + p, g->P, 0);
    }
    if (r->epi) {
        r->epi->fn(r->epi->ctx, o0, p, o1 - o0, np, y + o0 * g->P + p, g->P);
    }
}

/* The first PREFETCH floats of the next tile's rows (rows of them), fetched as a unit's first
 * panel starts each tile on planes of at most PK_FETCH_P pixels: the tile's own fetches run
 * PREFETCH floats ahead of k, so without these the next tile would start on rows cold from
 * memory. Small planes only, where the weights are nearly all of the data: one thread, cold
 * weights, best of 4 alternating rounds, 7x7 320 -> 1280 0.636 -> 0.574 ms, 960 -> 320 0.433
 * -> 0.413, 576 -> 160 0.137 -> 0.129, 960 -> 160 0.218 -> 0.212, 160 -> 960 0.224 -> 0.225,
 * ShuffleNetV2 232 -> 232 0.084 -> 0.077, 464 -> 1024 0.678 -> 0.636, ResNet-18 256 -> 512
 * 0.200 -> 0.183 (two threads, best of 3: 1.00-1.08x); with warm weights 0.97-1.00x, and
 * on 14x14 (576 -> 96: cold 1.00x, warm 0.96-0.98x) it only cost. */
AVX2 static void
pk_fetch_rows(const float *w, int64_t ldw, int rows)
{
    for (int r = 0; r < rows; r++) {
        for (int f = 0; f < PREFETCH; f += 16) {
            _mm_prefetch((const char *)(w + r * ldw + f), _MM_HINT_T0);
        }
    }
}

/* The chain of a tile whose output channels start at o and outputs at y (in r->y). */
static pk_bn
pk_tile_bn(const pk_run *r, float *y, int64_t o)
{
    const ty_epi_bn_f32 *bn = r->bn;
    int64_t e = y - r->y;
    return (pk_bn){.mean = bn->mean + o, .scale = bn->scale + o, .beta = bn->beta + o,
                   .res = bn->res_order ? bn->res + e : NULL, .out = bn->out + e,
                   .res_order = bn->res_order, .act = bn->act, .keep_y = bn->out != r->y};
}

/* Unit u: (image, block of output channels, strip of panels), in that order of nesting from
 * the outside, so that threads given consecutive units share the output channels out (their
 * weight rows, read cold from memory, and the planes that a depthwise layer next reads
 * channel by channel). Inside: channel blocks, then panels, then tiles, so the packed panel
 * stays in L1 while the block's weight rows (at most 96 x 512 floats) come from L1 or L2. */
AVX2 static void
pk_unit(const pk_run *r, int64_t u)
{
    const ty_c1x1_geom *g = &r->g;
    int64_t n = u / (r->strips * r->blocks), rest = u % (r->strips * r->blocks);
    int64_t b = rest / r->strips, s = rest % r->strips;
    int64_t o0 = g->OC * b / r->blocks, o1 = g->OC * (b + 1) / r->blocks;
    int64_t q0 = s * r->strip * PK_W, q1 = q0 + r->strip * PK_W;
    q1 = q1 < g->P && s < r->strips - 1 ? q1 : g->P; /* the last strip takes the tail */
    if (q0 >= q1) {
        return;
    }
    const float *x = r->x + n * g->C * g->ldx;
    float *y = r->y + n * g->OC * g->P;
    if (g->C == 0) {
        for (int64_t o = o0; o < o1; o++) {
            memset(y + o * g->P + q0, 0, sizeof(float) * (size_t)(q1 - q0));
        }
        if (r->epi) {
            r->epi->fn(r->epi->ctx, o0, q0, o1 - o0, q1 - q0, y + o0 * g->P + q0, g->P);
        }
        return;
    }
    /* a last panel of at most TY_GEMM_RA_COLS_MAX pixels goes to the lanes (below) */
    int64_t last = q0 + (q1 - q0 - 1) / PK_W * PK_W;
    int64_t qt = q1 - last <= TY_GEMM_RA_COLS_MAX ? last : q1;
    _Alignas(64) float xp[PK_KB * PK_W];
    for (int64_t kb = 0; kb < g->C; kb += r->kblock) {
        int64_t kn = g->C - kb < r->kblock ? g->C - kb : r->kblock;
        for (int64_t p = q0; p < qt; p += PK_W) {
            int np = (int)(q1 - p < PK_W ? q1 - p : PK_W);
            int inplace = np == PK_W && r->inplace;
            if (!inplace) {
                pk_pack(x + kb * g->ldx + p, g->ldx, np, kn, xp);
            }
            /* rows shared out evenly (32: 6 6 5 5 5 5, not 6 6 6 6 6 2, whose 4 chains
             * would wait on the FMA's latency) */
            int64_t tiles = (o1 - o0 + PK_R - 1) / PK_R;
            int chain = r->bn && kb + kn == g->C;
            for (int64_t t = 0, o = o0; t < tiles; t++) {
                int rows = (int)((o1 - o0) * (t + 1) / tiles - (o - o0));
                pk_bn tb;
                if (chain) {
                    tb = pk_tile_bn(r, y + o * g->P + p, o);
                }
                if (p == q0 && t + 1 < tiles && g->P <= PK_FETCH_P) {
                    pk_fetch_rows(r->w + (o + rows) * g->C + kb, g->C,
                                  (int)((o1 - o0) * (t + 2) / tiles - (o + rows - o0)));
                }
                pk_tile_any(rows, np, p == q0, kn, r->w + o * g->C + kb, g->C,
                            inplace ? x + kb * g->ldx + p : xp, inplace ? g->ldx : PK_W,
                            y + o * g->P + p, g->P, kb == 0, chain ? &tb : NULL);
                o += rows;
            }
            if (r->epi && kb + kn == g->C && !chain) { /* the finished panel, in L1 */
                r->epi->fn(r->epi->ctx, o0, p, o1 - o0, np, y + o0 * g->P + p, g->P);
            }
        }
    }
    if (qt < q1) {
        pk_lanes_tail(r, x, y, o0, o1, qt, (int)(q1 - qt));
    }
}

AVX2 static void
pk_range(void *ctx, int64_t begin, int64_t end)
{
    for (int64_t u = begin; u < end; u++) {
        pk_unit(ctx, u);
    }
}

/* Whether the tiles read whole panels of the image where they lie instead of from pk_pack's
 * copy: where the rows start on cache lines (ldx a multiple of 16) and there are few tiles to
 * share the copy's cost (each tile reads the panel once; the copy reads it from L2 or memory
 * and writes it, whatever the tiles' count). The chains are the same, so are the bits. One
 * thread, cold weights, best of 6 alternating rounds, copied / in place, GFLOP/s: 144 -> 24
 * at 56x56 80.3 / 86.5, 144 -> 32 at 28x28 79.8 / 85.0, 192 -> 32 at 28x28 80.3 / 85.7,
 * 32 -> 16 at 112x112 71.5 / 74.0, 96 -> 24 at 56x56 82.6 / 83.6; with more tiles the copy
 * paid or broke even: 256 -> 64 at 56x56 88.1 / 84.1, 64 -> 64 86.5 / 84.4, 16 -> 96 at
 * 112x112 75.6 / 55.2 and 78.7 / 76.4 in two runs (all in place), ShuffleNetV2's 58 -> 58 at
 * 28x28 85.6 / 86.2, 24 -> 58 at 56x56 77.2 / 76.8. Rows not on lines (14x14's 196 floats)
 * straddle two lines, and in place 384 -> 64 at 14x14 read 81.4 / 76.6, 576 -> 96 78.5 /
 * 74.4. Two threads, best of 6: 32 -> 16 138.1 / 146.5, 96 -> 24 159.0 / 165.6, 144 -> 24
 * 155.3 / 163.9, 144 -> 32 153.3 / 165.7, 192 -> 32 153.5 / 164.0.
 * With any number of tiles where rows an odd number of lines apart (28x28: 49) fill all of
 * L1's sets, one thread, best of 6: ResNet-50's 512 -> 256 at 28x28 88.4 / 93.5, ResNet-18's
 * 64 -> 128 84.5 / 86.6, ShuffleNetV2's 58 -> 58 85.6 / 87.3, 32 -> 192 86.2 / 86.6; two
 * threads, best of 10, 174.2 / 184.6 and 167.2 / 169.5. (56x56's rows, 196 lines apart,
 * fall into 16 sets: 256 -> 64 and 64 -> 64 above read slower in place.)
 * Rows a multiple of 16 lines apart (112x112: 784) fall into 4 of L1's sets or fewer, where
 * a panel's rows evict one another: those copy whatever the tiles' count. Measured in the
 * deployed MobileNetV2 (tianyuan-run --profile, one thread, 20th percentile of 200 runs, as a
 * share of the next layer's time to cancel the host's drift, 3 alternating rounds), its
 * 32 -> 16 at 112x112 in place 0.55-0.61, copied 0.43-0.45 of the 16 -> 96 after it; the
 * 56x56 layers in place (16 sets) read the same either way. */
enum { PK_INPLACE_MIN_SETS = 16 };
static int
pk_reads_in_place(const ty_c1x1_geom *g)
{
    int64_t lines = g->ldx / PK_W; /* cache lines from row to row */
    return g->ldx % PK_W == 0 && pk_row_sets(g->ldx) >= PK_INPLACE_MIN_SETS &&
           ((g->OC + PK_R - 1) / PK_R <= PK_INPLACE_TILES || lines % 2 == 1);
}

/* Units fixed by the shape: blocks of at most PK_BLOCK_TILES tiles, the rows shared evenly
 * among them (blocks of 96 rows and the rest gave one of 2 threads 96 of ShuffleNetV2's
 * 116 rows at 14x14 and the other 20; 960 -> 160 at 7x7 96 to 64), strips of up to PK_STRIP
 * panels. While there are fewer than PK_MIN_UNITS units, the strips are cut shorter first
 * (each strip reads the block's weight rows again, from L2 or from the other core), then the
 * blocks (each block packs the image again: one thread, 192 -> 64 at 14x14 in 3 blocks of 4
 * tiles 0.065 ms, in 1 block of 11 tiles and 13 strips 0.056). */
static int64_t
pk_units(const pk_run *r)
{
    return r->g.N * r->strips * r->blocks;
}

static void
pk_conv(const ty_c1x1_geom *g, const float *x, const float *w, float *y,
        const ty_gemm_epilogue_f32 *epi)
{
    pk_run r = {.g = *g, .x = x, .w = w, .y = y, .epi = epi, .bn = epi ? epi->bn : NULL};
    /* A last panel of at most TY_GEMM_RA_COLS_MAX pixels (pk_lanes_tail) costs a fraction of
     * a tile panel: it rides with the last strip rather than being a strip of its own (7x7:
     * 3 strips, not 3 strips of a panel and one of a pixel, which left one of 2 threads 5
     * panels to the other's 4). */
    int64_t whole = g->P / PK_W, rest = g->P % PK_W;
    r.panels = whole + (rest > TY_GEMM_RA_COLS_MAX || whole == 0);
    int64_t tiles = (g->OC + PK_R - 1) / PK_R;
    int64_t per = tiles < PK_BLOCK_TILES ? tiles : PK_BLOCK_TILES;
    r.strip = r.panels < PK_STRIP ? r.panels : PK_STRIP;
    for (;;) {
        r.strips = (r.panels + r.strip - 1) / r.strip;
        r.strip = (r.panels + r.strips - 1) / r.strips; /* even strips */
        r.blocks = (g->OC + per * PK_R - 1) / (per * PK_R);
        if (pk_units(&r) >= PK_MIN_UNITS || (r.strip == 1 && per == 1)) {
            break;
        }
        if (r.strip > 1) {
            r.strip--;
        } else {
            per--;
        }
    }
    int64_t nkb = (g->C + PK_KB - 1) / PK_KB; /* equal blocks: no short last one */
    r.kblock = nkb > 0 ? (g->C + nkb - 1) / nkb : 1;
    r.inplace = pk_reads_in_place(g);
    ty_parallel_for(g->N * r.strips * r.blocks, 1, pk_range, &r);
}

/* ---- AVX-512 with the output channels in the lanes ----
 * A panel of 16 output channels: its weight rows (16 x C) transposed once into a buffer of
 * C vectors (channel k's 16 weights), then each chunk of up to OL_MAX_PX pixels keeps one
 * accumulator vector a pixel over all of C: acc[p] = fma(wt[k], x[k, p] broadcast, acc[p]),
 * the same chain as the tiles above, with no lane wasted on the plane's shape (a 7x7 plane
 * is 25 + 24 pixels where the tiles compute 64). The accumulators are transposed back into
 * the output's rows at the end. */
/* OL_MAX_C bounds the transposed panel on the stack (64 KiB); more input channels (ResNet-50's
 * 2048 -> 512 at 7x7, where the lanes measured about equal) keep the register tiles. */
enum { OL = 16, OL_MAX_PX = 28, OL_MAX_C = 1024, OL_MAX_P = 64, OL_MIN_UNITS = 8 };


static __mmask16
lanes_mask(int64_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* wt (C, 16) = rows [0, rows) of w (ldw apart) transposed; lanes past rows are +0. */
AVX512 static void
ol_transpose_panel(const float *w, int64_t ldw, int rows, int64_t C, float *wt)
{
    for (int64_t k0 = 0; k0 < C; k0 += 16) {
        __mmask16 km = lanes_mask(C - k0);
        __m512 r[16];
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            r[i] = i < rows ? _mm512_maskz_loadu_ps(km, w + i * ldw + k0) : _mm512_setzero_ps();
        }
        ty_transpose16_f32(r);
        int kn = (int)(C - k0 < 16 ? C - k0 : 16);
        for (int j = 0; j < kn; j++) {
            _mm512_store_ps(wt + (k0 + j) * OL, r[j]);
        }
    }
}

/* acc (NP, 16) = the chains of NP pixels at x (rows ldx apart) over C channels of wt, stored
 * to out[p * 16 + lane]; the lines of the next panel's weights (pf: its rows, ldw apart; NULL:
 * none) are fetched into L2 one a channel, so that they are there when its transpose comes. */
AVX512 static INLINE void
ol_chunk(const int NP, int64_t C, const float *wt, const float *x, int64_t ldx,
         const float *pf, int64_t ldw, float *out)
{
    __m512 acc[OL_MAX_PX];
    #pragma GCC unroll 28
    for (int p = 0; p < NP; p++) {
        acc[p] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < C; k++) {
        if (pf) {
            _mm_prefetch((const char *)(pf + (k & 15) * ldw + (k >> 4 << 4)), _MM_HINT_T1);
        }
        __m512 wv = _mm512_load_ps(wt + k * OL);
        const float *xk = x + k * ldx;
        #pragma GCC unroll 28
        for (int p = 0; p < NP; p++) {
            acc[p] = _mm512_fmadd_ps(wv, _mm512_set1_ps(xk[p]), acc[p]);
        }
    }
    #pragma GCC unroll 28
    for (int p = 0; p < NP; p++) {
        _mm512_store_ps(out + p * OL, acc[p]);
    }
}

#define OL_NP(NP)                                                                                  \
    case NP:                                                                                       \
        ol_chunk(NP, C, wt, x, ldx, pf, ldw, out);                                                 \
        break;

AVX512 static void
ol_chunk_any(int np, int64_t C, const float *wt, const float *x, int64_t ldx, const float *pf,
             int64_t ldw, float *out)
{
    switch (np) {
        OL_NP(1) OL_NP(2) OL_NP(3) OL_NP(4) OL_NP(5) OL_NP(6) OL_NP(7) OL_NP(8) OL_NP(9)
        OL_NP(10) OL_NP(11) OL_NP(12) OL_NP(13) OL_NP(14) OL_NP(15) OL_NP(16) OL_NP(17)
        OL_NP(18) OL_NP(19) OL_NP(20) OL_NP(21) OL_NP(22) OL_NP(23) OL_NP(24) OL_NP(25)
        OL_NP(26) OL_NP(27) OL_NP(28)
    default:
        break;
    }
}

/* y's rows [0, rows) (ldy apart), pixels [0, np) = out (np, 16) transposed. */
AVX512 static void
ol_store(const float *out, int np, int rows, float *y, int64_t ldy)
{
    for (int p0 = 0; p0 < np; p0 += 16) {
        int n = np - p0 < 16 ? np - p0 : 16;
        __mmask16 pm = lanes_mask(n);
        __m512 r[16];
        #pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            r[i] = i < n ? _mm512_load_ps(out + (p0 + i) * OL) : _mm512_setzero_ps();
        }
        ty_transpose16_f32(r);
        for (int i = 0; i < rows; i++) {
            _mm512_mask_storeu_ps(y + i * ldy + p0, pm, r[i]);
        }
    }
}
#endif

static ty_isa_override isa_forced;
#ifdef C1_X86
/* Units of (panel of 16 output channels, image, group of pixels), in that order: a thread
 * transposes a panel once for the units of it that it runs in a row (a batch's images), and
 * a plane is cut into groups only where there are too few units to share out (64 output
 * channels at batch 1: 4 panels, 2 groups). */
typedef struct ol_run {
    ty_c1x1_geom g;
    const float *x, *w;
    float *y;
    const ty_gemm_epilogue_f32 *epi;
    int64_t panels, pgroups;
} ol_run;

static int64_t
split_at(int64_t n, int64_t parts, int64_t i)
{
    return n * i / parts;
}

/* Unit u's panel (units go panel by panel, then image by image, then group by group). */
static int64_t
ol_panel(const ol_run *r, int64_t u)
{
    return u / (r->g.N * r->pgroups);
}

/* Unit u with its panel transposed in wt; pf: the next panel's rows, to fetch (or NULL). */
AVX512 static void
ol_unit(const ol_run *r, int64_t u, const float *wt, const float *pf)
{
    const ty_c1x1_geom *g = &r->g;
    int64_t rest = u % (g->N * r->pgroups), n = rest / r->pgroups, grp = rest % r->pgroups;
    int64_t o0 = ol_panel(r, u) * OL;
    int rows = (int)(g->OC - o0 < OL ? g->OC - o0 : OL);
    int64_t g0 = split_at(g->P, r->pgroups, grp), gp = split_at(g->P, r->pgroups, grp + 1) - g0;
    _Alignas(64) float out[OL_MAX_PX * OL];
    const float *x = r->x + n * g->C * g->ldx;
    float *y = r->y + (n * g->OC + o0) * g->P;
    int64_t chunks = (gp + OL_MAX_PX - 1) / OL_MAX_PX;
    for (int64_t ch = 0; ch < chunks; ch++) {
        int64_t p0 = g0 + split_at(gp, chunks, ch), np = g0 + split_at(gp, chunks, ch + 1) - p0;
        ol_chunk_any((int)np, g->C, wt, x + p0, g->ldx, ch == 0 ? pf : NULL, g->C, out);
        ol_store(out, (int)np, rows, y + p0, g->P);
    }
    if (r->epi) {
        r->epi->fn(r->epi->ctx, o0, g0, rows, gp, y + g0, g->P);
    }
}

/* A panel is transposed once for the run of units that share it (a batch's images). */
AVX512 static void
ol_range(void *ctx, int64_t begin, int64_t end)
{
    const ol_run *r = ctx;
    _Alignas(64) float wt[OL_MAX_C * OL]; /* 64 KiB */
    int64_t have = -1;
    for (int64_t u = begin; u < end; u++) {
        int64_t panel = ol_panel(r, u), o0 = panel * OL;
        if (panel != have) {
            int rows = (int)(r->g.OC - o0 < OL ? r->g.OC - o0 : OL);
            ol_transpose_panel(r->w + o0 * r->g.C, r->g.C, rows, r->g.C, wt);
            have = panel;
        }
        /* the next unit's panel, when this thread runs it and it is another panel */
        int64_t next = u + 1 < end ? ol_panel(r, u + 1) : panel;
        ol_unit(r, u, wt, next != panel ? r->w + next * OL * r->g.C : NULL);
    }
}

/* Whether the lanes-over-channels kernel takes the product: planes where the register tiles
 * waste lanes (7x7: 64 for 49) or have one vector a row (4x4), within its weight buffer's
 * bound. Eager, batch 32, two threads: 512 -> 512 at 4x4 1.45-1.51 ms on the tiles, 1.27-1.35
 * in the lanes; but 128 -> 256 at 8x8 (whole vectors) 0.70 on the tiles, 1.0 in the lanes. */
static int
ol_takes(int64_t C, int64_t P)
{
    return ty_isa_override_get(&isa_forced) == TY_ISA_AVX512 && C <= OL_MAX_C &&
           P <= OL_MAX_P && (P % 16 != 0 || P == 16);
}

static void
ol_conv(const ty_c1x1_geom *g, const float *x, const float *w, float *y,
        const ty_gemm_epilogue_f32 *epi)
{
    ol_run r = {.g = *g, .x = x, .w = w, .y = y, .epi = epi};
    r.panels = (g->OC + OL - 1) / OL;
    int64_t items = g->N * r.panels, most = (g->P + OL - 1) / OL;
    r.pgroups = items >= OL_MIN_UNITS ? 1 : (OL_MIN_UNITS + items - 1) / items;
    r.pgroups = r.pgroups < most ? r.pgroups : most;
    ty_parallel_for(items * r.pgroups, 1, ol_range, &r);
}
#endif

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
#ifdef C1_X86
    if (ol_takes(g->C, g->P)) {
        ol_conv(&r.g, x, w, y, epi);
        return;
    }
    if (ty_isa_override_get(&isa_forced) == TY_ISA_AVX2) {
        pk_conv(&r.g, x, w, y, epi);
        return;
    }
#endif
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
ty_conv1x1_ldx(int64_t C, int64_t P)
{
#ifdef C1_X86
    if (ol_takes(C, P) || ty_isa_override_get(&isa_forced) == TY_ISA_AVX2) {
        return P; /* single pixels broadcast, or AVX2's panels copied: rows as they lie */
    }
#else
    (void)C;
#endif
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
