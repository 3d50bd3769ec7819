/* trace.dump's rewrites from C (ty_tym_rewrite): relu(conv2d(x, w) + b) traced, rewritten
 * into one conv_bias op that the runtime runs with eager's bits (no scale is folded), float16
 * edges, and the argument errors. */
#include <string.h>

#include "harness.h"
#include "tianyuan/runtime.h"

enum { N = 2, C = 3, OC = 4, H = 6 };

static ty_tensor *
filled(int ndim, const int64_t *shape, unsigned seed)
{
    float v[N * C * H * H];
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    for (int64_t i = 0; i < n; i++) {
        v[i] = (float)((int)((i * 37 + seed * 11) % 17) - 8) / 8.0f;
    }
    ty_tensor *t = NULL;
    return ty_tensor_from_data(TY_FLOAT32, ndim, shape, v, sizeof(float) * (size_t)n, &t) == TY_OK
               ? t
               : NULL;
}

/* relu(conv2d(x, w) + b): a new reference, or NULL. */
static ty_tensor *
forward(ty_tensor *x, ty_tensor *w, ty_tensor *b)
{
    ty_tensor *y = NULL, *yb = NULL, *r = NULL;
    ty_tensor *in[2] = {x, w};
    if (ty_apply(TY_OP_CONV2D, NULL, 2, in, 1, &y) == TY_OK) {
        ty_tensor *in2[2] = {y, b};
        if (ty_apply(TY_OP_ADD, NULL, 2, in2, 1, &yb) == TY_OK &&
            ty_apply(TY_OP_RELU, NULL, 1, &yb, 1, &r) != TY_OK) {
            r = NULL;
        }
    }
    ty_tensor_release(y);
    ty_tensor_release(yb);
    return r;
}

typedef struct fixture {
    ty_tensor *x, *w, *b, *want;
    ty_trace *tr;
} fixture;

static int
record(fixture *f)
{
    int64_t xs[4] = {N, C, H, H}, ws[4] = {OC, C, 3, 3}, bs[4] = {1, OC, 1, 1};
    f->x = filled(4, xs, 1);
    f->w = filled(4, ws, 2);
    f->b = filled(4, bs, 3);
    if (!f->x || !f->w || !f->b || ty_trace_begin_record(1, &f->x, &f->tr) != TY_OK) {
        return 0;
    }
    f->want = forward(f->x, f->w, f->b);
    return f->want && ty_trace_end_record(f->tr, 1, &f->want) == TY_OK;
}

static void
fixture_free(fixture *f)
{
    ty_tensor_release(f->x);
    ty_tensor_release(f->w);
    ty_tensor_release(f->b);
    ty_tensor_release(f->want);
    ty_trace_release(f->tr);
}

/* The rewritten recording dumped and loaded. */
static ty_model *
dump_and_load(const ty_trace *tr)
{
    void *file = NULL;
    size_t nbytes = 0;
    ty_model *m = NULL;
    if (ty_trace_dump_tym(tr, NULL, &file, &nbytes) != TY_OK ||
        ty_model_load_buffer(file, nbytes, 0, &m) != TY_OK) {
        m = NULL;
    }
    ty_free(file);
    return m;
}

TEST(rewrite_fuses_conv_bias_relu_with_eager_bits)
{
    fixture f = {0};
    REQUIRE(record(&f));
    ty_trace *rw = NULL;
    ty_tym_rewrite_stats st;
    CHECK_OK(ty_tym_rewrite(f.tr, TY_TYM_FOLD | TY_TYM_CSE | TY_TYM_FUSE_CONV_BIAS, &rw, &st));
    CHECK(st.conv_bias == 1 && st.bn_folded == 0 && st.z_fused == 0 && st.io16 == 0);
    ty_model *m = dump_and_load(rw);
    REQUIRE(m);
    CHECK(ty_model_num_ops(m) == 1 && strcmp(ty_model_op_type(m, 0), "conv_bias") == 0);
    ty_session *s = NULL;
    CHECK_OK(ty_session_new(m, &s));
    int64_t xs[4] = {N, C, H, H};
    const ty_tensor *got = NULL;
    CHECK_OK(ty_session_set_input(s, "arg_0", TY_FLOAT32, 4, xs, ty_tensor_data(f.x),
                                  sizeof(float) * N * C * H * H));
    CHECK_OK(ty_session_run(s));
    CHECK_OK(ty_session_output(s, 0, &got));
    CHECK(ty_tensor_numel(got) == N * OC * (H - 2) * (H - 2) &&
          memcmp(ty_tensor_data(got), ty_tensor_data(f.want),
                 sizeof(float) * (size_t)ty_tensor_numel(got)) == 0);
    ty_session_free(s);
    ty_model_free(m);
    ty_trace_release(rw);
    fixture_free(&f);
}

TEST(rewrite_float16_edges_and_errors)
{
    fixture f = {0};
    REQUIRE(record(&f));
    ty_trace *rw = NULL;
    ty_tym_rewrite_stats st;
    CHECK_OK(ty_tym_rewrite(f.tr, TY_TYM_IO16XC32, &rw, &st));
    CHECK(st.io16 == 2 && st.conv_bias == 0 && st.folded == 0);
    ty_model *m = dump_and_load(rw);
    ty_io_info in, out;
    CHECK(m && ty_model_input(m, 0, &in) == TY_OK && ty_model_output(m, 0, &out) == TY_OK &&
          in.dtype == TY_FLOAT16 && out.dtype == TY_FLOAT16 && ty_model_num_ops(m) == 5);
    ty_model_free(m);
    ty_trace_release(rw);
    rw = NULL;
    CHECK(ty_tym_rewrite(f.tr, TY_TYM_FUSE_Z, &rw, &st) == TY_ERR_INVALID_ARG && !rw);
    CHECK(strstr(ty_last_error(), "enable_fuse_conv_bias_with_z needs") != NULL);
    CHECK(ty_tym_rewrite(NULL, 0, &rw, &st) == TY_ERR_INVALID_ARG);
    CHECK(ty_tym_rewrite(f.tr, 0, NULL, &st) == TY_ERR_INVALID_ARG);
    fixture_free(&f);
}
