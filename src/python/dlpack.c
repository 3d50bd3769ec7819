/* DLPack interop (RELIABILITY.md E2): Tensor.__dlpack__ capsules and from_dlpack.
 *
 * Export: a capsule named "dltensor" (DLPack 0.x DLManagedTensor) or "dltensor_versioned"
 * (DLPack 1.x DLManagedTensorVersioned). The managed tensor holds a reference to the
 * ty_tensor, so the memory outlives the exporting Python object; its deleter drops that
 * reference and needs no GIL.
 * Import: the producer's capsule is wrapped without copying by ty_tensor_wrap, whose deleter
 * calls the producer's deleter when the last view of the storage dies; the capsule is then
 * renamed "used_..." as the protocol requires. Read-only producers are copied (Tianyuan
 * tensors are writable), unless the caller forbids copies.
 *
 * The structs follow the public DLPack specification (dlpack.h, ABI version 1). */
#include <string.h>

#include "bind.h"

/* ---- the DLPack ABI ---- */
enum {
    DL_CPU = 1,
    DL_INT = 0,
    DL_UINT = 1,
    DL_FLOAT = 2,
    DL_BFLOAT = 4,
    DL_BOOL = 6,
};
#define DL_FLAG_READ_ONLY ((uint64_t)1 << 0)
#define DL_FLAG_IS_COPIED ((uint64_t)1 << 1)
#define DL_MAJOR 1
#define DL_MINOR 0

typedef struct dl_device {
    int32_t device_type;
    int32_t device_id;
} dl_device;

typedef struct dl_dtype {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} dl_dtype;

typedef struct dl_tensor {
    void *data;
    dl_device device;
    int32_t ndim;
    dl_dtype dtype;
    int64_t *shape;
    int64_t *strides; /* in elements; NULL means compact row-major */
    uint64_t byte_offset;
} dl_tensor;

typedef struct dl_managed {
    dl_tensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct dl_managed *self);
} dl_managed;

typedef struct dl_version {
    uint32_t major;
    uint32_t minor;
} dl_version;

typedef struct dl_managed_v {
    dl_version version;
    void *manager_ctx;
    void (*deleter)(struct dl_managed_v *self);
    uint64_t flags;
    dl_tensor dl_tensor;
} dl_managed_v;

static const char NAME_LEGACY[] = "dltensor";
static const char NAME_VERSIONED[] = "dltensor_versioned";
static const char USED_LEGACY[] = "used_dltensor";
static const char USED_VERSIONED[] = "used_dltensor_versioned";

/* ---- dtype mapping ---- */
static const struct {
    ty_dtype dt;
    uint8_t code;
    uint8_t bits;
} dtype_map[] = {
    {TY_FLOAT32, DL_FLOAT, 32}, {TY_FLOAT64, DL_FLOAT, 64}, {TY_FLOAT16, DL_FLOAT, 16},
    {TY_BFLOAT16, DL_BFLOAT, 16}, {TY_INT8, DL_INT, 8},     {TY_UINT8, DL_UINT, 8},
    {TY_INT16, DL_INT, 16},       {TY_INT32, DL_INT, 32},   {TY_INT64, DL_INT, 64},
    {TY_BOOL, DL_BOOL, 8},
};
enum { NDTYPES = sizeof(dtype_map) / sizeof(dtype_map[0]) };

static int
dl_of_dtype(ty_dtype dt, dl_dtype *out)
{
    for (int i = 0; i < NDTYPES; i++) {
        if (dtype_map[i].dt == dt) {
            out->code = dtype_map[i].code;
            out->bits = dtype_map[i].bits;
            out->lanes = 1;
            return 0;
        }
    }
    return -1;
}

static int
dtype_of_dl(dl_dtype d, ty_dtype *out)
{
    for (int i = 0; i < NDTYPES && d.lanes == 1; i++) {
        if (dtype_map[i].code == d.code && dtype_map[i].bits == d.bits) {
            *out = dtype_map[i].dt;
            return 0;
        }
    }
    return -1;
}

/* ---- export ---- */
typedef struct export_ctx {
    ty_tensor *t; /* the reference the consumer holds */
    int64_t shape[TY_MAX_DIMS];
    int64_t strides[TY_MAX_DIMS];
} export_ctx;

typedef struct export_legacy {
    dl_managed m; /* first: the block is freed through &m */
    export_ctx c;
} export_legacy;

typedef struct export_versioned {
    dl_managed_v m;
    export_ctx c;
} export_versioned;

