/* CPU kernels against naive loops: thread pool, GEMM (every micro-kernel family the CPU runs),
 * im2col/col2im and pooling. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "harness.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/im2col.h"
#include "kernels/cpu/pool.h"
#include "kernels/ref/ref.h"

/* ---- helpers ---- */

/* Uniform in [-1, 1), reproducible. */
static double
rnd(void)
{
    return (double)ty_test_rand_bits() / (double)(1ull << 52) - 1.0;
}

static float *
rand_f32(int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        p[i] = (float)rnd();
    }
    return p;
}

static double *
rand_f64(int64_t n)
{
    double *p = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        p[i] = rnd();
    }
    return p;
}

/* Restores the thread count and GEMM family a test changed. */
typedef struct saved_env {
    int threads;
    ty_isa isa;
} saved_env;

static saved_env
env_save(void)
{
    saved_env s = {ty_get_num_threads(), ty_gemm_get_isa()};
    return s;
}

static void
env_restore(saved_env s)
{
    if (ty_set_num_threads(s.threads) != TY_OK) {
        fprintf(stderr, "  could not restore the thread count\n");
    }
    ty_gemm_set_isa(TY_ISA_AUTO);
}

/* ---- thread pool ---- */

typedef struct cover_ctx {
    int *hits; /* one slot per index: each chunk writes only its own slots */
    int64_t n;
    int bad;   /* set (racily but only ever to 1) when a chunk is out of range */
} cover_ctx;

static void
cover_range(void *ctx, int64_t begin, int64_t end)
{
    cover_ctx *c = ctx;
    if (begin < 0 || end > c->n || begin >= end) {
        c->bad = 1;
        return;
    }
    for (int64_t i = begin; i < end; i++) {
        c->hits[i]++;
    }
}

TEST(parallel_for_covers_each_index_once)
{
    saved_env env = env_save();
    static const int64_t ns[] = {1, 2, 3, 7, 64, 100, 1000, 4097};
    static const int64_t grains[] = {0, 1, 3, 16, 1000, 100000};
    static const int threads[] = {1, 2, 3, 8};
    for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
        CHECK_OK(ty_set_num_threads(threads[t]));
        for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
            for (size_t b = 0; b < sizeof(grains) / sizeof(grains[0]); b++) {
                int64_t n = ns[a];
                cover_ctx c = {calloc((size_t)n, sizeof(int)), n, 0};
                REQUIRE(c.hits);
                ty_parallel_for(n, grains[b], cover_range, &c);
                CHECK(!c.bad);
                int ok = 1;
                for (int64_t i = 0; i < n; i++) {
                    ok &= c.hits[i] == 1;
                }
                CHECK(ok);
                int64_t chunks = ty_parallel_num_chunks(n, grains[b]);
                /* one thread: one call; more: up to 8 chunks per thread, as many each */
                int64_t most = threads[t] == 1 ? 1 : 8 * threads[t];
                CHECK(chunks >= 1 && chunks <= most);
                CHECK(chunks <= threads[t] || chunks % threads[t] == 0);
                if (grains[b] > 1) {
                    CHECK(chunks == 1 || n / chunks >= grains[b]);
                }
                free(c.hits);
            }
        }
    }
    /* n <= 0 runs nothing. */
    cover_ctx none = {NULL, 0, 0};
    ty_parallel_for(0, 1, cover_range, &none);
    ty_parallel_for(-5, 1, cover_range, &none);
    CHECK(!none.bad);
    env_restore(env);
}

typedef struct chunk_log {
    int64_t begin[64];
    int64_t end[64];
    atomic_int count;
} chunk_log;

static void
log_range(void *ctx, int64_t begin, int64_t end)
{
    chunk_log *l = ctx;
    int i = atomic_fetch_add(&l->count, 1);
    if (i < 64) {
        l->begin[i] = begin;
        l->end[i] = end;
    }
}

/* Whether v is where one of the nchunks chunks of [0, n) begins, floor(c * n / nchunks), or n. */
static int
is_chunk_edge(int64_t v, int64_t n, int64_t nchunks)
{
    for (int64_t c = 0; c <= nchunks; c++) {
        if (v == c * n / nchunks) {
            return 1;
        }
    }
    return 0;
}

TEST(parallel_for_chunks_are_deterministic)
{
    saved_env env = env_save();
    /* Up to 8 chunks per thread, the same number for every thread: every call runs a union of
     * consecutive chunks, on every call alike whichever thread ran it. */
    static const int threads[] = {2, 3, 4, 8};
    /* the grain bounds the count: 3 and 5 grains' worth */
    static const int64_t of3[] = {2, 3, 3, 3}, of5[] = {4, 3, 4, 5};
    for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
        CHECK_OK(ty_set_num_threads(threads[t]));
        int64_t nchunks = ty_parallel_num_chunks(1003, 10);
        CHECK(nchunks == 8 * threads[t]);
        CHECK(ty_parallel_num_chunks(1003, 300) == of3[t]);
        CHECK(ty_parallel_num_chunks(1003, 180) == of5[t]);
        for (int rep = 0; rep < 10; rep++) {
            chunk_log l;
            atomic_init(&l.count, 0);
            ty_parallel_for(1003, 10, log_range, &l);
            int n = atomic_load(&l.count);
            REQUIRE(n >= 1 && n <= nchunks && n <= 64);
            int64_t covered = 0;
            int edges = 1;
            for (int i = 0; i < n; i++) {
                covered += l.end[i] - l.begin[i];
                edges &= is_chunk_edge(l.begin[i], 1003, nchunks) &&
                         is_chunk_edge(l.end[i], 1003, nchunks);
            }
            CHECK(edges);
            CHECK(covered == 1003);
        }
    }
    env_restore(env);
}

/* A thread takes its own range half at a time: no call covers more than half of a thread's 8
 * chunks, so a thread that runs slow leaves the back of its range to the others. */
TEST(parallel_for_an_owner_takes_half_of_its_range_at_a_time)
{
    saved_env env = env_save();
    static const int threads[] = {2, 3};
    for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
        CHECK_OK(ty_set_num_threads(threads[t]));
        int64_t n = 800 * threads[t], nchunks = ty_parallel_num_chunks(n, 1);
        REQUIRE(nchunks == 8 * threads[t]);
        for (int rep = 0; rep < 10; rep++) {
            chunk_log l;
            atomic_init(&l.count, 0);
            ty_parallel_for(n, 1, log_range, &l);
            int calls = atomic_load(&l.count);
            REQUIRE(calls >= 3 * threads[t] && calls <= 64); /* 4 + 2 + 1 + 1 chunks a range */
            for (int i = 0; i < calls; i++) {
                CHECK(l.end[i] - l.begin[i] <= 4 * n / nchunks);
            }
        }
    }
    env_restore(env);
}

/* The call that runs index 0 waits until every other index has run: with one chunk per
 * thread handed out up front this would need a thread per chunk; taken as threads come free,
 * the other thread runs the rest. The wait gives up after a few seconds (then the test fails
 * instead of hanging). */
typedef struct held_ctx {
    atomic_llong done; /* indices run by calls that do not hold index 0 */
    int64_t n;
    atomic_int gave_up;
} held_ctx;

static void
held_range(void *ctx, int64_t begin, int64_t end)
{
    held_ctx *h = ctx;
    if (begin != 0) {
        atomic_fetch_add(&h->done, end - begin);
        return;
    }
    for (long spins = 0; atomic_load(&h->done) < h->n - end; spins++) {
        if (spins > 3L * 1000 * 1000 * 1000) {
            atomic_store(&h->gave_up, 1);
            return;
        }
    }
}

TEST(parallel_for_a_held_chunk_leaves_the_rest_to_others)
{
    saved_env env = env_save();
    CHECK_OK(ty_set_num_threads(2));
    REQUIRE(ty_parallel_num_chunks(64, 1) > 2);
    for (int rep = 0; rep < 5; rep++) {
        held_ctx h = {.n = 64};
        atomic_init(&h.done, 0);
        atomic_init(&h.gave_up, 0);
        ty_parallel_for(64, 1, held_range, &h);
        CHECK(!atomic_load(&h.gave_up));
    }
    env_restore(env);
}

