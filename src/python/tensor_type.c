/* The Tensor base type: storage handle, metadata getters, arithmetic slots in C. */
#include "bind.h"
#include "tianyuan/dist.h"

PyTypeObject *ty_py_tensor_type = &TensorBase_Type;
PyObject *ty_py_converter = NULL;

PyObject *
ty_py_wrap(ty_tensor *t)
{
    PyTypeObject *tp = ty_py_tensor_type;
    TensorObject *o = (TensorObject *)tp->tp_alloc(tp, 0);
    if (!o) {
        ty_tensor_release(t);
        return NULL;
    }
    o->t = t;
    return (PyObject *)o;
}

static size_t
apply_gil_threshold(int nin, ty_tensor *const *in)
{
    size_t n = 0;
    for (int i = 0; i < nin; i++) {
        n += (size_t)ty_tensor_numel(in[i]);
    }
    return n;
}

PyObject *
ty_py_apply(ty_op op, const void *params, int nin, ty_tensor *const *in, int nout)
{
    ty_tensor *outs[TY_MAX_OUTPUTS];
    ty_status st;
    if (nout > TY_MAX_OUTPUTS) {
        PyErr_Format(PyExc_ValueError, "%s: %d outputs asked for, one call returns at most %d",
                     ty_op_name(op), nout, TY_MAX_OUTPUTS);
        return NULL;
    }
    if (apply_gil_threshold(nin, in) > 16384 || ty_op_is_collective(op)) {
        Py_BEGIN_ALLOW_THREADS
        st = ty_apply(op, params, nin, in, nout, outs);
        Py_END_ALLOW_THREADS
    } else {
        st = ty_apply(op, params, nin, in, nout, outs);
    }
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    if (nout == 1 && ty_op_nout(op) == 1) {
        return ty_py_wrap(outs[0]);
    }
    PyObject *tup = PyTuple_New(nout);
    if (!tup) {
        for (int i = 0; i < nout; i++) {
            ty_tensor_release(outs[i]);
        }
        return NULL;
    }
    for (int i = 0; i < nout; i++) {
        PyObject *w = ty_py_wrap(outs[i]);
        if (!w) {
            for (int j = i + 1; j < nout; j++) {
                ty_tensor_release(outs[j]);
            }
            Py_DECREF(tup);
            return NULL;
        }
        PyTuple_SET_ITEM(tup, i, w);
    }
    return tup;
}

/* ---- conversion of Python values ---- */
ty_status
ty_py_to_ty(PyObject *o, int dtype_code, ty_tensor **out)
{
    if (ty_py_is_tensor(o)) {
        ty_tensor *t = ((TensorObject *)o)->t;
        if (dtype_code < 0 || dtype_code == (int)ty_tensor_dtype(t)) {
            ty_tensor_retain(t);
            *out = t;
            return TY_OK;
        }
        ty_p_astype p = {.dtype = dtype_code};
        return ty_apply(TY_OP_ASTYPE, &p, 1, &t, 1, out);
    }
    if (!ty_py_converter) {
        PyErr_SetString(PyExc_RuntimeError, "tianyuan._C used before tianyuan was imported");
        return TY_ERR_INTERNAL;
    }
    PyObject *code = dtype_code < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(dtype_code);
    PyObject *res = code ? PyObject_CallFunctionObjArgs(ty_py_converter, o, code, NULL) : NULL;
    Py_XDECREF(code);
    if (!res) {
        return TY_ERR_INVALID_ARG; /* Python error set */
    }
    Py_buffer view;
    int have_code = -1, target = -1;
    PyObject *arr = NULL;
    if (!PyArg_ParseTuple(res, "Oii", &arr, &have_code, &target) ||
        PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        Py_DECREF(res);
        return TY_ERR_INVALID_ARG;
    }
    int64_t shape[TY_MAX_DIMS];
    ty_status st = TY_OK;
    if (view.ndim > TY_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "tensor: %d dims exceeds the maximum of %d", view.ndim,
                     TY_MAX_DIMS);
        st = TY_ERR_SHAPE;
    } else {
        for (int i = 0; i < view.ndim; i++) {
            shape[i] = view.shape[i];
        }
        ty_tensor *t = NULL;
        st = ty_tensor_from_data((ty_dtype)have_code, view.ndim, shape, view.buf,
                                 (size_t)view.len, &t);
        if (st == TY_OK && target != have_code) {
            ty_p_astype p = {.dtype = target};
            ty_tensor *c = NULL;
            st = ty_apply(TY_OP_ASTYPE, &p, 1, &t, 1, &c);
            ty_tensor_release(t);
            t = c;
        }
        if (st != TY_OK) {
            ty_py_raise(st);
        }
        *out = t;
    }
    PyBuffer_Release(&view);
    Py_DECREF(res);
    return st;
}

