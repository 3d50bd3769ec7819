/* The C runtime on a model written by the C writer: y = relu(x @ w) * 2 traced, dumped,
 * loaded from a buffer and from a mapped file, run at the dumped batch size and another
 * (bitwise equal to eager ty_apply), and the file truncated at every byte offset or with any
 * single byte flipped is refused with an error, never a crash. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tianyuan/runtime.h"

enum { K = 5, NOUT = 3 };

static ty_tensor *
randn(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    float *v = malloc(sizeof(float) * (size_t)n);
    ty_tensor *t = NULL;
    for (int64_t i = 0; v && i < n; i++) {
        v[i] = (float)((double)ty_test_rand_bits() / 9007199254740992.0 - 0.5);
    }
    if (v && ty_tensor_from_data(TY_FLOAT32, ndim, shape, v, sizeof(float) * (size_t)n, &t) !=
                 TY_OK) {
        t = NULL;
    }
    free(v);
    return t;
}

/* relu(x @ w) * two: one new reference, or NULL. */
static ty_tensor *
forward(ty_tensor *x, ty_tensor *w, ty_tensor *two)
{
    ty_tensor *xw = NULL, *r = NULL, *y = NULL;
    ty_tensor *in[2] = {x, w};
    if (ty_apply(TY_OP_MATMUL, NULL, 2, in, 1, &xw) == TY_OK &&
        ty_apply(TY_OP_RELU, NULL, 1, &xw, 1, &r) == TY_OK) {
        ty_tensor *in2[2] = {r, two};
        if (ty_apply(TY_OP_MUL, NULL, 2, in2, 1, &y) != TY_OK) {
            y = NULL;
        }
    }
    ty_tensor_release(xw);
    ty_tensor_release(r);
    return y;
}

typedef struct fixture {
    ty_tensor *w, *two;
    void *file;
    size_t nbytes;
} fixture;

static int
make_model(fixture *f)
{
    int64_t wshape[2] = {K, NOUT}, xshape[2] = {2, K};
    f->w = randn(2, wshape);
    ty_tensor *x = randn(2, xshape), *y = NULL;
    ty_trace *tr = NULL;
    int ok = f->w && x && ty_tensor_full(TY_FLOAT32, 0, NULL, 2.0, &f->two) == TY_OK &&
             ty_trace_begin_record(1, &x, &tr) == TY_OK;
    if (ok) {
        y = forward(x, f->w, f->two);
        ok = y && ty_trace_end_record(tr, 1, &y) == TY_OK;
    } else if (tr) {
        ty_trace_abort(tr);
    }
    const char *in_names[1] = {"x"}, *out_names[1] = {"y"};
    ty_tym_dump_options opt = {.input_names = in_names, .output_names = out_names,
                               .metadata = "{\"producer\": \"test\"}"};
    ok = ok && ty_trace_dump_tym(tr, &opt, &f->file, &f->nbytes) == TY_OK;
    ty_trace_release(tr);
    ty_tensor_release(x);
    ty_tensor_release(y);
    return ok;
}

static void
fixture_free(fixture *f)
{
    ty_tensor_release(f->w);
    ty_tensor_release(f->two);
    ty_free(f->file);
}

/* Runs s at batch size n and compares with eager: 1 when bitwise equal. */
static int
run_matches_eager(ty_session *s, const fixture *f, int64_t n)
{
    int64_t shape[2] = {n, K};
    ty_tensor *x = randn(2, shape), *want = x ? forward(x, f->w, f->two) : NULL;
    const ty_tensor *got = NULL;
    int ok = want &&
             ty_session_set_input(s, "x", TY_FLOAT32, 2, shape, ty_tensor_data(x),
                                  sizeof(float) * (size_t)(n * K)) == TY_OK &&
             ty_session_run(s) == TY_OK && ty_session_output(s, 0, &got) == TY_OK &&
             ty_tensor_shape(got)[0] == n && ty_tensor_is_contiguous(got) &&
             memcmp(ty_tensor_data(got), ty_tensor_data(want), sizeof(float) * (size_t)(n * NOUT)) ==
                 0;
    ty_tensor_release(x);
    ty_tensor_release(want);
    return ok;
}

