/* The program tests/dist/run.sh launches under mpirun: every rank runs the collectives of
 * tianyuan/dist.h on values it can also compute for the other ranks, and checks the results.
 *
 *   dist_prog collectives   every collective, world and a sub-group, all dtypes that differ
 *   dist_prog timeout       the last rank never arrives: rank 0 (waiting for its message)
 *                           and the others (in an all_reduce) fail within the timeout, naming
 *                           the peer and the collective (3 ranks)
 *   dist_prog dead          the last rank dies (SIGKILL) before an all_reduce: the others must
 *                           not hang
 *   dist_prog abort         rank 0 ends the job with ty_dist_abort while the others wait
 * TY_DIST_BACKEND=nccl runs them on NCCL (one GPU per rank) instead of MPI.
 * Prints "rank R: ok" per rank on success, exits 1 naming the first failed check. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tianyuan/dist.h"

static int failures;
static int my_rank, world;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: ", my_rank, __FILE__, __LINE__);                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define OK(expr) EXPECT((expr) == TY_OK, "%s failed: %s", #expr, ty_last_error())

/* The value rank r holds at element i: distinct per rank and element, exact in float32. */
static float
value(int r, int64_t i)
{
    return (float)(r + 1) * 0.5f + (float)i * 0.25f - (float)((i * 7 + r * 3) % 5);
}

static void
fill(float *x, int r, int64_t n, int64_t offset)
{
    for (int64_t i = 0; i < n; i++) {
        x[i] = value(r, offset + i);
    }
}

static ty_status
coll(ty_dist_coll c, int group, const void *send, void *recv, int64_t count, ty_dtype dt,
     ty_dist_mode mode, int root)
{
    ty_dist_args a = {c, group, send, recv, count, dt, mode, root};
    return ty_dist_run(&a);
}

/* all_reduce sum/max/min of float32 against the rank-order sum, in place and not. */
static void
check_all_reduce(int group, const int *members, int size, int64_t n)
{
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    int grank;
    OK(ty_dist_rank(group, &grank));
    for (int mode = TY_DIST_SUM; mode <= TY_DIST_MIN; mode++) {
        fill(x, members[grank], n, 0);
        OK(coll(TY_COLL_ALL_REDUCE, group, x, y, n, TY_FLOAT32, mode, 0));
        OK(coll(TY_COLL_ALL_REDUCE, group, x, x, n, TY_FLOAT32, mode, 0)); /* in place */
        for (int64_t i = 0; i < n; i++) {
            float want = value(members[0], i);
            for (int r = 1; r < size; r++) {
                float v = value(members[r], i);
                want = mode == TY_DIST_SUM ? want + v : mode == TY_DIST_MAX ? fmaxf(want, v)
                                                                            : fminf(want, v);
            }
            /* values are multiples of 1/4 far below 2^24: every order of the sum is exact */
            EXPECT(y[i] == want && x[i] == want, "all_reduce mode %d [%lld]: %g %g, want %g",
                   mode, (long long)i, y[i], x[i], want);
        }
    }
    free(x);
    free(y);
}

/* Element i of every rank's values summed in the pairwise tree over ranks [lo, hi): split at
 * the largest power of two below hi - lo, ((x0 + x1) + (x2 + x3)) for four ranks. */
static double
tree_sum(int lo, int hi, int64_t i)
{
    if (hi - lo == 1) {
        return 1.0 / (3.0 + (double)lo + 0.1 * (double)i);
    }
    int half = 1;
    while (2 * half < hi - lo) {
        half *= 2;
    }
    return tree_sum(lo, lo + half, i) + tree_sum(lo + half, hi, i);
}

/* Deterministic sums: bits of the pairwise tree sum over ranks of values no order makes
 * exact (four ranks: a rank-order sum gives other bits). */
static void
check_deterministic(int64_t n)
{
    double *x = malloc(sizeof(double) * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    ty_dist_set_deterministic(1);
    for (int64_t i = 0; i < n; i++) {
        x[i] = 1.0 / (3.0 + (double)my_rank + 0.1 * (double)i);
    }
    OK(coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, x, y, n, TY_FLOAT64, TY_DIST_SUM, 0));
    for (int64_t i = 0; i < n; i++) {
        double want = tree_sum(0, world, i);
        EXPECT(memcmp(&want, &y[i], sizeof want) == 0, "deterministic sum [%lld]: %.17g want %.17g",
               (long long)i, y[i], want);
    }
    ty_dist_set_deterministic(0);
    free(x);
    free(y);
}

