/* tianyuan._C: module functions, status -> exception mapping. */
#include "bind.h"
#include "tianyuan/dtr.h"

PyObject *ty_py_error_type = NULL;
PyObject *ty_py_trace_error_type = NULL;

/* The one place where C statuses become Python exceptions (DESIGN.md). */
PyObject *
ty_py_raise(ty_status st)
{
    PyObject *type;
    switch (st) {
    case TY_ERR_SHAPE:
    case TY_ERR_INVALID_ARG: type = PyExc_ValueError; break;
    case TY_ERR_DTYPE: type = PyExc_TypeError; break;
    case TY_ERR_OOM: type = PyExc_MemoryError; break;
    case TY_ERR_UNSUPPORTED: type = PyExc_NotImplementedError; break;
    case TY_ERR_IO: type = PyExc_OSError; break;
    case TY_ERR_INDEX: type = PyExc_IndexError; break;
    case TY_ERR_TIMEOUT: type = PyExc_TimeoutError; break;
    case TY_ERR_TRACE: type = ty_py_trace_error_type ? ty_py_trace_error_type : PyExc_RuntimeError; break;
    default: type = ty_py_error_type ? ty_py_error_type : PyExc_RuntimeError; break;
    }
    const char *msg = ty_last_error();
    PyErr_SetString(type, msg && msg[0] ? msg : ty_status_name(st));
    return NULL;
}

void *
ty_py_data(ty_tensor *t)
{
    ty_status st = ty_dtr_pin(t); /* an evicted tensor comes back (MemoryError if it cannot) */
    void *p = st == TY_OK ? ty_tensor_data(t) : NULL;
    if (!p) {
        ty_py_raise(st == TY_OK ? TY_ERR_INTERNAL : st);
    }
    return p;
}

static PyObject *
set_converter(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *conv, *tensor_type;
    if (!PyArg_ParseTuple(args, "OO!", &conv, &PyType_Type, &tensor_type)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)tensor_type, &TensorBase_Type)) {
        PyErr_SetString(PyExc_TypeError, "tensor type must subclass TensorBase");
        return NULL;
    }
    Py_XSETREF(ty_py_converter, Py_NewRef(conv));
    Py_INCREF(tensor_type);
    ty_py_tensor_type = (PyTypeObject *)tensor_type;
    Py_RETURN_NONE;
}

static int
as_tensor_list(PyObject *seq, Py_ssize_t *n, ty_tensor ***out, int allow_none)
{
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of tensors");
    if (!fast) {
        return -1;
    }
    *n = PySequence_Fast_GET_SIZE(fast);
    *out = PyMem_Calloc((size_t)(*n ? *n : 1), sizeof(ty_tensor *));
    if (!*out) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        if (o == Py_None && allow_none) {
            continue;
        }
        if (!ty_py_is_tensor(o)) {
            PyErr_Format(PyExc_TypeError, "expected a Tensor at position %zd, got %s", i,
                         Py_TYPE(o)->tp_name);
            PyMem_Free(*out);
            *out = NULL;
            Py_DECREF(fast);
            return -1;
        }
        (*out)[i] = ((TensorObject *)o)->t;
    }
    Py_DECREF(fast);
    return 0;
}

/* backward's on_ready: calls the Python callable with (j, grad) (grad None when absent). */
static ty_status
grad_ready(void *ud, int j, ty_tensor *grad)
{
    if (grad) {
        ty_tensor_retain(grad);
    }
    PyObject *g = grad ? ty_py_wrap(grad) : Py_NewRef(Py_None);
    PyObject *res = g ? PyObject_CallFunction((PyObject *)ud, "iO", j, g) : NULL;
    Py_XDECREF(g);
    if (!res) {
        return ty_set_error(TY_ERR_INVALID_ARG, "backward: the gradient callback of target %d "
                            "raised", j);
    }
    Py_DECREF(res);
    return TY_OK;
}

