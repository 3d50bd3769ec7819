/* tianyuan._C bindings of DTR (python/tianyuan/dtr holds MegEngine's interface). */
#include "bind.h"
#include "tianyuan/dtr.h"

static PyObject *
py_dtr_config(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_dtr_config c;
    ty_dtr_get_config(&c);
    return Py_BuildValue("{s:O,s:L,s:L,s:O}", "enabled", c.enabled ? Py_True : Py_False,
                         "eviction_threshold", (long long)c.eviction_threshold,
                         "evictee_minimum_size", (long long)c.evictee_minimum_size,
                         "enable_sqrt_sampling", c.sqrt_sampling ? Py_True : Py_False);
}

static PyObject *
py_dtr_set_config(PyObject *self, PyObject *args)
{
    (void)self;
    int enabled, sqrt_sampling;
    long long threshold, min_size;
    if (!PyArg_ParseTuple(args, "pLLp", &enabled, &threshold, &min_size, &sqrt_sampling)) {
        return NULL;
    }
    ty_dtr_config c = {enabled, threshold, min_size, sqrt_sampling};
    ty_status st = ty_dtr_set_config(&c);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
py_dtr_stats(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_dtr_stats s;
    ty_dtr_get_stats(&s);
    return Py_BuildValue("{s:L,s:L,s:L,s:L}", "evictions", (long long)s.evictions, "recomputes",
                         (long long)s.recomputes, "entries", (long long)s.entries, "evicted_now",
                         (long long)s.evicted_now);
}

static ty_tensor *
tensor_arg(PyObject *o)
{
    if (!ty_py_is_tensor(o)) {
        PyErr_SetString(PyExc_TypeError, "dtr: expected a Tensor");
        return NULL;
    }
    return ((TensorObject *)o)->t;
}

static PyObject *
py_dtr_pin(PyObject *self, PyObject *o)
{
    (void)self;
    ty_tensor *t = tensor_arg(o);
    if (!t) {
        return NULL;
    }
    ty_status st = ty_dtr_pin(t);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
py_dtr_drop(PyObject *self, PyObject *o)
{
    (void)self;
    ty_tensor *t = tensor_arg(o);
    int dropped = 0;
    if (!t) {
        return NULL;
    }
    ty_status st = ty_dtr_drop(t, &dropped);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return PyBool_FromLong(dropped);
}

static PyObject *
py_dtr_tensor_info(PyObject *self, PyObject *o)
{
    (void)self;
    ty_tensor *t = tensor_arg(o);
    if (!t) {
        return NULL;
    }
    int evicted;
    int64_t times;
    ty_dtr_tensor_info(t, &evicted, &times);
    return Py_BuildValue("(OL)", evicted ? Py_True : Py_False, (long long)times);
}

static PyMethodDef dtr_methods[] = {
    {"dtr_config", py_dtr_config, METH_NOARGS, "DTR settings as a dict"},
    {"dtr_set_config", py_dtr_set_config, METH_VARARGS,
     "dtr_set_config(enabled, eviction_threshold, evictee_minimum_size, sqrt_sampling)"},
    {"dtr_stats", py_dtr_stats, METH_NOARGS, "DTR counters"},
    {"dtr_pin", py_dtr_pin, METH_O, "never evict this tensor's storage"},
    {"dtr_drop", py_dtr_drop, METH_O, "evict this tensor now if DTR can recompute it"},
    {"dtr_tensor_info", py_dtr_tensor_info, METH_O, "(evicted now, times evicted)"},
    {NULL, NULL, 0, NULL},
};

int
ty_py_init_dtr(PyObject *m)
{
    return PyModule_AddFunctions(m, dtr_methods);
}