/* float16 sums (combined through float32 in the fixed tree) and bool all_reduce. */
static void
check_half_and_bool(void)
{
    uint16_t h = 0x3c00, hs = 0; /* 1.0 */
    OK(coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, &h, &hs, 1, TY_FLOAT16, TY_DIST_SUM, 0));
    static const uint16_t sums[] = {0x3c00, 0x4000, 0x4200, 0x4400}; /* 1.0 ... 4.0 */
    uint16_t want = world <= 4 ? sums[world - 1] : hs;
    EXPECT(hs == want, "float16 sum: 0x%04x, want 0x%04x", hs, want);
    uint8_t b = my_rank == 0, any = 0, all = 1;
    OK(coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, &b, &any, 1, TY_BOOL, TY_DIST_MAX, 0));
    OK(coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, &b, &all, 1, TY_BOOL, TY_DIST_MIN, 0));
    EXPECT(any == 1 && all == (world == 1), "bool any/all: %d %d", any, all);
}

static void
check_broadcast_and_gathers(int64_t n)
{
    int64_t w = world;
    float *x = malloc(sizeof(float) * (size_t)(n * w)), *y = malloc(sizeof(float) * (size_t)(n * w));
    int root = world - 1;
    fill(x, my_rank, n, 0);
    OK(coll(TY_COLL_BROADCAST, TY_DIST_WORLD, x, y, n, TY_FLOAT32, 0, root));
    for (int64_t i = 0; i < n; i++) {
        EXPECT(y[i] == value(root, i), "broadcast [%lld]", (long long)i);
    }
    OK(coll(TY_COLL_ALL_GATHER, TY_DIST_WORLD, x, y, n, TY_FLOAT32, 0, 0));
    for (int64_t i = 0; i < n * w; i++) {
        EXPECT(y[i] == value((int)(i / n), i % n), "all_gather [%lld]", (long long)i);
    }
    memset(y, 0, sizeof(float) * (size_t)(n * w));
    OK(coll(TY_COLL_GATHER, TY_DIST_WORLD, x, y, n, TY_FLOAT32, 0, root));
    for (int64_t i = 0; my_rank == root && i < n * w; i++) {
        EXPECT(y[i] == value((int)(i / n), i % n), "gather [%lld]", (long long)i);
    }
    free(x);
    free(y);
}

static void
check_scatters(int64_t n)
{
    int64_t w = world;
    float *x = malloc(sizeof(float) * (size_t)(n * w)), *y = malloc(sizeof(float) * (size_t)(n * w));
    fill(x, my_rank, n * w, 0);
    OK(coll(TY_COLL_SCATTER, TY_DIST_WORLD, x, y, n, TY_FLOAT32, 0, 0));
    for (int64_t i = 0; i < n; i++) {
        EXPECT(y[i] == value(0, my_rank * n + i), "scatter [%lld]", (long long)i);
    }
    for (int det = 0; det <= 1; det++) {
        ty_dist_set_deterministic(det);
        OK(coll(TY_COLL_REDUCE_SCATTER, TY_DIST_WORLD, x, y, n, TY_FLOAT32, TY_DIST_SUM, 0));
        for (int64_t i = 0; i < n; i++) {
            float want = 0;
            for (int r = 0; r < world; r++) {
                want += value(r, my_rank * n + i);
            }
            EXPECT(y[i] == want, "reduce_scatter det %d [%lld]: %g want %g", det, (long long)i,
                   y[i], want);
        }
        OK(coll(TY_COLL_REDUCE, TY_DIST_WORLD, x, y, n, TY_FLOAT32, TY_DIST_MAX, 1 % world));
        for (int64_t i = 0; my_rank == 1 % world && i < n; i++) {
            float want = value(0, i);
            for (int r = 1; r < world; r++) {
                want = fmaxf(want, value(r, i));
            }
            EXPECT(y[i] == want, "reduce max [%lld]", (long long)i);
        }
    }
    ty_dist_set_deterministic(0);
    OK(coll(TY_COLL_ALL_TO_ALL, TY_DIST_WORLD, x, y, n, TY_FLOAT32, 0, 0));
    for (int64_t i = 0; i < n * w; i++) { /* block j of rank i lands as block i of rank j */
        EXPECT(y[i] == value((int)(i / n), my_rank * n + i % n), "all_to_all [%lld]", (long long)i);
    }
    free(x);
    free(y);
}

