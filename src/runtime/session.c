/* Sessions: run a model's ops in order through ty_apply, the dispatcher eager code uses, so
 * every op runs the very kernel it ran when traced and the bits are the same. Shapes are
 * inferred by the ops themselves, so inputs of a new batch size need no extra step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/tym.h"

struct ty_session {
    ty_model *m;
    ty_tensor **vals; /* per value: its tensor in this session, or NULL */
    int nthreads;
    int64_t *op_ns; /* per op: wall time of the last profiled run, or NULL when not profiling */
};

ty_status
ty_session_new(ty_model *model, ty_session **out)
{
    TY_CHECK(model && out, TY_ERR_INVALID_ARG, "session: NULL argument");
    ty_session *s = calloc(1, sizeof *s);
    ty_tensor **vals = calloc((size_t)model->nvalues + 1, sizeof(ty_tensor *));
    if (!s || !vals) {
        free(s);
        free(vals);
        return ty_set_error(TY_ERR_OOM, "session: out of memory");
    }
    atomic_fetch_add(&model->refs, 1);
    s->m = model;
    s->vals = vals;
    for (int i = 0; i < model->nweights; i++) {
        ty_tensor_retain(model->weights[i]);
        s->vals[model->ninputs + i] = model->weights[i];
    }
    *out = s;
    return TY_OK;
}

/* Drops the tensors of op outputs (the last run's results and intermediates). */
static void
drop_results(ty_session *s)
{
    for (int v = s->m->ninputs + s->m->nweights; v < s->m->nvalues; v++) {
        ty_tensor_release(s->vals[v]);
        s->vals[v] = NULL;
    }
}

void
ty_session_free(ty_session *s)
{
    if (!s) {
        return;
    }
    for (int v = 0; v < s->m->nvalues; v++) {
        ty_tensor_release(s->vals[v]);
    }
    free(s->vals);
    free(s->op_ns);
    ty_model_unref(s->m);
    free(s);
}