/* Whether integer v is representable in integer dtype dt (int64 always is: v came from a
 * long long). */
static int
int_fits(ty_dtype dt, long long v)
{
    switch (dt) {
    case TY_INT8: return v >= INT8_MIN && v <= INT8_MAX;
    case TY_UINT8: return v >= 0 && v <= UINT8_MAX;
    case TY_INT16: return v >= INT16_MIN && v <= INT16_MAX;
    case TY_INT32: return v >= INT32_MIN && v <= INT32_MAX;
    default: return 1;
    }
}

/* Python scalars are weakly typed: they take the tensor operand's dtype where they fit; an int
 * that does not fit an integer operand's dtype raises (as NumPy 2 does) instead of wrapping. */
ty_tensor *
ty_py_operand(PyObject *o, ty_dtype like)
{
    ty_tensor *t = NULL;
    ty_status st;
    if (ty_py_is_tensor(o)) {
        t = ((TensorObject *)o)->t;
        ty_tensor_retain(t);
        return t;
    }
    if (PyFloat_Check(o)) {
        ty_dtype dt = ty_dtype_is_float(like) ? like : TY_FLOAT32;
        st = ty_tensor_full(dt, 0, NULL, PyFloat_AS_DOUBLE(o), &t);
    } else if (PyBool_Check(o)) {
        st = ty_tensor_full(like, 0, NULL, o == Py_True, &t);
    } else if (PyLong_Check(o)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow) {
            PyErr_Format(PyExc_OverflowError, "Python int %R does not fit int64", o);
            return NULL;
        }
        ty_dtype dt = like == TY_BOOL ? TY_INT32 : like;
        if (!int_fits(dt, v)) {
            PyErr_Format(PyExc_OverflowError, "Python int %lld out of bounds for %s", v,
                         ty_dtype_name(dt));
            return NULL;
        }
        if (dt == TY_INT64) {
            st = ty_tensor_from_data(dt, 0, NULL, &(int64_t){(int64_t)v}, 8, &t);
        } else {
            st = ty_tensor_full(dt, 0, NULL, (double)v, &t);
        }
    } else {
        st = ty_py_to_ty(o, -1, &t);
        if (st != TY_OK) {
            if (!PyErr_Occurred()) {
                ty_py_raise(st);
            }
            return NULL;
        }
        return t;
    }
    if (st != TY_OK) {
        ty_py_raise(st);
        return NULL;
    }
    ty_trace_mark_literal(t); /* a Python number: baked into traces as a checked constant */
    return t;
}

