/* GEMM driver: Goto/BLIS-style blocking around the micro-kernels of gemm_ukernel.h.
 *
 *   for jc over N in NC:                 B panel (kc x nc) packed once, shared by all threads
 *     for pc over K in KC:
 *       parallel over tasks (M range x N range):
 *         for ic over the task's M range in MC:   A block (mc x kc) packed per task, sits in L2
 *           for jr over the task's N panels, a chunk at a time:   chunk (kc x ~L2/2) in L2
 *             for ir over the A block:            A micro-panel (MR x kc) stays in L1
 *               for each B micro-panel of the chunk:   one MR x NR micro-kernel call
 *
 * The K blocking depends only on K, and every element goes through the same sequence of fused
 * multiply-adds whichever kernel variant or scratch tile computes it, so the bits depend only
 * on shapes, dtype and ISA, never on the thread count or split.
 *
 * MC and NC come from the L2 size cpuid reports; KC is fixed per ISA, as it sets the bits.
 *
 * Variants of the same loops, each giving the same bits: f32 AVX-512 and AVX2 products with
 * at most RA_MAX_PANELS B panels read A where it lies instead of packing it (a convolution's
 * weights against few pixels), and those with few rows read a row-major B where it lies (one row
 * of tiles) or pack each B panel in its first tile; with several threads and a B that fits,
 * one pass packs B for all of K so
 * the threads meet once per product, not once per K block (with a grid of M ranges, the tasks
 * are then claimed K block by K block, and tiles wait only for the B panels they read); either
 * operand may come from a
 * pack callback (ty_gemm_f32_operands: a convolution's columns packed from the image), and an
 * epilogue may run on each block of C after its last K block.
 *
 * Small f32 products skip the packing (see "small products" below): on the x86 kernels they
 * read A and B where they lie, with the same K blocks and per-element operations, so the same
 * bits; this measured 1.5-2x faster for an MLP's 8 x 64 x 64 products (benchmarks/gemm_small.c,
 * Zen 4). The packing workspace is cached per thread, so the packed path allocates nothing per
 * call either. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#ifdef __SSE2__
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "base/threadpool.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/gemv.h"
#include "base/isa.h"
#include "kernels/cpu/gemm_ukernel.h"

enum {
    /* With at most this many B micro-panels, f32 AVX-512 products read A in place. */
    RA_MAX_PANELS = 8,
    /* The same for AVX2's 16-column panels (N <= 512). Zen 3's prefetchers follow the six A
     * rows of a tile, and A in place was never slower there at one thread (CPU time, GF/s,
     * packed -> in place): 512 x 2304 x 49 60 -> 73 (before the rows-in-lanes kernel),
     * 256 x 2304 x 196 81 -> 90, 1024 x 256 x 196 88 -> 96, 256 x 1152 x 392 88 -> 91,
     * 512^3 92 -> 94, 256^3 84 either way; 128 x 1152 x 784 and 1024^3 within 1% (so left
     * packed, untried on two threads); two threads, wall, best of alternating calls:
     * 256^3 167 -> 185. */
    RA_MAX_PANELS_AVX2 = 32,
    /* With at most this many rows, f32 AVX-512 and AVX2 products do not pack a row-major B ahead:
     * each B panel serves too few tiles to repay a separate pass (packing measured over a
     * third of the time of a 64-row product, a convolution's weights against its columns).
     * One row of tiles reads B in place (the _rb kernels); more pack each panel in its
     * first tile (b_copy; read in place, a panel's rows a multiple of 512 bytes apart fell
     * into a few L1 sets and evicted each other between tiles; at other strides in-place
     * loads measured 4-10% slower than the copy's with rows off 64-byte alignment, and
     * within 3% either way with aligned rows: 64 x 576 x 3136 faster in place, 128 x 576 x
     * 784 and 128 x 1152 x 784 faster copied). (A read in place by the _ra
     * kernels has no such problem: rows a multiple of 512 bytes apart measured within 4% of
     * padded ones, 512 x 512 x 128 to 512 x 4608 x 49, and a copy to a padded stride was
     * slower.) */
    RB_MAX_ROWS = 128,
    /* With several threads, B is packed for all of K at once up to this size: beyond about
     * half an L2 the per-K-block passes measured faster (a 64->128 3x3/2 layer at 56x56). */
    WHOLE_K_MAX_BYTES = 3 << 19,
    /* kb_major passes (see gemm_run) pack B for all of K up to this size: their tasks run K
     * block by K block, so the size only bounds the workspace (that of one K block of a
     * 2048-column N block); beyond it, a pass per K block costs little beside its work */
    KB_MAJOR_MAX_BYTES = 4 << 20,
    /* A packed once for all tasks (gemm_run.as) up to this size */
    SHARED_A_MAX_BYTES = 4 << 20,
    MAX_MR = 12,
    MAX_NR = 32,
    MAX_TILE_BYTES = MAX_MR * MAX_NR * 8,
    /* With several threads, the grid has up to this many tasks per thread, claimed as they
     * go (see compute_range). */
    TASKS_PER_THREAD = 4,
    MAX_HOMES = 16, /* chunks with a home range of tasks of their own (claim_task) */
    /* Below this many multiply-adds per thread another thread costs more than it saves. */
    MIN_FMAS_PER_THREAD = 1 << 18,
    SPIN_BEFORE_YIELD = 2000, /* pauses (about 40 ns each) before waits yield the core */
    /* Scratch for packing tile by tile without a workspace: (MR + NR) * KC elements. */
    FALLBACK_BUF_BYTES = 96 << 10,
};

/* Workspaces of at least HUGE_PAGE_MIN bytes are aligned to (and padded to) HUGE_PAGE. */
#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_PAGE_MIN ((size_t)1 << 20)

typedef void (*pack_fn)(const char *src, int64_t rs, int64_t cs, int64_t len, int64_t kc,
                        int width, char *dst);
typedef void (*tile_store_fn)(const char *tile, int width, char *c, int64_t ldc, int64_t rows,
                              int64_t cols, int add);
typedef void (*zero_fn)(char *c, int64_t ldc, int64_t rows, int64_t cols);

typedef struct gemm_cfg {
    int mr, nr;     /* micro-tile */
    int mc, kc, nc; /* cache blocks; mc % mr == 0, nc % nr == 0 */
    int chunk;      /* B micro-panels per A micro-panel sweep (compute_block) */
    int64_t es;     /* element size in bytes */
    ty_cpu_gemm_ukernel kernel;
    /* M-edge variants computing only rows 0..7 / 0..3 of an mr-wide A panel, or NULL */
    ty_cpu_gemm_ukernel kernel8, kernel4;
    /* N-edge variants computing only columns 0..nr/2-1 (rows mr, 8, 4), or NULL */
    ty_cpu_gemm_ukernel half, half8, half4;
#ifdef TY_GEMM_X86
    /* f32 tiles with B's rows read in place (rows 0..mr-1, 0..7, 0..3; NULL: none), the same
     * storing the rows as a packed panel, and the packed one fetching a later panel's lines
     * (compute_block_rb); NULL rb: B is always packed */
    ty_cpu_gemm_ukernel_rb rb, rb8, rb4;
    ty_cpu_gemm_ukernel_rbp rbp;
    ty_cpu_gemm_ukernel_pf pf;
#endif
    pack_fn pack;   /* one micro-panel of A or of B, zero-padded to width */
    tile_store_fn store;
    zero_fn zero;
} gemm_cfg;

/* ---- per-type helpers ---- */

/* dst[p*width + i] = src[i*rs + p] for i < len, p < kc: the transposing case of packing (rows
 * of a row-major A, columns of a transposed B). SSE2 is part of x86-64, so the 4x4 (f32) and
 * 2x2 (f64) register transposes need no dispatch; they are several times faster than the
 * scalar loop, which matters for small products where packing is a large share of the time. */
static void
transpose_f32(const float *restrict src, int64_t rs, int64_t len, int64_t kc, int width,
              float *restrict dst)
{
    int64_t i = 0;
#ifdef __SSE2__
    for (; i + 4 <= len; i += 4) {
        const float *r0 = src + i * rs, *r1 = r0 + rs, *r2 = r1 + rs, *r3 = r2 + rs;
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            __m128 v0 = _mm_loadu_ps(r0 + p), v1 = _mm_loadu_ps(r1 + p);
            __m128 v2 = _mm_loadu_ps(r2 + p), v3 = _mm_loadu_ps(r3 + p);
            _MM_TRANSPOSE4_PS(v0, v1, v2, v3);
            _mm_storeu_ps(dst + p * width + i, v0);
            _mm_storeu_ps(dst + (p + 1) * width + i, v1);
            _mm_storeu_ps(dst + (p + 2) * width + i, v2);
            _mm_storeu_ps(dst + (p + 3) * width + i, v3);
        }
        for (; p < kc; p++) {
            float *d = dst + p * width + i;
            d[0] = r0[p];
            d[1] = r1[p];
            d[2] = r2[p];
            d[3] = r3[p];
        }
    }
    /* two rows left (the AVX2 kernel's panels are 6 wide): pairs of them unpacked 4 at a
     * time, not element by element */
    for (; i + 2 <= len; i += 2) {
        const float *r0 = src + i * rs, *r1 = r0 + rs;
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
            __m128 v0 = _mm_loadu_ps(r0 + p), v1 = _mm_loadu_ps(r1 + p);
            __m128 lo = _mm_unpacklo_ps(v0, v1), hi = _mm_unpackhi_ps(v0, v1);
            _mm_storel_pi((__m64 *)(void *)(dst + p * width + i), lo);
            _mm_storeh_pi((__m64 *)(void *)(dst + (p + 1) * width + i), lo);
            _mm_storel_pi((__m64 *)(void *)(dst + (p + 2) * width + i), hi);
            _mm_storeh_pi((__m64 *)(void *)(dst + (p + 3) * width + i), hi);
        }
        for (; p < kc; p++) {
            dst[p * width + i] = r0[p];
            dst[p * width + i + 1] = r1[p];
        }
    }
#endif
    for (; i < len; i++) {
        const float *s = src + i * rs;
        for (int64_t p = 0; p < kc; p++) {
            dst[p * width + i] = s[p];
        }
    }
}