static void
delete_legacy(dl_managed *self)
{
    if (self) {
        export_legacy *e = self->manager_ctx;
        ty_tensor_release(e->c.t);
        PyMem_RawFree(e);
    }
}

static void
delete_versioned(dl_managed_v *self)
{
    if (self) {
        export_versioned *e = self->manager_ctx;
        ty_tensor_release(e->c.t);
        PyMem_RawFree(e);
    }
}

/* Frees a capsule nobody consumed (its name is still the unused one). */
static void
capsule_free_legacy(PyObject *cap)
{
    if (PyCapsule_IsValid(cap, NAME_LEGACY)) {
        dl_managed *m = PyCapsule_GetPointer(cap, NAME_LEGACY);
        if (m && m->deleter) {
            m->deleter(m);
        }
    }
}

static void
capsule_free_versioned(PyObject *cap)
{
    if (PyCapsule_IsValid(cap, NAME_VERSIONED)) {
        dl_managed_v *m = PyCapsule_GetPointer(cap, NAME_VERSIONED);
        if (m && m->deleter) {
            m->deleter(m);
        }
    }
}

static void
fill_dl_tensor(dl_tensor *d, export_ctx *c, dl_dtype dt)
{
    ty_tensor *t = c->t;
    int nd = ty_tensor_ndim(t);
    memcpy(c->shape, ty_tensor_shape(t), sizeof(int64_t) * (size_t)nd);
    memcpy(c->strides, ty_tensor_strides(t), sizeof(int64_t) * (size_t)nd);
    d->data = ty_tensor_data(t);
    d->device.device_type = DL_CPU;
    d->device.device_id = 0;
    d->ndim = nd;
    d->dtype = dt;
    d->shape = c->shape;
    d->strides = c->strides;
    d->byte_offset = 0;
}

