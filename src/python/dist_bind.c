/* tianyuan._C bindings of the communicator (tianyuan/dist.h); the collectives themselves are
 * ops (_C.ops["dist_all_reduce"]...). python/tianyuan/distributed/_comm.py wraps these. */
#include "bind.h"
#include "tianyuan/dist.h"

#define TY_CHECK_PY(expr)                                                                          \
    do {                                                                                           \
        ty_status st_ = (expr);                                                                    \
        if (st_ != TY_OK) {                                                                        \
            return st_;                                                                            \
        }                                                                                          \
    } while (0)

static PyObject *
status_or_none(ty_status st)
{
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
py_dist_init(PyObject *self, PyObject *args)
{
    (void)self;
    const char *backend;
    double timeout_s;
    if (!PyArg_ParseTuple(args, "sd", &backend, &timeout_s)) {
        return NULL;
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_dist_init(backend, timeout_s);
    Py_END_ALLOW_THREADS
    return status_or_none(st);
}

static PyObject *
py_dist_finalize(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_dist_finalize();
    Py_END_ALLOW_THREADS
    return status_or_none(st);
}

static PyObject *
py_dist_state(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return Py_BuildValue("{s:O,s:s,s:d,s:O}", "initialized",
                         ty_dist_is_initialized() ? Py_True : Py_False, "backend",
                         ty_dist_backend(), "timeout", ty_dist_timeout(), "deterministic",
                         ty_dist_deterministic() ? Py_True : Py_False);
}

static PyObject *
py_dist_rank_size(PyObject *self, PyObject *args)
{
    (void)self;
    int group, rank = -1, size = 0;
    if (!PyArg_ParseTuple(args, "i", &group)) {
        return NULL;
    }
    ty_status st = ty_dist_rank(group, &rank);
    if (st == TY_OK) {
        st = ty_dist_size(group, &size);
    }
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return Py_BuildValue("(ii)", rank, size);
}

static PyObject *
py_dist_new_group(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "new_group: ranks must be a sequence of ints");
    if (!seq) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int ranks[1024];
    if (n > 1024) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "new_group: at most 1024 ranks, got %zd", n);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long r = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (r == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        ranks[i] = r < -1 || r > INT32_MAX ? -1 : (int)r;
    }
    Py_DECREF(seq);
    int id = -1;
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_dist_new_group((int)n, ranks, &id);
    Py_END_ALLOW_THREADS
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return PyLong_FromLong(id);
}