typedef struct nest_ctx {
    int *hits; /* rows x cols */
    int64_t cols;
    int inner_in_region; /* a nested call must see itself inside a region */
} nest_ctx;

typedef struct nest_row {
    nest_ctx *outer;
    int64_t row;
} nest_row;

static void
nest_inner(void *ctx, int64_t begin, int64_t end)
{
    nest_row *r = ctx;
    for (int64_t j = begin; j < end; j++) {
        r->outer->hits[r->row * r->outer->cols + j]++;
    }
}

static void
nest_outer(void *ctx, int64_t begin, int64_t end)
{
    nest_ctx *c = ctx;
    for (int64_t i = begin; i < end; i++) {
        if (!ty_parallel_in_region()) {
            c->inner_in_region = 0;
        }
        nest_row r = {c, i};
        ty_parallel_for(c->cols, 1, nest_inner, &r);
    }
}

TEST(parallel_for_nested_runs_serially)
{
    saved_env env = env_save();
    CHECK_OK(ty_set_num_threads(3));
    enum { ROWS = 37, COLS = 53 };
    nest_ctx c = {calloc(ROWS * COLS, sizeof(int)), COLS, 1};
    REQUIRE(c.hits);
    ty_parallel_for(ROWS, 1, nest_outer, &c);
    int ok = 1;
    for (int i = 0; i < ROWS * COLS; i++) {
        ok &= c.hits[i] == 1;
    }
    CHECK(ok);
    CHECK(c.inner_in_region);
    CHECK(!ty_parallel_in_region());
    free(c.hits);
    env_restore(env);
}

static void
resize_inside(void *ctx, int64_t begin, int64_t end)
{
    (void)begin;
    (void)end;
    /* Changing the thread count from inside a region must not deadlock. */
    if (ty_set_num_threads(*(int *)ctx) != TY_OK) {
        fprintf(stderr, "  set_num_threads failed inside a region\n");
    }
}

TEST(thread_count_setting)
{
    saved_env env = env_save();
    CHECK(ty_get_num_threads() >= 1);
    CHECK(ty_set_num_threads(0) == TY_ERR_INVALID_ARG);
    CHECK(strstr(ty_last_error(), "set_num_threads") != NULL);
    CHECK(ty_set_num_threads(-3) == TY_ERR_INVALID_ARG);
    CHECK(ty_set_num_threads(1025) == TY_ERR_INVALID_ARG);
    CHECK_OK(ty_set_num_threads(1024));
    CHECK(ty_get_num_threads() == 1024);
    CHECK_OK(ty_set_num_threads(5));
    CHECK(ty_get_num_threads() == 5);
    /* Resize between calls, many times, and from inside a region. */
    for (int t = 1; t <= 6; t++) {
        CHECK_OK(ty_set_num_threads(t));
        int64_t n = 999;
        cover_ctx c = {calloc((size_t)n, sizeof(int)), n, 0};
        REQUIRE(c.hits);
        ty_parallel_for(n, 1, cover_range, &c);
        int ok = !c.bad;
        for (int64_t i = 0; i < n; i++) {
            ok &= c.hits[i] == 1;
        }
        CHECK(ok);
        free(c.hits);
    }
    int want = 2;
    ty_parallel_for(8, 1, resize_inside, &want);
    CHECK(ty_get_num_threads() == 2);
    env_restore(env);
}

/* ---- GEMM ---- */

typedef struct gemm_shape {
    int64_t M, N, K;
} gemm_shape;

static const gemm_shape shapes[] = {
    {0, 0, 0},    {0, 5, 3},     {4, 0, 3},       {3, 4, 0},       {1, 1, 1},    {1, 1000, 1},
    {1000, 1, 1}, {1, 1, 1000},  {2, 3, 4},       {16, 16, 16},    {17, 33, 65}, {12, 32, 256},
    {13, 31, 257}, {24, 64, 7},  {5, 700, 9},     {700, 5, 9},     {3, 40, 600}, {64, 64, 64},
    {100, 1, 100}, {1, 130, 90}, {300, 200, 250}, {193, 1100, 3},  {37, 45, 530},
    /* matrix-vector products big enough to be split over threads */
    {1, 3000, 400}, {2000, 1, 700}, {1, 1, 5000},
};

/* Layouts: 0 row-major, 1 A transposed (csa != 1), 2 B transposed, 3 both, 4 padded rows. */
enum { NLAYOUTS = 5 };

static void
make_layout(int layout, int64_t M, int64_t N, int64_t K, int64_t *rsa, int64_t *csa, int64_t *rsb,
            int64_t *csb, int64_t *ldc)
{
    int at = layout == 1 || layout == 3, bt = layout == 2 || layout == 3;
    int64_t pad = layout == 4 ? 3 : 0;
    *rsa = at ? 1 : K + pad;
    *csa = at ? M + pad : 1;
    *rsb = bt ? 1 : N + pad;
    *csb = bt ? K + pad : 1;
    *ldc = N + pad;
}

/* Runs one shape/layout/accumulate case for every GEMM family the CPU runs, with 1 and 2
 * threads, against the reference. Each element may differ from the reference by about K ulps
 * of sum_k |a*b| (+ |C0| when accumulating): the summation orders differ. Columns of C past N
 * must stay untouched. Data and reference are built once, in double, and rounded to T. */