/* ---- type slots ---- */
static PyObject *
tensor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "dtype", "device", "is_const", "no_cache", "name", "format",
                             NULL};
    PyObject *data = Py_None, *dtype = Py_None, *device = Py_None, *name = Py_None;
    PyObject *fmt = Py_None;
    int is_const = 0, no_cache = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOOppOO", kwlist, &data, &dtype, &device,
                                     &is_const, &no_cache, &name, &fmt)) {
        return NULL;
    }
    int code = -1;
    if (dtype != Py_None) {
        code = (int)PyLong_AsLong(dtype);
        if (code == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "Tensor: dtype must be resolved to a code");
            return NULL;
        }
    }
    ty_tensor *t = NULL;
    if (ty_py_is_tensor(data) && code < 0) {
        /* Tensor(t) shares t's storage (a new handle without autodiff state) */
        ty_tensor *src = ((TensorObject *)data)->t;
        ty_tensor *in[1] = {src};
        ty_p_shape p = {0};
        p.shape.n = ty_tensor_ndim(src);
        memcpy(p.shape.v, ty_tensor_shape(src), sizeof(int64_t) * (size_t)p.shape.n);
        ty_ad_suspend(1);
        ty_status st = ty_apply(TY_OP_RESHAPE, &p, 1, in, 1, &t);
        ty_ad_suspend(0);
        if (st != TY_OK) {
            return ty_py_raise(st);
        }
    } else if (ty_py_to_ty(data, code, &t) != TY_OK) {
        if (!PyErr_Occurred()) {
            return ty_py_raise(TY_ERR_INVALID_ARG);
        }
        return NULL;
    }
    TensorObject *o = (TensorObject *)type->tp_alloc(type, 0);
    if (!o) {
        ty_tensor_release(t);
        return NULL;
    }
    o->t = t;
    return (PyObject *)o;
}

static int
tensor_traverse(TensorObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->grad);
    Py_VISIT(self->dict);
    return 0;
}

static int
tensor_clear(TensorObject *self)
{
    Py_CLEAR(self->grad);
    Py_CLEAR(self->dict);
    return 0;
}

static void
tensor_dealloc(TensorObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    tensor_clear(self);
    ty_tensor_release(self->t);
    self->t = NULL;
    tp->tp_free((PyObject *)self); /* subtype_dealloc drops the heap type's reference */
}

static ty_tensor *
T(PyObject *o)
{
    return ((TensorObject *)o)->t;
}

static PyObject *
get_shape(PyObject *self, void *c)
{
    (void)c;
    int nd = ty_tensor_ndim(T(self));
    const int64_t *sh = ty_tensor_shape(T(self));
    PyObject *tup = PyTuple_New(nd);
    for (int i = 0; tup && i < nd; i++) {
        PyTuple_SET_ITEM(tup, i, PyLong_FromLongLong(sh[i]));
    }
    return tup;
}

static PyObject *
get_ndim(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong(ty_tensor_ndim(T(self)));
}

static PyObject *
get_size(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromLongLong(ty_tensor_numel(T(self)));
}

static PyObject *
get_dtype_code(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong((long)ty_tensor_dtype(T(self)));
}

static PyObject *
get_strides(PyObject *self, void *c)
{
    (void)c;
    int nd = ty_tensor_ndim(T(self));
    const int64_t *st = ty_tensor_strides(T(self));
    PyObject *tup = PyTuple_New(nd);
    for (int i = 0; tup && i < nd; i++) {
        PyTuple_SET_ITEM(tup, i, PyLong_FromLongLong(st[i]));
    }
    return tup;
}

static PyObject *
get_grad(PyObject *self, void *c)
{
    (void)c;
    PyObject *g = ((TensorObject *)self)->grad;
    return Py_NewRef(g ? g : Py_None);
}

static int
set_grad(PyObject *self, PyObject *value, void *c)
{
    (void)c;
    if (value && value != Py_None && !ty_py_is_tensor(value)) {
        PyErr_SetString(PyExc_TypeError, "grad must be a Tensor or None");
        return -1;
    }
    PyObject *old = ((TensorObject *)self)->grad;
    ((TensorObject *)self)->grad = (value && value != Py_None) ? Py_NewRef(value) : NULL;
    Py_XDECREF(old);
    return 0;
}

static PyObject *
get_tracked(PyObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(ty_ad_is_tracked(T(self)));
}

