/* tianyuan._C trace functions: a ty_trace in a capsule, driven by tianyuan.jit.trace. */
#include "bind.h"

static const char *CAPSULE = "tianyuan.trace";

static void
trace_capsule_free(PyObject *cap)
{
    ty_trace_release(PyCapsule_GetPointer(cap, CAPSULE));
}

static ty_trace *
get_trace(PyObject *cap)
{
    return PyCapsule_GetPointer(cap, CAPSULE);
}

/* A new array of the tensors in a sequence (borrowed handles), or NULL with an exception. */
static ty_tensor **
tensor_array(PyObject *seq, Py_ssize_t *n)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of tensors");
    if (!fast) {
        return NULL;
    }
    *n = PySequence_Fast_GET_SIZE(fast);
    ty_tensor **arr = PyMem_Calloc((size_t)(*n ? *n : 1), sizeof(ty_tensor *));
    for (Py_ssize_t i = 0; arr && i < *n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        if (!ty_py_is_tensor(o)) {
            PyErr_Format(PyExc_TypeError, "trace: item %zd is not a Tensor", i);
            PyMem_Free(arr);
            arr = NULL;
            break;
        }
        arr[i] = ((TensorObject *)o)->t;
    }
    if (!arr && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    Py_DECREF(fast);
    return arr;
}

static PyObject *
py_begin_record(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *args_seq;
    int symbolic = 0;
    if (!PyArg_ParseTuple(args, "O|p", &args_seq, &symbolic)) {
        return NULL;
    }
    Py_ssize_t n;
    ty_tensor **arr = tensor_array(args_seq, &n);
    if (!arr) {
        return NULL;
    }
    ty_trace *tr = NULL;
    ty_status st = symbolic ? ty_trace_begin_record_symbolic((int)n, arr, &tr)
                            : ty_trace_begin_record((int)n, arr, &tr);
    PyMem_Free(arr);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *cap = PyCapsule_New(tr, CAPSULE, trace_capsule_free);
    if (!cap) {
        ty_trace_release(tr);
    }
    return cap;
}

typedef ty_status (*trace_seq_fn)(ty_trace *, int, ty_tensor *const *);

static PyObject *
call_with_seq(PyObject *args, trace_seq_fn fn, int release_gil)
{
    PyObject *cap, *seq;
    if (!PyArg_ParseTuple(args, "OO", &cap, &seq)) {
        return NULL;
    }
    ty_trace *tr = get_trace(cap);
    Py_ssize_t n;
    ty_tensor **arr = tr ? tensor_array(seq, &n) : NULL;
    if (!arr) {
        return NULL;
    }
    ty_status st;
    if (release_gil) {
        Py_BEGIN_ALLOW_THREADS
        st = fn(tr, (int)n, arr);
        Py_END_ALLOW_THREADS
    } else {
        st = fn(tr, (int)n, arr);
    }
    PyMem_Free(arr);
    return st == TY_OK ? Py_NewRef(Py_None) : ty_py_raise(st);
}

static PyObject *
py_end_record(PyObject *self, PyObject *args)
{
    (void)self;
    return call_with_seq(args, ty_trace_end_record, 0);
}

static PyObject *
py_begin_replay(PyObject *self, PyObject *args)
{
    (void)self;
    return call_with_seq(args, ty_trace_begin_replay, 0);
}

static PyObject *
py_end_replay(PyObject *self, PyObject *args)
{
    (void)self;
    return call_with_seq(args, ty_trace_end_replay, 1); /* executes the graph */
}

static PyObject *
py_run(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *seq;
    int nout;
    if (!PyArg_ParseTuple(args, "OOi", &cap, &seq, &nout)) {
        return NULL;
    }
    ty_trace *tr = get_trace(cap);
    Py_ssize_t n;
    ty_tensor **arr = tr ? tensor_array(seq, &n) : NULL;
    ty_tensor **outs = arr ? PyMem_Calloc((size_t)(nout > 0 ? nout : 1), sizeof(ty_tensor *)) : NULL;
    if (!outs) {
        PyMem_Free(arr);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_trace_run(tr, (int)n, arr, nout, outs);
    Py_END_ALLOW_THREADS
    PyMem_Free(arr);
    if (st != TY_OK) {
        PyMem_Free(outs);
        return ty_py_raise(st);
    }
    PyObject *list = PyList_New(nout);
    for (int i = 0; i < nout; i++) {
        PyObject *w = list ? ty_py_wrap(outs[i]) : NULL;
        if (!w) {
            for (int j = list ? i + 1 : i; j < nout; j++) {
                ty_tensor_release(outs[j]);
            }
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, w);
    }
    PyMem_Free(outs);
    return list;
}

static PyObject *
py_abort(PyObject *self, PyObject *cap)
{
    (void)self;
    ty_trace *tr = get_trace(cap);
    if (!tr) {
        return NULL;
    }
    ty_trace_abort(tr);
    Py_RETURN_NONE;
}

static PyObject *
py_dump(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int after = 0;
    if (!PyArg_ParseTuple(args, "O|p", &cap, &after)) {
        return NULL;
    }
    ty_trace *tr = get_trace(cap);
    char *text = NULL;
    if (!tr) {
        return NULL;
    }
    ty_status st = ty_trace_dump_ex(tr, after, &text);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *s = PyUnicode_FromString(text);
    ty_free(text);
    return s;
}

static PyObject *
py_stats(PyObject *self, PyObject *cap)
{
    (void)self;
    ty_trace *tr = get_trace(cap);
    ty_trace_stats s;
    if (!tr) {
        return NULL;
    }
    ty_status st = ty_trace_get_stats(tr, &s);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:L,s:i}", "nodes", s.nodes,
                         "executed", s.executed, "dead", s.dead, "cse", s.cse, "folded",
                         s.folded, "fused_groups", s.fused_groups, "fused_nodes", s.fused_nodes,
                         "forwarded", s.forwarded, "arena_bytes", (long long)s.arena_bytes,
                         "recomputed", s.recomputed);
}