static PyObject *
py_backward(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ys_o, *dys_o, *xs_o, *on_ready = Py_None;
    int retain = 0, create = 0;
    if (!PyArg_ParseTuple(args, "OOO|ppO", &ys_o, &dys_o, &xs_o, &retain, &create, &on_ready)) {
        return NULL;
    }
    if (on_ready != Py_None && !PyCallable_Check(on_ready)) {
        PyErr_SetString(PyExc_TypeError, "backward: on_ready must be callable or None");
        return NULL;
    }
    Py_ssize_t ny, ndy, nx;
    ty_tensor **ys = NULL, **dys = NULL, **xs = NULL, **grads = NULL;
    PyObject *res = NULL;
    if (as_tensor_list(ys_o, &ny, &ys, 0) < 0 || as_tensor_list(dys_o, &ndy, &dys, 1) < 0 ||
        as_tensor_list(xs_o, &nx, &xs, 0) < 0) {
        goto done;
    }
    if (ndy != ny) {
        PyErr_SetString(PyExc_ValueError, "backward: need one dy (or None) per y");
        goto done;
    }
    grads = PyMem_Calloc((size_t)(nx ? nx : 1), sizeof(ty_tensor *));
    if (!grads) {
        PyErr_NoMemory();
        goto done;
    }
    ty_status st = ty_backward_notify((int)ny, ys, dys, (int)nx, xs, grads, retain, create,
                                      on_ready == Py_None ? NULL : grad_ready, on_ready);
    if (st != TY_OK) {
        if (!PyErr_Occurred()) {
            ty_py_raise(st);
        }
        goto done;
    }
    res = PyList_New(nx);
    for (Py_ssize_t i = 0; i < nx; i++) {
        PyObject *g = grads[i] ? ty_py_wrap(grads[i]) : Py_NewRef(Py_None);
        grads[i] = NULL;
        if (!res || !g) {
            Py_XDECREF(g);
            Py_CLEAR(res);
            continue;
        }
        PyList_SET_ITEM(res, i, g);
    }
done:
    for (Py_ssize_t i = 0; grads && i < nx; i++) {
        ty_tensor_release(grads[i]);
    }
    PyMem_Free(ys);
    PyMem_Free(dys);
    PyMem_Free(xs);
    PyMem_Free(grads);
    return res;
}

static PyObject *
py_attach(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!ty_py_is_tensor(arg)) {
        PyErr_SetString(PyExc_TypeError, "attach expects a Tensor");
        return NULL;
    }
    ty_status st = ty_ad_attach(((TensorObject *)arg)->t);
    return st == TY_OK ? Py_NewRef(Py_None) : ty_py_raise(st);
}

static PyObject *
py_detach_ad(PyObject *self, PyObject *arg)
{
    (void)self;
    if (ty_py_is_tensor(arg)) {
        ty_ad_detach(((TensorObject *)arg)->t);
    }
    Py_RETURN_NONE;
}

static PyObject *
py_set_recording(PyObject *self, PyObject *arg)
{
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    ty_ad_set_recording(on);
    Py_RETURN_NONE;
}

static PyObject *
py_is_recording(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyBool_FromLong(ty_ad_recording());
}

static PyObject *
py_suspend(PyObject *self, PyObject *arg)
{
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    ty_ad_suspend(on);
    Py_RETURN_NONE;
}

/* (param, grad, buf or None, lr, weight_decay or None, momentum, nesterov) -> whether the
 * fused SGD kernel did the update (False: nothing written, the caller runs the ops). */
static PyObject *
py_sgd_fused(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[6];
    int nesterov;
    if (!PyArg_ParseTuple(args, "OOOOOOp", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &nesterov)) {
        return NULL;
    }
    ty_tensor *t[6] = {0};
    for (int i = 0; i < 6; i++) {
        if (o[i] == Py_None && (i == 2 || i == 4)) {
            continue;
        }
        if (!ty_py_is_tensor(o[i])) {
            PyErr_Format(PyExc_TypeError, "sgd_fused: argument %d must be a Tensor", i);
            return NULL;
        }
        t[i] = ((TensorObject *)o[i])->t;
    }
    int done = 0;
    ty_status st = ty_sgd_fused_update(t[0], t[1], t[2], t[3], t[4], t[5], nesterov, &done);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return PyBool_FromLong(done);
}