static void
transpose_f64(const double *restrict src, int64_t rs, int64_t len, int64_t kc, int width,
              double *restrict dst)
{
    int64_t i = 0;
#ifdef __SSE2__
    for (; i + 2 <= len; i += 2) {
        const double *r0 = src + i * rs, *r1 = r0 + rs;
        int64_t p = 0;
        for (; p + 2 <= kc; p += 2) {
            __m128d v0 = _mm_loadu_pd(r0 + p), v1 = _mm_loadu_pd(r1 + p);
            _mm_storeu_pd(dst + p * width + i, _mm_unpacklo_pd(v0, v1));
            _mm_storeu_pd(dst + (p + 1) * width + i, _mm_unpackhi_pd(v0, v1));
        }
        for (; p < kc; p++) {
            dst[p * width + i] = r0[p];
            dst[p * width + i + 1] = r1[p];
        }
    }
#endif
    for (; i < len; i++) {
        const double *s = src + i * rs;
        for (int64_t p = 0; p < kc; p++) {
            dst[p * width + i] = s[p];
        }
    }
}

/* Packs a micro-panel: dst[p*width + i] = src[i*rs + p*cs] for i < len, 0 for len <= i < width.
 * For A, (rs, cs) = (rsa, csa) and i runs over rows; for B, (rs, cs) = (csb, rsb) and i runs
 * over columns. */
