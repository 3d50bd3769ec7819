/* Op objects: tianyuan._C.ops[name](*tensors, **params), params parsed from the field table
 * of params.def, so every row of ops.def is callable from Python with no per-op code. */
#include "bind.h"

typedef struct {
    PyObject_HEAD
    ty_op op;
    vectorcallfunc vectorcall;
} OpObject;

/* Replaces the bare "int too big to convert" with one naming the op, the param and the value. */
static void
overflow_error(const char *op, const char *field, PyObject *value)
{
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_OverflowError, "%s: param '%s' value %R does not fit int64", op, field,
                     value);
    }
}

static int
parse_list(PyObject *v, ty_i64list *out, const char *op, const char *field)
{
    PyObject *seq = PySequence_Fast(v, "");
    if (!seq) {
        PyErr_Clear();
        if (PyLong_Check(v)) { /* a single int is a 1-element list */
            out->n = 1;
            out->v[0] = PyLong_AsLongLong(v);
            if (PyErr_Occurred()) {
                overflow_error(op, field, v);
                return -1;
            }
            return 0;
        }
        PyErr_Format(PyExc_TypeError, "%s: param '%s' must be a sequence of ints", op, field);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > TY_LIST_MAX) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%s: param '%s' has %zd entries (max %d)", op, field, n,
                     TY_LIST_MAX);
        return -1;
    }
    out->n = (int32_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyNumber_Index(PySequence_Fast_GET_ITEM(seq, i));
        if (!item) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_TypeError, "%s: param '%s' must hold ints", op, field);
            return -1;
        }
        out->v[i] = PyLong_AsLongLong(item);
        if (PyErr_Occurred()) {
            overflow_error(op, field, item);
            Py_DECREF(item);
            Py_DECREF(seq);
            return -1;
        }
        Py_DECREF(item);
    }
    Py_DECREF(seq);
    return 0;
}

static int
parse_field(const ty_field_desc *f, PyObject *v, char *dst, const char *op)
{
    if (f->kind == TY_FK_LIST) {
        return parse_list(v, (ty_i64list *)(dst + f->offset), op, f->name);
    }
    if (f->kind == TY_FK_F64) {
        double d = PyFloat_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "%s: param '%s' must be a number", op, f->name);
            return -1;
        }
        *(double *)(dst + f->offset) = d;
        return 0;
    }
    PyObject *idx = PyNumber_Index(v);
    if (!idx) {
        PyErr_Format(PyExc_TypeError, "%s: param '%s' must be an int", op, f->name);
        return -1;
    }
    long long x = PyLong_AsLongLong(idx);
    if (x == -1 && PyErr_Occurred()) {
        overflow_error(op, f->name, idx);
        Py_DECREF(idx);
        return -1;
    }
    Py_DECREF(idx);
    *(int64_t *)(dst + f->offset) = x;
    return 0;
}

/* Fills params from keyword arguments; unknown names are a TypeError. *nout may be set by
 * the reserved keyword '_nout' (ops with variadic outputs). */
static int
parse_params(ty_op op, PyObject *kwnames, PyObject *const *kwvals, char *params, int *nout)
{
    const ty_params_desc *d = ty_op_params(op);
    memcpy(params, d->defaults, d->size);
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nk; i++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
        if (!name) {
            return -1;
        }
        if (strcmp(name, "_nout") == 0) {
            *nout = (int)PyLong_AsLong(kwvals[i]);
            if (PyErr_Occurred()) {
                return -1;
            }
            continue;
        }
        int found = 0;
        for (int k = 0; k < d->nfields && !found; k++) {
            if (strcmp(d->fields[k].name, name) == 0) {
                found = 1;
                if (parse_field(&d->fields[k], kwvals[i], params, ty_op_name(op)) < 0) {
                    return -1;
                }
            }
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected parameter '%s'", ty_op_name(op),
                         name);
            return -1;
        }
    }
    return 0;
}

/* Re-raises the current exception with "<op>: " in front of its message. */
static void
prefix_py_error(const char *op)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *msg = value ? PyObject_Str(value) : NULL;
    if (msg) {
        PyErr_Format(type, "%s: %U", op, msg);
        Py_DECREF(msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    } else {
        PyErr_Restore(type, value, tb);
    }
}

/* ---- autocast (tianyuan.amp) ----
 * Each op may carry a rule: cast its floating inputs (float16, bfloat16, float32; float64 is
 * left alone) to the low-precision dtype (convolution, matmul) or to the high one
 * (reductions, softmax, transcendental functions). The rules are set from Python while an
 * autocast scope is active; when none is, the cost is one load and branch per op call. Only
 * calls through tianyuan._C.ops are cast (gradient rules call the dispatcher directly, so
 * gradients flow back through the casts in the dtypes of the forward pass). */