/* ---- custom autodiff.Function nodes: backward calls a Python callable ---- */
static ty_status
custom_grad(void *ctx, int nout, ty_tensor *const *gout, int nin, ty_tensor **gin)
{
    PyGILState_STATE gs = PyGILState_Ensure();
    ty_status st = TY_OK;
    PyObject *args = PyTuple_New(nout);
    for (int i = 0; args && i < nout; i++) {
        PyObject *g = Py_NewRef(Py_None);
        if (gout[i]) {
            ty_tensor_retain(gout[i]);
            Py_DECREF(g);
            g = ty_py_wrap(gout[i]);
        }
        if (!g) {
            Py_CLEAR(args);
            break;
        }
        PyTuple_SET_ITEM(args, i, g);
    }
    PyObject *res = args ? PyObject_Call((PyObject *)ctx, args, NULL) : NULL;
    Py_XDECREF(args);
    PyObject *fast = res ? PySequence_Fast(res, "backward must return a sequence") : NULL;
    if (!fast || PySequence_Fast_GET_SIZE(fast) != nin) {
        if (fast) {
            PyErr_Format(PyExc_ValueError, "Function.backward returned %zd gradients for %d inputs",
                         PySequence_Fast_GET_SIZE(fast), nin);
        }
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *s = ev ? PyObject_Str(ev) : NULL;
        st = ty_set_error(TY_ERR_INVALID_ARG, "custom Function backward failed: %s",
                          s ? PyUnicode_AsUTF8(s) : "unknown error");
        Py_XDECREF(s);
        Py_XDECREF(et);
        Py_XDECREF(ev);
        Py_XDECREF(tb);
    }
    for (int i = 0; st == TY_OK && i < nin; i++) {
        PyObject *g = PySequence_Fast_GET_ITEM(fast, i);
        gin[i] = NULL;
        if (ty_py_is_tensor(g)) {
            gin[i] = ((TensorObject *)g)->t;
            ty_tensor_retain(gin[i]);
        }
    }
    Py_XDECREF(fast);
    Py_XDECREF(res);
    PyGILState_Release(gs);
    return st;
}

static void
custom_free(void *ctx)
{
    PyGILState_STATE gs = PyGILState_Ensure();
    Py_XDECREF((PyObject *)ctx);
    PyGILState_Release(gs);
}