TEST(runtime_runs_a_dumped_model_bitwise)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    ty_model *m = NULL;
    ty_session *s = NULL;
    CHECK_OK(ty_model_load_buffer(f.file, f.nbytes, 0, &m));
    CHECK(ty_model_num_inputs(m) == 1 && ty_model_num_outputs(m) == 1);
    CHECK(ty_model_num_ops(m) == 3);
    CHECK(ty_model_weight_bytes(m) == (int64_t)(sizeof(float) * K * NOUT + sizeof(float)));
    CHECK(strcmp(ty_model_metadata(m), "{\"producer\": \"test\"}") == 0);
    ty_io_info in, out;
    CHECK_OK(ty_model_input(m, 0, &in));
    CHECK_OK(ty_model_output(m, 0, &out));
    CHECK(strcmp(in.name, "x") == 0 && in.ndim == 2 && in.shape[0] == -1 && in.shape[1] == K);
    CHECK(strcmp(out.name, "y") == 0 && out.dtype == TY_FLOAT32);
    CHECK(ty_model_input(m, 1, &in) == TY_ERR_INDEX);
    CHECK_OK(ty_session_new(m, &s));
    ty_model_free(m); /* the session keeps it alive */
    CHECK(ty_session_run(s) == TY_ERR_INVALID_ARG); /* no input yet */
    CHECK(run_matches_eager(s, &f, 2));
    CHECK(run_matches_eager(s, &f, 7));
    int64_t bad[2] = {2, K + 1};
    float zeros[2 * (K + 1)] = {0};
    CHECK(ty_session_set_input(s, "x", TY_FLOAT32, 2, bad, zeros, sizeof zeros) == TY_ERR_SHAPE);
    CHECK(ty_session_set_input(s, "nope", TY_FLOAT32, 2, bad, zeros, sizeof zeros) ==
          TY_ERR_INVALID_ARG);
    ty_session_free(s);
    fixture_free(&f);
}

TEST(runtime_loads_a_mapped_file)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    char path[] = "/tmp/ty_test_runtime_XXXXXX";
    FILE *fp = NULL;
    int fd = mkstemp(path);
    if (fd >= 0) {
        fp = fdopen(fd, "wb");
    }
    REQUIRE(fp);
    CHECK(fwrite(f.file, 1, f.nbytes, fp) == f.nbytes);
    fclose(fp);
    ty_model *m = NULL;
    ty_session *a = NULL, *b = NULL;
    ty_status st = ty_model_load_file(path, &m);
    remove(path); /* the mapping stays valid */
    CHECK_OK(st);
    CHECK_OK(ty_session_new(m, &a));
    CHECK_OK(ty_session_new(m, &b));
    CHECK(run_matches_eager(a, &f, 3));
    CHECK(run_matches_eager(b, &f, 1));
    ty_session_free(a);
    ty_model_free(m);
    CHECK(run_matches_eager(b, &f, 4));
    ty_session_free(b);
    CHECK(ty_model_load_file("/nonexistent/model.tym", &m) == TY_ERR_IO);
    fixture_free(&f);
}

/* Every prefix and every single-byte corruption of a valid model: refused, never a crash
 * (the sanitizer build runs this too). A flip is caught by the CRC, or before it by the
 * magic, version and size checks. */
TEST(runtime_refuses_truncated_and_flipped_files)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    ty_model *m = NULL;
    int refused = 0;
    for (size_t n = 0; n < f.nbytes; n++) {
        ty_status st = ty_model_load_buffer(f.file, n, 0, &m);
        refused += st == TY_ERR_FORMAT;
        if (st == TY_OK) {
            ty_model_free(m);
        }
    }
    CHECK(refused == (int)f.nbytes);
    unsigned char *copy = malloc(f.nbytes);
    REQUIRE(copy);
    refused = 0;
    for (size_t i = 0; i < f.nbytes; i++) {
        memcpy(copy, f.file, f.nbytes);
        copy[i] ^= 0x5A;
        ty_status st = ty_model_load_buffer(copy, f.nbytes, 0, &m);
        refused += st == TY_ERR_FORMAT;
        if (st == TY_OK) {
            ty_model_free(m);
        }
    }
    CHECK(refused == (int)f.nbytes);
    free(copy);
    fixture_free(&f);
}

