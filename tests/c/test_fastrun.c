/* The fastrun chooser (src/ops/fastrun.h) on a fake op: what each policy returns, which
 * candidates profiling runs (into scratch), the cache (process and file), forced choices.
 * Profiling verdicts are forced with the test hook: nothing here depends on timing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "harness.h"
#include "ops/fastrun.h"

typedef struct fake {
    int runs[3];
    int unscratched; /* runs not into scratch output */
} fake;

static const char *const fake_names[] = {"alpha", "beta", "gamma"};

static ty_status
fake_run(void *ctx, int algo, int scratch)
{
    fake *f = ctx;
    f->runs[algo]++;
    f->unscratched += !scratch;
    return TY_OK;
}

static void
fake_key(const void *ctx, char *buf, size_t n)
{
    (void)ctx;
    snprintf(buf, n, "fake 1x2x3");
}

static ty_fastrun_desc
fake_desc(fake *f, unsigned usable)
{
    return (ty_fastrun_desc){.op = "fake", .key = fake_key, .nalgos = 3, .names = fake_names,
                             .usable = usable, .reproducible = usable, .heuristic = 0,
                             .run = fake_run, .ctx = f};
}

/* A fresh cache file for this test (removed at the end by the caller). */
static void
use_cache(char *path, size_t n, const char *tag)
{
    snprintf(path, n, "/tmp/ty_fastrun_test_%ld_%s.cache", (long)getpid(), tag);
    unlink(path);
    setenv("TY_FASTRUN_CACHE", path, 1);
    ty_fastrun_forget();
}

TEST(fastrun_heuristic_never_runs_candidates_and_profile_runs_each_once)
{
    char path[256];
    use_cache(path, sizeof path, "policy");
    fake f = {0};
    ty_fastrun_desc d = fake_desc(&f, 0x7);
    int algo = -1;
    ty_algo_policy old = ty_algo_policy_swap(TY_ALGO_REPRODUCIBLE);
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 0);
    CHECK(f.runs[0] + f.runs[1] + f.runs[2] == 0);
    ty_algo_policy_swap(TY_ALGO_PROFILE);
    ty_fastrun_set_test_choice("gamma");
    int64_t before = ty_fastrun_profile_count();
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 2);
    CHECK(f.runs[0] == 1 && f.runs[1] == 1 && f.runs[2] == 1 && f.unscratched == 0);
    CHECK(ty_fastrun_profile_count() == before + 1);
    /* cached in the process: no more runs */
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 2 && f.runs[0] == 1);
    /* a new process would read the file: the choice is found by name */
    ty_fastrun_forget();
    ty_fastrun_set_test_choice("beta");
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 2 && f.runs[1] == 1);
    CHECK(ty_fastrun_profile_count() == before + 1);
    /* a candidate not usable for this call is never run or taken */
    ty_fastrun_forget();
    unlink(path);
    fake g = {0};
    ty_fastrun_desc e = fake_desc(&g, 0x3);
    ty_fastrun_set_test_choice("gamma");
    CHECK(ty_fastrun_choose(&e, &algo) == TY_OK && algo == 0 && g.runs[2] == 0);
    ty_fastrun_set_test_choice(NULL);
    ty_algo_policy_swap(old);
    unlink(path);
}

TEST(fastrun_reproducible_keeps_only_reproducible_candidates)
{
    char path[256];
    use_cache(path, sizeof path, "repro");
    fake f = {0};
    ty_fastrun_desc d = fake_desc(&f, 0x7);
    d.reproducible = 0x6; /* alpha, the heuristic's pick, is not */
    int algo = -1;
    ty_algo_policy old = ty_algo_policy_swap(TY_ALGO_REPRODUCIBLE);
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 1);
    ty_algo_policy_swap(TY_ALGO_PROFILE_REPRODUCIBLE);
    ty_fastrun_set_test_choice("alpha"); /* not a candidate: the heuristic's (beta) */
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 1 && f.runs[0] == 0);
    CHECK(f.runs[1] == 1 && f.runs[2] == 1);
    d.reproducible = 0;
    CHECK(ty_fastrun_choose(&d, &algo) == TY_ERR_UNSUPPORTED);
    CHECK(strstr(ty_last_error(), "fake: no reproducible algorithm") != NULL);
    ty_fastrun_set_test_choice(NULL);
    ty_algo_policy_swap(old);
    unlink(path);
    ty_fastrun_forget();
}

TEST(fastrun_a_forced_choice_wins_where_it_can_run)
{
    fake f = {0};
    ty_fastrun_desc d = fake_desc(&f, 0x5);
    int algo = -1;
    ty_fastrun_scope s = ty_fastrun_scope_begin(2);
    CHECK(ty_fastrun_forced() == 2);
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 2);
    CHECK(ty_fastrun_scope_end(s) == 2 && ty_fastrun_forced() == -1);
    s = ty_fastrun_scope_begin(1); /* not usable for this call: the policy's pick */
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 0);
    CHECK(ty_fastrun_scope_end(s) == -1);
    CHECK(f.runs[0] + f.runs[1] + f.runs[2] == 0);
    CHECK(ty_fastrun_algo_count(TY_OP_CONV2D) == ty_conv_fwd_algo_count());
    CHECK(ty_fastrun_algo_count(TY_OP_RELU) == 0);
}

TEST(fastrun_a_corrupt_file_is_profiled_over_and_rewritten)
{
    char path[256];
    use_cache(path, sizeof path, "corrupt");
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    fputs("tianyuan-fastrun 1\nfake\tfake 1x2x3\n", fp); /* two fields */
    fclose(fp);
    fake f = {0};
    ty_fastrun_desc d = fake_desc(&f, 0x3);
    int algo = -1;
    ty_algo_policy old = ty_algo_policy_swap(TY_ALGO_PROFILE);
    ty_fastrun_set_test_choice("beta");
    CHECK(ty_fastrun_choose(&d, &algo) == TY_OK && algo == 1 && f.runs[1] == 1);
    ty_fastrun_set_test_choice(NULL);
    ty_algo_policy_swap(old);
    char buf[512] = {0};
    fp = fopen(path, "rb");
    REQUIRE(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    CHECK(n > 0 && strncmp(buf, "tianyuan-fastrun 1\nfake\tfake 1x2x3 isa=", 39) == 0);
    CHECK(strstr(buf, "\tbeta\n") != NULL);
    unlink(path);
    ty_fastrun_forget();
}
