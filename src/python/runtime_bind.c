/* tianyuan._C runtime functions: trace.dump's writer and the C inference runtime behind
 * tianyuan.utils.comp_graph_tools.GraphInference. */
#include "bind.h"
#include "tianyuan/runtime.h"

static const char *MODEL = "tianyuan.model";
static const char *SESSION = "tianyuan.session";

/* A NULL-terminated array of the UTF-8 strings of a list, or NULL for None. */
static const char **
name_array(PyObject *list, Py_ssize_t want, int *err)
{
    *err = 0;
    if (list == Py_None) {
        return NULL;
    }
    if (!PyList_Check(list) || PyList_GET_SIZE(list) != want) {
        PyErr_Format(PyExc_ValueError, "expected a list of %zd names", want);
        *err = 1;
        return NULL;
    }
    const char **names = PyMem_Calloc((size_t)want + 1, sizeof(char *));
    for (Py_ssize_t i = 0; names && i < want; i++) {
        names[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(list, i));
        if (!names[i]) {
            PyMem_Free(names);
            *err = 1;
            return NULL;
        }
    }
    if (!names) {
        PyErr_NoMemory();
        *err = 1;
    }
    return names;
}

/* keep_param_name / keep_opr_name: a list of (Tensor, name) pairs into opt (NULL: none). */
static int
named_tensors(PyObject *pairs, ty_tym_dump_options *opt)
{
    if (pairs == Py_None) {
        return 0;
    }
    if (!PyList_Check(pairs)) {
        PyErr_SetString(PyExc_TypeError, "expected a list of (Tensor, name) pairs");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(pairs);
    ty_tensor **named = PyMem_Calloc((size_t)n + 1, sizeof(ty_tensor *));
    const char **as = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    opt->named = named;
    opt->named_as = as;
    if (!named || !as) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i), *t, *name;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !ty_py_is_tensor(t = PyTuple_GET_ITEM(pair, 0)) ||
            !PyUnicode_Check(name = PyTuple_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError, "expected a list of (Tensor, name) pairs");
            return -1;
        }
        named[i] = ((TensorObject *)t)->t;
        if (!(as[i] = PyUnicode_AsUTF8(name))) {
            return -1;
        }
    }
    opt->nnamed = (int)n;
    return 0;
}

static PyObject *
py_tym_dump(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *in_names, *out_names, *pairs = Py_None;
    Py_ssize_t nargs, nout;
    const char *meta;
    int keep_op = 0, keep_param = 0;
    if (!PyArg_ParseTuple(args, "OnOnOs|Opp", &cap, &nargs, &in_names, &nout, &out_names, &meta,
                          &pairs, &keep_op, &keep_param)) {
        return NULL;
    }
    ty_trace *tr = PyCapsule_GetPointer(cap, "tianyuan.trace");
    if (!tr) {
        return NULL;
    }
    int err1, err2 = 0;
    const char **in = name_array(in_names, nargs, &err1);
    const char **out = err1 ? NULL : name_array(out_names, nout, &err2);
    if (err1 || err2) {
        PyMem_Free(in);
        return NULL;
    }
    ty_tym_dump_options opt = {.input_names = in, .output_names = out, .metadata = meta,
                               .keep_op_names = keep_op, .keep_param_names = keep_param};
    void *data = NULL;
    size_t n = 0;
    ty_status st = TY_OK;
    int failed = named_tensors(pairs, &opt);
    if (!failed) {
        st = ty_trace_dump_tym(tr, &opt, &data, &n);
    }
    PyMem_Free(in);
    PyMem_Free(out);
    PyMem_Free((void *)opt.named);
    PyMem_Free((void *)opt.named_as);
    if (failed) {
        return NULL;
    }
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *bytes = PyBytes_FromStringAndSize(data, (Py_ssize_t)n);
    ty_free(data);
    return bytes;
}

static void
rewritten_capsule_free(PyObject *cap)
{
    ty_trace_release(PyCapsule_GetPointer(cap, "tianyuan.trace"));
}