#define DEFINE_GEMM_CASE(T, SFX, EPS)                                                              \
    static int gemm_case_##SFX(gemm_shape s, int layout, int accumulate)                           \
    {                                                                                              \
        int64_t rsa, csa, rsb, csb, ldc;                                                           \
        make_layout(layout, s.M, s.N, s.K, &rsa, &csa, &rsb, &csb, &ldc);                          \
        size_t na = (size_t)((s.M + 3) * (s.K + 3)), nb = (size_t)((s.K + 3) * (s.N + 3));         \
        size_t nc = (size_t)((s.M + 1) * ldc + 1);                                                 \
        T *A = malloc(sizeof(T) * na), *B = malloc(sizeof(T) * nb), *C0 = malloc(sizeof(T) * nc);  \
        T *want = malloc(sizeof(T) * nc), *got = malloc(sizeof(T) * nc);                           \
        double *bound = malloc(sizeof(double) * nc);                                               \
        for (size_t i = 0; i < na; i++) {                                                          \
            A[i] = (T)rnd();                                                                       \
        }                                                                                          \
        for (size_t i = 0; i < nb; i++) {                                                          \
            B[i] = (T)rnd();                                                                       \
        }                                                                                          \
        for (size_t i = 0; i < nc; i++) {                                                          \
            C0[i] = (T)rnd();                                                                      \
        }                                                                                          \
        memcpy(want, C0, sizeof(T) * nc);                                                          \
        ty_ref_gemm_##SFX(s.M, s.N, s.K, A, rsa, csa, B, rsb, csb, want, ldc, accumulate);         \
        for (int64_t i = 0; i < s.M; i++) {                                                        \
            for (int64_t j = 0; j < s.N; j++) {                                                    \
                double mag = accumulate ? fabs((double)C0[i * ldc + j]) : 0.0;                     \
                for (int64_t k = 0; k < s.K; k++) {                                                \
                    mag += fabs((double)A[i * rsa + k * csa] * (double)B[k * rsb + j * csb]);      \
                }                                                                                  \
                bound[i * ldc + j] = 4.0 * (double)(s.K + 2) * (EPS) * mag;                        \
            }                                                                                      \
        }                                                                                          \
        int ok = 1;                                                                                \
        for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512 && ok; isa++) {                        \
            if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {                                     \
                continue; /* not on this CPU */                                                    \
            }                                                                                      \
            for (int threads = 1; threads <= 2 && ok; threads++) {                                 \
                if (ty_set_num_threads(threads) != TY_OK) {                                        \
                    ok = 0;                                                                        \
                    break;                                                                         \
                }                                                                                  \
                memcpy(got, C0, sizeof(T) * nc);                                                   \
                ty_gemm_##SFX(s.M, s.N, s.K, A, rsa, csa, B, rsb, csb, got, ldc, accumulate);      \
                for (int64_t i = 0; i < s.M && ok; i++) {                                          \
                    for (int64_t j = 0; j < ldc && ok; j++) {                                      \
                        int64_t e = i * ldc + j;                                                   \
                        ok = j < s.N ? fabs((double)got[e] - (double)want[e]) <= bound[e]          \
                                     : memcmp(&got[e], &C0[e], sizeof(T)) == 0;                    \
                        if (!ok) {                                                                 \
                            fprintf(stderr,                                                        \
                                    "  gemm " #SFX " %lldx%lldx%lld layout %d acc %d isa %d "      \
                                    "threads %d: C(%lld,%lld) = %.17g, want %.17g\n",              \
                                    (long long)s.M, (long long)s.N, (long long)s.K, layout,        \
                                    accumulate, isa, threads, (long long)i, (long long)j,          \
                                    (double)got[e], (double)want[e]);                              \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                if (ok && s.M * s.N > 0 && s.K == 0 && !accumulate) {                              \
                    ok = got[0] == 0;                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(A);                                                                                   \
        free(B);                                                                                   \
        free(C0);                                                                                  \
        free(want);                                                                                \
        free(got);                                                                                 \
        free(bound);                                                                               \
        return ok;                                                                                 \
    }

DEFINE_GEMM_CASE(float, f32, 1.2e-7)
DEFINE_GEMM_CASE(double, f64, 2.3e-16)

TEST(gemm_f32_matches_reference)
{
    saved_env env = env_save();
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        for (int layout = 0; layout < NLAYOUTS; layout++) {
            CHECK(gemm_case_f32(shapes[i], layout, 0));
            CHECK(gemm_case_f32(shapes[i], layout, 1));
        }
    }
    env_restore(env);
}

TEST(gemm_f64_matches_reference)
{
    saved_env env = env_save();
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        for (int layout = 0; layout < NLAYOUTS; layout++) {
            CHECK(gemm_case_f64(shapes[i], layout, 0));
            CHECK(gemm_case_f64(shapes[i], layout, 1));
        }
    }
    env_restore(env);
}

TEST(gemm_large_k_and_n_blocks)
{
    /* K spans several K blocks and N several N blocks (block sizes are at most 512 and 2048). */
    saved_env env = env_save();
    CHECK(gemm_case_f32((gemm_shape){29, 2100, 1100}, 0, 1));
    CHECK(gemm_case_f32((gemm_shape){9, 2100, 530}, 3, 0));
    CHECK(gemm_case_f32((gemm_shape){200, 300, 1300}, 0, 1));
    CHECK(gemm_case_f64((gemm_shape){30, 2100, 800}, 2, 1));
    env_restore(env);
}

/* The product under forced cache blocks, for every ISA the CPU runs, at 1 and 2 threads; the
 * bits must equal those of the fitted blocks at 1 thread. */
static int
gemm_blocks_keep_bits(gemm_shape s, int layout)
{
    int64_t rsa, csa, rsb, csb, ldc;
    make_layout(layout, s.M, s.N, s.K, &rsa, &csa, &rsb, &csb, &ldc);
    float *A = rand_f32((s.M + 3) * (s.K + 3)), *B = rand_f32((s.K + 3) * (s.N + 3));
    size_t nc = (size_t)(s.M * ldc);
    float *want = malloc(sizeof(float) * nc), *got = malloc(sizeof(float) * nc);
    static const int blocks[][2] = {{0, 0}, {24, 64}, {1, 1}, {100, 100}};
    int ok = 1;
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512 && ok; isa++) {
        if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        ty_gemm_set_blocks(0, 0);
        ok = ty_set_num_threads(1) == TY_OK;
        memset(want, 0, sizeof(float) * nc);
        ty_gemm_f32(s.M, s.N, s.K, A, rsa, csa, B, rsb, csb, want, ldc, 0);
        for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]) && ok; b++) {
            for (int threads = 1; threads <= 2 && ok; threads++) {
                ty_gemm_set_blocks(blocks[b][0], blocks[b][1]);
                ok = ty_set_num_threads(threads) == TY_OK;
                memset(got, 0, sizeof(float) * nc);
                ty_gemm_f32(s.M, s.N, s.K, A, rsa, csa, B, rsb, csb, got, ldc, 0);
                ok = ok && memcmp(want, got, sizeof(float) * nc) == 0;
                if (!ok) {
                    fprintf(stderr, "  gemm %lldx%lldx%lld layout %d isa %d blocks %d/%d "
                            "threads %d: bits differ\n", (long long)s.M, (long long)s.N,
                            (long long)s.K, layout, isa, blocks[b][0], blocks[b][1], threads);
                }
            }
        }
    }
    ty_gemm_set_blocks(0, 0);
    free(A);
    free(B);
    free(want);
    free(got);
    return ok;
}

TEST(gemm_cache_blocks_never_change_bits)
{
    /* Tails in M (12-, 6- and 4-row tiles), N (32, 16 and 8 columns, half panels) and K
     * (3 K blocks of 367 on AVX-512, 5 of 220 elsewhere); transposed and padded operands. */
    saved_env env = env_save();
    static const gemm_shape bs[] = {{77, 150, 1100}, {130, 300, 300}, {25, 600, 40}};
    ty_gemm_set_small_path(0); /* the packed path at every thread count */
    for (size_t i = 0; i < sizeof(bs) / sizeof(bs[0]); i++) {
        for (int layout = 0; layout < NLAYOUTS; layout++) {
            CHECK(gemm_blocks_keep_bits(bs[i], layout));
        }
    }
    ty_gemm_set_small_path(1);
    env_restore(env);
}

TEST(gemm_small_cache_blocks_match_reference)
{
    saved_env env = env_save();
    ty_gemm_set_blocks(24, 64);
    CHECK(gemm_case_f32((gemm_shape){77, 150, 1100}, 3, 1));
    CHECK(gemm_case_f32((gemm_shape){130, 70, 300}, 4, 0));
    CHECK(gemm_case_f64((gemm_shape){50, 90, 700}, 1, 1));
    ty_gemm_set_blocks(0, 0);
    env_restore(env);
}

/* A row-major B (rows ldb apart) against the same values transposed, which is packed ahead:
 * the products of 4 to 128 rows must give the same bits at 1 to 3 threads. */
static int
b_row_major_gives_packed_bits(int64_t K, int64_t N, int64_t ldb)
{
    const int64_t M = 128;
    float *A = rand_f32(M * K), *B = rand_f32(K * ldb);
    float *bt = malloc(sizeof(float) * (size_t)(N * K)); /* bt[j*K + k] = B(k, j) */
    float *c1 = malloc(sizeof(float) * (size_t)(M * N));
    float *c2 = malloc(sizeof(float) * (size_t)(M * N));
    int ok = 1;
    for (int64_t k = 0; k < K; k++) {
        for (int64_t j = 0; j < N; j++) {
            bt[j * K + k] = B[k * ldb + j];
        }
    }
    for (int threads = 1; threads <= 3 && ok; threads++) {
        ok = ty_set_num_threads(threads) == TY_OK;
        static const int64_t ms[] = {4, 5, 6, 12, 20, 39, 77, M};
        for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]) && ok; mi++) {
            int64_t m = ms[mi];
            ty_gemm_f32(m, N, K, A, K, 1, B, ldb, 1, c1, N, 0);
            ty_gemm_f32(m, N, K, A, K, 1, bt, 1, K, c2, N, 0);
            ok = memcmp(c1, c2, sizeof(float) * (size_t)(m * N)) == 0;
            if (!ok) {
                fprintf(stderr, "  gemm %lldx%lldx%lld ldb %lld threads %d: bits differ\n",
                        (long long)m, (long long)N, (long long)K, (long long)ldb, threads);
            }
        }
    }
    free(A);
    free(B);
    free(bt);
    free(c1);
    free(c2);
    return ok;
}

