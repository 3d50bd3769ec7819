/* The dispatcher: the one entry point of every tensor operation, and its hook points. */
#include <string.h>

#include "ops/batch_tree.h"
#include "ops/op.h"

enum { MAX_HOOKS = 8 };
static ty_hook hooks[MAX_HOOKS];
static int nhooks;

ty_status
ty_hook_add(const ty_hook *h)
{
    TY_CHECK(nhooks < MAX_HOOKS, TY_ERR_INTERNAL, "too many dispatcher hooks");
    /* The tape runs before the tracer whoever registered first (the runtime registers the
     * tracer alone when ty_init has not run). */
    int at = nhooks;
    for (int i = 0; h->kind == TY_HOOK_AUTODIFF && i < nhooks; i++) {
        if (hooks[i].kind == TY_HOOK_TRACE) {
            at = i;
            break;
        }
    }
    memmove(&hooks[at + 1], &hooks[at], sizeof(ty_hook) * (size_t)(nhooks - at));
    hooks[at] = *h;
    nhooks++;
    return TY_OK;
}

void
ty_hook_remove(const ty_hook *h)
{
    for (int i = 0; i < nhooks; i++) {
        if (hooks[i].after == h->after && hooks[i].backward == h->backward &&
            hooks[i].ud == h->ud) {
            memmove(&hooks[i], &hooks[i + 1], sizeof(ty_hook) * (size_t)(nhooks - i - 1));
            nhooks--;
            return;
        }
    }
}

static _Thread_local uint32_t suspended_kinds;

void
ty_hooks_suspend(uint32_t kinds, int on)
{
    suspended_kinds = on ? (suspended_kinds | kinds) : (suspended_kinds & ~kinds);
}

static int
hook_live(const ty_hook *h)
{
    return !(h->kind & suspended_kinds);
}

ty_status
ty_hooks_backward(ty_backward_phase phase, ty_backward_event *ev)
{
    for (int h = 0; h < nhooks && !ev->done; h++) {
        if (hooks[h].backward && hook_live(&hooks[h])) {
            TY_TRY(hooks[h].backward(hooks[h].ud, phase, ev));
        }
    }
    return TY_OK;
}

void
ty_meta_of(const ty_tensor *t, ty_meta *m)
{
    m->dtype = t->dtype;
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
}

int64_t
ty_meta_numel(const ty_meta *m)
{
    int64_t n = 1;
    for (int d = 0; d < m->ndim; d++) {
        n *= m->shape[d];
    }
    return n;
}

size_t
ty_meta_nbytes(const ty_meta *m)
{
    return ty_dtype_size(m->dtype) * (size_t)ty_meta_numel(m);
}

static ty_status
check_args(const ty_op_def *def, const void *params, int nin, ty_tensor *const *in, int nout,
           ty_tensor **out)
{
    TY_CHECK(def->nin < 0 ? nin >= 1 : nin == def->nin, TY_ERR_INVALID_ARG,
             "expected %d inputs, got %d", def->nin, nin);
    TY_CHECK(def->nout < 0 ? (nout >= 1 && nout <= TY_MAX_OUTPUTS) : nout == def->nout,
             TY_ERR_INVALID_ARG, "expected %d outputs, got %d", def->nout, nout);
    TY_CHECK(out != NULL && (nin == 0 || in != NULL), TY_ERR_INVALID_ARG, "NULL argument");
    for (int i = 0; i < nin; i++) {
        TY_CHECK(in[i] != NULL, TY_ERR_INVALID_ARG, "input %d is NULL", i);
    }
    /* the defaults are valid by construction; anything else is checked before family code */
    return params == NULL || params == def->params->defaults ? TY_OK
                                                             : ty_params_check(def->params, params);
}

static _Thread_local ty_intercept_fn intercept_fn;
static _Thread_local void *intercept_ud;

void
ty_set_intercept(ty_intercept_fn fn, void *ud)
{
    intercept_fn = fn;
    intercept_ud = ud;
}

/* All inputs must be on one device; ops without inputs run on the CPU. */
static ty_status
call_device(const ty_call *c, ty_device_type *dev)
{
    *dev = c->nin > 0 ? c->in[0]->storage->device : TY_DEVICE_CPU;
    for (int i = 1; i < c->nin; i++) {
        ty_device_type d = c->in[i]->storage->device;
        TY_CHECK(d == *dev, TY_ERR_DEVICE, "input 0 is on %s but input %d is on %s",
                 ty_device_name(*dev), i, ty_device_name(d));
    }
    return TY_OK;
}

ty_status
ty_call_forward(const ty_call *c, ty_tensor **out)
{
    ty_device_type dev;
    TY_TRY(call_device(c, &dev));
    ty_forward_fn fwd = ty_op_forward(dev, c->op);
    TY_CHECK(fwd, TY_ERR_UNSUPPORTED, "no kernel for device %s", ty_device_name(dev));
    return fwd(c, out);
}

