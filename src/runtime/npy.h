/* NumPy's .npy files, strictly: header versions 1.0, 2.0 and 3.0; little-endian f4 f8 f2 i1 u1
 * i2 i4 i8 b1; C order only. The file is hostile input: the magic, header length, dict, dtype,
 * shape and data size are all checked before use, and any other file is a TY_ERR_FORMAT
 * naming what is wrong. Used by tianyuan-run for its --input and --output files. */
#ifndef TY_RUNTIME_NPY_H
#define TY_RUNTIME_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "tianyuan/tianyuan.h"

/* An array read from a .npy file; data is owned (free with ty_npy_free) and C-ordered. */
typedef struct ty_npy {
    ty_dtype dtype;
    int ndim;
    int64_t shape[TY_MAX_DIMS];
    void *data;
    size_t nbytes;
} ty_npy;

/* Parses a whole .npy file held in memory; the data is copied into out->data. */
ty_status ty_npy_parse(const void *buf, size_t len, ty_npy *out) TY_NODISCARD;
/* Reads and parses the file at path. */
ty_status ty_npy_read_file(const char *path, ty_npy *out) TY_NODISCARD;
/* Writes an array as a version 1.0 file (the header of 8 dimensions always fits). */
ty_status ty_npy_write_file(const char *path, ty_dtype dt, int ndim, const int64_t *shape,
                            const void *data, size_t nbytes) TY_NODISCARD;
/* Frees out->data and zeroes *out; NULL is a no-op. */
void ty_npy_free(ty_npy *arr);

#endif