TEST(gemm_b_in_place_gives_packed_bits)
{
    /* Few rows and a row-major B: AVX-512 and AVX2 read B's full panels where they lie (one
     * row of tiles: AVX-512 up to 12 rows, AVX2 up to 6) or pack each in its first tile, the
     * next one prefetched; a transposed B (the same values) is packed ahead. Edges: AVX-512
     * 20 = 12 + 8 and 77 = 6 x 12 + 5 rows, 333 = 10 x 32 + 13 columns; AVX2 (which reads A in
     * place up to 512 columns instead) 4 and 5 rows (the 4-row kernel, the 6-row one through a
     * scratch tile), 77 = 12 x 6 + 5, 128 = 21 x 6 + 2, 845 = 52 x 16 + 13 columns; K = 1030 in
     * 3 blocks or 900 in 2 (AVX2: 5 and 4), B rows padded to 340 or 384 floats (AVX2 852 or
     * 896: a multiple of 512 bytes); each ISA the CPU runs. */
    saved_env env = env_save();
    ty_gemm_set_small_path(0);
    static const ty_isa isas[] = {TY_ISA_AVX2, TY_ISA_AVX512};
    for (int i = 0; i < 2; i++) {
        if (ty_gemm_set_isa(isas[i]) != isas[i]) {
            continue;
        }
        int64_t n = isas[i] == TY_ISA_AVX2 ? 845 : 333, pad = 7;
        int64_t aligned = isas[i] == TY_ISA_AVX2 ? 896 : 384;
        CHECK(b_row_major_gives_packed_bits(1030, n, n + pad));
        CHECK(b_row_major_gives_packed_bits(1030, n, aligned));
        CHECK(b_row_major_gives_packed_bits(900, n, n + pad));
    }
    ty_gemm_set_small_path(1);
    env_restore(env);
}

TEST(gemm_a_in_place_gives_packed_bits)
{
    /* Few columns and a row-major A: AVX-512 and AVX2 read A where it lies, its rows 1030 or
     * 1152 floats apart (the latter a multiple of 512 bytes); a transposed A (the same values)
     * is packed. Edges: 77 = 6 x 12 + 5 rows; 3, 17, 18, 20, 21, 49 = 32 + 17 and 68 = 64 + 4
     * columns (AVX-512: a last panel of up to 4 columns, or up to 4 past a half panel, takes
     * the rows-in-lanes kernel: 1 to 4 columns, its rows 16 or 32 at a time; AVX2: 16-column
     * panels, up to 4 columns or 4 past a half panel on its rows-in-lanes kernel, 32 rows at a
     * time in 96-row sweeps, then 8 (77 = 2 x 32 + 8 + 5); a last panel of 5 to 8 columns on
     * the half-width tiles; 77 = 12 x 6 + 5 rows); K = 1030 in 3 blocks of 344 = 21 x 16 + 8
     * steps (AVX2: 5 of 206 = 25 x 8 + 6); small cache blocks split the tasks; each ISA the
     * CPU runs. */
    saved_env env = env_save();
    const int64_t M = 77, N = 68, K = 1030;
    static const int64_t ldas[] = {1030, 1152};
    static const int blocks[][2] = {{0, 0}, {24, 64}};
    float *A = rand_f32(M * 1152), *B = rand_f32(K * N);
    float *at = malloc(sizeof(float) * (size_t)(M * K)); /* at[k*M + i] = A(i, k) */
    float *c1 = malloc(sizeof(float) * (size_t)(M * N));
    float *c2 = malloc(sizeof(float) * (size_t)(M * N));
    ty_gemm_set_small_path(0);
    for (int li = 0; li < 2 * 2; li++) {
        int64_t lda = ldas[li % 2];
        ty_isa isa = li < 2 ? TY_ISA_AVX2 : TY_ISA_AVX512;
        if (ty_gemm_set_isa(isa) != isa) {
            continue;
        }
        for (int64_t i = 0; i < M; i++) {
            for (int64_t k = 0; k < K; k++) {
                at[k * M + i] = A[i * lda + k];
            }
        }
        for (int b = 0; b < 2; b++) {
            ty_gemm_set_blocks(blocks[b][0], blocks[b][1]);
            for (int threads = 1; threads <= 3; threads++) {
                CHECK_OK(ty_set_num_threads(threads));
                static const int64_t ns[] = {3, 17, 18, 20, 21, 49, 68, 27, 30};
                for (int ni = 0; ni < 9; ni++) {
                    int64_t n = ns[ni];
                    ty_gemm_f32(M, n, K, A, lda, 1, B, N, 1, c1, n, 0);
                    ty_gemm_f32(M, n, K, at, 1, M, B, N, 1, c2, n, 0);
                    CHECK(memcmp(c1, c2, sizeof(float) * (size_t)(M * n)) == 0);
                }
            }
        }
    }
    ty_gemm_set_blocks(0, 0);
    ty_gemm_set_small_path(1);
    free(A);
    free(B);
    free(at);
    free(c1);
    free(c2);
    env_restore(env);
}

/* B(k, j) = b[k*ldb + j] from a pack callback: ctx is the matrix, its row stride first. */
typedef struct packed_b_ctx {
    const float *b;
    int64_t ldb;
} packed_b_ctx;

static void
pack_b_from_matrix(const void *ctx_, int64_t j0, int64_t len, int64_t k0, int64_t kc, int width,
                   float *dst)
{
    const packed_b_ctx *ctx = ctx_;
    for (int64_t p = 0; p < kc; p++) {
        for (int64_t j = 0; j < width; j++) {
            dst[p * width + j] = j < len ? ctx->b[(k0 + p) * ctx->ldb + j0 + j] : 0.0f;
        }
    }
}

static void
add_1000(const void *ctx, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float *c,
         int64_t ldc)
{
    (void)ctx, (void)i0, (void)j0;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            c[i * ldc + j] += 1000.0f;
        }
    }
}

TEST(gemm_epilogue_runs_once_on_every_element)
{
    /* B from a callback and a row-major A: few columns read A in place, and those past a half
     * panel take the rows-in-lanes kernel; the epilogue must still see each element once. */
    saved_env env = env_save();
    const int64_t M = 77, K = 530;
    static const int64_t ns[] = {17, 20, 49, 100};
    float *A = rand_f32(M * 1024), *B = rand_f32(K * 100); /* 100 = 96 + 4 */
    float *c1 = malloc(sizeof(float) * (size_t)(M * 100));
    float *c2 = malloc(sizeof(float) * (size_t)(M * 100));
    for (int threads = 1; threads <= 2; threads++) {
        CHECK_OK(ty_set_num_threads(threads));
        for (int lda = 530; lda <= 1024; lda += 494) {
            for (int ni = 0; ni < 4; ni++) {
                int64_t n = ns[ni];
                packed_b_ctx bc = {B, 100};
                ty_gemm_operand_f32 a = {.m = A, .rs = lda, .cs = 1};
                ty_gemm_operand_f32 b = {.pack = pack_b_from_matrix, .ctx = &bc};
                ty_gemm_epilogue_f32 epi = {.fn = add_1000};
                ty_gemm_f32_operands(M, n, K, &a, &b, c1, n, 0, &epi);
                ty_gemm_f32(M, n, K, A, lda, 1, B, 100, 1, c2, n, 0);
                for (int64_t i = 0; i < M * n; i++) {
                    c2[i] += 1000.0f;
                }
                CHECK(memcmp(c1, c2, sizeof(float) * (size_t)(M * n)) == 0);
            }
        }
    }
    free(A);
    free(B);
    free(c1);
    free(c2);
    env_restore(env);
}