/* Runs s and compares its output with want's 4 x NOUT floats: 1 when it ran and they are
 * bitwise equal, with the run's stats in *st. */
static int
run_gives(ty_session *s, const ty_tensor *want, ty_session_stats *st)
{
    const ty_tensor *got = NULL;
    return ty_session_run(s) == TY_OK && ty_session_output(s, 0, &got) == TY_OK &&
           memcmp(ty_tensor_data(got), ty_tensor_data(want), sizeof(float) * 4 * NOUT) == 0 &&
           ty_session_get_stats(s, st) == TY_OK;
}

TEST(runtime_borrowed_inputs_and_op_times)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    ty_model *m = NULL;
    ty_session *s = NULL;
    CHECK_OK(ty_model_load_buffer(f.file, f.nbytes, 0, &m));
    CHECK_OK(ty_session_new(m, &s));
    CHECK(strcmp(ty_model_op_type(m, 0), "matmul") == 0);
    CHECK(strcmp(ty_model_op_type(m, 2), "mul") == 0 && ty_model_op_type(m, 3) == NULL);
    CHECK(ty_session_set_profiling(s, 3) == TY_ERR_INVALID_ARG);
    CHECK_OK(ty_session_set_profiling(s, TY_PROFILE_PLAN));
    CHECK(ty_session_op_time_ns(s, 0) == -1 && ty_session_op_fused_into(s, 0) == -1);
    int64_t shape[2] = {4, K};
    ty_tensor *x = randn(2, shape), *want = x ? forward(x, f.w, f.two) : NULL;
    REQUIRE(want);
    CHECK_OK(ty_session_set_input_borrowed(s, "x", TY_FLOAT32, 2, shape, ty_tensor_data(x),
                                           sizeof(float) * 4 * K));
    /* through the plan (the first run records it, the second replays it): relu and mul run
     * as one fused group, timed as relu's */
    ty_session_stats st;
    for (int run = 0; run < 2; run++) {
        CHECK(run_gives(s, want, &st));
        CHECK(st.planned && st.fused_groups == 1 && st.fused_ops == 2);
        CHECK(ty_session_op_time_ns(s, 0) >= 0 && ty_session_op_fused_into(s, 0) == 0);
        CHECK(ty_session_op_time_ns(s, 1) >= 0 && ty_session_op_fused_into(s, 1) == 1);
        CHECK(ty_session_op_time_ns(s, 2) == 0 && ty_session_op_fused_into(s, 2) == 1);
    }
    /* op by op: each op alone */
    CHECK_OK(ty_session_set_profiling(s, TY_PROFILE_OPS));
    CHECK(run_gives(s, want, &st) && !st.planned);
    for (int i = 0; i < 3; i++) {
        CHECK(ty_session_op_time_ns(s, i) >= 0 && ty_session_op_fused_into(s, i) == i);
    }
    CHECK(ty_session_op_time_ns(s, 3) == -1 && ty_session_op_fused_into(s, 3) == -1);
    CHECK_OK(ty_session_set_profiling(s, 0));
    CHECK_OK(ty_session_run(s));
    CHECK(ty_session_op_time_ns(s, 0) == -1 && ty_session_op_fused_into(s, 0) == -1);
    ty_session_free(s);
    ty_model_free(m);
    ty_tensor_release(x);
    ty_tensor_release(want);
    fixture_free(&f);
}

enum { NBATCH = 4 };
typedef struct worker {
    ty_session *s;
    ty_tensor *const *x, *const *want; /* per batch size 1..NBATCH, made beforehand */
    int ok;
} worker;