/* _to_dlpack(tensor, versioned, copy) -> capsule */
static PyObject *
py_to_dlpack(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *obj;
    int versioned = 0, copy = 0;
    if (!PyArg_ParseTuple(args, "Opp", &obj, &versioned, &copy)) {
        return NULL;
    }
    if (!ty_py_is_tensor(obj)) {
        PyErr_Format(PyExc_TypeError, "__dlpack__: expected a Tensor, got %s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    ty_tensor *src = ((TensorObject *)obj)->t, *t = NULL;
    dl_dtype dt;
    if (dl_of_dtype(ty_tensor_dtype(src), &dt) < 0) {
        PyErr_Format(PyExc_BufferError, "__dlpack__: dtype %s has no DLPack equivalent",
                     ty_dtype_name(ty_tensor_dtype(src)));
        return NULL;
    }
    if (copy) {
        ty_status st = ty_apply(TY_OP_COPY, NULL, 1, &src, 1, &t);
        if (st != TY_OK) {
            return ty_py_raise(st);
        }
    } else {
        ty_tensor_retain(src);
        t = src;
    }
    if (!ty_py_data(t)) { /* the consumer reads the bytes later: bring them back and keep them */
        ty_tensor_release(t);
        return NULL;
    }
    PyObject *cap;
    if (versioned) {
        export_versioned *e = PyMem_RawCalloc(1, sizeof(*e));
        if (!e) {
            ty_tensor_release(t);
            return PyErr_NoMemory();
        }
        e->c.t = t;
        e->m.version.major = DL_MAJOR;
        e->m.version.minor = DL_MINOR;
        e->m.manager_ctx = e;
        e->m.deleter = delete_versioned;
        e->m.flags = copy ? DL_FLAG_IS_COPIED : 0;
        fill_dl_tensor(&e->m.dl_tensor, &e->c, dt);
        cap = PyCapsule_New(&e->m, NAME_VERSIONED, capsule_free_versioned);
        if (!cap) {
            delete_versioned(&e->m);
        }
    } else {
        export_legacy *e = PyMem_RawCalloc(1, sizeof(*e));
        if (!e) {
            ty_tensor_release(t);
            return PyErr_NoMemory();
        }
        e->c.t = t;
        e->m.manager_ctx = e;
        e->m.deleter = delete_legacy;
        fill_dl_tensor(&e->m.dl_tensor, &e->c, dt);
        cap = PyCapsule_New(&e->m, NAME_LEGACY, capsule_free_legacy);
        if (!cap) {
            delete_legacy(&e->m);
        }
    }
    return cap;
}

/* ---- import ---- */
static void
call_legacy_deleter(void *ctx)
{
    dl_managed *m = ctx;
    if (m->deleter) {
        m->deleter(m);
    }
}

static void
call_versioned_deleter(void *ctx)
{
    dl_managed_v *m = ctx;
    if (m->deleter) {
        m->deleter(m);
    }
}

static void
no_delete(void *ctx)
{
    (void)ctx;
}

/* Checks the producer's layout; fills the element strides as seen from the lowest address,
 * the flipped dims, the offset (elements) of element 0 from the lowest address and the byte
 * span. Returns -1 with a Python exception set. */
static int
check_layout(const dl_tensor *d, size_t es, int64_t *shape, int64_t *strides, int *flip,
             int64_t *lo_elems, size_t *nbytes)
{
    int64_t numel = 1;
    for (int i = 0; i < d->ndim; i++) {
        if (d->shape[i] < 0) {
            PyErr_Format(PyExc_ValueError, "from_dlpack: negative dimension %lld",
                         (long long)d->shape[i]);
            return -1;
        }
        shape[i] = d->shape[i];
        if (__builtin_mul_overflow(numel, shape[i], &numel) || numel > ((int64_t)1 << 56)) {
            PyErr_SetString(PyExc_ValueError, "from_dlpack: shape has too many elements");
            return -1;
        }
    }
    int64_t contig = 1;
    for (int i = d->ndim - 1; i >= 0; i--) { /* NULL strides: compact row-major */
        strides[i] = d->strides ? d->strides[i] : contig;
        contig *= shape[i] > 0 ? shape[i] : 1;
    }
    int64_t lo = 0, hi = 0;
    for (int i = 0; i < d->ndim; i++) {
        flip[i] = 0;
        if (numel == 0) {
            continue;
        }
        int64_t span;
        if (strides[i] == INT64_MIN || __builtin_mul_overflow(shape[i] - 1, strides[i], &span) ||
            __builtin_add_overflow(span < 0 ? lo : hi, span, span < 0 ? &lo : &hi)) {
            PyErr_SetString(PyExc_ValueError, "from_dlpack: strides overflow");
            return -1;
        }
        if (strides[i] < 0 && shape[i] > 1) {
            flip[i] = 1;
            strides[i] = -strides[i];
        }
    }
    if (numel == 0) {
        int64_t st = 1;
        for (int i = d->ndim - 1; i >= 0; i--) {
            strides[i] = st;
            st *= shape[i] > 0 ? shape[i] : 1;
        }
        *lo_elems = 0;
        *nbytes = 0;
        return 0;
    }
    int64_t bytes;
    if (__builtin_add_overflow(hi - lo, 1, &bytes) ||
        __builtin_mul_overflow(bytes, (int64_t)es, &bytes)) {
        PyErr_SetString(PyExc_ValueError, "from_dlpack: strides overflow");
        return -1;
    }
    *lo_elems = lo;
    *nbytes = (size_t)bytes;
    return 0;
}

/* The view of the wrapped buffer with the producer's (possibly negative) strides. */
static ty_status
unflip(ty_tensor *base, int nd, const int64_t *shape, const int *flip, ty_tensor **out)
{
    int any = 0;
    ty_p_slice p = {0};
    p.starts.n = p.stops.n = p.steps.n = nd;
    for (int i = 0; i < nd; i++) {
        any |= flip[i];
        p.starts.v[i] = flip[i] ? shape[i] - 1 : 0;
        p.stops.v[i] = flip[i] ? -1 : shape[i];
        p.steps.v[i] = flip[i] ? -1 : 1;
    }
    if (!any) {
        ty_tensor_retain(base);
        *out = base;
        return TY_OK;
    }
    return ty_apply(TY_OP_SLICE, &p, 1, &base, 1, out);
}

/* _from_dlpack(capsule, allow_copy) -> Tensor */
static PyObject *
py_from_dlpack(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cap;
    int allow_copy = 1;
    if (!PyArg_ParseTuple(args, "O|p", &cap, &allow_copy)) {
        return NULL;
    }
    int versioned;
    void *managed;
    const dl_tensor *d;
    uint64_t flags = 0;
    if (PyCapsule_IsValid(cap, NAME_VERSIONED)) {
        dl_managed_v *m = PyCapsule_GetPointer(cap, NAME_VERSIONED);
        if (!m) {
            return NULL;
        }
        if (m->version.major != DL_MAJOR) {
            PyErr_Format(PyExc_BufferError,
                         "from_dlpack: DLPack version %u.%u is not supported (need %d.x)",
                         (unsigned)m->version.major, (unsigned)m->version.minor, DL_MAJOR);
            return NULL;
        }
        versioned = 1;
        managed = m;
        d = &m->dl_tensor;
        flags = m->flags;
    } else if (PyCapsule_IsValid(cap, NAME_LEGACY)) {
        dl_managed *m = PyCapsule_GetPointer(cap, NAME_LEGACY);
        if (!m) {
            return NULL;
        }
        versioned = 0;
        managed = m;
        d = &m->dl_tensor;
    } else {
        PyErr_SetString(PyExc_ValueError,
                        "from_dlpack: expected an unused 'dltensor' or 'dltensor_versioned' "
                        "capsule");
        return NULL;
    }
    if (d->device.device_type != DL_CPU) {
        PyErr_Format(PyExc_BufferError,
                     "from_dlpack: device type %d is not supported (only CPU, type 1)",
                     (int)d->device.device_type);
        return NULL;
    }
    ty_dtype dt;
    if (dtype_of_dl(d->dtype, &dt) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "from_dlpack: unsupported DLPack dtype (code %d, %d bits, %d lanes)",
                     (int)d->dtype.code, (int)d->dtype.bits, (int)d->dtype.lanes);
        return NULL;
    }
    if (d->ndim < 0 || d->ndim > TY_MAX_DIMS || (d->ndim > 0 && !d->shape)) {
        PyErr_Format(PyExc_ValueError, "from_dlpack: %d dims is out of range [0, %d]",
                     (int)d->ndim, TY_MAX_DIMS);
        return NULL;
    }
    int nd = d->ndim, flip[TY_MAX_DIMS];
    int64_t shape[TY_MAX_DIMS], strides[TY_MAX_DIMS], lo = 0;
    size_t es = ty_dtype_size(dt), nbytes = 0;
    if (check_layout(d, es, shape, strides, flip, &lo, &nbytes) < 0) {
        return NULL;
    }
    if (nbytes > 0 && !d->data) {
        PyErr_SetString(PyExc_ValueError, "from_dlpack: NULL data pointer");
        return NULL;
    }
    int read_only = (flags & DL_FLAG_READ_ONLY) != 0;
    if (read_only && !allow_copy) {
        PyErr_SetString(PyExc_BufferError,
                        "from_dlpack: the producer's buffer is read-only and copy=False forbids "
                        "the copy a writable Tensor needs");
        return NULL;
    }
    char *base = d->data ? (char *)d->data + d->byte_offset + lo * (int64_t)es : NULL;
    void (*del)(void *) = read_only ? no_delete
                                    : (versioned ? call_versioned_deleter : call_legacy_deleter);
    ty_tensor *wrapped = NULL, *view = NULL, *res = NULL;
    /* The storage takes ownership of the managed tensor (unless it is copied below): mark
     * the capsule consumed first, and restore the name if wrapping fails so that the
     * capsule's destructor still frees it. */
    const char *unused = versioned ? NAME_VERSIONED : NAME_LEGACY;
    if (!read_only && PyCapsule_SetName(cap, versioned ? USED_VERSIONED : USED_LEGACY) < 0) {
        return NULL;
    }
    ty_status st = ty_tensor_wrap(dt, nd, shape, strides, base, nbytes, del, managed, &wrapped);
    if (st != TY_OK) {
        if (!read_only && PyCapsule_SetName(cap, unused) < 0) {
            PyErr_Clear();
        }
        return ty_py_raise(st);
    }
    st = unflip(wrapped, nd, shape, flip, &view);
    ty_tensor_release(wrapped);
    if (st == TY_OK && read_only) {
        st = ty_apply(TY_OP_COPY, NULL, 1, &view, 1, &res);
        ty_tensor_release(view);
    } else {
        res = view;
    }
    if (st != TY_OK) {
        return ty_py_raise(st);
    }
    return ty_py_wrap(res);
}

static PyMethodDef dlpack_methods[] = {
    {"_to_dlpack", py_to_dlpack, METH_VARARGS,
     "_to_dlpack(tensor, versioned, copy) -> a DLPack capsule"},
    {"_from_dlpack", py_from_dlpack, METH_VARARGS,
     "_from_dlpack(capsule, allow_copy=True) -> Tensor sharing the producer's memory"},
    {NULL, NULL, 0, NULL},
};

int ty_py_init_dlpack(PyObject *m);

int
ty_py_init_dlpack(PyObject *m)
{
    return PyModule_AddFunctions(m, dlpack_methods);
}