static PyObject *
py_dist_barrier(PyObject *self, PyObject *args)
{
    (void)self;
    int group;
    if (!PyArg_ParseTuple(args, "i", &group)) {
        return NULL;
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_dist_barrier(group);
    Py_END_ALLOW_THREADS
    return status_or_none(st);
}

static PyObject *
py_dist_set_timeout(PyObject *self, PyObject *args)
{
    (void)self;
    double seconds;
    if (!PyArg_ParseTuple(args, "d", &seconds)) {
        return NULL;
    }
    return status_or_none(ty_dist_set_timeout(seconds));
}

static PyObject *
py_dist_set_deterministic(PyObject *self, PyObject *args)
{
    (void)self;
    int on;
    if (!PyArg_ParseTuple(args, "p", &on)) {
        return NULL;
    }
    ty_dist_set_deterministic(on);
    Py_RETURN_NONE;
}

static PyObject *
py_dist_abort(PyObject *self, PyObject *args)
{
    (void)self;
    int code;
    if (!PyArg_ParseTuple(args, "i", &code)) {
        return NULL;
    }
    return status_or_none(ty_dist_abort(code));
}


/* ---- asynchronous all_reduce (gradient buckets): eager only, outside the dispatcher ---- */

typedef struct {
    PyObject_HEAD
    ty_dist_work *w;
    PyObject *out; /* the result tensor, written by the engine until the work finishes */
} DistWorkObject;

static void
work_dealloc(DistWorkObject *self)
{
    int done = 1;
    if (self->w && ty_dist_test(self->w, &done) == TY_OK && done) {
        ty_dist_work_free(self->w);
        Py_XDECREF(self->out);
    } else if (self->w) {
        /* abandoned in flight: the communicator is broken, and the engine may still write
         * the result's memory, so it stays alive */
        ty_dist_work_free(self->w);
    } else {
        Py_XDECREF(self->out);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
work_wait(DistWorkObject *self, PyObject *args)
{
    double timeout_s = 0;
    if (!PyArg_ParseTuple(args, "|d", &timeout_s)) {
        return NULL;
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_dist_wait(self->w, timeout_s);
    Py_END_ALLOW_THREADS
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_INCREF(self->out);
    return self->out;
}

static PyObject *
work_test(DistWorkObject *self, PyObject *noargs)
{
    (void)noargs;
    int done = 0;
    ty_status st = ty_dist_test(self->w, &done);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return PyBool_FromLong(done);
}

/* The result tensor at once: a recv's values are defined once the work is done. */
static PyObject *
work_tensor(DistWorkObject *self, PyObject *noargs)
{
    (void)noargs;
    Py_INCREF(self->out);
    return self->out;
}

static PyMethodDef work_methods[] = {
    {"wait", (PyCFunction)work_wait, METH_VARARGS,
     "wait(timeout_s=0) -> the result tensor (timeout_s <= 0: the default timeout)"},
    {"test", (PyCFunction)work_test, METH_NOARGS, "test() -> whether the result is ready"},
    {"tensor", (PyCFunction)work_tensor, METH_NOARGS,
     "tensor() -> the result tensor at once (its values are defined once the work is done)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DistWork_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tianyuan._C.DistWork",
    .tp_basicsize = sizeof(DistWorkObject),
    .tp_dealloc = (destructor)work_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An all_reduce, send or recv in flight (_C._dist_*_start).",
    .tp_methods = work_methods,
};

/* A contiguous copy of x (its data stay x's until the copy), outside the dispatcher. */
static ty_status
private_copy(ty_tensor *x, ty_tensor **out)
{
    ty_dtype dt = ty_tensor_dtype(x);
    TY_CHECK_PY(ty_tensor_empty(dt, ty_tensor_ndim(x), ty_tensor_shape(x), out));
    size_t nbytes = (size_t)ty_tensor_numel(x) * ty_dtype_size(dt);
    ty_status st = ty_tensor_copy_to(x, ty_tensor_data(*out), nbytes);
    if (st != TY_OK) {
        ty_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* A DistWork running collective a on t's memory (t: a new reference, owned from here). */
static PyObject *
start_work(ty_tensor *t, const ty_dist_args *a)
{
    DistWorkObject *w = PyObject_New(DistWorkObject, &DistWork_Type);
    if (!w) {
        ty_tensor_release(t);
        return NULL;
    }
    w->w = NULL;
    w->out = ty_py_wrap(t); /* releases t on failure */
    if (!w->out) {
        Py_DECREF(w);
        return NULL;
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_dist_start(a, &w->w);
    Py_END_ALLOW_THREADS
    if (st != TY_OK) {
        Py_DECREF(w);
        return ty_py_raise(st);
    }
    return (PyObject *)w;
}

static PyObject *
py_dist_all_reduce_start(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x;
    int mode, group;
    if (!PyArg_ParseTuple(args, "Oii", &x, &mode, &group)) {
        return NULL;
    }
    if (!ty_py_is_tensor(x)) {
        return PyErr_Format(PyExc_TypeError, "all_reduce_start: expected a Tensor");
    }
    ty_tensor *copy = NULL;
    ty_status st = private_copy(((TensorObject *)x)->t, &copy);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    void *data = ty_tensor_data(copy);
    ty_dist_args a = {TY_COLL_ALL_REDUCE, group, data, data, ty_tensor_numel(copy),
                      ty_tensor_dtype(copy), (ty_dist_mode)mode, 0};
    return start_work(copy, &a);
}

/* ---- asynchronous send / recv (group_start ... group_end): eager only ---- */

static PyObject *
py_dist_send_start(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x;
    int peer, group;
    if (!PyArg_ParseTuple(args, "Oii", &x, &peer, &group)) {
        return NULL;
    }
    if (!ty_py_is_tensor(x)) {
        return PyErr_Format(PyExc_TypeError, "send_start: expected a Tensor");
    }
    ty_tensor *copy = NULL;
    ty_status st = private_copy(((TensorObject *)x)->t, &copy);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    ty_dist_args a = {TY_COLL_SEND, group, ty_tensor_data(copy), NULL, ty_tensor_numel(copy),
                      ty_tensor_dtype(copy), TY_DIST_SUM, peer};
    return start_work(copy, &a);
}

static PyObject *
py_dist_recv_start(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *shape_obj;
    int dtype, peer, group;
    if (!PyArg_ParseTuple(args, "Oiii", &shape_obj, &dtype, &peer, &group)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(shape_obj, "recv_start: shape must be a sequence");
    if (!seq) {
        return NULL;
    }
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    int64_t shape[TY_MAX_DIMS];
    for (Py_ssize_t i = 0; i < nd && i < TY_MAX_DIMS; i++) {
        shape[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
    }
    Py_DECREF(seq);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (nd > TY_MAX_DIMS || dtype < 0 || dtype >= TY_DTYPE_COUNT) {
        return PyErr_Format(PyExc_ValueError, "recv_start: bad shape rank %zd or dtype %d", nd,
                            dtype);
    }
    ty_tensor *t = NULL;
    ty_status st = ty_tensor_empty((ty_dtype)dtype, (int)nd, shape, &t);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    ty_dist_args a = {TY_COLL_RECV, group, NULL, ty_tensor_data(t), ty_tensor_numel(t),
                      (ty_dtype)dtype, TY_DIST_SUM, peer};
    return start_work(t, &a);
}

static PyObject *
py_dist_stats(PyObject *self, PyObject *args)
{
    (void)self;
    int reset_peak = 0;
    if (!PyArg_ParseTuple(args, "|p", &reset_peak)) {
        return NULL;
    }
    ty_dist_stats s;
    ty_dist_get_stats(&s);
    if (reset_peak) {
        ty_dist_reset_peak();
    }
    return Py_BuildValue("{s:L,s:L,s:L}", "started", (long long)s.started, "in_flight",
                         (long long)s.in_flight, "peak_in_flight", (long long)s.peak_in_flight);
}

static PyMethodDef dist_methods[] = {
    {"_dist_init", py_dist_init, METH_VARARGS, "_dist_init(backend, timeout_s)"},
    {"_dist_finalize", py_dist_finalize, METH_NOARGS, "_dist_finalize()"},
    {"_dist_state", py_dist_state, METH_NOARGS,
     "_dist_state() -> {initialized, backend, timeout, deterministic}"},
    {"_dist_rank_size", py_dist_rank_size, METH_VARARGS,
     "_dist_rank_size(group) -> (rank or -1, size)"},
    {"_dist_new_group", py_dist_new_group, METH_O, "_dist_new_group(ranks) -> group id"},
    {"_dist_barrier", py_dist_barrier, METH_VARARGS, "_dist_barrier(group)"},
    {"_dist_set_timeout", py_dist_set_timeout, METH_VARARGS, "_dist_set_timeout(seconds)"},
    {"_dist_set_deterministic", py_dist_set_deterministic, METH_VARARGS,
     "_dist_set_deterministic(on)"},
    {"_dist_abort", py_dist_abort, METH_VARARGS, "_dist_abort(code)"},
    {"_dist_all_reduce_start", py_dist_all_reduce_start, METH_VARARGS,
     "_dist_all_reduce_start(x, mode, group) -> DistWork (an all_reduce of a copy of x)"},
    {"_dist_send_start", py_dist_send_start, METH_VARARGS,
     "_dist_send_start(x, peer, group) -> DistWork (a send of a copy of x)"},
    {"_dist_recv_start", py_dist_recv_start, METH_VARARGS,
     "_dist_recv_start(shape, dtype, peer, group) -> DistWork (its wait returns the tensor)"},
    {"_dist_stats", py_dist_stats, METH_VARARGS,
     "_dist_stats(reset_peak=False) -> {started, in_flight, peak_in_flight}"},
    {NULL, NULL, 0, NULL},
};

int
ty_py_init_dist(PyObject *m)
{
    if (PyType_Ready(&DistWork_Type) < 0 ||
        PyModule_AddObjectRef(m, "DistWork", (PyObject *)&DistWork_Type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, dist_methods);
}
