/* Fused optimizer updates (ty_sgd_fused_update, declared in tianyuan.h): one pass over a
 * parameter instead of the optimizer's separate elementwise ops and copies. The arithmetic
 * is the ops' own, operation for operation in float32 (the build has -ffp-contract=off, so
 * nothing becomes an FMA): eager, traced (which runs the ops) and deployed steps give the
 * same bits. */
#include "base/isa.h"
#include "base/threadpool.h"
#include "core/core.h"
#include "graph/trace_impl.h"
#include "imperative/dtr.h"
#include "ops/op.h"

typedef struct {
    float *param, *buf;
    const float *grad;
    float lr, wd, mom;
    int decay, nesterov;
} sgd_ctx;

/* The update of n elements, written so the compiler vectorizes it: restrict pointers (the
 * caller checked that the three tensors share no storage) and the settings in locals, so the
 * loop is unswitched on them. Each element's operations are unchanged (same bits). */
static TY_CLONES void
sgd_elems(float *restrict param, float *restrict buf, const float *restrict grad, int64_t n,
          float lr, float wd, float mom, int decay, int nesterov)
{
    for (int64_t i = 0; i < n; i++) {
        float p = param[i];
        float g = grad[i];
        if (decay) {
            float d = p * wd;
            g = g + d;
        }
        if (buf) {
            float m = buf[i] * mom;
            float v = m + g;
            buf[i] = v;
            if (nesterov) {
                float nv = v * mom;
                g = g + nv;
            } else {
                g = v;
            }
        }
        float step = lr * g;
        param[i] = p - step;
    }
}

static void
sgd_range(void *vctx, int64_t begin, int64_t end)
{
    const sgd_ctx *k = vctx;
    sgd_elems(k->param + begin, k->buf ? k->buf + begin : NULL, k->grad + begin, end - begin,
              k->lr, k->wd, k->mom, k->decay, k->nesterov);
}

/* A CPU float32 tensor whose memory can be read now, viewed as n contiguous elements. */
static int
plain_f32(const ty_tensor *t, int64_t n)
{
    return t->dtype == TY_FLOAT32 && t->storage->device == TY_DEVICE_CPU &&
           !t->storage->deferred && t->storage->data && ty_tensor_is_contiguous(t) &&
           ty_tensor_numel(t) == n;
}

static const float *
f32_data(const ty_tensor *t)
{
    return (const float *)t->storage->data + t->offset;
}

static int
same_shape(const ty_tensor *a, const ty_tensor *b)
{
    if (a->ndim != b->ndim) {
        return 0;
    }
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] != b->shape[i]) {
            return 0;
        }
    }
    return 1;
}

static int
fusable(const ty_tensor *param, const ty_tensor *grad, const ty_tensor *buf,
        const ty_tensor *lr, const ty_tensor *wd, const ty_tensor *mom)
{
    if (!ty_dispatch_only_hooks(TY_HOOK_AUTODIFF | TY_HOOK_TRACE | TY_HOOK_DTR) ||
        ty_ad_recording() || ty_trace_current() || !ty_dtr_idle()) {
        return 0;
    }
    int64_t n = ty_tensor_numel(param);
    if (!plain_f32(param, n) || !plain_f32(grad, n) || !same_shape(param, grad) ||
        !plain_f32(lr, 1) || (wd && !plain_f32(wd, 1)) || (buf && !plain_f32(mom, 1))) {
        return 0;
    }
    if (ty_tensor_same_storage(param, grad)) {
        return 0;
    }
    return !buf || (plain_f32(buf, n) && same_shape(param, buf) &&
                    !ty_tensor_same_storage(buf, param) && !ty_tensor_same_storage(buf, grad));
}

ty_status
ty_sgd_fused_update(ty_tensor *param, const ty_tensor *grad, ty_tensor *buf, const ty_tensor *lr,
                    const ty_tensor *wd, const ty_tensor *mom, int nesterov, int *done)
{
    TY_CHECK(param && grad && lr && (!buf || mom) && done, TY_ERR_INVALID_ARG,
             "sgd_fused_update: NULL argument");
    *done = 0;
    if (!fusable(param, grad, buf, lr, wd, mom)) {
        return TY_OK;
    }
    sgd_ctx k = {(float *)f32_data(param), buf ? (float *)f32_data(buf) : NULL, f32_data(grad),
                 f32_data(lr)[0], wd ? f32_data(wd)[0] : 0.0f, buf ? f32_data(mom)[0] : 0.0f,
                 wd != NULL, nesterov};
    ty_storage_written(param);
    if (buf) {
        ty_storage_written(buf);
    }
    ty_parallel_for(ty_tensor_numel(param), 1 << 14, sgd_range, &k);
    *done = 1;
    return TY_OK;
}