static int
find_input(const ty_model *m, const char *name)
{
    for (int i = 0; name && i < m->ninputs; i++) {
        if (strcmp(m->inputs[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static ty_status
check_input_shape(const tym_io *in, ty_dtype dt, int ndim, const int64_t *shape, size_t nbytes)
{
    char a[TY_SHAPE_BUF], b[TY_SHAPE_BUF];
    TY_CHECK(dt == in->dtype, TY_ERR_DTYPE, "session: input '%s' is %s, got %s", in->name,
             ty_dtype_name(in->dtype), ty_dtype_name(dt));
    int ok = ndim == in->ndim && (ndim == 0 || shape);
    for (int d = 0; ok && d < ndim; d++) {
        ok = shape[d] >= 0 && (in->shape[d] < 0 || shape[d] == in->shape[d]);
    }
    TY_CHECK(ok, TY_ERR_SHAPE, "session: input '%s' has shape %s (-1: any size), got %s",
             in->name, ty_shape_str(in->ndim, in->shape, a, sizeof a),
             shape ? ty_shape_str(ndim, shape, b, sizeof b) : "NULL");
    uint64_t want = ty_dtype_size(dt);
    for (int d = 0; d < ndim; d++) {
        TY_CHECK(!__builtin_mul_overflow(want, (uint64_t)shape[d], &want), TY_ERR_SHAPE,
                 "session: input '%s' is too large", in->name);
    }
    TY_CHECK(want == nbytes, TY_ERR_INVALID_ARG,
             "session: input '%s' of shape %s needs %llu bytes, got %zu", in->name,
             ty_shape_str(ndim, shape, b, sizeof b), (unsigned long long)want, nbytes);
    return TY_OK;
}

static ty_status
bind_input(ty_session *s, const char *name, ty_dtype dt, int ndim, const int64_t *shape,
           const void *data, size_t nbytes, int borrow)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    int i = find_input(s->m, name);
    TY_CHECK(i >= 0, TY_ERR_INVALID_ARG, "session: the model has no input named '%s'",
             name ? name : "(null)");
    TY_TRY(check_input_shape(&s->m->inputs[i], dt, ndim, shape, nbytes));
    TY_CHECK(data || nbytes == 0, TY_ERR_INVALID_ARG, "session: input '%s' has no data", name);
    ty_tensor *t;
    if (borrow) {
        int64_t strides[TY_MAX_DIMS], step = 1;
        TY_CHECK((uintptr_t)data % ty_dtype_size(dt) == 0, TY_ERR_INVALID_ARG,
                 "session: input '%s': a borrowed buffer must be aligned to %zu bytes", name,
                 ty_dtype_size(dt));
        for (int d = ndim - 1; d >= 0; d--) {
            strides[d] = step;
            step *= shape[d] > 0 ? shape[d] : 1;
        }
        TY_TRY(ty_tensor_wrap(dt, ndim, shape, strides, (void *)data, nbytes, ty_noop_deleter,
                              NULL, &t));
    } else {
        TY_TRY(ty_tensor_from_data(dt, ndim, shape, data, nbytes, &t));
    }
    ty_tensor_release(s->vals[i]);
    s->vals[i] = t;
    return TY_OK;
}

ty_status
ty_session_set_input(ty_session *s, const char *name, ty_dtype dt, int ndim,
                     const int64_t *shape, const void *data, size_t nbytes)
{
    return bind_input(s, name, dt, ndim, shape, data, nbytes, 0);
}

ty_status
ty_session_set_input_borrowed(ty_session *s, const char *name, ty_dtype dt, int ndim,
                              const int64_t *shape, void *data, size_t nbytes)
{
    return bind_input(s, name, dt, ndim, shape, data, nbytes, 1);
}

/* After a failed op: which inputs differ from the dumped shapes, as the reason to suspect. */
static ty_status
explain_failure(const ty_session *s, int op_index, ty_status st)
{
    char why[1024], shapes[512] = "", a[TY_SHAPE_BUF], b[TY_SHAPE_BUF];
    size_t used = 0;
    snprintf(why, sizeof why, "%s", ty_last_error());
    for (int i = 0; i < s->m->ninputs && used < sizeof shapes - 1; i++) {
        const tym_io *in = &s->m->inputs[i];
        const ty_tensor *t = s->vals[i];
        if (memcmp(ty_tensor_shape(t), in->shape, sizeof(int64_t) * (size_t)in->ndim) != 0) {
            int n = snprintf(shapes + used, sizeof shapes - used,
                             "; input '%s' has shape %s, the model was dumped with %s",
                             in->name, ty_shape_str(t->ndim, t->shape, a, sizeof a),
                             ty_shape_str(in->ndim, in->shape, b, sizeof b));
            used += n > 0 ? (size_t)n : 0;
        }
    }
    const tym_op *o = &s->m->ops[op_index];
    return ty_set_error(st, "model op %d (%s%s%s): %s%s", op_index, ty_op_name(o->op),
                        o->name[0] ? " " : "", o->name, why, shapes);
}

static ty_status
run_op(ty_session *s, int i)
{
    const tym_op *o = &s->m->ops[i];
    ty_tensor *small[16];
    ty_tensor **in = o->nin <= 16 ? small : malloc(sizeof(ty_tensor *) * (size_t)o->nin);
    TY_CHECK(in, TY_ERR_OOM, "session: out of memory");
    for (int k = 0; k < o->nin; k++) {
        in[k] = s->vals[o->in[k]];
    }
    ty_status st = ty_apply(o->op, o->params, o->nin, in, o->nout, s->vals + o->first_out);
    if (in != small) {
        free(in);
    }
    return st;
}

/* Releases the values op i read for the last time (intermediates only). */
static void
release_dead(ty_session *s, int i)
{
    const tym_op *o = &s->m->ops[i];
    int first_node_value = s->m->ninputs + s->m->nweights;
    for (int k = 0; k < o->nin; k++) {
        int v = o->in[k];
        if (v >= first_node_value && s->m->last_use[v] == i) {
            ty_tensor_release(s->vals[v]);
            s->vals[v] = NULL;
        }
    }
    for (int k = 0; k < o->nout; k++) { /* outputs nobody reads */
        int v = o->first_out + k;
        if (s->m->last_use[v] < 0) {
            ty_tensor_release(s->vals[v]);
            s->vals[v] = NULL;
        }
    }
}

ty_status
ty_session_run(ty_session *s)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    for (int i = 0; i < s->m->ninputs; i++) {
        TY_CHECK(s->vals[i], TY_ERR_INVALID_ARG, "session: input '%s' is not set",
                 s->m->inputs[i].name);
    }
    if (s->nthreads > 0 && ty_get_num_threads() != s->nthreads) {
        TY_TRY(ty_set_num_threads(s->nthreads));
    }
    drop_results(s);
    for (int i = 0; i < s->m->nops; i++) {
        struct timespec t0, t1;
        if (s->op_ns) {
            clock_gettime(CLOCK_MONOTONIC, &t0);
        }
        ty_status st = run_op(s, i);
        if (s->op_ns) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            s->op_ns[i] = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
        }
        if (st != TY_OK) {
            st = explain_failure(s, i, st);
            drop_results(s);
            return st;
        }
        release_dead(s, i);
    }
    return TY_OK;
}

ty_status
ty_session_output(ty_session *s, int i, const ty_tensor **out)
{
    TY_CHECK(s && out, TY_ERR_INVALID_ARG, "session: NULL argument");
    TY_CHECK(i >= 0 && i < s->m->noutputs, TY_ERR_INDEX,
             "session: output %d does not exist (the model has %d)", i, s->m->noutputs);
    const ty_tensor *t = s->vals[s->m->outputs[i].vid];
    TY_CHECK(t, TY_ERR_INVALID_ARG, "session: output '%s' has not been computed (run first)",
             s->m->outputs[i].name);
    *out = t;
    return TY_OK;
}

ty_status
ty_session_set_threads(ty_session *s, int nthreads)
{
    TY_CHECK(s && nthreads >= 0, TY_ERR_INVALID_ARG, "session: invalid thread count %d",
             nthreads);
    s->nthreads = nthreads;
    return TY_OK;
}

ty_status
ty_session_set_profiling(ty_session *s, int on)
{
    TY_CHECK(s, TY_ERR_INVALID_ARG, "session: NULL session");
    free(s->op_ns);
    s->op_ns = NULL;
    if (on) {
        s->op_ns = malloc(sizeof(int64_t) * (size_t)(s->m->nops ? s->m->nops : 1));
        TY_CHECK(s->op_ns, TY_ERR_OOM, "session: out of memory");
        for (int i = 0; i < s->m->nops; i++) {
            s->op_ns[i] = -1;
        }
    }
    return TY_OK;
}

int64_t
ty_session_op_time_ns(const ty_session *s, int i)
{
    return s && s->op_ns && i >= 0 && i < s->m->nops ? s->op_ns[i] : -1;
}