static PyObject *
py_set_sublinear(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int thresh_nr_try, genetic_nr_iter, genetic_pool_size;
    long long lb_bytes;
    if (!PyArg_ParseTuple(args, "OiiiL", &cap, &thresh_nr_try, &genetic_nr_iter,
                          &genetic_pool_size, &lb_bytes)) {
        return NULL;
    }
    ty_trace *tr = get_trace(cap);
    if (!tr) {
        return NULL;
    }
    ty_status st = ty_trace_set_sublinear(tr, thresh_nr_try, genetic_nr_iter, genetic_pool_size,
                                          (int64_t)lb_bytes);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
py_set_dtr(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    long long threshold, min_size;
    if (!PyArg_ParseTuple(args, "OLL", &cap, &threshold, &min_size)) {
        return NULL;
    }
    ty_trace *tr = get_trace(cap);
    if (!tr) {
        return NULL;
    }
    ty_status st = ty_trace_set_dtr(tr, (int64_t)threshold, (int64_t)min_size);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
py_pass_log(PyObject *self, PyObject *cap)
{
    (void)self;
    ty_trace *tr = get_trace(cap);
    return tr ? PyUnicode_FromString(ty_trace_pass_log(tr)) : NULL;
}

static PyObject *
py_num_nodes(PyObject *self, PyObject *cap)
{
    (void)self;
    ty_trace *tr = get_trace(cap);
    return tr ? PyLong_FromLong(ty_trace_num_nodes(tr)) : NULL;
}

static PyObject *
py_pause(PyObject *self, PyObject *arg)
{
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    ty_trace_pause(on);
    Py_RETURN_NONE;
}

static PyMethodDef trace_methods[] = {
    {"trace_begin_record", py_begin_record, METH_VARARGS,
     "trace_begin_record(tensors, symbolic=False): start recording; returns a trace handle"},
    {"trace_end_record", py_end_record, METH_VARARGS, "trace_end_record(handle, outputs)"},
    {"trace_begin_replay", py_begin_replay, METH_VARARGS, "trace_begin_replay(handle, args)"},
    {"trace_end_replay", py_end_replay, METH_VARARGS,
     "trace_end_replay(handle, outputs): checks the call and executes the graph"},
    {"trace_abort", py_abort, METH_O, "stop a recording or replay after an exception"},
    {"trace_run", py_run, METH_VARARGS,
     "trace_run(handle, args, nout): replay without calling the function; returns outputs"},
    {"trace_dump", py_dump, METH_VARARGS,
     "trace_dump(handle, after_passes=False): the recorded graph as text"},
    {"trace_stats", py_stats, METH_O,
     "trace_stats(handle): what the passes did (the last call's executed and dead nodes)"},
    {"trace_num_nodes", py_num_nodes, METH_O, NULL},
    {"trace_set_sublinear", py_set_sublinear, METH_VARARGS,
     "trace_set_sublinear(handle, thresh_nr_try, genetic_nr_iter, genetic_pool_size, lb_bytes)"},
    {"trace_set_dtr", py_set_dtr, METH_VARARGS,
     "trace_set_dtr(handle, eviction_threshold, evictee_minimum_size)"},
    {"trace_pass_log", py_pass_log, METH_O, "the graph after each compile pass (TY_TRACE_DUMP=2)"},
    {"trace_pause", py_pause, METH_O, "push (True) or pop (False) an exclude_from_trace scope"},
    {NULL, NULL, 0, NULL},
};

int
ty_py_init_trace(PyObject *m)
{
    return PyModule_AddFunctions(m, trace_methods);
}
