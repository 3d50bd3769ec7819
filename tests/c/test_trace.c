/* Tracing from C (so the sanitizers see the recorder, the lazy symbolic path, the passes and
 * the replay executor): a step y = exp(x * w) + 1, loss = sum(y), grad of w, recorded
 * computed and symbolically, replayed, and compared bitwise with eager runs. */
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

enum { N = 6 };

static ty_tensor *
vec(const float *v)
{
    int64_t shape[1] = {N};
    ty_tensor *t = NULL;
    if (ty_tensor_from_data(TY_FLOAT32, 1, shape, v, sizeof(float) * N, &t) != TY_OK) {
        return NULL;
    }
    return t;
}

static ty_status
op2(const char *name, ty_tensor *a, ty_tensor *b, ty_tensor **out)
{
    ty_op op;
    ty_status st = ty_op_from_name(name, &op);
    if (st != TY_OK) {
        return st;
    }
    ty_tensor *in[2] = {a, b};
    return ty_apply(op, NULL, b ? 2 : 1, in, 1, out);
}

/* loss = sum(exp(x * w) + 1); grad = d loss / d w. One new reference each. */
static ty_status
step(ty_tensor *x, ty_tensor *w, ty_tensor *one, ty_tensor **loss, ty_tensor **grad)
{
    ty_tensor *xw = NULL, *e = NULL, *y = NULL;
    ty_ad_set_recording(1);
    ty_status st = op2("mul", x, w, &xw);
    if (st == TY_OK) {
        st = op2("exp", xw, NULL, &e);
    }
    if (st == TY_OK) {
        st = op2("add", e, one, &y);
    }
    if (st == TY_OK) {
        st = op2("sum", y, NULL, loss);
    }
    if (st == TY_OK) {
        st = ty_backward(1, loss, NULL, 1, &w, grad, 0, 0);
    }
    ty_ad_set_recording(0);
    ty_tensor_release(xw);
    ty_tensor_release(e);
    ty_tensor_release(y);
    return st;
}

static int
same_bits(const ty_tensor *a, const ty_tensor *b)
{
    float va[N], vb[N];
    size_t n = (size_t)ty_tensor_numel(a) * sizeof(float);
    if (n > sizeof va || ty_tensor_copy_to(a, va, n) != TY_OK ||
        ty_tensor_copy_to(b, vb, n) != TY_OK) {
        return 0;
    }
    return memcmp(va, vb, n) == 0;
}

static void
check_trace_mode(int *failures_, int symbolic)
{
    float xv[N] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f}, wv[N] = {1, 2, 3, -1, -2, 0.5f};
    ty_tensor *w = vec(wv), *one = NULL;
    REQUIRE(w && ty_ad_attach(w) == TY_OK);
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 0, NULL, 1.0, &one));
    ty_trace_mark_literal(one);
    ty_trace *tr = NULL;
    for (int call = 0; call < 3; call++) {
        for (int i = 0; i < N; i++) {
            xv[i] = -xv[i] * 0.5f; /* new input values every call */
        }
        ty_tensor *x = vec(xv), *el = NULL, *eg = NULL, *tl = NULL, *tg = NULL;
        REQUIRE(x);
        CHECK_OK(step(x, w, one, &el, &eg));
        ty_status st = call == 0 ? (symbolic ? ty_trace_begin_record_symbolic(1, &x, &tr)
                                             : ty_trace_begin_record(1, &x, &tr))
                                 : ty_trace_begin_replay(tr, 1, &x);
        REQUIRE(st == TY_OK);
        CHECK_OK(step(x, w, one, &tl, &tg));
        if (symbolic || call > 0) { /* nothing computed yet: reading fails, cleanly */
            double v;
            CHECK(ty_tensor_item(tl, &v) == TY_ERR_TRACE);
        }
        ty_tensor *outs[2] = {tl, tg};
        CHECK_OK(call == 0 ? ty_trace_end_record(tr, 2, outs) : ty_trace_end_replay(tr, 2, outs));
        CHECK(same_bits(el, tl));
        CHECK(same_bits(eg, tg));
        ty_tensor *ran[2] = {NULL, NULL}; /* without the host: same program, same bits */
        CHECK_OK(ty_trace_run(tr, 1, &x, 2, ran));
        CHECK(same_bits(el, ran[0]) && same_bits(eg, ran[1]));
        ty_tensor *all[] = {x, el, eg, tl, tg, ran[0], ran[1]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            ty_tensor_release(all[i]);
        }
    }
    ty_trace_release(tr);
    ty_tensor_release(one);
    ty_tensor_release(w);
}