static void
check_send_recv(void)
{
    int64_t v[3] = {my_rank, 7, -my_rank}, got[3] = {0};
    int next = (my_rank + 1) % world, prev = (my_rank + world - 1) % world;
    if (my_rank % 2 == 0) {
        OK(coll(TY_COLL_SEND, TY_DIST_WORLD, v, NULL, 3, TY_INT64, 0, next));
        OK(coll(TY_COLL_RECV, TY_DIST_WORLD, NULL, got, 3, TY_INT64, 0, prev));
    } else {
        OK(coll(TY_COLL_RECV, TY_DIST_WORLD, NULL, got, 3, TY_INT64, 0, prev));
        OK(coll(TY_COLL_SEND, TY_DIST_WORLD, v, NULL, 3, TY_INT64, 0, next));
    }
    EXPECT(got[0] == prev && got[1] == 7 && got[2] == -prev, "recv from %d: %lld", prev,
           (long long)got[0]);
}

/* Three all_reduces in flight at once (as gradient buckets are), finished in reverse. */
static void
check_async(int64_t n)
{
    enum { K = 3 };
    float *x = malloc(sizeof(float) * (size_t)(n * K)), *y = malloc(sizeof(float) * (size_t)(n * K));
    ty_dist_work *w[K] = {NULL};
    ty_dist_stats stats;
    ty_dist_reset_peak();
    for (int k = 0; k < K; k++) {
        fill(x + k * n, my_rank + k, n, 0);
        ty_dist_args a = {TY_COLL_ALL_REDUCE, TY_DIST_WORLD, x + k * n, y + k * n, n, TY_FLOAT32,
                          TY_DIST_SUM, 0};
        OK(ty_dist_start(&a, &w[k]));
    }
    ty_dist_get_stats(&stats);
    EXPECT(stats.peak_in_flight >= K, "peak in flight %lld", (long long)stats.peak_in_flight);
    EXPECT(ty_dist_finalize() == TY_ERR_INVALID_ARG && strstr(ty_last_error(), "in flight"),
           "finalize with works in flight: %s", ty_last_error());
    for (int k = K - 1; k >= 0; k--) {
        OK(ty_dist_wait(w[k], 0));
        ty_dist_work_free(w[k]);
        for (int64_t i = 0; i < n; i++) {
            float want = 0;
            for (int r = 0; r < world; r++) {
                want += value(r + k, i);
            }
            EXPECT(y[k * n + i] == want, "async all_reduce %d [%lld]", k, (long long)i);
        }
    }
    ty_dist_get_stats(&stats);
    EXPECT(stats.in_flight == 0, "in flight after the waits: %lld", (long long)stats.in_flight);
    free(x);
    free(y);
}

static int
run_collectives(void)
{
    int all[64];
    for (int r = 0; r < world; r++) {
        all[r] = r;
    }
    OK(ty_dist_barrier(TY_DIST_WORLD));
    int64_t sizes[] = {1, 1000, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        check_all_reduce(TY_DIST_WORLD, all, world, sizes[k]);
        check_broadcast_and_gathers(sizes[k]);
        check_scatters(sizes[k]);
    }
    check_deterministic(1000);
    check_deterministic(1001); /* not a multiple of the ranks: padded chunks */
    check_deterministic(3);
    check_half_and_bool();
    check_async(5000);
    check_send_recv();
    /* every rank, numbered from the last down: its own communicator (on NCCL too), whose
     * roots and ranks are the group's */
    int reversed[32], gr = 0;
    for (int r = 0; r < world; r++) {
        reversed[r] = world - 1 - r;
    }
    OK(ty_dist_new_group(world, reversed, &gr));
    check_all_reduce(gr, reversed, world, 1000);
    float one = (float)my_rank, got = -1;
    OK(coll(TY_COLL_BROADCAST, gr, &one, &got, 1, TY_FLOAT32, 0, 0)); /* root: world's last */
    EXPECT(got == (float)(world - 1), "broadcast in the reversed group: %g", got);
    /* ranks that ask for different groups are told which rank differs */
    int g0 = -1, first = 0, two[2] = {0, 1};
    EXPECT(ty_dist_new_group(my_rank == 0 ? 1 : 2, my_rank == 0 ? &first : two, &g0) ==
               TY_ERR_INVALID_ARG,
           "new_group with different lists succeeded");
    char differ[64];
    snprintf(differ, sizeof differ, "new_group: world rank %d asked for", my_rank == 0 ? 1 : 0);
    EXPECT(strstr(ty_last_error(), differ), "message: %s", ty_last_error());
    /* a group of the even ranks, numbered from the highest down */
    int evens[32], ne = 0, g = 0;
    for (int r = (world - 1) / 2 * 2; r >= 0; r -= 2) {
        evens[ne++] = r;
    }
    OK(ty_dist_new_group(ne, evens, &g));
    int grank = -2, gsize = 0;
    OK(ty_dist_rank(g, &grank));
    OK(ty_dist_size(g, &gsize));
    EXPECT(gsize == ne, "group size %d, want %d", gsize, ne);
    EXPECT(grank == (my_rank % 2 ? -1 : (evens[0] - my_rank) / 2), "group rank %d", grank);
    if (grank >= 0) {
        check_all_reduce(g, evens, ne, 1000);
    }
    OK(ty_dist_barrier(TY_DIST_WORLD));
    return failures;
}