TEST(gemm_is_deterministic)
{
    saved_env env = env_save();
    /* 200 x 300 x 1300 and 260 x 200 x 1100: several K blocks over a grid of M ranges (tasks
     * claimed K block by K block, B packed as tiles need it), A packed and read in place */
    static const gemm_shape ds[] = {
        {300, 200, 250}, {17, 33, 65}, {64, 700, 1100}, {4, 4, 4}, {1, 3000, 400}, {2000, 1, 700},
        {200, 300, 1300}, {260, 200, 1100},
    };
    for (size_t si = 0; si < sizeof(ds) / sizeof(ds[0]); si++) {
        gemm_shape s = ds[si];
        float *A = rand_f32(s.M * s.K), *B = rand_f32(s.K * s.N);
        float *c1 = malloc(sizeof(float) * (size_t)(s.M * s.N));
        float *c2 = malloc(sizeof(float) * (size_t)(s.M * s.N));
        double *Ad = rand_f64(s.M * s.K), *Bd = rand_f64(s.K * s.N);
        double *d1 = malloc(sizeof(double) * (size_t)(s.M * s.N));
        double *d2 = malloc(sizeof(double) * (size_t)(s.M * s.N));
        for (int threads = 1; threads <= 3; threads++) {
            CHECK_OK(ty_set_num_threads(threads));
            /* transposed A for variety; c1/d1 keep the 1-thread result: the split over threads
             * never changes the summation order, so other counts match it too */
            if (threads == 1) {
                ty_gemm_f32(s.M, s.N, s.K, A, 1, s.M, B, s.N, 1, c1, s.N, 0);
                ty_gemm_f64(s.M, s.N, s.K, Ad, s.K, 1, Bd, 1, s.K, d1, s.N, 0);
            }
            for (int rep = 0; rep < 3; rep++) {
                ty_gemm_f32(s.M, s.N, s.K, A, 1, s.M, B, s.N, 1, c2, s.N, 0);
                CHECK(memcmp(c1, c2, sizeof(float) * (size_t)(s.M * s.N)) == 0);
            }
            for (int rep = 0; rep < 3; rep++) {
                ty_gemm_f64(s.M, s.N, s.K, Ad, s.K, 1, Bd, 1, s.K, d2, s.N, 0);
                CHECK(memcmp(d1, d2, sizeof(double) * (size_t)(s.M * s.N)) == 0);
            }
        }
        free(A);
        free(B);
        free(c1);
        free(c2);
        free(Ad);
        free(Bd);
        free(d1);
        free(d2);
    }
    env_restore(env);
}

/* Copies an M x K row-major matrix into column-major order (a transposed view's storage). */
static float *
to_colmajor(const float *a, int64_t rows, int64_t cols)
{
    float *t = malloc(sizeof(float) * (size_t)(rows * cols));
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            t[j * rows + i] = a[i * cols + j];
        }
    }
    return t;
}

TEST(gemm_bits_depend_only_on_k)
{
    /* Each C element is one fixed sequence of operations that depends on K (and the ISA) only:
     * not on M, N, the strides, or the path. So a single row (M == 1) or column (N == 1),
     * computed by the matrix-vector kernels, and every transposed layout give exactly the
     * bits of the full row-major product. */
    saved_env env = env_save();
    static const gemm_shape cases[] = {{37, 45, 700}, {20, 300, 1100}, {70, 33, 9}};
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
            int64_t M = cases[ci].M, N = cases[ci].N, K = cases[ci].K;
            float *A = rand_f32(M * K), *B = rand_f32(K * N);
            float *At = to_colmajor(A, M, K), *Bt = to_colmajor(B, K, N);
            float *C = malloc(sizeof(float) * (size_t)(M * N));
            float *D = malloc(sizeof(float) * (size_t)(M * N));
            float *v = malloc(sizeof(float) * (size_t)(M > N ? M : N));
            ty_gemm_f32(M, N, K, A, K, 1, B, N, 1, C, N, 0);
            /* transposed layouts */
            ty_gemm_f32(M, N, K, At, 1, M, Bt, 1, K, D, N, 0);
            CHECK(memcmp(C, D, sizeof(float) * (size_t)(M * N)) == 0);
            ty_gemm_f32(M, N, K, A, K, 1, Bt, 1, K, D, N, 0);
            CHECK(memcmp(C, D, sizeof(float) * (size_t)(M * N)) == 0);
            /* single rows, B row-major and transposed; A row read with stride too */
            int rows_ok = 1, cols_ok = 1;
            for (int64_t i = 0; i < M; i += 7) {
                ty_gemm_f32(1, N, K, A + i * K, K, 1, B, N, 1, v, N, 0);
                rows_ok &= memcmp(v, C + i * N, sizeof(float) * (size_t)N) == 0;
                ty_gemm_f32(1, N, K, A + i * K, K, 1, Bt, 1, K, v, N, 0);
                rows_ok &= memcmp(v, C + i * N, sizeof(float) * (size_t)N) == 0;
                ty_gemm_f32(1, N, K, At + i, 1, M, B, N, 1, v, N, 0);
                rows_ok &= memcmp(v, C + i * N, sizeof(float) * (size_t)N) == 0;
            }
            /* single columns, A row-major and transposed, written with a row stride */
            for (int64_t j = 0; j < N; j += 11) {
                ty_gemm_f32(M, 1, K, A, K, 1, B + j, N, 1, D, N, 0);
                for (int64_t i = 0; i < M; i++) {
                    cols_ok &= memcmp(&D[i * N], &C[i * N + j], sizeof(float)) == 0;
                }
                ty_gemm_f32(M, 1, K, At, 1, M, Bt + j * K, 1, 1, v, 1, 0);
                for (int64_t i = 0; i < M; i++) {
                    cols_ok &= memcmp(&v[i], &C[i * N + j], sizeof(float)) == 0;
                }
            }
            CHECK(rows_ok);
            CHECK(cols_ok);
            free(A);
            free(B);
            free(At);
            free(Bt);
            free(C);
            free(D);
            free(v);
        }
    }
    env_restore(env);
}

TEST(gemm_without_workspace_gives_same_bits)
{
    /* The allocation-free path (taken when the workspace cannot be allocated) must match the
     * packed path bit for bit, for every family and for multi-block K. */
    saved_env env = env_save();
    static const gemm_shape ws_shapes[] = {{70, 90, 1100}, {13, 300, 40}, {129, 33, 520}};
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        for (size_t si = 0; si < sizeof(ws_shapes) / sizeof(ws_shapes[0]); si++) {
            gemm_shape s = ws_shapes[si];
            size_t nc = (size_t)(s.M * s.N);
            float *A = rand_f32(s.M * s.K), *B = rand_f32(s.K * s.N), *C0 = rand_f32(s.M * s.N);
            float *c1 = malloc(sizeof(float) * nc), *c2 = malloc(sizeof(float) * nc);
            double *Ad = rand_f64(s.M * s.K), *Bd = rand_f64(s.K * s.N);
            double *d1 = malloc(sizeof(double) * nc), *d2 = malloc(sizeof(double) * nc);
            memcpy(c1, C0, sizeof(float) * nc);
            memcpy(c2, C0, sizeof(float) * nc);
            ty_gemm_f32(s.M, s.N, s.K, A, s.K, 1, B, 1, s.K, c1, s.N, 1);
            ty_gemm_f64(s.M, s.N, s.K, Ad, 1, s.M, Bd, s.N, 1, d1, s.N, 0);
            ty_gemm_set_no_workspace(1);
            ty_gemm_f32(s.M, s.N, s.K, A, s.K, 1, B, 1, s.K, c2, s.N, 1);
            ty_gemm_f64(s.M, s.N, s.K, Ad, 1, s.M, Bd, s.N, 1, d2, s.N, 0);
            ty_gemm_set_no_workspace(0);
            CHECK(memcmp(c1, c2, sizeof(float) * nc) == 0);
            CHECK(memcmp(d1, d2, sizeof(double) * nc) == 0);
            free(A);
            free(B);
            free(C0);
            free(c1);
            free(c2);
            free(Ad);
            free(Bd);
            free(d1);
            free(d2);
        }
    }
    env_restore(env);
}

/* One f32 product with the small-product path on and off, from the same C; 1 if the whole C
 * buffers (padding included) are bitwise equal. */