int
ty_dispatch_only_hooks(uint32_t kinds)
{
    if (intercept_fn) {
        return 0;
    }
    for (int h = 0; h < nhooks; h++) {
        int acts = hooks[h].before || hooks[h].after;
        if (acts && hook_live(&hooks[h]) && !(hooks[h].kind & kinds)) {
            return 0;
        }
    }
    return 1;
}

static ty_status
run_hooks(const ty_call *c, ty_tensor *const *res)
{
    for (int h = 0; h < nhooks; h++) {
        if (hooks[h].after && hook_live(&hooks[h])) {
            TY_TRY(hooks[h].after(hooks[h].ud, c, res));
        }
    }
    return TY_OK;
}

static _Thread_local int forward_depth;
static _Atomic int forwards_in_flight;

int
ty_forwards_in_flight(void)
{
    return atomic_load(&forwards_in_flight) > 0;
}

int
ty_in_forward(void)
{
    return forward_depth > 0;
}

static ty_status
run_before_hooks(const ty_call *c)
{
    for (int h = 0; h < nhooks; h++) {
        if (hooks[h].before && hook_live(&hooks[h])) {
            TY_TRY(hooks[h].before(hooks[h].ud, c));
        }
    }
    return TY_OK;
}

static ty_status
run(const ty_op_def *def, const ty_call *c, ty_tensor **res)
{
    ty_meta meta[TY_MAX_OUTPUTS];
    ty_device_type dev;
    TY_TRY(call_device(c, &dev));
    ty_forward_fn fwd = ty_op_forward(dev, c->op);
    TY_CHECK(fwd, TY_ERR_UNSUPPORTED, "no kernel for device %s", ty_device_name(dev));
    TY_TRY(run_before_hooks(c));
    for (int i = 0; i < c->nin; i++) {
        if (c->in[i]->storage->deferred) { /* computed by a trace later, or brought back */
            TY_TRY(ty_check_readable(c->in[i]));
        }
    }
    TY_TRY(def->infer(c, meta));
    if (!(def->flags & (TY_F_VIEW | TY_F_DYN))) {
        for (int i = 0; i < c->nout; i++) {
            TY_TRY(ty_tensor_new_on(dev, meta[i].dtype, meta[i].ndim, meta[i].shape, &res[i]));
        }
    }
    forward_depth++; /* a forward that applies ops itself still reads its inputs */
    atomic_fetch_add(&forwards_in_flight, 1);
    ty_status st = fwd(c, res);
    atomic_fetch_sub(&forwards_in_flight, 1);
    forward_depth--;
    TY_TRY(st);
    return run_hooks(c, res);
}

/* Outputs without data: an in-place write returns its destination, a view op that needs no
 * copy runs (it touches no data), anything else gets pending tensors of the inferred meta. */
static ty_status
lazy_outputs(const ty_op_def *def, const ty_call *c, ty_forward_fn fwd, const ty_meta *meta,
             const ty_deferral *why, ty_tensor **res)
{
    if ((def->flags & TY_F_VIEW) && (def->flags & TY_F_WRITES)) {
        ty_tensor *d = c->in[0];
        ty_storage_written(d); /* as the eager write would: the tape sees the same */
        return ty_tensor_view(d, d->ndim, d->shape, d->strides, d->offset, &res[0]);
    }
    if ((def->flags & TY_F_VIEW) && !ty_view_copies(c)) {
        return fwd(c, res);
    }
    for (int i = 0; i < c->nout; i++) {
        int64_t n;
        TY_TRY(ty_shape_numel(meta[i].ndim, meta[i].shape, &n));
        TY_TRY(ty_tensor_view_pending(meta[i].dtype, meta[i].ndim, meta[i].shape,
                                      (size_t)n * ty_dtype_size(meta[i].dtype), why, &res[i]));
    }
    return TY_OK;
}

ty_status
ty_run_call_lazy(const ty_call *c, const ty_deferral *why, ty_tensor **res)
{
    const ty_op_def *def = &ty_op_defs[c->op];
    ty_meta meta[TY_MAX_OUTPUTS];
    ty_device_type dev;
    TY_TRY(call_device(c, &dev));
    ty_forward_fn fwd = ty_op_forward(dev, c->op);
    TY_CHECK(fwd, TY_ERR_UNSUPPORTED, "no kernel for device %s", ty_device_name(dev));
    TY_CHECK(!(def->flags & TY_F_DYN), TY_ERR_TRACE,
             "its output shape depends on input values, so it cannot be traced symbolically "
             "(use trace(symbolic=False), or run it under exclude_from_trace())");
    TY_TRY(def->infer(c, meta));
    TY_TRY(lazy_outputs(def, c, fwd, meta, why, res));
    return run_hooks(c, res);
}

/* The interceptor gets inputs whose data can be brought back (DTR) brought back: a replay
 * reads them directly. Inputs a trace computes later stay deferred. */
