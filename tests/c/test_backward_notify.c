/* ty_backward_notify: the "gradient of target j is final" callback fires once per target, with
 * the gradient grads[j] receives, as soon as no node of the pass can add to it; an error from
 * it stops the backward. */
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

typedef struct ready_log {
    int n, order[8];
    ty_tensor *grad[8];
    int fail_at; /* the call number that returns an error (-1: none) */
} ready_log;

static ty_status
on_ready(void *ud, int j, ty_tensor *grad)
{
    ready_log *log = ud;
    if (log->n == log->fail_at) {
        return ty_set_error(TY_ERR_INVALID_ARG, "test: refused gradient %d", j);
    }
    if (log->n < 8) {
        log->order[log->n] = j;
        log->grad[log->n] = grad;
    }
    log->n++;
    return TY_OK;
}

static ty_status
mul(ty_tensor *a, ty_tensor *b, ty_tensor **out)
{
    ty_tensor *in[2] = {a, b};
    return ty_apply(TY_OP_MUL, NULL, 2, in, 1, out);
}

static double
first(const ty_tensor *t)
{
    float v[2] = {0, 0};
    return ty_tensor_copy_to(t, v, sizeof v) == TY_OK ? v[0] : -1.0;
}

/* s = sum((x * x) * w) with z attached but unused: z fires at once (no gradient), w when the
 * outer mul has run, x once (two edges of one node) when the inner mul has run. */
TEST(backward_notify_fires_once_per_target_when_final)
{
    const int64_t shape[1] = {2};
    const float xv[2] = {3, 4}, wv[2] = {5, 6};
    ty_tensor *x = NULL, *w = NULL, *z = NULL, *a = NULL, *b = NULL, *s = NULL;
    CHECK_OK(ty_tensor_from_data(TY_FLOAT32, 1, shape, xv, sizeof xv, &x));
    CHECK_OK(ty_tensor_from_data(TY_FLOAT32, 1, shape, wv, sizeof wv, &w));
    CHECK_OK(ty_tensor_from_data(TY_FLOAT32, 1, shape, wv, sizeof wv, &z));
    CHECK_OK(ty_ad_attach(x));
    CHECK_OK(ty_ad_attach(w));
    CHECK_OK(ty_ad_attach(z));
    ty_ad_set_recording(1);
    ty_status st = mul(x, x, &a);
    if (st == TY_OK) {
        st = mul(a, w, &b);
    }
    ty_p_reduce rp = {0};
    if (st == TY_OK) {
        st = ty_apply(TY_OP_SUM, &rp, 1, &b, 1, &s);
    }
    ty_ad_set_recording(0);
    CHECK(st == TY_OK);
    ty_tensor *xs[3] = {x, w, z}, *grads[3] = {NULL, NULL, NULL};
    ready_log log = {.fail_at = -1};
    if (st == TY_OK) {
        CHECK(ty_backward_notify(1, &s, NULL, 3, xs, grads, 1, 0, on_ready, &log) == TY_OK);
        CHECK(log.n == 3);
        CHECK(log.order[0] == 2 && log.grad[0] == NULL && grads[2] == NULL);
        CHECK(log.order[1] == 1 && log.grad[1] == grads[1]);
        CHECK(log.order[2] == 0 && log.grad[2] == grads[0]);
        CHECK(grads[0] && first(grads[0]) == 2 * 3 * 5); /* d/dx x*x*w = 2xw */
        CHECK(grads[1] && first(grads[1]) == 3 * 3);
        for (int j = 0; j < 3; j++) {
            ty_tensor_release(grads[j]);
            grads[j] = NULL;
        }
        /* an error from the callback stops the backward and leaves no gradients */
        ready_log bad = {.fail_at = 1};
        CHECK(ty_backward_notify(1, &s, NULL, 3, xs, grads, 0, 0, on_ready, &bad) ==
              TY_ERR_INVALID_ARG);
        CHECK(strstr(ty_last_error(), "refused gradient 1") != NULL);
        CHECK(grads[0] == NULL && grads[1] == NULL && grads[2] == NULL);
    }
    ty_tensor *all[6] = {x, w, z, a, b, s};
    for (int i = 0; i < 6; i++) {
        ty_tensor_release(all[i]);
    }
}