static int
small_matches_packed(gemm_shape s, int layout, int accumulate)
{
    int64_t rsa, csa, rsb, csb, ldc;
    make_layout(layout, s.M, s.N, s.K, &rsa, &csa, &rsb, &csb, &ldc);
    int64_t nc = (s.M + 1) * ldc;
    float *A = rand_f32((s.M + 3) * (s.K + 3)), *B = rand_f32((s.K + 3) * (s.N + 3));
    float *C0 = rand_f32(nc), *c1 = malloc(sizeof(float) * (size_t)nc);
    float *c2 = malloc(sizeof(float) * (size_t)nc);
    memcpy(c1, C0, sizeof(float) * (size_t)nc);
    memcpy(c2, C0, sizeof(float) * (size_t)nc);
    ty_gemm_f32(s.M, s.N, s.K, A, rsa, csa, B, rsb, csb, c1, ldc, accumulate);
    ty_gemm_set_small_path(0);
    ty_gemm_f32(s.M, s.N, s.K, A, rsa, csa, B, rsb, csb, c2, ldc, accumulate);
    ty_gemm_set_small_path(1);
    int ok = memcmp(c1, c2, sizeof(float) * (size_t)nc) == 0;
    if (!ok) {
        fprintf(stderr, "  small path %lldx%lldx%lld layout %d acc %d isa %d differs\n",
                (long long)s.M, (long long)s.N, (long long)s.K, layout, accumulate,
                (int)ty_gemm_get_isa());
    }
    free(A);
    free(B);
    free(C0);
    free(c1);
    free(c2);
    return ok;
}

TEST(gemm_small_path_gives_packed_bits)
{
    /* The unpacked small-product path must give the packed path's bits in every layout, at
     * the M and N edges, over several K blocks (K > 256 on AVX2, > 512 on AVX-512), with and
     * without accumulation, in each of its B forms (rows contiguous, and contiguous along k
     * with few rows or many), and on one thread, where it also takes bigger products. */
    saved_env env = env_save();
    static const gemm_shape ss[] = {
        {8, 64, 64},   {64, 64, 8},  {5, 37, 13},  {7, 33, 70},  {2, 5, 3},    {16, 128, 128},
        {4, 200, 200}, {6, 40, 20},  {12, 50, 30}, {31, 31, 31}, {3, 17, 600}, {9, 100, 300},
        {6, 20, 700},  {8, 16, 1},   {13, 8, 5},   {40, 130, 120},
        /* AVX2: the last 1 to 4 columns rows-in-lanes, 32 rows then 8 at a time (77 = 2 x 32
         * + 8 + 5), K blocks of 150 = 18 x 8 + 6 steps */
        {77, 49, 300}, {11, 35, 45},  {77, 196, 64},
    };
    CHECK_OK(ty_set_num_threads(1));
    for (int isa = TY_ISA_GENERIC; isa <= TY_ISA_AVX512; isa++) {
        if (ty_gemm_set_isa((ty_isa)isa) != (ty_isa)isa) {
            continue;
        }
        for (size_t si = 0; si < sizeof(ss) / sizeof(ss[0]); si++) {
            for (int layout = 0; layout < NLAYOUTS; layout++) {
                CHECK(small_matches_packed(ss[si], layout, 0));
                CHECK(small_matches_packed(ss[si], layout, 1));
            }
        }
    }
    env_restore(env);
}

typedef struct batch_ctx {
    const float *A, *B;
    float *C;
    int64_t n;
} batch_ctx;

static void
batch_gemm(void *ctx, int64_t begin, int64_t end)
{
    batch_ctx *b = ctx;
    int64_t nn = b->n * b->n;
    for (int64_t i = begin; i < end; i++) {
        ty_gemm_f32(b->n, b->n, b->n, b->A + i * nn, b->n, 1, b->B + i * nn, b->n, 1,
                    b->C + i * nn, b->n, 0);
    }
}

TEST(gemm_nested_in_parallel_for)
{
    /* A batched matmul: GEMMs inside workers run serially and match the top-level result. */
    saved_env env = env_save();
    CHECK_OK(ty_set_num_threads(2));
    enum { BATCH = 6, N = 70 };
    float *A = rand_f32(BATCH * N * N), *B = rand_f32(BATCH * N * N);
    float *C = malloc(sizeof(float) * BATCH * N * N), *D = malloc(sizeof(float) * N * N);
    batch_ctx b = {A, B, C, N};
    ty_parallel_for(BATCH, 1, batch_gemm, &b);
    for (int i = 0; i < BATCH; i++) {
        ty_gemm_f32(N, N, N, A + i * N * N, N, 1, B + i * N * N, N, 1, D, N, 0);
        CHECK(memcmp(D, C + i * N * N, sizeof(float) * N * N) == 0);
    }
    free(A);
    free(B);
    free(C);
    free(D);
    env_restore(env);
}

/* ---- im2col / col2im ---- */

typedef struct conv_geom {
    int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw;
} conv_geom;

static const conv_geom conv_cases[] = {
    {1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},  {3, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1},
    {2, 8, 9, 3, 2, 2, 2, 1, 0, 1, 1},  {2, 9, 8, 3, 3, 2, 3, 2, 1, 2, 2},
    {4, 6, 6, 1, 1, 1, 1, 0, 0, 1, 1},  {1, 4, 4, 4, 4, 1, 1, 3, 3, 1, 1},
    {2, 7, 5, 2, 3, 3, 1, 0, 2, 3, 1},  {3, 12, 10, 5, 3, 1, 2, 2, 1, 1, 3},
    {64, 40, 40, 3, 3, 1, 1, 1, 1, 1, 1},
};

