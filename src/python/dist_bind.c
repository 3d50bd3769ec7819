/* tianyuan._C bindings of the communicator (tianyuan/dist.h); the collectives themselves are
 * ops (_C.ops["dist_all_reduce"]...). python/tianyuan/distributed/_comm.py wraps these. */
#include "bind.h"
#include "tianyuan/dist.h"

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
    {NULL, NULL, 0, NULL},
};

int
ty_py_init_dist(PyObject *m)
{
    return PyModule_AddFunctions(m, dist_methods);
}