TEST(trace_computed_recording_replays_bitwise_eager)
{
    check_trace_mode(failures_, 0);
}

TEST(trace_symbolic_recording_replays_bitwise_eager)
{
    check_trace_mode(failures_, 1);
}

TEST(trace_aborted_symbolic_values_are_unreadable_not_garbage)
{
    float xv[N] = {1, 2, 3, 4, 5, 6};
    ty_tensor *x = vec(xv), *y = NULL, *z = NULL;
    REQUIRE(x);
    ty_trace *tr = NULL;
    CHECK_OK(ty_trace_begin_record_symbolic(1, &x, &tr));
    CHECK_OK(op2("exp", x, NULL, &y));
    ty_trace_abort(tr);
    ty_trace_release(tr);
    double v;
    CHECK(ty_tensor_item(y, &v) == TY_ERR_TRACE || ty_tensor_numel(y) != 1);
    CHECK(op2("neg", y, NULL, &z) == TY_ERR_TRACE); /* an eager op on it fails cleanly */
    CHECK(z == NULL);
    ty_clear_error();
    ty_tensor_release(y);
    ty_tensor_release(x);
}

TEST(trace_symbolic_rejects_data_dependent_shapes)
{
    float xv[N] = {1, 0, 3, 0, 5, 0};
    ty_tensor *x = vec(xv), *y = NULL;
    REQUIRE(x);
    ty_trace *tr = NULL;
    CHECK_OK(ty_trace_begin_record_symbolic(1, &x, &tr));
    CHECK(op2("non_zero", x, NULL, &y) == TY_ERR_TRACE);
    CHECK(strstr(ty_last_error(), "symbolic") != NULL);
    ty_clear_error();
    ty_trace_abort(tr);
    ty_trace_release(tr);
    ty_tensor_release(x);
}

/* The executor hook (where DTR plugs in) sees every executed node once, in order, with its
 * outputs computed; an error from it stops the run. */
#include "graph/trace_impl.h"

typedef struct hook_log {
    int calls, last, in_order, computed, fail_at;
} hook_log;

static ty_status
log_node(void *ud, ty_trace *tr, int node)
{
    hook_log *h = ud;
    h->in_order &= node > h->last;
    h->last = node;
    h->calls++;
    const gnode *n = &tr->n[node];
    const ty_tensor *t = ty_trace_value(tr, n->out[0]);
    h->computed &= tr->scratch[n->out[0]] || (t && t->storage->data != NULL);
    return h->calls == h->fail_at ? ty_set_error(TY_ERR_INTERNAL, "hook says stop") : TY_OK;
}

TEST(trace_exec_hook_sees_every_executed_node)
{
    float xv[N] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f}, wv[N] = {1, 2, 3, -1, -2, 0.5f};
    ty_tensor *x = vec(xv), *w = vec(wv), *one = NULL, *loss = NULL, *grad = NULL;
    REQUIRE(x && w && ty_ad_attach(w) == TY_OK);
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 0, NULL, 1.0, &one));
    ty_trace *tr = NULL;
    CHECK_OK(ty_trace_begin_record(1, &x, &tr));
    CHECK_OK(step(x, w, one, &loss, &grad));
    ty_tensor *outs[2] = {loss, grad};
    CHECK_OK(ty_trace_end_record(tr, 2, outs));
    for (int fail_at = 0; fail_at <= 1; fail_at++) {
        hook_log h = {0, -1, 1, 1, fail_at};
        tr->exec_hook = (ty_trace_exec_hook){.after = log_node, .ud = &h};
        ty_tensor *ran[2] = {NULL, NULL};
        ty_status st = ty_trace_run(tr, 1, &x, 2, ran);
        ty_trace_stats s;
        CHECK_OK(ty_trace_get_stats(tr, &s));
        CHECK(h.in_order && h.computed && h.calls > 0);
        if (fail_at) {
            CHECK(st == TY_ERR_INTERNAL && h.calls == 1 && ran[0] == NULL);
            ty_clear_error();
        } else {
            CHECK(st == TY_OK && h.calls == s.executed);
        }
        ty_tensor_release(ran[0]);
        ty_tensor_release(ran[1]);
    }
    ty_trace_release(tr);
    ty_tensor *all[] = {x, w, one, loss, grad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        ty_tensor_release(all[i]);
    }
}