static void
conv_out(const conv_geom *g, int64_t *OH, int64_t *OW)
{
    *OH = (g->H + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1;
    *OW = (g->W + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1;
}

static void
naive_im2col(const conv_geom *g, int64_t OH, int64_t OW, const double *x, double *col,
             int adjoint)
{
    int64_t r = 0;
    for (int64_t c = 0; c < g->C; c++) {
        for (int64_t i = 0; i < g->kh; i++) {
            for (int64_t j = 0; j < g->kw; j++, r++) {
                for (int64_t oh = 0; oh < OH; oh++) {
                    for (int64_t ow = 0; ow < OW; ow++) {
                        int64_t ih = oh * g->sh - g->ph + i * g->dh;
                        int64_t iw = ow * g->sw - g->pw + j * g->dw;
                        int inside = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W;
                        int64_t xi = (c * g->H + ih) * g->W + iw, ci = (r * OH + oh) * OW + ow;
                        if (adjoint) {
                            if (inside) {
                                /* x is the output here, col the input */
                                ((double *)x)[xi] += col[ci];
                            }
                        } else {
                            col[ci] = inside ? x[xi] : 0.0;
                        }
                    }
                }
            }
        }
    }
}

TEST(im2col_col2im_match_naive)
{
    saved_env env = env_save();
    for (int threads = 1; threads <= 2; threads++) {
        CHECK_OK(ty_set_num_threads(threads));
        for (size_t t = 0; t < sizeof(conv_cases) / sizeof(conv_cases[0]); t++) {
            const conv_geom *g = &conv_cases[t];
            int64_t OH, OW;
            conv_out(g, &OH, &OW);
            REQUIRE(OH > 0 && OW > 0);
            int64_t nx = g->C * g->H * g->W, ncol = g->C * g->kh * g->kw * OH * OW;
            double *x = rand_f64(nx), *want = malloc(sizeof(double) * (size_t)ncol);
            double *got = rand_f64(ncol); /* garbage: every entry must be written */
            float *xf = malloc(sizeof(float) * (size_t)nx);
            float *gotf = malloc(sizeof(float) * (size_t)ncol);
            for (int64_t i = 0; i < nx; i++) {
                xf[i] = (float)x[i];
            }
            naive_im2col(g, OH, OW, x, want, 0);
            ty_im2col_f64(x, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh,
                          g->dw, OH, OW, got);
            CHECK(memcmp(got, want, sizeof(double) * (size_t)ncol) == 0);
            ty_im2col_f32(xf, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                          g->dh, g->dw, OH, OW, gotf);
            int ok = 1;
            for (int64_t i = 0; i < ncol; i++) {
                ok &= gotf[i] == (float)want[i];
            }
            CHECK(ok);

            /* col2im adds into x, in the naive loop order: bitwise equal. */
            double *col = rand_f64(ncol);
            double *xw = rand_f64(nx), *xg = malloc(sizeof(double) * (size_t)nx);
            memcpy(xg, xw, sizeof(double) * (size_t)nx);
            naive_im2col(g, OH, OW, xw, col, 1);
            ty_col2im_f64(col, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                          g->dh, g->dw, OH, OW, xg);
            CHECK(memcmp(xg, xw, sizeof(double) * (size_t)nx) == 0);
            float *colf = malloc(sizeof(float) * (size_t)ncol);
            float *xgf = calloc((size_t)nx, sizeof(float));
            float *xwf = calloc((size_t)nx, sizeof(float));
            for (int64_t i = 0; i < ncol; i++) {
                colf[i] = (float)col[i];
            }
            ty_col2im_f32(colf, g->C, g->H, g->W, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw,
                          g->dh, g->dw, OH, OW, xgf);
            /* naive f32 adjoint in the same order */
            int64_t r = 0;
            for (int64_t c = 0; c < g->C; c++) {
                for (int64_t i = 0; i < g->kh; i++) {
                    for (int64_t j = 0; j < g->kw; j++, r++) {
                        for (int64_t oh = 0; oh < OH; oh++) {
                            for (int64_t ow = 0; ow < OW; ow++) {
                                int64_t ih = oh * g->sh - g->ph + i * g->dh;
                                int64_t iw = ow * g->sw - g->pw + j * g->dw;
                                if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) {
                                    int64_t ci = (r * OH + oh) * OW + ow;
                                    xwf[(c * g->H + ih) * g->W + iw] += colf[ci];
                                }
                            }
                        }
                    }
                }
            }
            CHECK(memcmp(xgf, xwf, sizeof(float) * (size_t)nx) == 0);
            free(x);
            free(want);
            free(got);
            free(xf);
            free(gotf);
            free(col);
            free(xw);
            free(xg);
            free(colf);
            free(xgf);
            free(xwf);
        }
    }
    env_restore(env);
}

/* ---- pooling ---- */

typedef struct pool_case {
    int64_t planes, H, W, kh, kw, sh, sw, ph, pw;
    int ceil_mode;
} pool_case;

static const pool_case pool_cases[] = {
    {1, 1, 1, 1, 1, 1, 1, 0, 0, 0},   {3, 6, 6, 2, 2, 2, 2, 0, 0, 0},
    {2, 7, 5, 3, 3, 2, 2, 1, 1, 0},   {2, 7, 5, 3, 3, 2, 2, 1, 1, 1},
    {4, 9, 11, 3, 2, 1, 3, 1, 1, 1},  {1, 5, 5, 5, 5, 1, 1, 2, 2, 0},
    {5, 8, 8, 4, 2, 3, 2, 2, 1, 1},   {70, 16, 16, 3, 3, 2, 2, 1, 1, 0},
};

static int64_t
pool_out(int64_t L, int64_t k, int64_t s, int64_t p, int ceil_mode)
{
    int64_t span = L + 2 * p - k;
    int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (ceil_mode && (o - 1) * s >= L + p) {
        o--; /* the last window must start inside the input or the left padding */
    }
    return o;
}

/* Naive pooling over every (planes, oh, ow): mode 0 max, 1 avg; adjoint = backward. */
static void
naive_pool(const pool_case *pc, int64_t OH, int64_t OW, int mode, int include_pad,
           const double *x, const double *dy, double *out, int backward)
{
    for (int64_t p = 0; p < pc->planes; p++) {
        const double *xp = x ? x + p * pc->H * pc->W : NULL;
        for (int64_t oh = 0; oh < OH; oh++) {
            for (int64_t ow = 0; ow < OW; ow++) {
                double best = 0.0, sum = 0.0;
                int64_t arg = -1, cells = 0, padded = 0;
                for (int64_t i = 0; i < pc->kh; i++) {
                    for (int64_t j = 0; j < pc->kw; j++) {
                        int64_t ih = oh * pc->sh - pc->ph + i, iw = ow * pc->sw - pc->pw + j;
                        if (ih < pc->H + pc->ph && iw < pc->W + pc->pw) {
                            padded++;
                        }
                        if (ih < 0 || ih >= pc->H || iw < 0 || iw >= pc->W) {
                            continue;
                        }
                        cells++;
                        if (mode == 0) {
                            double v = xp[ih * pc->W + iw];
                            if (arg < 0 || v > best || (isnan(v) && !isnan(best))) {
                                arg = ih * pc->W + iw;
                                best = v;
                            }
                        } else if (!backward) {
                            sum += xp[ih * pc->W + iw];
                        }
                    }
                }
                int64_t div = include_pad ? padded : cells;
                double g = backward ? dy[(p * OH + oh) * OW + ow] : 0.0;
                if (mode == 0) {
                    if (backward) {
                        if (arg >= 0) {
                            out[p * pc->H * pc->W + arg] += g;
                        }
                    } else {
                        out[(p * OH + oh) * OW + ow] = arg < 0 ? -INFINITY : best;
                    }
                    continue;
                }
                if (!backward) {
                    out[(p * OH + oh) * OW + ow] = div > 0 ? sum / (double)div : 0.0;
                    continue;
                }
                for (int64_t i = 0; i < pc->kh && div > 0; i++) {
                    for (int64_t j = 0; j < pc->kw; j++) {
                        int64_t ih = oh * pc->sh - pc->ph + i, iw = ow * pc->sw - pc->pw + j;
                        if (ih >= 0 && ih < pc->H && iw >= 0 && iw < pc->W) {
                            out[p * pc->H * pc->W + ih * pc->W + iw] += g / (double)div;
                        }
                    }
                }
            }
        }
    }
}

static int
all_close(const double *a, const double *b, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]) || (!isnan(a[i]) && !(fabs(a[i] - b[i]) <= tol))) {
            if (!(isinf(a[i]) && a[i] == b[i])) {
                fprintf(stderr, "  index %lld: %.17g vs %.17g\n", (long long)i, a[i], b[i]);
                return 0;
            }
        }
    }
    return 1;
}