#define DEFINE_HELPERS(T, SFX)                                                                     \
    static void pack_##SFX(const char *src_, int64_t rs, int64_t cs, int64_t len, int64_t kc,      \
                           int width, char *dst_)                                                  \
    {                                                                                              \
        const T *restrict src = (const T *)src_;                                                   \
        T *restrict dst = (T *)dst_;                                                               \
        if (rs == 1 && len == width && width == 16) { /* a fixed-size copy, inlined */             \
            for (int64_t p = 0; p < kc; p++) {                                                     \
                memcpy(dst + p * 16, src + p * cs, sizeof(T) * 16);                                \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        if (rs == 1) { /* rows contiguous: a narrow last panel of a row-major B, say */         \
            for (int64_t p = 0; p < kc; p++) {                                                     \
                memcpy(dst + p * width, src + p * cs, sizeof(T) * (size_t)len);                    \
                memset(dst + p * width + len, 0, sizeof(T) * (size_t)(width - len));               \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = 0; len < width && p < kc; p++) {                                          \
            for (int i = (int)len; i < width; i++) {                                               \
                dst[p * width + i] = 0;                                                            \
            }                                                                                      \
        }                                                                                          \
        if (cs == 1) {                                                                             \
            transpose_##SFX(src, rs, len, kc, width, dst);                                         \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < len; i++) {                                                        \
            for (int64_t p = 0; p < kc; p++) {                                                     \
                dst[p * width + i] = src[i * rs + p * cs];                                         \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void store_##SFX(const char *tile_, int width, char *c_, int64_t ldc, int64_t rows,     \
                            int64_t cols, int add)                                                 \
    {                                                                                              \
        const T *tile = (const T *)tile_;                                                          \
        T *c = (T *)c_;                                                                            \
        for (int64_t i = 0; i < rows; i++) {                                                       \
            for (int64_t j = 0; j < cols; j++) {                                                   \
                T v = tile[i * width + j];                                                         \
                c[i * ldc + j] = add ? c[i * ldc + j] + v : v;                                     \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void zero_##SFX(char *c_, int64_t ldc, int64_t rows, int64_t cols)                      \
    {                                                                                              \
        T *c = (T *)c_;                                                                            \
        for (int64_t i = 0; i < rows; i++) {                                                       \
            memset(c + i * ldc, 0, sizeof(T) * (size_t)cols);                                      \
        }                                                                                          \
    }

DEFINE_HELPERS(float, f32)
DEFINE_HELPERS(double, f64)

#ifdef TY_GEMM_X86
/* pack_f32 with rows contiguous along k (a row-major A, a transposed B) transposed in AVX-512
 * registers: the same values, with a fraction of the instructions (2-4% of a 1024-2048 product
 * went to packing A). */
static void
pack_f32_avx512(const char *src, int64_t rs, int64_t cs, int64_t len, int64_t kc, int width,
                char *dst)
{
    if (cs == 1 && rs != 1 && width <= 32) {
        ty_cpu_transpose_f32_avx512((const float *)src, rs, len, kc, width, (float *)dst);
        return;
    }
    pack_f32(src, rs, cs, len, kc, width, dst);
}
#endif

/* ---- generic micro-kernels: plain C with separate multiply and add, because fma() is a slow
 * library call on the machines that need this path ---- */

#define DEFINE_GENERIC_KERNEL(T, SFX, MR, NR)                                                      \
    static void kernel_##SFX##_generic(int64_t kc, const void *ap, const void *bp, void *cp,       \
                                       int64_t ldc, int add)                                       \
    {                                                                                              \
        const T *a = ap;                                                                           \
        const T *b = bp;                                                                           \
        T *c = cp;                                                                                 \
        T acc[MR][NR];                                                                             \
        memset(acc, 0, sizeof(acc));                                                               \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            for (int i = 0; i < (MR); i++) {                                                       \
                T av = a[i];                                                                       \
                for (int j = 0; j < (NR); j++) {                                                   \
                    acc[i][j] += av * b[j];                                                        \
                }                                                                                  \
            }                                                                                      \
            a += (MR);                                                                             \
            b += (NR);                                                                             \
        }                                                                                          \
        for (int i = 0; i < (MR); i++) {                                                           \
            for (int j = 0; j < (NR); j++) {                                                       \
                c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];                     \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_GENERIC_KERNEL(float, f32, 4, 8)
DEFINE_GENERIC_KERNEL(double, f64, 4, 4)

/* ---- configurations ----
 * Blocks: the A block (mc x kc) stays in L2 and a B micro-panel (kc x nr) in L1/L2; the B panel
 * (kc x nc) is shared by the threads from L3. MC and NC below are defaults for a CPU whose
 * caches cpuid does not describe; fit_blocks replaces them from the detected L2. KC is fixed
 * per ISA (it sets the bits). */

#define DEFINE_CFG(NAME, T, SFX, PACK, MR, NR, MC, KC, NC, KERNEL, KER8, KER4, ...)               \
    _Static_assert((MR) <= MAX_MR && (NR) <= MAX_NR && (MC) % (MR) == 0 && (NC) % (NR) == 0,       \
                   "bad GEMM blocking");                                                           \
    _Static_assert(((MR) + (NR)) * (KC) * sizeof(T) <= FALLBACK_BUF_BYTES,                         \
                   "GEMM fallback buffer too small");                                              \
    static gemm_cfg NAME = {                                                                 \
        .mr = (MR), .nr = (NR), .mc = (MC), .kc = (KC), .nc = (NC), .chunk = 8,                   \
        .es = (int64_t)sizeof(T),                                                                  \
        .kernel = (KERNEL), .kernel8 = (KER8), .kernel4 = (KER4), .pack = (PACK),                  \
        .store = store_##SFX, .zero = zero_##SFX, __VA_ARGS__                                     \
    };

DEFINE_CFG(cfg_f32_generic, float, f32, pack_f32, 4, 8, 128, 256, 2048, kernel_f32_generic, NULL,
           NULL)
DEFINE_CFG(cfg_f64_generic, double, f64, pack_f64, 4, 4, 64, 256, 1024, kernel_f64_generic, NULL,
           NULL)
#ifdef TY_GEMM_X86
DEFINE_CFG(cfg_f32_avx2, float, f32, pack_f32, 6, 16, 144, 256, 2048,
           ty_cpu_gemm_ukernel_f32_avx2, NULL, ty_cpu_gemm_ukernel_f32_avx2_4,
           .rb = ty_cpu_gemm_ukernel_f32_avx2_rb6, .rb4 = ty_cpu_gemm_ukernel_f32_avx2_rb4,
           .rbp = ty_cpu_gemm_ukernel_f32_avx2_rbp6, .pf = ty_cpu_gemm_ukernel_f32_avx2_pf6)
DEFINE_CFG(cfg_f64_avx2, double, f64, pack_f64, 6, 8, 72, 256, 2048,
           ty_cpu_gemm_ukernel_f64_avx2, NULL, ty_cpu_gemm_ukernel_f64_avx2_4)
DEFINE_CFG(cfg_f32_avx512, float, f32, pack_f32_avx512, 12, 32, 144, 512, 1024,
           ty_cpu_gemm_ukernel_f32_avx512, ty_cpu_gemm_ukernel_f32_avx512_8,
           ty_cpu_gemm_ukernel_f32_avx512_4, .half = ty_cpu_gemm_ukernel_f32_avx512_h12,
           .half8 = ty_cpu_gemm_ukernel_f32_avx512_h8, .half4 = ty_cpu_gemm_ukernel_f32_avx512_h4,
           .rb = ty_cpu_gemm_ukernel_f32_avx512_rb12, .rb8 = ty_cpu_gemm_ukernel_f32_avx512_rb8,
           .rb4 = ty_cpu_gemm_ukernel_f32_avx512_rb4, .rbp = ty_cpu_gemm_ukernel_f32_avx512_rbp12,
           .pf = ty_cpu_gemm_ukernel_f32_avx512_pf12)
DEFINE_CFG(cfg_f64_avx512, double, f64, pack_f64, 12, 16, 96, 384, 2048,
           ty_cpu_gemm_ukernel_f64_avx512, ty_cpu_gemm_ukernel_f64_avx512_8,
           ty_cpu_gemm_ukernel_f64_avx512_4)
#endif

/* ---- ISA selection ---- */

static ty_isa_override isa_forced;

ty_isa
ty_gemm_set_isa(ty_isa isa)
{
    return ty_isa_override_set(&isa_forced, isa);
}

ty_isa
ty_gemm_get_isa(void)
{
    return ty_isa_override_get(&isa_forced);
}

/* MC and NC from the detected caches. KC stays the configuration's: it sets the K blocks and
 * so the bits, which must not change from one machine to another of the same ISA. The A block
 * (mc x kc) takes about a quarter of L2 and the chunk of B micro-panels its A micro-panels
 * sweep half, leaving room for C; the B panel (kc x nc), which the threads share, about twice
 * one core's L2 (it spans the cores' L2s and the L3). Unknown sizes keep the built-in
 * blocks. */
static void
fit_blocks(gemm_cfg *g, int64_t l1, int64_t l2)
{
    int64_t kc_bytes = (int64_t)g->kc * g->es;
    int64_t mc = l2 / 4 / kc_bytes / g->mr * g->mr;
    int64_t nc = 2 * l2 / kc_bytes / g->nr * g->nr;
    if (l2 <= 0) {
        return;
    }
    g->mc = (int)(mc < 4 * g->mr ? 4 * g->mr : mc > 1024 ? 1024 / g->mr * g->mr : mc);
    g->nc = (int)(nc < 8 * g->nr ? 8 * g->nr : nc > 4096 ? 4096 : nc);
    /* A B micro-panel that fits in half of L1 stays there while the A block's panels pass
     * (chunks of one panel: AVX2's 16 KiB panels measured 2-5% slower swept chunk-wise) */
    int64_t chunk = kc_bytes * g->nr <= l1 / 2 ? 1 : l2 / 2 / (kc_bytes * g->nr);
    g->chunk = (int)(chunk < 1 ? 1 : chunk);
}

static pthread_once_t blocks_once = PTHREAD_ONCE_INIT;

static void
fit_all_blocks(void)
{
    ty_cpu_caches cs = ty_cpu_cache_sizes();
    int64_t l1 = cs.l1d, l2 = cs.l2;
    fit_blocks(&cfg_f32_generic, l1, l2);
    fit_blocks(&cfg_f64_generic, l1, l2);
#ifdef TY_GEMM_X86
    fit_blocks(&cfg_f32_avx2, l1, l2);
    fit_blocks(&cfg_f64_avx2, l1, l2);
    fit_blocks(&cfg_f32_avx512, l1, l2);
    fit_blocks(&cfg_f64_avx512, l1, l2);
#endif
}

static const gemm_cfg *
cfg_for(int is_f64)
{
    pthread_once(&blocks_once, fit_all_blocks);
    switch (ty_gemm_get_isa()) {
#ifdef TY_GEMM_X86
    case TY_ISA_AVX512:
        return is_f64 ? &cfg_f64_avx512 : &cfg_f32_avx512;
    case TY_ISA_AVX2:
        return is_f64 ? &cfg_f64_avx2 : &cfg_f32_avx2;
#endif
    default:
        return is_f64 ? &cfg_f64_generic : &cfg_f32_generic;
    }
}

/* ---- workspace: one cached, growing buffer per calling thread ---- */

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static int ws_key_ok;
static _Thread_local struct {
    void *p;
    size_t n;
} ws;

static void
ws_key_create(void)
{
    /* The destructor frees a thread's buffer when the thread exits. */
    ws_key_ok = pthread_key_create(&ws_key, free) == 0;
}

static atomic_int no_workspace; /* tests: pretend allocation fails */

void
ty_gemm_set_no_workspace(int on)
{
    atomic_store(&no_workspace, on != 0);
}

static atomic_int small_off; /* tests, benchmarks: force the packed path */

void
ty_gemm_set_small_path(int on)
{
    atomic_store(&small_off, on == 0);
}

static void *
ws_get(size_t n)
{
    if (atomic_load_explicit(&no_workspace, memory_order_relaxed)) {
        return NULL;
    }
    if (ws.n >= n) {
        return ws.p;
    }
    pthread_once(&ws_once, ws_key_create);
    free(ws.p);
    ws.p = NULL;
    ws.n = 0;
    void *p = NULL;
    /* A large workspace goes on huge pages where the kernel offers them on request: the packed
     * panels of a big product span thousands of 4 KiB pages, and the TLB misses measured a few
     * percent of the time. */
    size_t align = n >= HUGE_PAGE_MIN ? HUGE_PAGE : 64;
    n = (n + align - 1) / align * align;
    if (posix_memalign(&p, align, n) != 0) {
        p = NULL;
    } else {
#ifdef MADV_HUGEPAGE
        if (align == HUGE_PAGE) {
            (void)madvise(p, n, MADV_HUGEPAGE); /* a hint: failure only costs speed */
        }
#endif
        ws.p = p;
        ws.n = n;
    }
    if (ws_key_ok) {
        pthread_setspecific(ws_key, p);
    }
    return p;
}

/* ---- driver ---- */

typedef struct gemm_run {
    const gemm_cfg *g;
    int64_t M, N, K;
    const char *A, *B;
    int64_t rsa, csa, rsb, csb;
    /* f32 operands packed by callbacks (NULL: read A or B as a matrix) */
    ty_gemm_pack_f32 pack_a, pack_b;
    const void *actx, *bctx;
    int a_inplace; /* f32 AVX-512, AVX2: A read where it lies by the _ra kernels */
    int b_inplace; /* f32 AVX-512: B's full 32-column panels read where they lie (_rb) */
    int b_copy; /* f32 AVX-512: B's full panels packed by their first tile (compute_block_rb) */
    const ty_gemm_epilogue_f32 *epi; /* f32 only; NULL: none */
    char *C;
    int64_t ldc;
    int accumulate;
    int64_t kcb; /* K block size, a function of K only */
    int64_t mcb, ncb; /* M and N cache blocks (never change the bits) */
    int64_t chunk_panels; /* B micro-panels swept by one A micro-panel (see compute_block) */
    /* the current pass: columns [jc, jc + nc) and K blocks [kb0, kb1) (blocks of kcb) */
    int64_t jc, nc, kb0, kb1;
    char *bp;        /* packed B: per K block of the pass, ceil(nc/nr) micro-panels of kc x nr */
    size_t bp_block; /* bytes between K blocks in bp */
    char *ap;        /* one packed A block per task */
    size_t ap_bytes; /* bytes per task */
    size_t bq_bytes; /* b_copy: the last bytes of each task's A buffer hold one B panel */
    int64_t tm, tn;  /* task grid over (M tiles) x (N panels of the nc block) */
    int64_t nworkers;     /* chunks of compute_range: one per thread, each with its A buffer */
    /* the next task of each home range of the grid (see claim_task); chunks beyond the
     * last range share it */
    atomic_llong next_task[MAX_HOMES];
    int64_t homes;
    /* with several threads: B's items of the pass (see pack_b_range) are claimed pack_group
     * at a time from next_pack, and ready[i] turns 1 once item i is packed (ready NULL: every
     * item is packed before any tile runs) */
    int64_t pack_items, pack_group;
    atomic_llong next_pack;
    atomic_uchar *ready;
    /* kb_major: the tasks of a shared-B grid (tm > 1) are claimed as (K block, task) pairs,
     * K block after K block, in one region for all of the pass's K blocks; done[t] counts the
     * K blocks task t has finished, which the next one of the same tiles waits for */
    int kb_major;
    atomic_int *done;
    /* with one row of tasks (tm == 1) and several threads: A packed once for the pass, its
     * items (K block of the pass, M tile) claimed like B's above, for every task to read
     * (NULL: each task packs its own A blocks); as_block bytes per K block */
    char *as;
    size_t as_block;
} gemm_run;

static inline int64_t
cdiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

static atomic_int forced_mc, forced_nc; /* tests: 0 = the fitted blocks */

void
ty_gemm_set_blocks(int mc, int nc)
{
    atomic_store(&forced_mc, mc > 0 ? mc : 0);
    atomic_store(&forced_nc, nc > 0 ? nc : 0);
}

/* The cache blocks of this call: the fitted ones, or those forced for tests (rounded up to
 * whole micro-tiles, with B chunks of half an N block, so tests reach several chunks). */
static void
blocks_for(const gemm_cfg *g, int64_t *mc, int64_t *nc, int64_t *chunk)
{
    int64_t fm = atomic_load_explicit(&forced_mc, memory_order_relaxed);
    int64_t fn = atomic_load_explicit(&forced_nc, memory_order_relaxed);
    *mc = fm ? cdiv(fm, g->mr) * g->mr : g->mc;
    *nc = fn ? cdiv(fn, g->nr) * g->nr : g->nc;
    *chunk = fn ? (*nc / g->nr + 1) / 2 : g->chunk;
}

/* Start of part `idx` when `total` is cut into `parts` near-equal parts. */
static inline int64_t
split_at(int64_t total, int64_t parts, int64_t idx)
{
    int64_t q = total / parts, r = total % parts;
    return idx * q + (idx < r ? idx : r);
}

/* Packs rows [i0, i0 + rows) x k in [pc, pc + kc) of A as one mr-wide micro-panel. */
static inline void
pack_a_panel(const gemm_run *r, int64_t i0, int64_t rows, int64_t pc, int64_t kc, char *dst)
{
    if (r->pack_a) {
        r->pack_a(r->actx, i0, rows, pc, kc, r->g->mr, (float *)dst);
    } else {
        r->g->pack(r->A + (i0 * r->rsa + pc * r->csa) * r->g->es, r->rsa, r->csa, rows, kc,
                   r->g->mr, dst);
    }
}

/* Packs columns [j0, j0 + cols) x k in [pc, pc + kc) of B as one nr-wide micro-panel. */
static inline void
pack_b_panel(const gemm_run *r, int64_t j0, int64_t cols, int64_t pc, int64_t kc, char *dst)
{
    if (r->pack_b) {
        r->pack_b(r->bctx, j0, cols, pc, kc, r->g->nr, (float *)dst);
    } else {
        r->g->pack(r->B + (pc * r->rsb + j0 * r->csb) * r->g->es, r->csb, r->rsb, cols, kc,
                   r->g->nr, dst);
    }
}

/* One micro-tile at C(i0, j0). The M edge uses the shortest kernel variant that covers its
 * rows; a tile the kernel does not fit exactly runs on a scratch tile. Every variant performs
 * the same operations per element, so which one computes an element never changes its bits. */
static inline void
run_tile(const gemm_cfg *g, int64_t kc, const char *a, const char *b, char *c, int64_t ldc,
         int64_t rows, int64_t cols, int add)
{
    ty_cpu_gemm_ukernel k = g->kernel;
    int64_t krows = g->mr, kcols = g->nr;
    if (rows <= 4 && g->kernel4) {
        k = g->kernel4;
        krows = 4;
    } else if (rows <= 8 && g->kernel8) {
        k = g->kernel8;
        krows = 8;
    }
    if (cols <= g->nr / 2 && g->half) {
        k = krows == 4 ? g->half4 : krows == 8 ? g->half8 : g->half;
        kcols = g->nr / 2;
    }
    if (rows == krows && cols == kcols) {
        k(kc, a, b, c, ldc, add);
    } else {
        _Alignas(64) char tile[MAX_TILE_BYTES];
        k(kc, a, b, tile, g->nr, 0);
        g->store(tile, g->nr, c, ldc, rows, cols, add);
    }
}

/* The epilogue over the tile at C(i0, j0) (j0 absolute), once its last K block is in. */
static inline void
tile_epilogue(const gemm_run *r, int last, int64_t i0, int64_t j0, int64_t rows, int64_t cols)
{
    if (last && r->epi) {
        r->epi->fn(r->epi->ctx, i0, j0, rows, cols, (float *)r->C + i0 * r->ldc + j0, r->ldc);
    }
}

/* K block b: rows [pc, pc + kc) of B, its packed panels, and whether tiles add to C. */
typedef struct kblock {
    int64_t pc, kc;
    int add, last; /* last: the final K block, after which the epilogue runs */
    const char *bp;
    int64_t item0; /* B's item (see pack_b_range) of the block's panel 0 */
    int64_t rel;   /* the block's index within the pass */
} kblock;

static inline kblock
kblock_at(const gemm_run *r, int64_t b)
{
    kblock k = {.pc = b * r->kcb, .item0 = (b - r->kb0) * cdiv(r->nc, r->g->nr), .rel = b - r->kb0};
    k.kc = r->K - k.pc < r->kcb ? r->K - k.pc : r->kcb;
    k.add = r->accumulate || k.pc > 0;
    k.last = k.pc + k.kc == r->K;
    k.bp = r->bp + (size_t)(b - r->kb0) * r->bp_block;
    return k;
}

/* Packed B micro-panel q of K block k: all of the pass's panels are packed, except with
 * b_inplace or b_copy, where only a last, partial one is (the full ones are read in place,
 * or packed by their first tile). */
static inline char *
b_panel(const gemm_run *r, const kblock *k, int64_t q)
{
    const int64_t nr = r->g->nr;
    int64_t first = r->b_inplace || r->b_copy ? r->nc / nr : 0;
    return (char *)k->bp + (q - first) * nr * k->kc * r->g->es;
}

/* Full micro-panels [q0, q1) of K block k from a B whose rows are contiguous (csb == 1), row
 * by row: each row of B is read once from start to end and dealt out to the panels, where
 * packing panel by panel would read a short piece of every row, a row apart, per panel (page
 * after page; it measured over a third of a 64-row product's time). */
static void
pack_b_rows(const gemm_run *r, const kblock *k, int64_t q0, int64_t q1)
{
    const int64_t nr = r->g->nr, es = r->g->es;
    const size_t row_bytes = (size_t)(nr * es);
    const char *src = r->B + (k->pc * r->rsb + r->jc + q0 * nr) * es;
    char *dst = b_panel(r, k, q0);
    const int64_t panel_bytes = nr * k->kc * es;
    for (int64_t p = 0; p < k->kc; p++) {
        const char *s = src + p * r->rsb * es;
        char *d = dst + p * (int64_t)row_bytes;
        for (int64_t q = q0; q < q1; q++) {
            if (row_bytes == 128) { /* f32 x 32: a fixed size the compiler copies inline */
                memcpy(d, s, 128);
            } else if (row_bytes == 64) { /* f32 x 16 (AVX2), f64 x 8 */
                memcpy(d, s, 64);
            } else {
                memcpy(d, s, row_bytes);
            }
            s += row_bytes;
            d += panel_bytes;
        }
    }
}

/* Items are (K block of the pass, B micro-panel) pairs. */
static void
pack_b_range(void *ctx, int64_t begin, int64_t end)
{
    gemm_run *r = ctx;
    const gemm_cfg *g = r->g;
    const int64_t npanels = cdiv(r->nc, g->nr), full = r->nc / g->nr;
    const int by_rows = !r->pack_b && r->csb == 1;
    for (int64_t i = begin; i < end; i++) {
        kblock k = kblock_at(r, r->kb0 + i / npanels);
        int64_t q = i % npanels;
        if ((r->b_inplace || r->b_copy) && q < full) {
            continue; /* read where it lies, or packed by its first tile */
        }
        if (by_rows && q < full) {
            /* the run of full panels of this K block within [begin, end) */
            int64_t q1 = end - i < full - q ? q + (end - i) : full;
            pack_b_rows(r, &k, q, q1);
            i += q1 - q - 1;
            continue;
        }
        int64_t j0 = r->jc + q * g->nr;
        int64_t cols = r->jc + r->nc - j0 < g->nr ? r->jc + r->nc - j0 : g->nr;
        pack_b_panel(r, j0, cols, k.pc, k.kc, b_panel(r, &k, q));
    }
}

/* One step of waiting for another thread: a pause while the wait is short, then a yield, as
 * a thread that waits long has usually had the one it waits for preempted (the machine is
 * shared), and spinning on would keep that one from the core. */
static inline void
wait_a_little(int *spins)
{
    if (++*spins < SPIN_BEFORE_YIELD) {
#ifdef __SSE2__
        _mm_pause();
#endif
    } else {
        sched_yield();
    }
}

/* The shared A panel of M tile t in K block k. */
static inline char *
a_shared_panel(const gemm_run *r, const kblock *k, int64_t t)
{
    return r->as + (size_t)k->rel * r->as_block + (size_t)(t * r->g->mr * k->kc * r->g->es);
}

/* Items [begin, end) of the shared A: (K block of the pass, M tile) pairs. */
static void
pack_a_shared(gemm_run *r, int64_t begin, int64_t end)
{
    const int64_t mr = r->g->mr, mtiles = cdiv(r->M, mr);
    for (int64_t i = begin; i < end; i++) {
        kblock k = kblock_at(r, r->kb0 + i / mtiles);
        int64_t i0 = i % mtiles * mr;
        int64_t rows = r->M - i0 < mr ? r->M - i0 : mr;
        pack_a_panel(r, i0, rows, k.pc, k.kc, a_shared_panel(r, &k, i % mtiles));
    }
}

/* Claims the next group of the pass's shared items (B's, or A's with as) and packs it;
 * returns 0 when none is left. */
static int
pack_next_group(gemm_run *r)
{
    int64_t i = atomic_fetch_add_explicit(&r->next_pack, r->pack_group, memory_order_relaxed);
    if (i >= r->pack_items) {
        return 0;
    }
    int64_t e = r->pack_items - i < r->pack_group ? r->pack_items : i + r->pack_group;
    if (r->as) {
        pack_a_shared(r, i, e);
    } else {
        pack_b_range(r, i, e);
    }
    for (int64_t j = i; j < e; j++) {
        atomic_store_explicit(&r->ready[j], 1, memory_order_release);
    }
    return 1;
}

/* Returns once B's items [i0, i1) are packed, packing unclaimed groups while it waits: a
 * tile waits only for the panels it reads, not for all of the pass's (the barrier this
 * replaces measured 6% of two threads' time on 256 x 1152 x 196). */
static void
wait_packed(gemm_run *r, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; r->ready && i < i1; i++) {
        for (int spins = 0; !atomic_load_explicit(&r->ready[i], memory_order_acquire);) {
            if (!pack_next_group(r)) {
                wait_a_little(&spins);
            }
        }
    }
}

/* Returns once B panels [q0, q1) of K block k are packed, when the threads share them. */
static inline void
wait_b(gemm_run *r, const kblock *k, int64_t q0, int64_t q1)
{
    if (!r->as) {
        wait_packed(r, k->item0 + q0, k->item0 + q1);
    }
}

/* run_tile for A read in place (exactly `rows` rows at a, row stride rsa). */
static inline void
run_tile_ra(const gemm_cfg *g, int64_t kc, const float *a, int64_t rsa, const char *b, char *c,
            int64_t ldc, int64_t rows, int64_t cols, int add)
{
#ifdef TY_GEMM_X86
    int avx2 = g == &cfg_f32_avx2;
    ty_cpu_gemm_ukernel_ra k =
        avx2 ? ty_cpu_gemm_ukernel_f32_avx2_ra[rows] : ty_cpu_gemm_ukernel_f32_avx512_ra[rows];
    int64_t kcols = g->nr;
    if (cols <= g->nr / 2) {
        k = avx2 ? ty_cpu_gemm_ukernel_f32_avx2_ra_half[rows]
                 : ty_cpu_gemm_ukernel_f32_avx512_ra_half[rows];
        kcols = g->nr / 2;
    }
    if (cols == kcols) {
        k(kc, a, rsa, (const float *)b, (float *)c, ldc, add);
    } else {
        _Alignas(64) char tile[MAX_TILE_BYTES];
        k(kc, a, rsa, (const float *)b, (float *)tile, g->nr, 0);
        g->store(tile, g->nr, c, ldc, rows, cols, add);
    }
#else
    (void)g, (void)kc, (void)a, (void)rsa, (void)b, (void)c, (void)ldc, (void)rows, (void)cols;
    (void)add;
#endif
}

/* run_tile for a full B panel read in place (rows ldb apart). */
static inline void
run_tile_rb(const gemm_cfg *g, int64_t kc, const char *a, const float *b, int64_t ldb, char *c,
            int64_t ldc, int64_t rows, int add)
{
#ifdef TY_GEMM_X86
    ty_cpu_gemm_ukernel_rb k = g->rb;
    int64_t krows = g->mr;
    if (rows <= 4 && g->rb4) {
        k = g->rb4;
        krows = 4;
    } else if (rows <= 8 && g->rb8) {
        k = g->rb8;
        krows = 8;
    }
    if (rows == krows) {
        k(kc, (const float *)a, b, ldb, (float *)c, ldc, add);
    } else {
        _Alignas(64) char tile[MAX_TILE_BYTES];
        k(kc, (const float *)a, b, ldb, (float *)tile, g->nr, 0);
        g->store(tile, g->nr, c, ldc, rows, g->nr, add);
    }
#else
    (void)g, (void)kc, (void)a, (void)b, (void)ldb, (void)c, (void)ldc, (void)rows, (void)add;
#endif
}

/* Columns [j0 + from, j0 + cols) of the panel at bq (at most TY_GEMM_RA_COLS_MAX) for M
 * tiles [m0, m1), A read in place, with the rows in the vector lanes: the tiles then take the
 * first `from` columns only (a half panel, or none). */
static void
ra_cols(const gemm_run *r, const kblock *k, int64_t m0, int64_t m1, const char *bq, int64_t j0,
        int64_t from)
{
#ifdef TY_GEMM_X86
    const int64_t mr = r->g->mr;
    int64_t row0 = m0 * mr, rows = (m1 * mr < r->M ? m1 * mr : r->M) - row0;
    int cols = (int)((r->nc - j0 < r->g->nr ? r->nc - j0 : r->g->nr) - from);
    const float *a = (const float *)r->A + row0 * r->rsa + k->pc;
    float *c = (float *)r->C + row0 * r->ldc + r->jc + j0 + from;
    ty_cpu_gemm_ra_cols_fn f = r->g == &cfg_f32_avx2 ? ty_cpu_gemm_ra_cols_f32_avx2
                                                     : ty_cpu_gemm_ra_cols_f32_avx512;
    f(rows, k->kc, a, r->rsa, (const float *)bq + from, r->g->nr, cols, c, r->ldc, k->add);
#else
    (void)r, (void)k, (void)m0, (void)m1, (void)bq, (void)j0, (void)from;
#endif
}

/* compute_range's tiles with A read in place: no A block to pack, so tiles run in M order
 * within each B micro-panel. */
static void
compute_range_ra_rows(gemm_run *r, const kblock *k, int64_t m0, int64_t m1, int64_t n0,
                      int64_t n1)
{
    const gemm_cfg *g = r->g;
    const int64_t mr = g->mr, nr = g->nr, es = g->es, kc = k->kc;
    const float *A = (const float *)r->A + k->pc;
    for (int64_t q = n0; q < n1; q++) {
        int64_t j0 = q * nr;
        int64_t cols = r->nc - j0 < nr ? r->nc - j0 : nr;
        wait_b(r, k, q, q + 1);
        const char *bq = b_panel(r, k, q);
        /* the columns the tiles compute: a narrow rest of the panel goes to ra_cols */
        int64_t tcols = cols > nr / 2 ? nr / 2 : 0;
        if (cols - tcols <= TY_GEMM_RA_COLS_MAX) {
            ra_cols(r, k, m0, m1, bq, j0, tcols);
        } else {
            tcols = cols;
        }
        for (int64_t t = m0; t < m1; t++) {
            int64_t i0 = t * mr;
            int64_t rows = r->M - i0 < mr ? r->M - i0 : mr;
            char *c = r->C + (i0 * r->ldc + r->jc + j0) * es;
            if (tcols > 0) {
                run_tile_ra(g, kc, A + i0 * r->rsa, r->rsa, bq, c, r->ldc, rows, tcols, k->add);
            }
            tile_epilogue(r, k->last, i0, r->jc + j0, rows, cols);
        }
    }
}

/* AVX2 takes the rows 16 tiles (96 rows, 96 KiB of A at kc = 256) at a time over all of the
 * task's panels: its rows-in-lanes kernel (a last panel of 1 to 4 columns), little arithmetic
 * per byte of A, found the rows still in L2; in one sweep of the task's rows per panel they
 * came from L3 (one thread, Zen 3: 48 columns 90 -> 94 GF/s). 96 rows are whole groups of 32
 * for that kernel. */
static void
compute_range_ra(gemm_run *r, const kblock *k, int64_t m0, int64_t m1, int64_t n0,
                 int64_t n1)
{
    const int64_t step = r->g == &cfg_f32_avx2 ? 16 : m1 - m0;
    for (int64_t t = m0; t < m1; t += step) {
        compute_range_ra_rows(r, k, t, m1 - t < step ? m1 : t + step, n0, n1);
    }
}

/* b_copy: tile s of a full B panel whose rows lie at b (ldb apart), with packed A at a.
 * Tile 0 reads the panel in place and packs it into bp; the others read bp, and tiles 1 to 3
 * prefetch the lines of every row of the next panel (at next, NULL: none), so that it is in
 * cache when its tile 0 comes. Every kernel here performs the same operations per
 * element. */
static void
run_tile_copy(const gemm_run *r, int64_t s, int64_t kc, const char *a, const float *b,
              const char *next, char *bp, char *c, int64_t rows, int add)
{
#ifdef TY_GEMM_X86
    const gemm_cfg *g = r->g;
    /* a row's bytes (AVX-512 128, AVX2 64) span one line more than they fill unless 64-byte
     * aligned: tiles 1 to `lines` fetch one each, the last one the row's last byte */
    const int64_t row_bytes = g->nr * g->es, lines = row_bytes / 64 + 1;
    if (s == 0) {
        _Alignas(64) char tile[MAX_TILE_BYTES];
        int full = rows == g->mr;
        g->rbp(kc, (const float *)a, b, r->rsb, (float *)bp, full ? (float *)c : (float *)tile,
               full ? r->ldc : g->nr, full ? add : 0);
        if (!full) {
            g->store(tile, g->nr, c, r->ldc, rows, g->nr, add);
        }
    } else if (s <= lines && next && rows == g->mr) {
        int64_t at = s == lines ? row_bytes - 1 : 64 * (s - 1);
        g->pf(kc, (const float *)a, (const float *)bp, next + at, r->rsb * g->es, (float *)c,
              r->ldc, add);
    } else {
        run_tile(g, kc, a, bp, c, r->ldc, rows, g->nr, add);
    }
#else
    (void)r, (void)s, (void)kc, (void)a, (void)b, (void)next, (void)bp, (void)c, (void)rows;
    (void)add;
#endif
}

/* compute_block's tiles with B's full panels read in place (the _rb kernels): B panel by
 * panel over the packed A block, so each in-place panel is read from memory once per block.
 * With b_copy (more than one row of tiles), each full panel is packed by its first tile into
 * the task's panel buffer, having been prefetched during the previous panel's tiles
 * (run_tile_copy). Packed ahead of the tiles, B's loads from memory stalled the threads, and
 * read in place by every tile they were slower too. One thread, CPU time, Xeon: 64 x 147 x
 * 12544 (ResNet-18's first convolution) 125 -> 142 GF/s, 32 x 1024 x 4096 87 -> 126 (both
 * packed ahead before); 64 x 576 x 3136 139 -> 151 and 128 x 1152 x 784 149 -> 161 (read in
 * place before; B's rows 16 bytes off 64-byte alignment, about equal when aligned). AVX2's
 * 6 x 16 tiles the same way (where A is not read in place: more than 512 columns), against
 * B packed ahead, Zen 3, GFLOP/s, one thread, CPU time, best of 4 alternating rounds in two
 * runs: 64 x 147 x 12544 60-76 -> 85-87, 64 x 576 x 3136 71-75 -> 87-89, 128 x 1152 x 784
 * 80-81 -> 90-91, 64 x 512 x 1024 70-82 -> 86-88, 128 x 576 x 784 and 128 x 128 x 8192 about
 * even; two threads, best of 5 rounds, 1.17-1.25x, 1.15-1.25x, 1.03-1.18x (packing B ahead
 * was a fifth of the samples of 64 x 576 x 3136 at two threads). */
static void
compute_block_rb(gemm_run *r, const kblock *k, int64_t mb, int64_t nt, int64_t n0,
                 int64_t n1, const char *ablk, char *ap)
{
    const gemm_cfg *g = r->g;
    const int64_t mr = g->mr, nr = g->nr, es = g->es, kc = k->kc;
    const int64_t full = r->nc / nr;
    char *copy = r->b_copy ? ap + r->ap_bytes - r->bq_bytes : NULL;
    for (int64_t q = n0; q < n1; q++) {
        int64_t j0 = q * nr; /* within the nc block */
        int64_t cols = r->nc - j0 < nr ? r->nc - j0 : nr;
        const float *bi = cols == nr ? (const float *)r->B + k->pc * r->rsb + r->jc + j0 : NULL;
        if (!bi) {
            wait_b(r, k, q, q + 1);
        }
        const char *bq = bi ? NULL : b_panel(r, k, q);
        const char *next = q + 1 < n1 && q + 1 < full ? (const char *)(bi + nr) : NULL;
        for (int64_t s = 0; s < nt; s++) {
            int64_t i0 = (mb + s) * mr;
            int64_t rows = r->M - i0 < mr ? r->M - i0 : mr;
            char *c = r->C + (i0 * r->ldc + r->jc + j0) * es;
            const char *as = ablk + s * mr * kc * es;
            if (bi && copy) {
                run_tile_copy(r, s, kc, as, bi, next, copy, c, rows, k->add);
            } else if (bi) {
                run_tile_rb(g, kc, as, bi, r->rsb, c, r->ldc, rows, k->add);
            } else {
                run_tile(g, kc, as, bq, c, r->ldc, rows, cols, k->add);
            }
            tile_epilogue(r, k->last, i0, r->jc + j0, rows, cols);
        }
    }
}

/* The most M tiles of one packed A block: the M block with an eighth to spare, so that a
 * task a tile longer than the block (22 tiles against 21 at 2048 on two threads) is not cut
 * into two half blocks that each sweep all of its B panels from L3. */
static inline int64_t
a_block_tiles(const gemm_run *r)
{
    int64_t tiles = r->mcb / r->g->mr;
    return tiles + tiles / 8;
}

/* One task's tiles (M tiles [m0, m1), B panels [n0, n1)) for one K block. With packed B,
 * the task's B panels are taken a chunk at a time (chunk_panels, half of L2) and each A
 * micro-panel of the block (mr x kc, 24 KiB for f32 AVX-512) is swept over the chunk: the A
 * panel stays in L1 while the chunk's panels stream from L2. Panel by panel over the A block,
 * a B micro-panel larger than L1 (kc x nr = 64 KiB) streamed from L2 beside the A panels for
 * every tile (measured 4% slower). */
static void
compute_block(gemm_run *r, const kblock *k, int64_t m0, int64_t m1, int64_t n0,
              int64_t n1, char *ap)
{
    const gemm_cfg *g = r->g;
    const int64_t mr = g->mr, nr = g->nr, es = g->es, kc = k->kc;
    const int64_t block_tiles = a_block_tiles(r), chunk = r->chunk_panels;
    if (r->a_inplace) {
        compute_range_ra(r, k, m0, m1, n0, n1);
        return;
    }
    /* A blocks of equal size: a short last block (1 tile of 22 at 2048 on two threads) would
     * sweep the whole B chunk from L3 for little arithmetic. */
    const int64_t nblocks = cdiv(m1 - m0, block_tiles);
    for (int64_t bi = 0; bi < nblocks; bi++) {
        int64_t mb = m0 + split_at(m1 - m0, nblocks, bi);
        int64_t nt = m0 + split_at(m1 - m0, nblocks, bi + 1) - mb;
        const char *ablk = ap;
        if (r->as) {
            int64_t item = k->rel * cdiv(r->M, mr) + mb;
            wait_packed(r, item, item + nt);
            ablk = a_shared_panel(r, k, mb);
        } else {
            for (int64_t s = 0; s < nt; s++) {
                int64_t i0 = (mb + s) * mr;
                int64_t rows = r->M - i0 < mr ? r->M - i0 : mr;
                pack_a_panel(r, i0, rows, k->pc, kc, ap + s * mr * kc * es);
            }
        }
        if (r->b_inplace || r->b_copy) {
            compute_block_rb(r, k, mb, nt, n0, n1, ablk, ap);
            continue;
        }
        for (int64_t q0 = n0; q0 < n1; q0 += chunk) {
            int64_t q1 = n1 - q0 < chunk ? n1 : q0 + chunk;
            for (int64_t s = 0; s < nt; s++) {
                int64_t i0 = (mb + s) * mr;
                int64_t rows = r->M - i0 < mr ? r->M - i0 : mr;
                const char *as = ablk + s * mr * kc * es;
                for (int64_t q = q0; q < q1; q++) {
                    int64_t j0 = q * nr; /* within the nc block */
                    int64_t cols = r->nc - j0 < nr ? r->nc - j0 : nr;
                    char *c = r->C + (i0 * r->ldc + r->jc + j0) * es;
                    if (s == 0) { /* the first row of tiles starts on the panels packed yet */
                        wait_b(r, k, q, q + 1);
                    }
                    run_tile(g, kc, as, b_panel(r, k, q), c, r->ldc, rows, cols, k->add);
                    tile_epilogue(r, k->last, i0, r->jc + j0, rows, cols);
                }
            }
        }
    }
}

/* The grid's tasks are cut into r->homes home ranges, one per chunk (by the chunk's index, so
 * mostly the same thread each call): a chunk claims its own tasks in order, then those left in
 * the other ranges. With one row of tasks, a thread then packs the same B panels and writes the
 * same columns of C call after call, which stay in its caches (256 x 256 x 256 on two threads:
 * 296-304 -> 320 GF/s). Returns -1 when no task is left. */
static int64_t
claim_task(gemm_run *r, int64_t chunk, int64_t ntasks)
{
    int64_t homes = r->homes;
    int64_t own = chunk < homes ? chunk : homes - 1;
    for (int64_t i = 0; i < homes; i++) {
        int64_t h = (own + i) % homes;
        int64_t end = split_at(ntasks, homes, h + 1);
        if (atomic_load_explicit(&r->next_task[h], memory_order_relaxed) >= end) {
            continue;
        }
        int64_t t = atomic_fetch_add_explicit(&r->next_task[h], 1, memory_order_relaxed);
        if (t < end) {
            return t;
        }
    }
    return -1;
}

/* Task t of the grid: M tiles [m0, m1), B panels [n0, n1). */
static inline void
task_bounds(const gemm_run *r, int64_t t, int64_t *m0, int64_t *m1, int64_t *n0, int64_t *n1)
{
    const int64_t mtiles = cdiv(r->M, r->g->mr), npanels = cdiv(r->nc, r->g->nr);
    int64_t ti = t / r->tn, tj = t % r->tn;
    *m0 = split_at(mtiles, r->tm, ti);
    *m1 = split_at(mtiles, r->tm, ti + 1);
    *n0 = split_at(npanels, r->tn, tj);
    *n1 = split_at(npanels, r->tn, tj + 1);
}

/* compute_range for kb_major: claims (K block, task) pairs in K block order, so one region
 * runs all of the pass's K blocks and a thread the OS delays holds the others up once, at the
 * end, instead of at every K block (256 x 2304 x 196: 5 regions before). A pair waits for
 * the previous K block of its task, which was claimed earlier, so every C element still
 * receives its block sums in K order; that wait is rare, as each K block has several tasks
 * per thread. */
static void
compute_range_kb_major(gemm_run *r, char *ap)
{
    const int64_t ntasks = r->tm * r->tn, total = (r->kb1 - r->kb0) * ntasks;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&r->next_task[0], 1, memory_order_relaxed);
        if (i >= total) {
            return;
        }
        int64_t b = i / ntasks, t = i % ntasks;
        for (int spins = 0; atomic_load_explicit(&r->done[t], memory_order_acquire) < b;) {
            wait_a_little(&spins);
        }
        int64_t m0, m1, n0, n1;
        task_bounds(r, t, &m0, &m1, &n0, &n1);
        kblock k = kblock_at(r, r->kb0 + b);
        compute_block(r, &k, m0, m1, n0, n1, ap);
        atomic_store_explicit(&r->done[t], (int)b + 1, memory_order_release);
    }
}

/* Chunks [begin, end) (one per thread, each with its own A buffer) claim tasks of the grid
 * until none are left, so a thread the OS delays (the machine is shared) leaves its share to
 * the others instead of holding them at the barrier. With a single row of tasks (tm == 1) no
 * two tasks share a B panel, so each packs its own before its tiles and no thread waits for
 * another's packing (256 x 256 x 256 on two threads: 286 -> 290-292 GF/s). Each task runs
 * over the pass's K blocks in order and writes its own tiles, so every C element receives its
 * block sums in K order whichever thread runs it. */
static void
compute_range(void *ctx, int64_t begin, int64_t end)
{
    gemm_run *r = ctx;
    const int64_t npanels = cdiv(r->nc, r->g->nr);
    const int64_t ntasks = r->tm * r->tn;
    char *ap = r->ap + (size_t)begin * r->ap_bytes; /* chunks are disjoint: `begin` is ours */
    (void)end;
    if (r->kb_major) {
        compute_range_kb_major(r, ap);
        return;
    }
    for (;;) {
        int64_t t = claim_task(r, begin, ntasks);
        if (t < 0) {
            return;
        }
        int64_t m0, m1, n0, n1;
        task_bounds(r, t, &m0, &m1, &n0, &n1);
        for (int64_t b = 0; r->tm == 1 && b < r->kb1 - r->kb0; b++) {
            pack_b_range(r, b * npanels + n0, b * npanels + n1); /* only this task uses them */
        }
        for (int64_t b = r->kb0; b < r->kb1; b++) {
            kblock k = kblock_at(r, b);
            compute_block(r, &k, m0, m1, n0, n1, ap);
        }
    }
}

/* One region per pass: every thread claims groups of B's items and packs them, then claims
 * compute tasks, whose tiles wait for the panels they read only (wait_packed). A thread that
 * never joins leaves its share to the others; one region instead of two saves a wake-up and
 * a join per pass. */
static void
pack_then_compute(void *ctx, int64_t begin, int64_t end)
{
    gemm_run *r = ctx;
    /* kb_major: the first K block's items ahead, the later ones as tiles first need them */
    int64_t ahead = r->kb_major ? cdiv(r->nc, r->g->nr) : r->pack_items;
    while (atomic_load_explicit(&r->next_pack, memory_order_relaxed) < ahead &&
           pack_next_group(r)) {
    }
    compute_range(ctx, begin, end);
}

/* Chooses the task grid tm x tn (at most max_tasks tasks) with the least expected time on
 * nthreads threads that claim tasks as they go: the total work shared out, plus half the
 * largest task for the tail. Work counts micro-kernel calls (4 each) and the A panels every
 * task packs for itself (a_pack each: packing a 12 x 512 panel measured half a call), so
 * splitting N, which packs each A panel once per column of tasks, must buy enough balance;
 * it is all of the cost of a weight matrix read once for a narrow N. */
static void
choose_grid(int64_t mtiles, int64_t npanels, int64_t nthreads, int64_t max_tasks, int64_t a_pack,
            int64_t *tm, int64_t *tn)
{
    int64_t best_cost = -1;
    for (int64_t m = 1; m <= max_tasks && m <= mtiles; m++) {
        int64_t n = max_tasks / m;
        if (n > npanels) {
            n = npanels;
        }
        int64_t largest = cdiv(mtiles, m) * (4 * cdiv(npanels, n) + a_pack);
        int64_t total = mtiles * (4 * npanels + a_pack * n);
        int64_t cost = 2 * total + nthreads * largest; /* 2 * nthreads * expected time */
        if (best_cost < 0 || cost < best_cost || (cost == best_cost && m * n < *tm * *tn)) {
            best_cost = cost;
            *tm = m;
            *tn = n;
        }
    }
}

/* Packs tile by tile into stack scratch, for when no workspace can be allocated. Same blocking
 * and kernels as the packed path, so the same bits. */
static __attribute__((noinline)) void
gemm_fallback(gemm_run *r)
{
    _Alignas(64) char abuf[FALLBACK_BUF_BYTES];
    char *bbuf = abuf + r->g->mr * r->kcb * r->g->es;
    const gemm_cfg *g = r->g;
    const int64_t mr = g->mr, nr = g->nr, es = g->es;
    for (int64_t pc = 0; pc < r->K; pc += r->kcb) {
        int64_t kc = r->K - pc < r->kcb ? r->K - pc : r->kcb;
        int add = r->accumulate || pc > 0;
        for (int64_t j0 = 0; j0 < r->N; j0 += nr) {
            int64_t cols = r->N - j0 < nr ? r->N - j0 : nr;
            pack_b_panel(r, j0, cols, pc, kc, bbuf);
            for (int64_t i0 = 0; i0 < r->M; i0 += mr) {
                int64_t rows = r->M - i0 < mr ? r->M - i0 : mr;
                pack_a_panel(r, i0, rows, pc, kc, abuf);
                run_tile(g, kc, abuf, bbuf, r->C + (i0 * r->ldc + j0) * es, r->ldc, rows, cols,
                         add);
                tile_epilogue(r, pc + kc == r->K, i0, j0, rows, cols);
            }
        }
    }
}

static void
gemm_packed(gemm_run *r)
{
    const gemm_cfg *g = r->g;
    const int64_t mr = g->mr, nr = g->nr, es = g->es;
    const int64_t mtiles = cdiv(r->M, mr);
    blocks_for(g, &r->mcb, &r->ncb, &r->chunk_panels);

    int64_t nthreads = ty_parallel_in_region() ? 1 : ty_get_num_threads();
    double by_work = (double)r->M * (double)r->N * (double)r->K / MIN_FMAS_PER_THREAD;
    if (by_work < (double)nthreads) {
        nthreads = (int64_t)by_work > 1 ? (int64_t)by_work : 1;
    }
#ifdef TY_GEMM_X86
    /* Few B panels reuse each packed A panel too little to repay packing it. */
    r->a_inplace = (g == &cfg_f32_avx512 || g == &cfg_f32_avx2) && !r->pack_a && r->csa == 1 &&
                   cdiv(r->N, nr) <= (g == &cfg_f32_avx2 ? RA_MAX_PANELS_AVX2 : RA_MAX_PANELS);
    int b_rows = g->rb && !r->a_inplace && !r->pack_b && r->csb == 1 && r->M <= RB_MAX_ROWS;
    r->b_inplace = b_rows && r->M <= mr;
    r->b_copy = b_rows && r->M > mr;
#endif
    /* B's full panels are not packed ahead in these modes, so the N block bounds nothing:
     * one block makes longer runs of panels per task, and each task's first panel is the
     * only one not prefetched (64 x 147 x 12544: +2% on one thread, more on two). */
    if ((r->b_inplace || r->b_copy) && !atomic_load_explicit(&forced_nc, memory_order_relaxed)) {
        r->ncb = cdiv(r->N, nr) * nr;
    }
    const int64_t nc_max = r->N < r->ncb ? cdiv(r->N, nr) * nr : r->ncb;
    r->tm = 1;
    r->tn = 1;
    if (nthreads > 1) {
        choose_grid(mtiles, cdiv(nc_max, nr), nthreads, nthreads * TASKS_PER_THREAD,
                    r->a_inplace ? 0 : 2, &r->tm, &r->tn);
        /* Few rows against a B packed here: packing B is a large share of the work, and it
         * waits on memory. Each task then packs its own B panels (one row of tasks), as the
         * threads packing shared panels waited for the slowest before computing (64 x 147 x
         * 12544 on two threads: 222 -> 241 GF/s). */
        if (r->M <= RB_MAX_ROWS && !r->a_inplace && !r->b_inplace && r->tm > 1) {
            int64_t npanels = cdiv(nc_max, nr);
            r->tn = r->tm * r->tn < npanels ? r->tm * r->tn : npanels;
            r->tm = 1;
        }
    }
    int64_t ntasks = r->tm * r->tn;
    r->nworkers = ntasks < nthreads ? ntasks : nthreads;
    /* Home ranges (claim_task) when each task packs its own B panels; with shared B panels
     * (tm > 1) they measured slower, so every chunk claims from one range in grid order. */
    r->homes = r->tm == 1 ? (r->nworkers < MAX_HOMES ? r->nworkers : MAX_HOMES) : 1;

    int64_t block_tiles = a_block_tiles(r);
    int64_t task_tiles = cdiv(mtiles, r->tm);
    if (task_tiles > block_tiles) {
        task_tiles = block_tiles;
    }
    /* Threads meet once per pass (pack_then_compute). With several threads and a B
     * that fits, one pass takes all of K, so a deep narrow product (a late convolution
     * layer) does not stop its threads at every K block. */
    const int64_t nkb = cdiv(r->K, r->kcb);
    /* b_inplace, b_copy: only the last panel, when partial, is packed ahead (b_panel) */
    int64_t bp_cols = r->b_inplace || r->b_copy ? nr : nc_max;
    r->bp_block = (size_t)(r->kcb * bp_cols * es + 63) / 64 * 64;
    r->kb_major = r->nworkers > 1 && r->tm > 1 &&
                  (size_t)nkb * r->bp_block <= KB_MAJOR_MAX_BYTES;
    int64_t pass_kb = ntasks > 1 && (size_t)nkb * r->bp_block <= WHOLE_K_MAX_BYTES ? nkb : 1;
    pass_kb = r->kb_major ? nkb : pass_kb;
    size_t bp_bytes = (size_t)pass_kb * r->bp_block;
    r->bq_bytes = r->b_copy ? (size_t)(nr * r->kcb * es + 63) / 64 * 64 : 0;
    r->ap_bytes = r->a_inplace ? 0 : (size_t)(task_tiles * mr * r->kcb * es + 63) / 64 * 64;
    r->ap_bytes += r->bq_bytes;
    /* One row of tasks: each would pack all of A for itself (128 x 1152 x 784 on two
     * threads: 8 times, a tenth of the time), so the threads pack it once, together. */
    r->as_block = (size_t)(mtiles * mr * r->kcb * es + 63) / 64 * 64;
    int a_shared = r->nworkers > 1 && r->tm == 1 && ntasks > 1 && !r->a_inplace &&
                   (size_t)pass_kb * r->as_block <= SHARED_A_MAX_BYTES;
    size_t as_bytes = a_shared ? (size_t)pass_kb * r->as_block : 0;
    int64_t max_items = pass_kb * (mtiles > cdiv(nc_max, nr) ? mtiles : cdiv(nc_max, nr));
    size_t ready_bytes = (size_t)(max_items + 63) / 64 * 64;
    size_t done_bytes = (sizeof(atomic_int) * (size_t)ntasks + 63) / 64 * 64;
    char *w = ws_get(bp_bytes + as_bytes + ready_bytes + done_bytes +
                     (size_t)r->nworkers * r->ap_bytes);
    if (!w) {
        gemm_fallback(r);
        return;
    }
    r->bp = w;
    w += bp_bytes;
    r->as = a_shared ? w : NULL;
    w += as_bytes;
    atomic_uchar *ready = (atomic_uchar *)(void *)w;
    r->done = (atomic_int *)(void *)(w + ready_bytes);
    r->ap = w + ready_bytes + done_bytes;

    for (int64_t jc = 0; jc < r->N; jc += r->ncb) {
        r->jc = jc;
        r->nc = r->N - jc < r->ncb ? r->N - jc : r->ncb;
        int64_t npanels = cdiv(r->nc, nr);
        for (r->kb0 = 0; r->kb0 < nkb; r->kb0 = r->kb1) {
            r->kb1 = r->kb0 + pass_kb < nkb ? r->kb0 + pass_kb : nkb;
            int64_t items = (r->kb1 - r->kb0) * npanels;
            for (int64_t h = 0; h < r->homes; h++) {
                atomic_store_explicit(&r->next_task[h], split_at(ntasks, r->homes, h),
                                      memory_order_relaxed);
            }
            if (r->tm == 1) {
                /* each task packs its own B panels (compute_range); the items are A's */
                items = r->as ? (r->kb1 - r->kb0) * mtiles : 0;
            }
            r->ready = r->nworkers > 1 && items > 0 ? ready : NULL;
            if (r->nworkers > 1) {
                r->pack_items = items;
                r->pack_group = cdiv(r->kb_major ? npanels : items, 2 * r->nworkers);
                atomic_store_explicit(&r->next_pack, 0, memory_order_relaxed);
                for (int64_t i = 0; i < items; i++) {
                    atomic_store_explicit(&ready[i], 0, memory_order_relaxed);
                }
                for (int64_t t = 0; t < ntasks; t++) {
                    atomic_store_explicit(&r->done[t], 0, memory_order_relaxed);
                }
                ty_parallel_for(r->nworkers, 1, pack_then_compute, r);
            } else {
                pack_b_range(r, 0, items);
                compute_range(r, 0, 1);
            }
        }
    }
}

/* ---- f32 matrix-vector products (M == 1 or N == 1), when the ISA has kernels for them ----
 * The kernels run the micro-kernels' own arithmetic (one fused chain per output and K block),
 * so the bits equal those of the packed path, which would copy the whole matrix and compute
 * 12 (or 32) times the needed tile. A matrix contiguous along k is transposed 16 outputs at a
 * time (in registers with AVX-512, else through a small buffer): vectorising across outputs
 * keeps each output's chain in k order, where a dot product with lane-wise partial sums would
 * change the bits. */

enum { GEMV_GROUP = 16, MAX_KC = 512 };

typedef struct gemv_run {
    ty_cpu_gemv_fn rows;
    ty_cpu_gemv_fn cols; /* NULL: gemv_cols_buffered */
    int64_t K, kcb;
    const float *x;
    int64_t incx;
    const float *w;
    int64_t rs, cs; /* W(k, j) = w[k*rs + j*cs]; rs == 1 or cs == 1 */
    float *y;
    int64_t incy;
    int accumulate;
} gemv_run;

/* Matrix contiguous along k, no in-register kernel: transpose 16 outputs at a time into a
 * stack buffer and run the rows kernel on it. */
static __attribute__((noinline)) void
gemv_cols_buffered(const gemv_run *g, int64_t begin, int64_t end)
{
    _Alignas(64) float buf[GEMV_GROUP * MAX_KC];
    for (int64_t j = begin; j < end; j += GEMV_GROUP) {
        int64_t nj = end - j < GEMV_GROUP ? end - j : GEMV_GROUP;
        for (int64_t pc = 0; pc < g->K; pc += g->kcb) {
            int64_t kc = g->K - pc < g->kcb ? g->K - pc : g->kcb;
            /* buf[p*GEMV_GROUP + i] = W(pc + p, j + i) */
            transpose_f32(g->w + j * g->cs + pc, g->cs, nj, kc, GEMV_GROUP, buf);
            g->rows(nj, kc, g->x + pc * g->incx, g->incx, buf, GEMV_GROUP, g->y + j * g->incy,
                    g->incy, g->accumulate || pc > 0);
        }
    }
}

static void
gemv_range(void *ctx, int64_t begin, int64_t end)
{
    const gemv_run *g = ctx;
    if (g->cs != 1 && !g->cols) {
        gemv_cols_buffered(g, begin, end);
        return;
    }
    for (int64_t pc = 0; pc < g->K; pc += g->kcb) {
        int64_t kc = g->K - pc < g->kcb ? g->K - pc : g->kcb;
        const float *x = g->x + pc * g->incx;
        float *y = g->y + begin * g->incy;
        int add = g->accumulate || pc > 0;
        if (g->cs == 1) {
            g->rows(end - begin, kc, x, g->incx, g->w + pc * g->rs + begin, g->rs, y, g->incy,
                    add);
        } else {
            g->cols(end - begin, kc, x, g->incx, g->w + begin * g->cs + pc, g->cs, y, g->incy,
                    add);
        }
    }
}

/* Returns 0 (and does nothing) when the product is not a matrix-vector product that this ISA
 * has a kernel for. */
static int
gemv_f32(const gemm_cfg *cfg, int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa,
         int64_t csa, const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc,
         int accumulate)
{
#ifdef TY_GEMM_X86
    int avx512 = cfg == &cfg_f32_avx512;
    if ((!avx512 && cfg != &cfg_f32_avx2) || (M != 1 && N != 1) || cfg->kc > MAX_KC) {
        return 0;
    }
    /* y[j] = sum_k x[k] * W(k, j) */
    gemv_run r = {.K = K, .kcb = cdiv(K, cdiv(K, cfg->kc)), .accumulate = accumulate};
    r.rows = avx512 ? ty_cpu_gemv_rows_f32_avx512 : ty_cpu_gemv_rows_f32_avx2;
    r.cols = avx512 ? ty_cpu_gemv_cols_f32_avx512 : NULL;
    int64_t n;
    if (M == 1 && rsb == 1 && !accumulate && ty_gemv_t_f32(N, K, A, csa, B, csb, C)) {
        return 1; /* B contiguous along k (x @ W^T): gemv.h's kernel, more chains in flight */
    }
    if (M == 1) {
        r.x = A, r.incx = csa, r.w = B, r.rs = rsb, r.cs = csb, n = N, r.y = C, r.incy = 1;
    } else {
        r.x = B, r.incx = rsb, r.w = A, r.rs = csa, r.cs = rsa, n = M, r.y = C, r.incy = ldc;
    }
    if (r.cs != 1 && r.rs != 1) {
        return 0;
    }
    int64_t nthreads = ty_parallel_in_region() ? 1 : ty_get_num_threads();
    double by_work = (double)n * (double)K / MIN_FMAS_PER_THREAD;
    if (by_work < (double)nthreads) {
        nthreads = (int64_t)by_work > 1 ? (int64_t)by_work : 1;
    }
    if (nthreads > 1 && n >= nthreads) {
        ty_parallel_for(n, n / nthreads, gemv_range, &r); /* n / nthreads: nthreads chunks */
    } else {
        gemv_range(&r, 0, n);
    }
    return 1;
#else
    (void)cfg, (void)M, (void)N, (void)K, (void)A, (void)rsa, (void)csa, (void)B, (void)rsb;
    (void)csb, (void)C, (void)ldc, (void)accumulate;
    return 0;
#endif
}

/* ---- f32 small products read in place ----
 * For small products, packing and the blocking bookkeeping cost about as much as the
 * arithmetic, so A and B rows contiguous along N are read where they lie; B contiguous along
 * k is either transposed a slab of columns at a time or, for at most 8 rows, read in place by
 * a kernel that computes C transposed. The K blocks and the per-element operations are the
 * packed path's, so the bits are too. The path runs on one thread: it takes only products
 * that the packed path would not split, or any thread count when only one is available. */

enum {
    SMALL_MAX_FMAS = 2 * MIN_FMAS_PER_THREAD, /* the packed path splits from here */
    /* on one thread, the small path measured faster up to here; beyond, the packed path's
     * cache blocking wins */
    SMALL_MAX_FMAS_1T = 1 << 24,
    SMALL_SLAB = 32, /* columns of B transposed at a time */
    NT_WIDTH = 8,    /* rows of ty_cpu_gemm_small_nt_f32_avx2 */
};

static ty_cpu_gemm_small_fn
small_kernel(const gemm_cfg *g)
{
#ifdef TY_GEMM_X86
    if (g == &cfg_f32_avx512) {
        return ty_cpu_gemm_small_f32_avx512;
    }
    if (g == &cfg_f32_avx2) { /* its N-edge buffer holds kc <= 256 */
        return ty_cpu_gemm_small_f32_avx2;
    }
#endif
    (void)g;
    return NULL;
}

/* B(k, j) = B[k*rsb + j] */
static void
small_rows(ty_cpu_gemm_small_fn k, const gemm_run *r)
{
    const float *A = (const float *)r->A, *B = (const float *)r->B;
    for (int64_t pc = 0; pc < r->K; pc += r->kcb) {
        int64_t kc = r->K - pc < r->kcb ? r->K - pc : r->kcb;
        k(r->M, r->N, kc, A + pc * r->csa, r->rsa, r->csa, B + pc * r->rsb, r->rsb,
          (float *)r->C, r->ldc, r->accumulate || pc > 0);
    }
}

/* B(k, j) = B[j*csb + k]; returns 0 without workspace for the slab. */
static int
small_cols(ty_cpu_gemm_small_fn k, const gemm_run *r)
{
    float *buf = ws_get(sizeof(float) * SMALL_SLAB * (size_t)r->kcb);
    if (!buf) {
        return 0;
    }
    const float *A = (const float *)r->A, *B = (const float *)r->B;
    for (int64_t j = 0; j < r->N; j += SMALL_SLAB) {
        int64_t cols = r->N - j < SMALL_SLAB ? r->N - j : SMALL_SLAB;
        for (int64_t pc = 0; pc < r->K; pc += r->kcb) {
            int64_t kc = r->K - pc < r->kcb ? r->K - pc : r->kcb;
            /* buf[p*SMALL_SLAB + i] = B(pc + p, j + i) */
            transpose_f32(B + j * r->csb + pc, r->csb, cols, kc, SMALL_SLAB, buf);
            k(r->M, cols, kc, A + pc * r->csa, r->rsa, r->csa, buf, SMALL_SLAB,
              (float *)r->C + j, r->ldc, r->accumulate || pc > 0);
        }
    }
    return 1;
}

#ifdef TY_GEMM_X86
/* B(k, j) = B[j*csb + k] and M <= 8 (a Linear layer's x @ W^T): the kernel computes C
 * transposed and broadcasts B where it lies, so only A is packed (M*K elements, not K*N). */
static void
small_nt(const gemm_run *r)
{
    _Alignas(32) float at[NT_WIDTH * MAX_KC];
    const float *A = (const float *)r->A, *B = (const float *)r->B;
    for (int64_t pc = 0; pc < r->K; pc += r->kcb) {
        int64_t kc = r->K - pc < r->kcb ? r->K - pc : r->kcb;
        pack_f32((const char *)(A + pc * r->csa), r->rsa, r->csa, r->M, kc, NT_WIDTH, (char *)at);
        ty_cpu_gemm_small_nt_f32_avx2(r->M, r->N, kc, at, B + pc, r->csb, (float *)r->C, r->ldc,
                                      r->accumulate || pc > 0);
    }
}
#endif

static int
small_fits(const gemm_run *r)
{
    double fmas = (double)r->M * (double)r->N * (double)r->K;
#ifdef TY_GEMM_X86
    /* A row-major A of 64 rows or more against a narrow B: the packed path reads A in place
     * too, with 12-row tiles, which measured 15-30% faster (1x1 convolutions on 14x14 and
     * smaller images, Winograd's products). */
    if (r->g == &cfg_f32_avx512 && r->csa == 1 && r->M >= 64 &&
        cdiv(r->N, r->g->nr) <= RA_MAX_PANELS && fmas >= (double)(1 << 19)) {
        return 0;
    }
#endif
    return fmas <= SMALL_MAX_FMAS ||
           (fmas <= SMALL_MAX_FMAS_1T && (ty_parallel_in_region() || ty_get_num_threads() == 1));
}

/* Returns 0 (and does nothing) when the product is not one for the small path. */
static int
small_f32(const gemm_cfg *g, const gemm_run *r)
{
    ty_cpu_gemm_small_fn k = small_kernel(g);
    if (!k || atomic_load_explicit(&small_off, memory_order_relaxed) || !small_fits(r)) {
        return 0;
    }
    if (r->csb == 1) {
        small_rows(k, r);
        return 1;
    }
    if (r->rsb != 1) {
        return 0;
    }
#ifdef TY_GEMM_X86
    /* The transposed kernel computes all 8 lanes whatever M; with 4 rows or fewer, moving a
     * B that fits in L2 measured cheaper. */
    if (r->M <= NT_WIDTH && (r->M > NT_WIDTH / 2 || r->N * r->K > 32768) && r->kcb <= MAX_KC) {
        small_nt(r);
        return 1;
    }
#endif
    return small_cols(k, r);
}

static void
gemm(const gemm_cfg *g, int64_t M, int64_t N, int64_t K, const void *A, int64_t rsa,
     int64_t csa, const void *B, int64_t rsb, int64_t csb, void *C, int64_t ldc, int accumulate)
{
    if (M <= 0 || N <= 0) {
        return;
    }
    if (K <= 0) {
        if (!accumulate) {
            g->zero(C, ldc, M, N);
        }
        return;
    }
    gemm_run r = {
        .g = g, .M = M, .N = N, .K = K, .A = A, .B = B, .rsa = rsa, .csa = csa, .rsb = rsb,
        .csb = csb, .C = C, .ldc = ldc, .accumulate = accumulate,
    };
    r.kcb = cdiv(K, cdiv(K, g->kc)); /* equal K blocks: no thin last block */
    if (!small_f32(g, &r)) {
        gemm_packed(&r);
    }
}

void
ty_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
            const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc, int accumulate)
{
    const gemm_cfg *cfg = cfg_for(0);
    if (M > 0 && N > 0 && K > 0 &&
        gemv_f32(cfg, M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate)) {
        return;
    }
    gemm(cfg, M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate);
}

void
ty_gemm_f64(int64_t M, int64_t N, int64_t K, const double *A, int64_t rsa, int64_t csa,
            const double *B, int64_t rsb, int64_t csb, double *C, int64_t ldc, int accumulate)
{
    gemm(cfg_for(1), M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate);
}

/* Output elements from which in-place operands' epilogue runs tile by tile (1 MiB of f32). */
enum { EPI_TILES_MIN_ELEMS = 1 << 18 };

void
ty_gemm_f32_operands(int64_t M, int64_t N, int64_t K, const ty_gemm_operand_f32 *a,
                     const ty_gemm_operand_f32 *b, float *C, int64_t ldc, int accumulate,
                     const ty_gemm_epilogue_f32 *epi)
{
    const gemm_cfg *g = cfg_for(0);
    if (M <= 0 || N <= 0) {
        return;
    }
    /* Operands in memory take ty_gemm_f32's paths. Where the output outgrows L2, the packed
     * path runs the epilogue on each tile as it is finished, while it is in L1 (a 1x1
     * convolution's fused batch norm: one thread, 16 -> 96 at 112x112 and 64 -> 256 at 56x56
     * about 8% faster than a pass after); a smaller output stays in L2 for one pass after,
     * which costs less than a call per tile (96 -> 576 and 256 -> 1024 at 14x14: 4-7%). The
     * small-product and matrix-vector paths have no tiles to hook: one pass after. */
    int inplace = !a->pack && !b->pack;
    int after = inplace && M * N < EPI_TILES_MIN_ELEMS;
    gemm_run r = {
        .g = g, .M = M, .N = N, .K = K, .A = (const char *)a->m, .B = (const char *)b->m,
        .rsa = a->rs, .csa = a->cs, .rsb = b->rs, .csb = b->cs, .pack_a = a->pack,
        .pack_b = b->pack, .actx = a->ctx, .bctx = b->ctx, .C = (char *)C, .ldc = ldc,
        .accumulate = accumulate, .epi = after ? NULL : epi,
    };
    r.kcb = K > 0 ? cdiv(K, cdiv(K, g->kc)) : 0;
    if (K <= 0 || (inplace && gemv_f32(g, M, N, K, a->m, a->rs, a->cs, b->m, b->rs, b->cs, C,
                                       ldc, accumulate))) {
        if (K <= 0 && !accumulate) {
            g->zero((char *)C, ldc, M, N);
        }
    } else if (!inplace || !small_f32(g, &r)) {
        gemm_packed(&r);
        if (!after) {
            return;
        }
    }
    if (epi) {
        epi->fn(epi->ctx, 0, 0, M, N, C, ldc);
    }
}