/* A concat of more inputs than any fixed array would hold: recorded, replayed with new
 * values, run without the host, and folded when its inputs are constants. */
enum { WIDE = 300 };

static ty_status
make_wide(ty_tensor **ts, float base, int literal)
{
    int64_t shape[1] = {1};
    for (int i = 0; i < WIDE; i++) {
        float v = base + (float)i;
        ts[i] = NULL;
        TY_TRY(ty_tensor_from_data(TY_FLOAT32, 1, shape, &v, sizeof v, &ts[i]));
        if (literal) {
            ty_trace_mark_literal(ts[i]);
        }
    }
    return TY_OK;
}

static void
release_wide(ty_tensor **ts)
{
    for (int i = 0; i < WIDE; i++) {
        ty_tensor_release(ts[i]);
    }
}

/* Whether t holds sign * (base + i) at each i. */
static int
wide_holds(const ty_tensor *t, float base, float sign)
{
    float v[WIDE];
    if (ty_tensor_numel(t) != WIDE || ty_tensor_copy_to(t, v, sizeof v) != TY_OK) {
        return 0;
    }
    for (int i = 0; i < WIDE; i++) {
        if (v[i] != sign * (base + (float)i)) {
            return 0;
        }
    }
    return 1;
}

/* outs[0] = concat(args), outs[1] = -concat(consts). */
static ty_status
wide_step(ty_tensor **args, ty_tensor **consts, ty_tensor **outs)
{
    ty_op concat;
    ty_p_axis p = {.axis = 0};
    ty_tensor *ccat = NULL;
    TY_TRY(ty_op_from_name("concat", &concat));
    TY_TRY(ty_apply(concat, &p, WIDE, args, 1, &outs[0]));
    TY_TRY(ty_apply(concat, &p, WIDE, consts, 1, &ccat));
    ty_status st = op2("neg", ccat, NULL, &outs[1]);
    ty_tensor_release(ccat);
    return st;
}

TEST(trace_replays_a_concat_of_300_inputs)
{
    ty_tensor *args[WIDE], *consts[WIDE];
    CHECK_OK(make_wide(consts, 1000.0f, 1));
    ty_trace *tr = NULL;
    for (int call = 0; call < 3; call++) {
        float base = (float)(call * WIDE);
        ty_tensor *outs[2] = {NULL, NULL}, *ran[2] = {NULL, NULL};
        REQUIRE(make_wide(args, base, 0) == TY_OK);
        CHECK_OK(call == 0 ? ty_trace_begin_record(WIDE, args, &tr)
                           : ty_trace_begin_replay(tr, WIDE, args));
        CHECK_OK(wide_step(args, consts, outs));
        CHECK_OK(call == 0 ? ty_trace_end_record(tr, 2, outs) : ty_trace_end_replay(tr, 2, outs));
        CHECK(wide_holds(outs[0], base, 1.0f) && wide_holds(outs[1], 1000.0f, -1.0f));
        CHECK_OK(ty_trace_run(tr, WIDE, args, 2, ran));
        CHECK(wide_holds(ran[0], base, 1.0f) && wide_holds(ran[1], 1000.0f, -1.0f));
        ty_tensor *all[] = {outs[0], outs[1], ran[0], ran[1]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            ty_tensor_release(all[i]);
        }
        release_wide(args);
    }
    ty_trace_stats s;
    CHECK_OK(ty_trace_get_stats(tr, &s));
    CHECK(s.folded == 1); /* the concat of constants */
    ty_trace_release(tr);
    release_wide(consts);
}