TEST(pool2d_matches_naive)
{
    saved_env env = env_save();
    for (int threads = 1; threads <= 2; threads++) {
        CHECK_OK(ty_set_num_threads(threads));
        for (size_t t = 0; t < sizeof(pool_cases) / sizeof(pool_cases[0]); t++) {
            const pool_case *pc = &pool_cases[t];
            int64_t OH = pool_out(pc->H, pc->kh, pc->sh, pc->ph, pc->ceil_mode);
            int64_t OW = pool_out(pc->W, pc->kw, pc->sw, pc->pw, pc->ceil_mode);
            int64_t nx = pc->planes * pc->H * pc->W, ny = pc->planes * OH * OW;
            double *x = rand_f64(nx), *dy = rand_f64(ny);
            /* Coarse values make ties, which exercise the first-max rule. */
            for (int64_t i = 0; i < nx; i++) {
                x[i] = floor(x[i] * 3.0);
            }
            if (nx > 3) {
                x[nx / 2] = NAN;
            }
            double *want = malloc(sizeof(double) * (size_t)(ny + nx));
            double *got = malloc(sizeof(double) * (size_t)(ny + nx));
            float *xf = malloc(sizeof(float) * (size_t)nx);
            float *dyf = malloc(sizeof(float) * (size_t)ny);
            float *gotf = malloc(sizeof(float) * (size_t)(ny + nx));
            double *gotf64 = malloc(sizeof(double) * (size_t)(ny + nx));
            for (int64_t i = 0; i < nx; i++) {
                xf[i] = (float)x[i];
            }
            for (int64_t i = 0; i < ny; i++) {
                dyf[i] = (float)dy[i];
            }

            /* max forward */
            naive_pool(pc, OH, OW, 0, 0, x, NULL, want, 0);
            ty_maxpool2d_f64(x, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh, pc->sw, pc->ph,
                             pc->pw, OH, OW, got);
            CHECK(all_close(got, want, ny, 0.0));
            ty_maxpool2d_f32(xf, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh, pc->sw,
                             pc->ph, pc->pw, OH, OW, gotf);
            for (int64_t i = 0; i < ny; i++) {
                gotf64[i] = gotf[i];
            }
            CHECK(all_close(gotf64, want, ny, 0.0));

            /* max backward, adding onto a nonzero dx */
            for (int64_t i = 0; i < nx; i++) {
                want[i] = got[i] = 0.5;
                gotf[i] = 0.5f;
            }
            naive_pool(pc, OH, OW, 0, 0, x, dy, want, 1);
            ty_maxpool2d_bwd_f64(x, dy, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh, pc->sw,
                                 pc->ph, pc->pw, OH, OW, got);
            CHECK(all_close(got, want, nx, 1e-15));
            ty_maxpool2d_bwd_f32(xf, dyf, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh,
                                 pc->sw, pc->ph, pc->pw, OH, OW, gotf);
            for (int64_t i = 0; i < nx; i++) {
                gotf64[i] = gotf[i];
            }
            CHECK(all_close(gotf64, want, nx, 1e-5));

            for (int include_pad = 0; include_pad < 2; include_pad++) {
                double *xa = rand_f64(nx); /* no NaN for averages */
                float *xaf = malloc(sizeof(float) * (size_t)nx);
                for (int64_t i = 0; i < nx; i++) {
                    xaf[i] = (float)xa[i];
                }
                naive_pool(pc, OH, OW, 1, include_pad, xa, NULL, want, 0);
                ty_avgpool2d_f64(xa, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh, pc->sw,
                                 pc->ph, pc->pw, OH, OW, include_pad, got);
                CHECK(all_close(got, want, ny, 1e-14));
                ty_avgpool2d_f32(xaf, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh, pc->sw,
                                 pc->ph, pc->pw, OH, OW, include_pad, gotf);
                for (int64_t i = 0; i < ny; i++) {
                    gotf64[i] = gotf[i];
                }
                CHECK(all_close(gotf64, want, ny, 1e-5));

                for (int64_t i = 0; i < nx; i++) {
                    want[i] = got[i] = -0.25;
                    gotf[i] = -0.25f;
                }
                naive_pool(pc, OH, OW, 1, include_pad, NULL, dy, want, 1);
                ty_avgpool2d_bwd_f64(dy, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh,
                                     pc->sw, pc->ph, pc->pw, OH, OW, include_pad, got);
                CHECK(all_close(got, want, nx, 1e-14));
                ty_avgpool2d_bwd_f32(dyf, pc->planes, pc->H, pc->W, pc->kh, pc->kw, pc->sh,
                                     pc->sw, pc->ph, pc->pw, OH, OW, include_pad, gotf);
                for (int64_t i = 0; i < nx; i++) {
                    gotf64[i] = gotf[i];
                }
                CHECK(all_close(gotf64, want, nx, 1e-5));
                free(xa);
                free(xaf);
            }
            free(x);
            free(dy);
            free(want);
            free(got);
            free(xf);
            free(dyf);
            free(gotf);
            free(gotf64);
        }
    }
    env_restore(env);
}

TEST(maxpool2d_first_max_and_padding)
{
    /* All equal: the first cell of each window gets the gradient. Negative values with
     * padding: padding (-inf) never wins, so the output stays negative. */
    float x[16], y[4], dx[16] = {0}, dy[4] = {1, 1, 1, 1};
    for (int i = 0; i < 16; i++) {
        x[i] = -2.0f;
    }
    ty_maxpool2d_f32(x, 1, 4, 4, 3, 3, 2, 2, 1, 1, 2, 2, y);
    for (int i = 0; i < 4; i++) {
        CHECK(y[i] == -2.0f);
    }
    ty_maxpool2d_bwd_f32(x, dy, 1, 4, 4, 3, 3, 2, 2, 1, 1, 2, 2, dx);
    /* Windows start at (-1,-1), (-1,1), (1,-1), (1,1); their first input cells are (0,0),
     * (0,1), (1,0), (1,1). */
    CHECK(dx[0] == 1.0f && dx[1] == 1.0f && dx[4] == 1.0f && dx[5] == 1.0f);
    float total = 0.0f;
    for (int i = 0; i < 16; i++) {
        total += dx[i];
    }
    CHECK(total == 4.0f);
}

static void
naive_adaptive(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, int is_max,
               const double *x, const double *dy, double *out, int backward)
{
    for (int64_t p = 0; p < planes; p++) {
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = (int64_t)floor((double)(oh * H) / (double)OH);
            int64_t h1 = (int64_t)ceil((double)((oh + 1) * H) / (double)OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = (int64_t)floor((double)(ow * W) / (double)OW);
                int64_t w1 = (int64_t)ceil((double)((ow + 1) * W) / (double)OW);
                double best = 0.0, sum = 0.0;
                int64_t arg = -1, n = (h1 - h0) * (w1 - w0);
                for (int64_t h = h0; h < h1; h++) {
                    for (int64_t w = w0; w < w1; w++) {
                        int64_t i = p * H * W + h * W + w;
                        if (backward && !is_max) {
                            out[i] += dy[(p * OH + oh) * OW + ow] / (double)n;
                        } else if (is_max) {
                            if (arg < 0 || x[i] > best) {
                                arg = i;
                                best = x[i];
                            }
                        } else {
                            sum += x[i];
                        }
                    }
                }
                if (backward) {
                    if (is_max) {
                        out[arg] += dy[(p * OH + oh) * OW + ow];
                    }
                } else {
                    out[(p * OH + oh) * OW + ow] = is_max ? best : sum / (double)n;
                }
            }
        }
    }
}

TEST(adaptive_pool2d_matches_naive)
{
    static const int64_t dims[][4] = {
        {1, 1, 1, 1}, {7, 5, 3, 2}, {5, 7, 5, 7}, {6, 6, 4, 4}, {3, 4, 7, 9}, {13, 11, 1, 1},
        {10, 10, 3, 7},
    };
    for (size_t t = 0; t < sizeof(dims) / sizeof(dims[0]); t++) {
        int64_t H = dims[t][0], W = dims[t][1], OH = dims[t][2], OW = dims[t][3], planes = 3;
        int64_t nx = planes * H * W, ny = planes * OH * OW;
        double *x = rand_f64(nx), *dy = rand_f64(ny);
        for (int64_t i = 0; i < nx; i++) {
            x[i] = floor(x[i] * 4.0); /* ties */
        }
        double *want = malloc(sizeof(double) * (size_t)(nx + ny));
        double *got = malloc(sizeof(double) * (size_t)(nx + ny));
        float *xf = malloc(sizeof(float) * (size_t)nx), *dyf = malloc(sizeof(float) * (size_t)ny);
        float *gotf = malloc(sizeof(float) * (size_t)(nx + ny));
        double *g64 = malloc(sizeof(double) * (size_t)(nx + ny));
        for (int64_t i = 0; i < nx; i++) {
            xf[i] = (float)x[i];
        }
        for (int64_t i = 0; i < ny; i++) {
            dyf[i] = (float)dy[i];
        }
        for (int is_max = 0; is_max < 2; is_max++) {
            naive_adaptive(planes, H, W, OH, OW, is_max, x, NULL, want, 0);
            ty_adaptive_pool2d_f64(x, planes, H, W, OH, OW, is_max, got);
            CHECK(all_close(got, want, ny, 1e-14));
            ty_adaptive_pool2d_f32(xf, planes, H, W, OH, OW, is_max, gotf);
            for (int64_t i = 0; i < ny; i++) {
                g64[i] = gotf[i];
            }
            CHECK(all_close(g64, want, ny, 1e-5));

            memset(want, 0, sizeof(double) * (size_t)nx);
            memset(got, 0, sizeof(double) * (size_t)nx);
            memset(gotf, 0, sizeof(float) * (size_t)nx);
            naive_adaptive(planes, H, W, OH, OW, is_max, x, dy, want, 1);
            ty_adaptive_pool2d_bwd_f64(is_max ? x : NULL, dy, planes, H, W, OH, OW, is_max, got);
            CHECK(all_close(got, want, nx, 1e-14));
            ty_adaptive_pool2d_bwd_f32(is_max ? xf : NULL, dyf, planes, H, W, OH, OW, is_max,
                                       gotf);
            for (int64_t i = 0; i < nx; i++) {
                g64[i] = gotf[i];
            }
            CHECK(all_close(g64, want, nx, 1e-5));
        }
        free(x);
        free(dy);
        free(want);
        free(got);
        free(xf);
        free(dyf);
        free(gotf);
        free(g64);
    }
}