static PyObject *
py_custom_node(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ins_o, *outs_o, *fn;
    if (!PyArg_ParseTuple(args, "OOO", &ins_o, &outs_o, &fn)) {
        return NULL;
    }
    Py_ssize_t nin, nout;
    ty_tensor **ins = NULL, **outs = NULL;
    if (as_tensor_list(ins_o, &nin, &ins, 0) < 0) {
        return NULL;
    }
    if (as_tensor_list(outs_o, &nout, &outs, 0) < 0) {
        PyMem_Free(ins);
        return NULL;
    }
    Py_INCREF(fn);
    ty_status st = ty_ad_custom_node((int)nin, ins, (int)nout, outs, custom_grad, fn, custom_free);
    PyMem_Free(ins);
    PyMem_Free(outs);
    if (st != TY_OK) {
        Py_DECREF(fn);
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

/* ---- memory, threads, random ---- */
static PyObject *
py_mem_stats(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_mem_stats s;
    ty_mem_get_stats(&s);
    return Py_BuildValue("{s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "allocated", (long long)s.allocated,
                         "peak", (long long)s.peak, "cached", (long long)s.cached, "alloc_calls",
                         (long long)s.n_alloc_calls, "limit", (long long)s.limit, "requests",
                         (long long)s.n_requests, "peak_reserved",
                         (long long)s.peak_reserved);
}

static PyObject *
py_reset_peak(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_mem_reset_peak();
    Py_RETURN_NONE;
}

static PyObject *
py_empty_cache(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_mem_empty_cache();
    Py_RETURN_NONE;
}

static PyObject *
py_set_mem_limit(PyObject *self, PyObject *arg)
{
    (void)self;
    long long n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ty_status st = ty_mem_set_limit(n);
    return st == TY_OK ? Py_NewRef(Py_None) : ty_py_raise(st);
}

static PyObject *
py_set_num_threads(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ty_status st = ty_set_num_threads((int)n);
    return st == TY_OK ? Py_NewRef(Py_None) : ty_py_raise(st);
}

static PyObject *
py_get_num_threads(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyLong_FromLong(ty_get_num_threads());
}

/* The process default algorithm policy (config.benchmark_kernel, set_execution_strategy). */
static PyObject *
py_set_algo_policy(PyObject *self, PyObject *arg)
{
    (void)self;
    long p = PyLong_AsLong(arg);
    if (p == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ty_status st = ty_set_algo_policy((ty_algo_policy)p);
    return st == TY_OK ? Py_NewRef(Py_None) : ty_py_raise(st);
}

static PyObject *
py_get_algo_policy(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyLong_FromLong((long)ty_get_algo_policy());
}

/* Tests: a forced profiling verdict (None: time), the profile counter, forgetting choices. */
static PyObject *
py_fastrun_test_choice(PyObject *self, PyObject *arg)
{
    (void)self;
    const char *name = NULL;
    if (arg != Py_None && !(name = PyUnicode_AsUTF8(arg))) {
        return NULL;
    }
    ty_fastrun_set_test_choice(name);
    return Py_NewRef(Py_None);
}

static PyObject *
py_fastrun_profile_count(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyLong_FromLongLong((long long)ty_fastrun_profile_count());
}

static PyObject *
py_fastrun_forget(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    ty_fastrun_forget();
    return Py_NewRef(Py_None);
}

static PyObject *
py_seed(PyObject *self, PyObject *arg)
{
    (void)self;
    unsigned long long s = PyLong_AsUnsignedLongLongMask(arg);
    if (PyErr_Occurred()) {
        return NULL;
    }
    ty_random_seed(s);
    Py_RETURN_NONE;
}

static PyObject *
py_dtype_names(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    PyObject *l = PyList_New(TY_DTYPE_COUNT);
    for (int i = 0; l && i < TY_DTYPE_COUNT; i++) {
        PyList_SET_ITEM(l, i, PyUnicode_FromString(ty_dtype_name((ty_dtype)i)));
    }
    return l;
}

static PyMethodDef module_methods[] = {
    {"_set_converter", set_converter, METH_VARARGS, NULL},
    {"backward", py_backward, METH_VARARGS,
     "backward(ys, dys, xs, retain_graph=False, create_graph=False, on_ready=None) -> grads; "
     "on_ready(j, grad) is called once per target as soon as its gradient is final"},
    {"attach", py_attach, METH_O, "track a tensor as an autodiff leaf"},
    {"detach_ad", py_detach_ad, METH_O, "forget a tensor's autodiff state"},
    {"set_recording", py_set_recording, METH_O, "push (True) or pop (False) recording"},
    {"is_recording", py_is_recording, METH_NOARGS, NULL},
    {"sgd_fused", py_sgd_fused, METH_VARARGS, "fused SGD update in place; False: not done"},
    {"suspend", py_suspend, METH_O, "push (True) or pop (False) a thread-local no-grad scope"},
    {"custom_node", py_custom_node, METH_VARARGS, "custom_node(inputs, outputs, backward_fn)"},
    {"set_autocast", ty_py_set_autocast, METH_VARARGS,
     "set_autocast(low_code, high_code, low_ops, high_ops), or set_autocast(None) to stop"},
    {"mem_stats", py_mem_stats, METH_NOARGS, "allocator counters in bytes"},
    {"reset_peak", py_reset_peak, METH_NOARGS, NULL},
    {"empty_cache", py_empty_cache, METH_NOARGS, NULL},
    {"set_mem_limit", py_set_mem_limit, METH_O, "cap live + cached allocator bytes (0 removes the cap)"},
    {"set_num_threads", py_set_num_threads, METH_O, NULL},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, NULL},
    {"set_algo_policy", py_set_algo_policy, METH_O, "process default policy (1, 2, 4 or 6)"},
    {"get_algo_policy", py_get_algo_policy, METH_NOARGS, NULL},
    {"_fastrun_test_choice", py_fastrun_test_choice, METH_O, NULL},
    {"_fastrun_profile_count", py_fastrun_profile_count, METH_NOARGS, NULL},
    {"_fastrun_forget", py_fastrun_forget, METH_NOARGS, NULL},
    {"seed", py_seed, METH_O, "seed the global random generator"},
    {"dtype_names", py_dtype_names, METH_NOARGS, "dtype names by code"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_C", "Tianyuan's C core.", -1, module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void);

PyMODINIT_FUNC
PyInit__C(void)
{
    ty_status st = ty_init(); /* the tape and the tracer join the dispatcher */
    if (st != TY_OK) {
        PyErr_Format(PyExc_ImportError, "tianyuan: %s", ty_last_error());
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (!m) {
        return NULL;
    }
    ty_py_error_type = PyErr_NewExceptionWithDoc("tianyuan.TianyuanError",
                                                 "An internal or device error of Tianyuan.",
                                                 PyExc_RuntimeError, NULL);
    ty_py_trace_error_type = PyErr_NewExceptionWithDoc(
        "tianyuan.jit.TraceError", "A traced function diverged from its recording.",
        PyExc_RuntimeError, NULL);
    if (!ty_py_error_type || !ty_py_trace_error_type ||
        PyModule_AddObjectRef(m, "TianyuanError", ty_py_error_type) < 0 ||
        PyModule_AddObjectRef(m, "TraceError", ty_py_trace_error_type) < 0 ||
        ty_py_init_tensor_type(m) < 0 || ty_py_init_ops(m) < 0 || ty_py_init_dlpack(m) < 0 ||
        ty_py_init_trace(m) < 0 || ty_py_init_coverage(m) < 0 || ty_py_init_runtime(m) < 0 ||
        ty_py_init_dtr(m) < 0 || ty_py_init_dist(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