static void *
work(void *arg)
{
    worker *w = arg;
    w->ok = 1;
    for (int i = 0; i < 20; i++) {
        const ty_tensor *x = w->x[i % NBATCH], *got = NULL;
        int64_t n = ty_tensor_shape(x)[0];
        w->ok &= ty_session_set_input(w->s, "x", TY_FLOAT32, 2, ty_tensor_shape(x),
                                      ty_tensor_data(x), sizeof(float) * (size_t)(n * K)) ==
                     TY_OK &&
                 ty_session_run(w->s) == TY_OK && ty_session_output(w->s, 0, &got) == TY_OK &&
                 memcmp(ty_tensor_data(got), ty_tensor_data(w->want[i % NBATCH]),
                        sizeof(float) * (size_t)(n * NOUT)) == 0;
    }
    return NULL;
}

/* Sessions of one model, each on its own thread, share the weights and agree with eager. */
TEST(runtime_sessions_run_concurrently)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    ty_tensor *x[NBATCH] = {0}, *want[NBATCH] = {0};
    int ready = 1;
    for (int b = 0; b < NBATCH; b++) {
        int64_t shape[2] = {b + 1, K};
        x[b] = randn(2, shape);
        want[b] = x[b] ? forward(x[b], f.w, f.two) : NULL;
        ready &= want[b] != NULL;
    }
    ty_model *m = NULL;
    CHECK_OK(ty_model_load_buffer(f.file, f.nbytes, 0, &m));
    worker w[3] = {{NULL, x, want, 0}, {NULL, x, want, 0}, {NULL, x, want, 0}};
    pthread_t th[3];
    int started = 0;
    for (int i = 0; ready && i < 3; i++) {
        if (ty_session_new(m, &w[i].s) == TY_OK && pthread_create(&th[i], NULL, work, &w[i]) == 0) {
            started++;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].ok);
    }
    CHECK(started == 3);
    ty_model_free(m);
    for (int i = 0; i < 3; i++) {
        ty_session_free(w[i].s);
    }
    for (int b = 0; b < NBATCH; b++) {
        ty_tensor_release(x[b]);
        ty_tensor_release(want[b]);
    }
    fixture_free(&f);
}

static ty_status
session_stats(const ty_session *s, ty_session_stats *st)
{
    return ty_session_get_stats(s, st);
}

/* Plans are made per input-shape signature and cached: batch 2, then 7 (a new plan, with an
 * arena sized for it), then 2 again (the first plan, found); nine signatures evict the least
 * recently used. Every run is eager's bits, and the elementwise tail (relu, mul) is fused. */
TEST(runtime_plans_are_cached_per_shape)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    ty_model *m = NULL;
    ty_session *s = NULL;
    ty_session_stats st;
    CHECK_OK(ty_model_load_buffer(f.file, f.nbytes, 0, &m));
    CHECK_OK(ty_session_new(m, &s));
    CHECK(ty_session_arena_bytes(s) == 0);
    CHECK(run_matches_eager(s, &f, 2));
    CHECK_OK(session_stats(s, &st));
    CHECK(st.planned && st.plans_built == 1 && st.plan_hits == 0 && st.cached_plans == 1);
    CHECK(st.fused_groups == 1 && st.fused_ops == 2);
    int64_t arena2 = ty_session_arena_bytes(s);
    CHECK(arena2 >= (int64_t)sizeof(float) * 2 * NOUT && arena2 == st.arena_bytes);
    CHECK(run_matches_eager(s, &f, 7));
    CHECK_OK(session_stats(s, &st));
    CHECK(st.plans_built == 2 && st.plan_hits == 0 && st.cached_plans == 2);
    CHECK(ty_session_arena_bytes(s) >= (int64_t)sizeof(float) * 7 * NOUT);
    CHECK(run_matches_eager(s, &f, 2));
    CHECK(run_matches_eager(s, &f, 2));
    CHECK_OK(session_stats(s, &st));
    CHECK(st.plans_built == 2 && st.plan_hits == 2 && ty_session_arena_bytes(s) == arena2);
    for (int64_t n = 10; n < 18; n++) { /* 8 new signatures: batch 2's plan is the oldest */
        CHECK(run_matches_eager(s, &f, n));
    }
    CHECK_OK(session_stats(s, &st));
    CHECK(st.plans_built == 10 && st.cached_plans == 8);
    CHECK(run_matches_eager(s, &f, 17) && run_matches_eager(s, &f, 2));
    CHECK_OK(session_stats(s, &st));
    CHECK(st.plans_built == 11 && st.plan_hits == 3);
    ty_session_free(s);
    ty_model_free(m);
    fixture_free(&f);
}