/* The last rank never arrives: rank 0 waits for a message from it (the timeout names the
 * peer), the others in an all_reduce (the timeout names the collective); then every call
 * fails at once (the communicator is broken). */
static int
run_timeout(void)
{
    float x = 1, y = 0;
    OK(ty_dist_set_timeout(0.5));
    if (my_rank == world - 1) {
        struct timespec outlive = {1, 500000000}; /* the others' timeout, then leaves */
        nanosleep(&outlive, NULL);
        printf("rank %d: skipped\n", my_rank);
        return failures;
    }
    int p2p = my_rank == 0;
    ty_status s = p2p ? coll(TY_COLL_RECV, TY_DIST_WORLD, NULL, &y, 1, TY_FLOAT32, 0, world - 1)
                      : coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, &x, &y, 1, TY_FLOAT32, 0, 0);
    EXPECT(s == TY_ERR_TIMEOUT, "status %d, want a timeout", (int)s);
    char want[96];
    snprintf(want, sizeof want, p2p ? "recv: timed out after 0.5 s waiting for rank %d of group 0"
                                    : "all_reduce: timed out after 0.5 s", world - 1);
    EXPECT(strstr(ty_last_error(), want), "message: %s, want %s", ty_last_error(), want);
    printf("rank %d: error: %s\n", my_rank, ty_last_error());
    s = coll(TY_COLL_BROADCAST, TY_DIST_WORLD, &x, &y, 1, TY_FLOAT32, 0, 0);
    EXPECT(s == TY_ERR_TIMEOUT && strstr(ty_last_error(), "broken"), "after a timeout: %d %s",
           (int)s, ty_last_error());
    return failures;
}

static int
run_dead(void)
{
    float x = 1, y = 0;
    OK(ty_dist_set_timeout(5.0));
    OK(ty_dist_barrier(TY_DIST_WORLD));
    if (my_rank == world - 1) {
        raise(SIGKILL);
    }
    ty_status s = coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, &x, &y, 1, TY_FLOAT32, 0, 0);
    EXPECT(s != TY_OK, "all_reduce with a dead rank succeeded");
    printf("rank %d: error: %s\n", my_rank, ty_last_error());
    return failures;
}

/* Rank 0 ends the job (ty_dist_abort) while the others wait in an all_reduce. */
static int
run_abort(void)
{
    float x = 1, y = 0;
    OK(ty_dist_barrier(TY_DIST_WORLD));
    if (my_rank == 0) {
        printf("rank 0: aborting\n");
        fflush(stdout);
        ty_status s = ty_dist_abort(3);
        EXPECT(0, "ty_dist_abort returned %d: %s", (int)s, ty_last_error());
        return failures;
    }
    ty_status s = coll(TY_COLL_ALL_REDUCE, TY_DIST_WORLD, &x, &y, 1, TY_FLOAT32, 0, 0);
    EXPECT(0, "the job outlived ty_dist_abort (all_reduce: %d %s)", (int)s, ty_last_error());
    return failures;
}

int
main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "collectives";
    const char *backend = getenv("TY_DIST_BACKEND"); /* "nccl" on a machine with GPUs */
    if (ty_dist_init(backend && *backend ? backend : "mpi", 30.0) != TY_OK) {
        fprintf(stderr, "dist_prog: %s\n", ty_last_error());
        return 2;
    }
    if (ty_dist_rank(TY_DIST_WORLD, &my_rank) != TY_OK || ty_dist_size(0, &world) != TY_OK ||
        world > 64) {
        return 2;
    }
    int bad = strcmp(mode, "timeout") == 0       ? run_timeout()
              : strcmp(mode, "dead") == 0  ? run_dead()
              : strcmp(mode, "abort") == 0 ? run_abort()
                                           : run_collectives();
    if (strcmp(mode, "collectives") == 0 && ty_dist_finalize() != TY_OK) {
        fprintf(stderr, "rank %d: finalize: %s\n", my_rank, ty_last_error());
        bad++;
    }
    if (!bad) {
        printf("rank %d: ok\n", my_rank);
    }
    fflush(stdout);
    /* the failure modes leave MPI broken: leave without waiting for the other ranks */
    if (strcmp(mode, "collectives") != 0) {
        _exit(bad ? 1 : 0);
    }
    return bad ? 1 : 0;
}