enum { AC_NONE, AC_LOW, AC_HIGH };
static int autocast_on;
static unsigned char autocast_rule[TY_OP_COUNT];
static ty_dtype autocast_dtype[3];

static int
autocast_castable(ty_dtype dt)
{
    return dt == TY_FLOAT16 || dt == TY_BFLOAT16 || dt == TY_FLOAT32;
}

/* Replaces in[i] by its cast per the op's rule; on failure sets the Python error. */
static int
autocast_inputs(ty_op op, ty_tensor **in, Py_ssize_t n)
{
    ty_dtype target = autocast_dtype[autocast_rule[op]];
    for (Py_ssize_t i = 0; i < n; i++) {
        ty_dtype dt = ty_tensor_dtype(in[i]);
        if (dt == target || !autocast_castable(dt)) {
            continue;
        }
        ty_p_astype p = {.dtype = target};
        ty_tensor *c = NULL;
        ty_status st = ty_apply(TY_OP_ASTYPE, &p, 1, &in[i], 1, &c);
        if (st != TY_OK) {
            ty_py_raise(st);
            return -1;
        }
        ty_tensor_release(in[i]);
        in[i] = c;
    }
    return 0;
}

/* _C.set_autocast(low_dtype_code, high_dtype_code, low_ops, high_ops) turns autocast on with
 * those rules; _C.set_autocast(None) turns it off. */
PyObject *
ty_py_set_autocast(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *low_ops = NULL, *high_ops = NULL, *low = NULL;
    int high = 0;
    if (!PyArg_ParseTuple(args, "O|iOO", &low, &high, &low_ops, &high_ops)) {
        return NULL;
    }
    if (low == Py_None) {
        autocast_on = 0;
        memset(autocast_rule, 0, sizeof autocast_rule);
        Py_RETURN_NONE;
    }
    long lowc = PyLong_AsLong(low);
    if (lowc == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!low_ops || !high_ops || !autocast_castable((ty_dtype)lowc) ||
        !autocast_castable((ty_dtype)high)) {
        PyErr_SetString(PyExc_ValueError, "set_autocast: expected (low dtype code, high dtype "
                                          "code, low ops, high ops) with float dtypes");
        return NULL;
    }
    unsigned char rule[TY_OP_COUNT] = {0};
    PyObject *lists[2] = {low_ops, high_ops};
    for (int k = 0; k < 2; k++) {
        PyObject *seq = PySequence_Fast(lists[k], "set_autocast: op names must be a sequence");
        if (!seq) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            const char *name = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
            ty_op op;
            if (!name || ty_op_from_name(name, &op) != TY_OK) {
                Py_DECREF(seq);
                if (name) {
                    PyErr_Format(PyExc_ValueError, "set_autocast: unknown op %s", name);
                }
                return NULL;
            }
            rule[op] = (unsigned char)(k == 0 ? AC_LOW : AC_HIGH);
        }
        Py_DECREF(seq);
    }
    memcpy(autocast_rule, rule, sizeof rule);
    autocast_dtype[AC_LOW] = (ty_dtype)lowc;
    autocast_dtype[AC_HIGH] = (ty_dtype)high;
    autocast_on = 1;
    Py_RETURN_NONE;
}

static PyObject *
op_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ty_op op = ((OpObject *)self)->op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    _Alignas(16) char params[1024];
    int nout = ty_op_nout(op) < 0 ? 1 : ty_op_nout(op);
    if (ty_op_params(op)->size > sizeof params) {
        PyErr_SetString(PyExc_SystemError, "params struct too large");
        return NULL;
    }
    if (parse_params(op, kwnames, args + nargs, params, &nout) < 0) {
        return NULL;
    }
    ty_tensor *small[8], **in = small;
    if (nargs > 8 && !(in = PyMem_Calloc((size_t)nargs, sizeof(ty_tensor *)))) {
        return PyErr_NoMemory();
    }
    /* Non-tensor arguments (Python scalars, arrays) become tensors; scalars are weakly typed
     * against the first tensor argument. */
    ty_dtype like = TY_FLOAT32;
    int have_like = 0;
    for (Py_ssize_t i = 0; i < nargs && !have_like; i++) {
        if (ty_py_is_tensor(args[i])) {
            like = ty_tensor_dtype(((TensorObject *)args[i])->t);
            have_like = 1;
        }
    }
    PyObject *res = NULL;
    Py_ssize_t got = 0;
    for (; got < nargs; got++) {
        if (have_like || ty_py_is_tensor(args[got])) {
            in[got] = ty_py_operand(args[got], like);
        } else {
            ty_tensor *t = NULL;
            in[got] = ty_py_to_ty(args[got], -1, &t) == TY_OK ? t : NULL;
            if (!in[got] && !PyErr_Occurred()) {
                ty_py_raise(TY_ERR_INVALID_ARG);
            }
        }
        if (!in[got]) {
            prefix_py_error(ty_op_name(op));
            goto done;
        }
    }
    if (autocast_on && autocast_rule[op] && autocast_inputs(op, in, nargs) < 0) {
        goto done;
    }
    res = ty_py_apply(op, params, (int)nargs, in, nout);