static PyObject *
get_data_ptr(PyObject *self, void *c)
{
    (void)c;
    void *p = ty_py_data(T(self));
    return p ? PyLong_FromVoidPtr(p) : NULL;
}

static PyObject *
get_device_name(PyObject *self, void *c)
{
    (void)c;
    return PyUnicode_FromString(ty_device_name(ty_tensor_device(T(self))));
}

static PyGetSetDef tensor_getset[] = {
    {"_device", get_device_name, NULL, "device type name (cpu, cuda, ...)", NULL},
    {"shape", get_shape, NULL, "the shape as a tuple of ints", NULL},
    {"ndim", get_ndim, NULL, "number of dimensions", NULL},
    {"size", get_size, NULL, "number of elements", NULL},
    {"_dtype_code", get_dtype_code, NULL, NULL, NULL},
    {"_strides", get_strides, NULL, "strides in elements", NULL},
    {"_data_ptr", get_data_ptr, NULL, NULL, NULL},
    {"_tracked", get_tracked, NULL, NULL, NULL},
    {"grad", get_grad, set_grad, "accumulated gradient (set by GradManager.backward)", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- methods ---- */
static PyObject *
m_bytes(PyObject *self, PyObject *noargs)
{
    (void)noargs;
    ty_tensor *t = T(self);
    size_t n = (size_t)ty_tensor_numel(t) * ty_dtype_size(ty_tensor_dtype(t));
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (!b) {
        return NULL;
    }
    ty_status st = ty_tensor_copy_to(t, PyBytes_AS_STRING(b), n);
    if (st != TY_OK) {
        Py_DECREF(b);
        return ty_py_raise(st);
    }
    return b;
}

static PyObject *
m_copy_into(PyObject *self, PyObject *arg)
{
    /* Writes this tensor's values (C order) into a writable contiguous buffer. */
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    ty_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ty_tensor_copy_to(T(self), view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
m_detach(PyObject *self, PyObject *noargs)
{
    (void)noargs;
    ty_tensor *t = T(self), *v = NULL;
    ty_p_shape p = {0};
    p.shape.n = ty_tensor_ndim(t);
    memcpy(p.shape.v, ty_tensor_shape(t), sizeof(int64_t) * (size_t)p.shape.n);
    ty_ad_suspend(1);
    ty_status st = ty_apply(TY_OP_RESHAPE, &p, 1, &t, 1, &v);
    ty_ad_suspend(0);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return ty_py_wrap(v);
}

static PyObject *
m_assign(PyObject *self, PyObject *arg)
{
    /* In-place: writes arg's values into this tensor's memory (shape must broadcast), through
     * the assign op so that traced steps record the update. */
    ty_tensor *src = ty_py_operand(arg, ty_tensor_dtype(T(self)));
    if (!src) {
        return NULL;
    }
    ty_tensor *in[2] = {T(self), src}, *res = NULL;
    ty_status st = ty_apply(TY_OP_ASSIGN, NULL, 2, in, 1, &res);
    ty_tensor_release(src);
    ty_tensor_release(res);
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    Py_RETURN_NONE;
}

static PyObject *
m_replace(PyObject *self, PyObject *arg)
{
    /* Rebinds this Python object to arg's tensor (used by setitem and set_value). */
    if (!ty_py_is_tensor(arg)) {
        PyErr_SetString(PyExc_TypeError, "_replace expects a Tensor");
        return NULL;
    }
    ty_tensor *old = T(self);
    ty_status st = ty_ad_rebind(old, T(arg));
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    ty_tensor_retain(T(arg));
    ((TensorObject *)self)->t = T(arg);
    if (old != T(arg)) {
        ty_trace_mark_replaced(old); /* a host-less trace holding it would read stale data */
    }
    ty_tensor_release(old);
    Py_RETURN_NONE;
}

static PyObject *
m_is_contiguous(PyObject *self, PyObject *noargs)
{
    (void)noargs;
    return PyBool_FromLong(ty_tensor_is_contiguous(T(self)));
}

static PyObject *
m_shares_memory(PyObject *self, PyObject *arg)
{
    if (!ty_py_is_tensor(arg)) {
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong(ty_tensor_same_storage(T(self), T(arg)));
}

static PyMethodDef tensor_methods[] = {
    {"_bytes", m_bytes, METH_NOARGS, "contiguous C-order bytes of the values"},
    {"_copy_into", m_copy_into, METH_O, NULL},
    {"detach", m_detach, METH_NOARGS, "a new tensor sharing memory, outside autodiff"},
    {"_assign", m_assign, METH_O, NULL},
    {"_replace", m_replace, METH_O, NULL},
    {"is_contiguous", m_is_contiguous, METH_NOARGS, NULL},
    {"_shares_memory", m_shares_memory, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---- number protocol ---- */
static PyObject *
binary(PyObject *a, PyObject *b, ty_op op)
{
    PyObject *tensor_side = ty_py_is_tensor(a) ? a : b;
    if (!ty_py_is_tensor(tensor_side)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    ty_dtype like = ty_tensor_dtype(T(tensor_side));
    ty_tensor *x = ty_py_operand(a, like);
    if (!x) {
        return NULL;
    }
    ty_tensor *y = ty_py_operand(b, like);
    if (!y) {
        ty_tensor_release(x);
        return NULL;
    }
    ty_tensor *in[2] = {x, y};
    PyObject *r = ty_py_apply(op, NULL, 2, in, 1);
    ty_tensor_release(x);
    ty_tensor_release(y);
    return r;
}

static PyObject *
unary(PyObject *a, ty_op op)
{
    ty_tensor *x = T(a);
    return ty_py_apply(op, NULL, 1, &x, 1);
}

#define BIN_SLOT(name, OP)                                                                         \
    static PyObject *nb_##name(PyObject *a, PyObject *b)                                           \
    {                                                                                              \
        return binary(a, b, TY_OP_##OP);                                                           \
    }
BIN_SLOT(add, ADD)
BIN_SLOT(sub, SUB)
BIN_SLOT(mul, MUL)
BIN_SLOT(truediv, DIV)
BIN_SLOT(floordiv, FLOOR_DIV)
BIN_SLOT(mod, MOD)

static PyObject *
nb_pow(PyObject *a, PyObject *b, PyObject *m)
{
    if (m != Py_None) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    return binary(a, b, TY_OP_POW);
}

static ty_op
logic_op(PyObject *a, PyObject *b, ty_op logical)
{
    (void)a;
    (void)b;
    return logical;
}

static PyObject *
nb_and(PyObject *a, PyObject *b)
{
    return binary(a, b, logic_op(a, b, TY_OP_LOGICAL_AND));
}

static PyObject *
nb_or(PyObject *a, PyObject *b)
{
    return binary(a, b, logic_op(a, b, TY_OP_LOGICAL_OR));
}

static PyObject *
nb_xor(PyObject *a, PyObject *b)
{
    return binary(a, b, logic_op(a, b, TY_OP_LOGICAL_XOR));
}

static PyObject *
nb_neg(PyObject *a)
{
    return unary(a, TY_OP_NEG);
}

static PyObject *
nb_abs(PyObject *a)
{
    return unary(a, TY_OP_ABS);
}

static PyObject *
nb_invert(PyObject *a)
{
    return unary(a, TY_OP_LOGICAL_NOT);
}

static PyObject *
nb_pos(PyObject *a)
{
    return Py_NewRef(a);
}

static int
scalar_value(PyObject *a, double *v)
{
    ty_status st = ty_tensor_item(T(a), v);
    if (st != TY_OK) {
        ty_py_raise(st);
        return -1;
    }
    return 0;
}

static int
nb_bool(PyObject *a)
{
    double v;
    if (scalar_value(a, &v) < 0) {
        return -1;
    }
    return v != 0;
}

static PyObject *
nb_float(PyObject *a)
{
    double v;
    if (scalar_value(a, &v) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(v);
}

static PyObject *
nb_int(PyObject *a)
{
    double v;
    ty_dtype dt = ty_tensor_dtype(T(a));
    if (dt == TY_INT64 && ty_tensor_numel(T(a)) == 1) {
        int64_t iv;
        ty_status st = ty_tensor_copy_to(T(a), &iv, 8);
        return st == TY_OK ? PyLong_FromLongLong(iv) : ty_py_raise(st);
    }
    if (scalar_value(a, &v) < 0) {
        return NULL;
    }
    return PyLong_FromDouble(v);
}

static PyObject *
nb_index(PyObject *a)
{
    if (ty_dtype_is_float(ty_tensor_dtype(T(a)))) {
        PyErr_SetString(PyExc_TypeError, "only integer tensors can be used as an index");
        return NULL;
    }
    return nb_int(a);
}

static PyNumberMethods tensor_as_number = {
    .nb_add = nb_add,
    .nb_subtract = nb_sub,
    .nb_multiply = nb_mul,
    .nb_remainder = nb_mod,
    .nb_power = nb_pow,
    .nb_negative = nb_neg,
    .nb_positive = nb_pos,
    .nb_absolute = nb_abs,
    .nb_bool = nb_bool,
    .nb_invert = nb_invert,
    .nb_and = nb_and,
    .nb_xor = nb_xor,
    .nb_or = nb_or,
    .nb_int = nb_int,
    .nb_float = nb_float,
    .nb_floor_divide = nb_floordiv,
    .nb_true_divide = nb_truediv,
    .nb_index = nb_index,
};

static PyObject *
tensor_richcompare(PyObject *a, PyObject *b, int opid)
{
    static const ty_op ops[] = {[Py_LT] = TY_OP_LT, [Py_LE] = TY_OP_LE, [Py_EQ] = TY_OP_EQ,
                                [Py_NE] = TY_OP_NE, [Py_GT] = TY_OP_GT, [Py_GE] = TY_OP_GE};
    if ((opid == Py_EQ || opid == Py_NE) && b == Py_None) {
        return PyBool_FromLong(opid == Py_NE);
    }
    return binary(a, b, ops[opid]);
}

static Py_hash_t
tensor_hash(PyObject *self)
{
    return (Py_hash_t)((uintptr_t)self >> 4);
}

static Py_ssize_t
tensor_len(PyObject *self)
{
    ty_tensor *t = T(self);
    if (ty_tensor_ndim(t) == 0) {
        PyErr_SetString(PyExc_TypeError, "len() of a 0-d tensor");
        return -1;
    }
    return (Py_ssize_t)ty_tensor_shape(t)[0];
}

static PyMappingMethods tensor_as_mapping = {.mp_length = tensor_len};

PyTypeObject TensorBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tianyuan._C.TensorBase",
    .tp_basicsize = sizeof(TensorObject),
    .tp_dealloc = (destructor)tensor_dealloc,
    .tp_as_number = &tensor_as_number,
    .tp_as_mapping = &tensor_as_mapping,
    .tp_hash = tensor_hash,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C tensor handle that tianyuan.Tensor extends.",
    .tp_traverse = (traverseproc)tensor_traverse,
    .tp_clear = (inquiry)tensor_clear,
    .tp_richcompare = tensor_richcompare,
    .tp_weaklistoffset = offsetof(TensorObject, weakrefs),
    .tp_methods = tensor_methods,
    .tp_getset = tensor_getset,
    .tp_dictoffset = offsetof(TensorObject, dict),
    .tp_new = tensor_new,
};

int
ty_py_init_tensor_type(PyObject *m)
{
    if (PyType_Ready(&TensorBase_Type) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(m, "TensorBase", (PyObject *)&TensorBase_Type);
}