static ty_status
intercept(const ty_call *c, ty_tensor **res)
{
    for (int i = 0; i < c->nin; i++) {
        const ty_deferral *d = c->in[i]->storage->deferred;
        if (d && d->restore) {
            TY_TRY(ty_check_readable(c->in[i]));
        }
    }
    return intercept_fn(intercept_ud, c, res);
}

ty_status
ty_apply(ty_op op, const void *params, int nin, ty_tensor *const *in, int nout, ty_tensor **out)
{
    TY_CHECK((unsigned)op < TY_OP_COUNT, TY_ERR_INVALID_ARG, "ty_apply: invalid op %d", (int)op);
    const ty_op_def *def = &ty_op_defs[op];
    ty_tensor *res[TY_MAX_OUTPUTS] = {0};
    ty_status st = check_args(def, params, nin, in, nout, out);
    if (st == TY_OK) {
        ty_call c = {op, params ? params : def->params->defaults, nin, in, nout};
        st = intercept_fn ? intercept(&c, res) : run(def, &c, res);
    }
    if (st != TY_OK) {
        for (int i = 0; i < TY_MAX_OUTPUTS && i < nout; i++) {
            ty_tensor_release(res[i]);
        }
        ty_error_prefix(def->name);
        return st;
    }
    memcpy(out, res, sizeof(ty_tensor *) * (size_t)nout);
    return TY_OK;
}

ty_status
ty_run_call(const ty_call *c, ty_tensor **out)
{
    return run(&ty_op_defs[c->op], c, out);
}

/* ---- helpers for ops and grad rules ---- */
ty_status
ty_op1(ty_op op, const void *p, ty_tensor *a, ty_tensor **out)
{
    return ty_apply(op, p, 1, &a, 1, out);
}

ty_status
ty_op2(ty_op op, const void *p, ty_tensor *a, ty_tensor *b, ty_tensor **out)
{
    ty_tensor *in[2] = {a, b};
    return ty_apply(op, p, 2, in, 1, out);
}

ty_status
ty_op3(ty_op op, const void *p, ty_tensor *a, ty_tensor *b, ty_tensor *c, ty_tensor **out)
{
    ty_tensor *in[3] = {a, b, c};
    return ty_apply(op, p, 3, in, 1, out);
}

ty_status
ty_scalar(ty_dtype dt, double value, ty_tensor **out)
{
    return ty_tensor_full(dt, 0, NULL, value, out);
}

ty_status
ty_broadcast_shapes(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    int64_t res[TY_MAX_DIMS];
    TY_CHECK(n <= TY_MAX_DIMS, TY_ERR_SHAPE, "broadcast rank %d exceeds %d", n, TY_MAX_DIMS);
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        TY_CHECK(da == db || da == 1 || db == 1, TY_ERR_SHAPE,
                 "shapes %s and %s cannot be broadcast together", ty_shape_str(na, a, b1, sizeof b1),
                 ty_shape_str(nb, b, b2, sizeof b2));
        res[i] = da == 1 ? db : da;
    }
    memcpy(out, res, sizeof(int64_t) * (size_t)n); /* out may alias a or b */
    *nout = n;
    return TY_OK;
}

ty_status
ty_norm_axis(int64_t axis, int ndim, int *out)
{
    int64_t n = ndim == 0 ? 1 : ndim; /* a 0-d tensor accepts axis 0 / -1 */
    TY_CHECK(axis >= -n && axis < n, TY_ERR_INDEX, "axis %lld is out of range for a %d-d tensor",
             (long long)axis, ndim);
    *out = (int)(axis < 0 ? axis + n : axis);
    return TY_OK;
}

ty_status
ty_sum_to_shape(ty_tensor *g, int ndim, const int64_t *shape, ty_tensor **out)
{
    if (g->ndim == ndim && memcmp(g->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0) {
        ty_tensor_retain(g);
        *out = g;
        return TY_OK;
    }
    if (ty_batch_tree_sums_rows(g, ndim, shape)) { /* deterministic mode: ops/batch_tree.h */
        return ty_batch_tree_sum_to(g, ndim, shape, out);
    }
    ty_p_reduce rp = *(const ty_p_reduce *)ty_op_defs[TY_OP_SUM].params->defaults;
    int lead = g->ndim - ndim;
    TY_CHECK(lead >= 0, TY_ERR_SHAPE, "cannot sum a %d-d gradient to %d dims", g->ndim, ndim);
    rp.axes.n = 0;
    for (int i = 0; i < g->ndim; i++) {
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) {
            rp.axes.v[rp.axes.n++] = i;
        }
    }
    rp.keepdims = 1;
    ty_tensor *s = NULL;
    if (rp.axes.n > 0) {
        TY_TRY(ty_op1(TY_OP_SUM, &rp, g, &s));
    } else {
        ty_tensor_retain(g);
        s = g;
    }
    ty_p_shape sp = {0};
    sp.shape.n = ndim;
    memcpy(sp.shape.v, shape, sizeof(int64_t) * (size_t)ndim);
    ty_status st = ty_op1(TY_OP_RESHAPE, &sp, s, out);
    ty_tensor_release(s);
    return st;
}