/* y = x @ w + z with x and z both of variable batch: a z whose batch differs from x's cannot
 * be added, and the error names the op and the inputs; the failed shapes keep no plan. */
TEST(runtime_a_shape_the_graph_cannot_take_names_the_op_and_inputs)
{
    int64_t wshape[2] = {K, NOUT}, xshape[2] = {2, K}, zshape[2] = {2, NOUT};
    ty_tensor *w = randn(2, wshape), *x = randn(2, xshape), *z = randn(2, zshape);
    ty_tensor *xw = NULL, *y = NULL, *args[2] = {x, z};
    ty_trace *tr = NULL;
    void *file = NULL;
    size_t nbytes = 0;
    REQUIRE(w && x && z);
    CHECK_OK(ty_trace_begin_record(2, args, &tr));
    ty_tensor *in[2] = {x, w};
    ty_status st = ty_apply(TY_OP_MATMUL, NULL, 2, in, 1, &xw);
    ty_tensor *in2[2] = {xw, z};
    if (st == TY_OK) {
        st = ty_apply(TY_OP_ADD, NULL, 2, in2, 1, &y);
    }
    if (st == TY_OK) {
        st = ty_trace_end_record(tr, 1, &y);
    } else {
        ty_trace_abort(tr);
    }
    const char *names[2] = {"x", "z"};
    ty_tym_dump_options opt = {.input_names = names};
    CHECK(st == TY_OK && ty_trace_dump_tym(tr, &opt, &file, &nbytes) == TY_OK);
    ty_trace_release(tr);
    ty_model *m = NULL;
    ty_session *s = NULL;
    CHECK_OK(ty_model_load_buffer(file, nbytes, 0, &m));
    CHECK_OK(ty_session_new(m, &s));
    float data[4 * NOUT] = {0};
    int64_t x3[2] = {3, K}, z4[2] = {4, NOUT}, z3[2] = {3, NOUT};
    float xdata[3 * K] = {0};
    CHECK_OK(ty_session_set_input(s, "x", TY_FLOAT32, 2, x3, xdata, sizeof xdata));
    CHECK_OK(ty_session_set_input(s, "z", TY_FLOAT32, 2, z4, data, sizeof data));
    CHECK(ty_session_run(s) == TY_ERR_SHAPE);
    const char *msg = ty_last_error();
    CHECK(strstr(msg, "(add") && strstr(msg, "input 'x' has shape (3, 5)") &&
          strstr(msg, "input 'z' has shape (4, 3)"));
    ty_session_stats stats;
    CHECK_OK(ty_session_get_stats(s, &stats));
    CHECK(stats.cached_plans == 0 && ty_session_output(s, 0, &(const ty_tensor *){0}) != TY_OK);
    CHECK_OK(ty_session_set_input(s, "z", TY_FLOAT32, 2, z3, data, sizeof(float) * 3 * NOUT));
    CHECK_OK(ty_session_run(s));
    CHECK_OK(ty_session_get_stats(s, &stats));
    CHECK(stats.cached_plans == 1 && stats.planned);
    ty_session_free(s);
    ty_model_free(m);
    ty_free(file);
    ty_tensor_release(w);
    ty_tensor_release(x);
    ty_tensor_release(z);
    ty_tensor_release(xw);
    ty_tensor_release(y);
}

