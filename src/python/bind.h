/* Shared declarations of the tianyuan._C extension. */
#ifndef TY_BIND_H
#define TY_BIND_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tianyuan/tianyuan.h"

typedef struct {
    PyObject_HEAD
    ty_tensor *t;
    PyObject *grad;
    PyObject *dict;
    PyObject *weakrefs;
} TensorObject;

extern PyTypeObject TensorBase_Type;
/* The Python subclass (tianyuan.Tensor) that op results are created as. */
extern PyTypeObject *ty_py_tensor_type;
/* Python callable: (data, dtype_code or None) -> (contiguous ndarray, code of array, target code). */
extern PyObject *ty_py_converter;
extern PyObject *ty_py_error_type;

static inline int
ty_py_is_tensor(PyObject *o)
{
    return PyObject_TypeCheck(o, &TensorBase_Type);
}

/* Maps a ty_status to a Python exception carrying ty_last_error(); returns NULL. */
PyObject *ty_py_raise(ty_status st);
/* ty_tensor_data for a pointer that escapes to Python (data_ptr, DLPack): NULL with a Python
 * exception set when the data cannot be brought back. */
void *ty_py_data(ty_tensor *t);
/* Wraps a NEW reference (stolen) into a new tianyuan.Tensor; releases t on failure. */
PyObject *ty_py_wrap(ty_tensor *t);
/* Converts any Python object into a new ty_tensor reference (dtype_code < 0: inferred). */
ty_status ty_py_to_ty(PyObject *o, int dtype_code, ty_tensor **out);
/* Converts o into a tensor for an operation with a tensor of dtype `like` (weak scalars). */
ty_tensor *ty_py_operand(PyObject *o, ty_dtype like);
/* Runs op on tensors with the GIL released for large inputs; returns new Tensor objects. */
PyObject *ty_py_set_autocast(PyObject *self, PyObject *args);
PyObject *ty_py_apply(ty_op op, const void *params, int nin, ty_tensor *const *in, int nout);

int ty_py_init_tensor_type(PyObject *m);
int ty_py_init_ops(PyObject *m);
int ty_py_init_dlpack(PyObject *m);
int ty_py_init_trace(PyObject *m);
int ty_py_init_coverage(PyObject *m);
int ty_py_init_runtime(PyObject *m);
int ty_py_init_dtr(PyObject *m);
int ty_py_init_dist(PyObject *m);

#endif