/* trace.dump's rewrites: (a new trace capsule, what they did). */
static PyObject *
py_tym_rewrite(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    unsigned flags;
    if (!PyArg_ParseTuple(args, "OI", &cap, &flags)) {
        return NULL;
    }
    ty_trace *tr = PyCapsule_GetPointer(cap, "tianyuan.trace");
    if (!tr) {
        return NULL;
    }
    ty_trace *out = NULL;
    ty_tym_rewrite_stats s;
    ty_status st = ty_tym_rewrite(tr, flags, &out, &s);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *res = PyCapsule_New(out, "tianyuan.trace", rewritten_capsule_free);
    if (!res) {
        ty_trace_release(out);
        return NULL;
    }
    return Py_BuildValue("N{sisisisisisi}", res, "folded", s.folded, "cse", s.cse, "conv_bias",
                         s.conv_bias, "bn_folded", s.bn_folded, "z_fused", s.z_fused, "io16",
                         s.io16);
}

static void
model_capsule_free(PyObject *cap)
{
    ty_model_free(PyCapsule_GetPointer(cap, MODEL));
}

static void
session_capsule_free(PyObject *cap)
{
    ty_session_free(PyCapsule_GetPointer(cap, SESSION));
}

/* model_load(path: str | bytes-like) -> model handle */
static PyObject *
py_model_load(PyObject *self, PyObject *src)
{
    (void)self;
    ty_model *m = NULL;
    ty_status st;
    if (PyUnicode_Check(src)) {
        const char *path = PyUnicode_AsUTF8(src);
        if (!path) {
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        st = ty_model_load_file(path, &m);
        Py_END_ALLOW_THREADS
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(src, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        st = ty_model_load_buffer(view.buf, (size_t)view.len, 0, &m);
        PyBuffer_Release(&view);
    }
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *cap = PyCapsule_New(m, MODEL, model_capsule_free);
    if (!cap) {
        ty_model_free(m);
    }
    return cap;
}

static PyObject *
io_list(ty_model *m, int n, ty_status (*get)(const ty_model *, int, ty_io_info *))
{
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        ty_io_info io;
        if (get(m, i, &io) != TY_OK) {
            Py_DECREF(list);
            return ty_py_raise(TY_ERR_INTERNAL);
        }
        PyObject *shape = PyTuple_New(io.ndim);
        for (int d = 0; shape && d < io.ndim; d++) {
            PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(io.shape[d]));
        }
        PyObject *item = shape ? Py_BuildValue("(ssN)", io.name, ty_dtype_name(io.dtype), shape)
                               : NULL;
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* [(type, name)] of the model's ops. */
static PyObject *
op_list(const ty_model *m)
{
    PyObject *list = PyList_New(ty_model_num_ops(m));
    for (int i = 0; list && i < ty_model_num_ops(m); i++) {
        PyObject *item = Py_BuildValue("(ss)", ty_model_op_type(m, i), ty_model_op_name(m, i));
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *
py_model_info(PyObject *self, PyObject *cap)
{
    (void)self;
    ty_model *m = PyCapsule_GetPointer(cap, MODEL);
    if (!m) {
        return NULL;
    }
    return Py_BuildValue("{s:N,s:N,s:N,s:i,s:L,s:s,s:N}", "inputs",
                         io_list(m, ty_model_num_inputs(m), ty_model_input), "outputs",
                         io_list(m, ty_model_num_outputs(m), ty_model_output), "weights",
                         io_list(m, ty_model_num_weights(m), ty_model_weight), "num_ops",
                         ty_model_num_ops(m), "weight_bytes",
                         (long long)ty_model_weight_bytes(m), "metadata", ty_model_metadata(m),
                         "ops", op_list(m));
}

static PyObject *
py_session_new(PyObject *self, PyObject *cap)
{
    (void)self;
    ty_model *m = PyCapsule_GetPointer(cap, MODEL);
    ty_session *s = NULL;
    if (!m) {
        return NULL;
    }
    ty_status st = ty_session_new(m, &s);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *out = PyCapsule_New(s, SESSION, session_capsule_free);
    if (!out) {
        ty_session_free(s);
    }
    return out;
}

static PyObject *
py_session_set_threads(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int n;
    if (!PyArg_ParseTuple(args, "Oi", &cap, &n)) {
        return NULL;
    }
    ty_session *s = PyCapsule_GetPointer(cap, SESSION);
    if (!s) {
        return NULL;
    }
    ty_status st = ty_session_set_threads(s, n);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

/* Sets one input from (name, dtype name, shape tuple, C-contiguous buffer). */
static int
set_input(ty_session *s, PyObject *item)
{
    const char *name, *dtname;
    PyObject *shape_obj, *buf;
    int64_t shape[TY_MAX_DIMS];
    ty_dtype dt;
    if (!PyArg_ParseTuple(item, "ssOO", &name, &dtname, &shape_obj, &buf)) {
        return -1;
    }
    Py_ssize_t nd = PyTuple_Check(shape_obj) ? PyTuple_GET_SIZE(shape_obj) : -1;
    if (nd < 0 || nd > TY_MAX_DIMS) {
        PyErr_SetString(PyExc_ValueError, "an input has more than 8 dimensions");
        return -1;
    }
    for (Py_ssize_t d = 0; d < nd; d++) {
        shape[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape_obj, d));
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    if (ty_dtype_from_name(dtname, &dt) != TY_OK) {
        ty_py_raise(TY_ERR_DTYPE);
        return -1;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    ty_status st = ty_session_set_input(s, name, dt, (int)nd, shape, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (st != TY_OK) {
        ty_py_raise(st);
        return -1;
    }
    return 0;
}

/* session_run(session, [(name, dtype, shape, buffer), ...]) -> [Tensor per output] */
static PyObject *
py_session_run(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap, *inputs;
    if (!PyArg_ParseTuple(args, "OO!", &cap, &PyList_Type, &inputs)) {
        return NULL;
    }
    ty_session *s = PyCapsule_GetPointer(cap, SESSION);
    if (!s) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(inputs); i++) {
        if (set_input(s, PyList_GET_ITEM(inputs, i)) < 0) {
            return NULL;
        }
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_session_run(s);
    Py_END_ALLOW_THREADS
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    PyObject *m_outs = PyList_New(0);
    for (int i = 0; m_outs; i++) {
        const ty_tensor *t;
        if (ty_session_output(s, i, &t) != TY_OK) {
            ty_clear_error();
            break;
        }
        ty_tensor_retain((ty_tensor *)t);
        PyObject *w = ty_py_wrap((ty_tensor *)t);
        if (!w || PyList_Append(m_outs, w) < 0) {
            Py_XDECREF(w);
            Py_CLEAR(m_outs);
            break;
        }
        Py_DECREF(w);
    }
    return m_outs;
}

static PyMethodDef runtime_methods[] = {
    {"tym_rewrite", py_tym_rewrite, METH_VARARGS,
     "tym_rewrite(trace, flags) -> (rewritten trace, {what the rewrites did})"},
    {"tym_dump", py_tym_dump, METH_VARARGS,
     "tym_dump(trace, nargs, input_names|None, nout, output_names|None, metadata) -> bytes"},
    {"model_load", py_model_load, METH_O, "model_load(path or bytes) -> model handle"},
    {"model_info", py_model_info, METH_O,
     "model_info(model) -> dict: inputs, outputs, weights ((name, dtype, shape)), num_ops, "
     "weight_bytes, metadata, ops ((type, name))"},
    {"session_new", py_session_new, METH_O, "session_new(model) -> session handle"},
    {"session_set_threads", py_session_set_threads, METH_VARARGS,
     "session_set_threads(session, n): this session's thread count (0: the default)"},
    {"session_run", py_session_run, METH_VARARGS,
     "session_run(session, [(name, dtype, shape, buffer)]) -> [Tensor]"},
    {NULL, NULL, 0, NULL},
};

int
ty_py_init_runtime(PyObject *m)
{
    return PyModule_AddFunctions(m, runtime_methods);
}
