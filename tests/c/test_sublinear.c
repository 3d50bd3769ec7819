/* Sublinear memory from C (so the sanitizers see the rewrite): h = tanh(h * w) twelve times,
 * loss = sum(h), grad of w; traced with and without ty_trace_set_sublinear, computed and
 * symbolically, replayed and run without the host: the same bits as eager, and the
 * rewritten graph plans a smaller arena. */
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

enum { LEN = 1024, DEPTH = 12 };

static ty_tensor *
filled(float scale)
{
    static float v[LEN];
    for (int i = 0; i < LEN; i++) {
        v[i] = scale * (float)((i * 37) % 101 - 50) / 50.0f;
    }
    int64_t shape[1] = {LEN};
    ty_tensor *t = NULL;
    return ty_tensor_from_data(TY_FLOAT32, 1, shape, v, sizeof v, &t) == TY_OK ? t : NULL;
}

static ty_status
apply(const char *name, ty_tensor *a, ty_tensor *b, ty_tensor **out)
{
    ty_op op;
    ty_status st = ty_op_from_name(name, &op);
    if (st != TY_OK) {
        return st;
    }
    ty_tensor *in[2] = {a, b};
    return ty_apply(op, NULL, b ? 2 : 1, in, 1, out);
}

static ty_status
deep_step(ty_tensor *x, ty_tensor *w, ty_tensor **loss, ty_tensor **grad)
{
    ty_tensor *h = x, *next = NULL;
    ty_tensor_retain(h);
    ty_ad_set_recording(1);
    ty_status st = TY_OK;
    for (int k = 0; st == TY_OK && k < DEPTH; k++) {
        ty_tensor *hw = NULL;
        st = apply("mul", h, w, &hw);
        if (st == TY_OK) {
            st = apply("tanh", hw, NULL, &next);
        }
        ty_tensor_release(hw);
        ty_tensor_release(h);
        h = next;
        next = NULL;
    }
    if (st == TY_OK) {
        st = apply("sum", h, NULL, loss);
    }
    if (st == TY_OK) {
        st = ty_backward(1, loss, NULL, 1, &w, grad, 0, 0);
    }
    ty_ad_set_recording(0);
    ty_tensor_release(h);
    return st;
}

static int
same_bits(const ty_tensor *a, const ty_tensor *b)
{
    static float va[LEN], vb[LEN];
    size_t n = (size_t)ty_tensor_numel(a) * sizeof(float);
    if (n > sizeof va || ty_tensor_copy_to(a, va, n) != TY_OK ||
        ty_tensor_copy_to(b, vb, n) != TY_OK) {
        return 0;
    }
    return memcmp(va, vb, n) == 0;
}

/* Three calls (record, two replays, each also run without the host); the stats after. */
static void
run_mode(int *failures_, int symbolic, int sublinear, ty_trace_stats *stats)
{
    ty_tensor *w = filled(0.9f);
    REQUIRE(w && ty_ad_attach(w) == TY_OK);
    ty_trace *tr = NULL;
    for (int call = 0; call < 3; call++) {
        ty_tensor *x = filled(1.0f + 0.25f * (float)call), *el = NULL, *eg = NULL, *tl = NULL,
                  *tg = NULL;
        REQUIRE(x);
        CHECK_OK(deep_step(x, w, &el, &eg));
        if (call == 0) {
            CHECK_OK(symbolic ? ty_trace_begin_record_symbolic(1, &x, &tr)
                              : ty_trace_begin_record(1, &x, &tr));
            if (sublinear) {
                CHECK_OK(ty_trace_set_sublinear(tr, 10, 2, 4, 0));
            }
        } else {
            CHECK_OK(ty_trace_begin_replay(tr, 1, &x));
        }
        CHECK_OK(deep_step(x, w, &tl, &tg));
        ty_tensor *outs[2] = {tl, tg};
        CHECK_OK(call == 0 ? ty_trace_end_record(tr, 2, outs) : ty_trace_end_replay(tr, 2, outs));
        CHECK(same_bits(el, tl) && same_bits(eg, tg));
        ty_tensor *ran[2] = {NULL, NULL};
        CHECK_OK(ty_trace_run(tr, 1, &x, 2, ran));
        CHECK(same_bits(el, ran[0]) && same_bits(eg, ran[1]));
        ty_tensor *all[] = {x, el, eg, tl, tg, ran[0], ran[1]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            ty_tensor_release(all[i]);
        }
    }
    CHECK_OK(ty_trace_get_stats(tr, stats));
    ty_trace_release(tr);
    ty_tensor_release(w);
}

static void
check_mode(int *failures_, int symbolic)
{
    ty_trace_stats plain, sub;
    run_mode(failures_, symbolic, 0, &plain);
    run_mode(failures_, symbolic, 1, &sub);
    CHECK(plain.recomputed == 0 && sub.recomputed > 0);
    CHECK(sub.nodes == plain.nodes + sub.recomputed);
    CHECK(sub.arena_bytes > 0 && sub.arena_bytes < plain.arena_bytes);
}

TEST(sublinear_computed_recording_replays_bitwise_eager_in_less_memory)
{
    check_mode(failures_, 0);
}

TEST(sublinear_symbolic_recording_replays_bitwise_eager_in_less_memory)
{
    check_mode(failures_, 1);
}

TEST(sublinear_config_is_checked)
{
    float v[2] = {1, 2};
    int64_t shape[1] = {2};
    ty_tensor *x = NULL;
    CHECK_OK(ty_tensor_from_data(TY_FLOAT32, 1, shape, v, sizeof v, &x));
    ty_trace *tr = NULL;
    CHECK_OK(ty_trace_begin_record(1, &x, &tr));
    CHECK(ty_trace_set_sublinear(tr, -1, 0, 20, 0) == TY_ERR_INVALID_ARG);
    CHECK(ty_trace_set_sublinear(tr, 10, 0, 0, 0) == TY_ERR_INVALID_ARG);
    CHECK(ty_trace_set_sublinear(tr, 10, 0, 20, -5) == TY_ERR_INVALID_ARG);
    CHECK(ty_trace_set_sublinear(NULL, 10, 0, 20, 0) == TY_ERR_INVALID_ARG);
    ty_clear_error();
    ty_trace_abort(tr);
    ty_trace_release(tr);
    ty_tensor_release(x);
}
