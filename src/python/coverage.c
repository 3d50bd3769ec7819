/* tianyuan._C op coverage: a dispatcher hook that counts which ops actually ran, so the op
 * table's tests measure their coverage instead of declaring it (tests/python/ops/coverage.py
 * attributes the counts to modes: executed, gradient-checked, traced, ...).
 * The counting hook (ty_op_counts_*, in the ops layer) is registered only between
 * _coverage_start() and _coverage_stop(): when off, the dispatcher does not know it exists. */
#include <string.h>

#include "bind.h"

static PyObject *
coverage_start(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_status st = ty_op_counts_start();
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

/* {op name: calls} of the ops that ran since the last start or take; resets the counts. */
static PyObject *
coverage_take(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    int64_t counts[TY_OP_COUNT];
    ty_op_counts_take(counts);
    PyObject *d = PyDict_New();
    for (int op = 0; d && op < TY_OP_COUNT; op++) {
        int64_t n = counts[op];
        if (n == 0) {
            continue;
        }
        PyObject *v = PyLong_FromLongLong((long long)n);
        if (!v || PyDict_SetItemString(d, ty_op_name((ty_op)op), v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *
coverage_stop(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_op_counts_stop();
    int64_t drop[TY_OP_COUNT];
    ty_op_counts_take(drop);
    Py_RETURN_NONE;
}

/* The error-case check compares an exception's message with this thread's C error (named by
 * the dispatcher after the op that failed) to tell which op raised it. */
static PyObject *
coverage_clear_error(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_clear_error();
    Py_RETURN_NONE;
}

static PyObject *
coverage_last_error(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_DecodeUTF8(ty_last_error(), (Py_ssize_t)strlen(ty_last_error()), "replace");
}

static PyMethodDef coverage_methods[] = {
    {"_coverage_start", coverage_start, METH_NOARGS, "start counting the ops that run"},
    {"_coverage_counts", coverage_take, METH_NOARGS,
     "{op: calls} since the last start or call; resets the counts"},
    {"_coverage_stop", coverage_stop, METH_NOARGS, "stop counting (removes the hook)"},
    {"_coverage_clear_error", coverage_clear_error, METH_NOARGS, "clear this thread's C error"},
    {"_coverage_last_error", coverage_last_error, METH_NOARGS, "this thread's C error message"},
    {NULL, NULL, 0, NULL},
};

int
ty_py_init_coverage(PyObject *m)
{
    return PyModule_AddFunctions(m, coverage_methods);
}