TEST(runtime_algo_policy_and_threads_are_checked_per_session)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    ty_model *m = NULL;
    ty_session *a = NULL, *b = NULL;
    CHECK_OK(ty_model_load_buffer(f.file, f.nbytes, 0, &m));
    CHECK_OK(ty_session_new(m, &a));
    CHECK_OK(ty_session_new(m, &b));
    CHECK(ty_session_algo_policy(a) == TY_ALGO_HEURISTIC);
    const ty_algo_policy all[4] = {TY_ALGO_HEURISTIC, TY_ALGO_PROFILE, TY_ALGO_REPRODUCIBLE,
                                   TY_ALGO_PROFILE_REPRODUCIBLE};
    for (int i = 0; i < 4; i++) {
        CHECK_OK(ty_session_set_algo_policy(a, all[i]));
        CHECK(ty_session_algo_policy(a) == all[i] && ty_session_algo_policy(b) == TY_ALGO_HEURISTIC);
        CHECK(run_matches_eager(a, &f, 3));
    }
    CHECK(ty_session_set_algo_policy(a, (ty_algo_policy)3) == TY_ERR_INVALID_ARG);
    CHECK(ty_session_set_algo_policy(a, (ty_algo_policy)0) == TY_ERR_INVALID_ARG);
    CHECK(strstr(ty_last_error(), "algorithm policy 0"));
    CHECK(ty_session_algo_policy(a) == TY_ALGO_PROFILE_REPRODUCIBLE);
    int global = ty_get_num_threads();
    CHECK_OK(ty_session_set_threads(a, 3));
    CHECK(ty_session_threads(a) == 3 && ty_session_threads(b) == global);
    CHECK(run_matches_eager(a, &f, 3));
    CHECK(ty_get_num_threads() == global); /* a run leaves the caller's setting alone */
    CHECK(ty_session_set_threads(a, -1) == TY_ERR_INVALID_ARG);
    CHECK(ty_session_set_threads(a, 1025) == TY_ERR_INVALID_ARG);
    CHECK(ty_session_set_algo_policy(NULL, TY_ALGO_HEURISTIC) == TY_ERR_INVALID_ARG);
    ty_session_free(a);
    ty_session_free(b);
    ty_model_free(m);
    fixture_free(&f);
}

enum { BIG = 2048, NRUNS = 6 };
typedef struct threaded {
    ty_session *s;
    const ty_tensor *x, *want;
    int ok;
} threaded;

static void *
run_threaded(void *arg)
{
    threaded *w = arg;
    w->ok = 1;
    for (int i = 0; i < NRUNS; i++) {
        const ty_tensor *got = NULL;
        w->ok &= ty_session_set_input(w->s, "x", TY_FLOAT32, 2, ty_tensor_shape(w->x),
                                      ty_tensor_data(w->x), sizeof(float) * BIG * K) == TY_OK &&
                 ty_session_run(w->s) == TY_OK && ty_session_output(w->s, 0, &got) == TY_OK &&
                 memcmp(ty_tensor_data(got), ty_tensor_data(w->want),
                        sizeof(float) * BIG * NOUT) == 0;
    }
    return NULL;
}

/* Two sessions with 1 and 2 threads of their own run at once in two threads: both give
 * eager's bits, and the process's thread setting stays as it was. */
TEST(runtime_session_threads_are_per_session)
{
    fixture f = {0};
    REQUIRE(make_model(&f));
    int64_t shape[2] = {BIG, K};
    ty_tensor *x = randn(2, shape), *want = x ? forward(x, f.w, f.two) : NULL;
    REQUIRE(want);
    ty_model *m = NULL;
    CHECK_OK(ty_model_load_buffer(f.file, f.nbytes, 0, &m));
    threaded w[2] = {{NULL, x, want, 0}, {NULL, x, want, 0}};
    int global = ty_get_num_threads();
    pthread_t th[2];
    int started = 0;
    for (int i = 0; i < 2; i++) {
        if (ty_session_new(m, &w[i].s) == TY_OK && ty_session_set_threads(w[i].s, i + 1) == TY_OK &&
            pthread_create(&th[i], NULL, run_threaded, &w[i]) == 0) {
            started++;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].ok);
    }
    CHECK(started == 2 && ty_get_num_threads() == global);
    for (int i = 0; i < 2; i++) {
        ty_session_free(w[i].s);
    }
    ty_model_free(m);
    ty_tensor_release(x);
    ty_tensor_release(want);
    fixture_free(&f);
}
