/* tianyuan._C op coverage: a dispatcher hook that counts which ops actually ran, so the op
 * table's tests measure their coverage instead of declaring it (tests/python/ops/coverage.py
 * attributes the counts to modes: executed, gradient-checked, traced, ...).
 * The hook is registered only between _coverage_start() and _coverage_stop(): when off, the
 * dispatcher does not know it exists. */
#include <stdatomic.h>
#include <string.h>

#include "bind.h"
#include "ops/op.h"

static atomic_uint_fast64_t op_counts[TY_OP_COUNT];
static int hook_on;

static ty_status
count_op(void *ud, const ty_call *c, ty_tensor *const *out)
{
    (void)ud;
    (void)out;
    atomic_fetch_add_explicit(&op_counts[c->op], 1, memory_order_relaxed);
    return TY_OK;
}

static const ty_hook coverage_hook = {count_op, NULL};

static void
clear_counts(void)
{
    for (int op = 0; op < TY_OP_COUNT; op++) {
        atomic_store_explicit(&op_counts[op], 0, memory_order_relaxed);
    }
}

static PyObject *
coverage_start(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    clear_counts();
    if (!hook_on) {
        ty_status st = ty_hook_add(&coverage_hook);
        if (st != TY_OK) {
            return ty_py_raise(st);
        }
        hook_on = 1;
    }
    Py_RETURN_NONE;
}

/* {op name: calls} of the ops that ran since the last start or take; resets the counts. */
static PyObject *
coverage_take(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    PyObject *d = PyDict_New();
    for (int op = 0; d && op < TY_OP_COUNT; op++) {
        uint_fast64_t n = atomic_exchange_explicit(&op_counts[op], 0, memory_order_relaxed);
        if (n == 0) {
            continue;
        }
        PyObject *v = PyLong_FromUnsignedLongLong((unsigned long long)n);
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
    if (hook_on) {
        ty_hook_remove(&coverage_hook);
        hook_on = 0;
    }
    clear_counts();
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