done:
    for (Py_ssize_t i = 0; i < got; i++) {
        ty_tensor_release(in[i]);
    }
    if (in != small) {
        PyMem_Free(in);
    }
    return res;
}

static PyObject *
op_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<tianyuan op %s>", ty_op_name(((OpObject *)self)->op));
}

static PyObject *
op_get_name(PyObject *self, void *c)
{
    (void)c;
    return PyUnicode_FromString(ty_op_name(((OpObject *)self)->op));
}

/* The Python facts of each row: its family, and from the row's TY_DOC (elementwise rows
 * always have one) the functional module that exposes it and the wrapper's docstring. */
typedef struct {
    const char *family, *home, *doc;
} py_row;

static const py_row py_rows[TY_OP_COUNT] = {
#define TY_OP(ENUM, name, fam, nin, nout, params, flags, infer, fwd, grad)                         \
    [TY_OP_##ENUM].family = #fam,
#define TY_DOC(ENUM, h, text) [TY_OP_##ENUM].home = #h, [TY_OP_##ENUM].doc = text,
#include "tianyuan/ops.def"
#undef TY_OP
#undef TY_DOC
};

static PyObject *
str_or_none(const char *s)
{
    return s ? PyUnicode_FromString(s) : Py_NewRef(Py_None);
}

static PyObject *
op_get_info(PyObject *self, void *c)
{
    (void)c;
    ty_op op = ((OpObject *)self)->op;
    const ty_params_desc *d = ty_op_params(op);
    PyObject *fields = PyList_New(d->nfields);
    static const char *kinds[] = {"int", "float", "list"};
    for (int i = 0; fields && i < d->nfields; i++) {
        PyList_SET_ITEM(fields, i,
                        Py_BuildValue("(ssd)", d->fields[i].name, kinds[d->fields[i].kind],
                                      d->fields[i].def));
    }
    if (!fields) {
        return NULL;
    }
    unsigned fl = ty_op_flags(op);
    const py_row *r = &py_rows[op];
    return Py_BuildValue("{s:i,s:i,s:I,s:s,s:N,s:i,s:s,s:N,s:N}", "nin", ty_op_nin(op), "nout",
                         ty_op_nout(op), "flags", fl, "params", d->name, "fields", fields, "id",
                         (int)op, "family", r->family, "home", str_or_none(r->home), "doc",
                         str_or_none(r->doc));
}

static PyGetSetDef op_getset[] = {
    {"name", op_get_name, NULL, "serialized op name", NULL},
    {"info", op_get_info, NULL,
     "the row's facts: nin, nout, flags, params, fields (name, kind, default), id, family, "
     "home (the functional module of its generated wrapper, or None) and doc",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Op_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tianyuan._C.Op",
    .tp_basicsize = sizeof(OpObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(OpObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = op_repr,
    .tp_getset = op_getset,
    .tp_doc = "A row of the op table, callable as op(*tensors, **params).",
};

int
ty_py_init_ops(PyObject *m)
{
    if (PyType_Ready(&Op_Type) < 0) {
        return -1;
    }
    PyObject *ops = PyDict_New();
    if (!ops) {
        return -1;
    }
    for (int i = 0; i < TY_OP_COUNT; i++) {
        OpObject *o = PyObject_New(OpObject, &Op_Type);
        if (!o) {
            Py_DECREF(ops);
            return -1;
        }
        o->op = (ty_op)i;
        o->vectorcall = op_vectorcall;
        int rc = PyDict_SetItemString(ops, ty_op_name((ty_op)i), (PyObject *)o);
        Py_DECREF(o);
        if (rc < 0) {
            Py_DECREF(ops);
            return -1;
        }
    }
    int rc = PyModule_AddObjectRef(m, "ops", ops);
    Py_DECREF(ops);
    return rc;
}
