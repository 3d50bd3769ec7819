/* libFuzzer target for the .tym reader and runtime: load a model from the input bytes, then
 * run it once on inputs of its declared shapes (ops infer their shapes as they run), then free
 * everything. Built by -DTY_FUZZ=ON with clang -fsanitize=fuzzer,address,undefined.
 *
 * The header's CRC and sizes are recomputed from the input first: otherwise almost every
 * mutation dies at the checksum and the graph reader is never reached. The header checks
 * themselves have crafted-file tests (tests/python/test_dump.py, test_tym_hostile.py). The
 * input tensors' bytes repeat the file's last bytes, so the fuzzer controls their values too
 * (NaN, huge floats, out-of-range indices). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tym.h"

enum {
    MAX_INPUT_ELEMS = 1 << 12, /* per input */
    MEM_LIMIT = 16 << 20, /* runtime allocations beyond fail with TY_ERR_OOM: a run stays fast */
};

/* Stores the file's real size, its data size and its CRC into the header. */
static void
fix_header(unsigned char *b, size_t n)
{
    if (n < TYM_HEADER) {
        return;
    }
    uint64_t data_offset = 0;
    for (int i = 7; i >= 0; i--) {
        data_offset = (data_offset << 8) | b[40 + i];
    }
    uint64_t size = n, data_size = data_offset <= size ? size - data_offset : 0;
    for (int i = 0; i < 8; i++) {
        b[16 + i] = (unsigned char)(size >> (8 * i));
        b[48 + i] = (unsigned char)(data_size >> (8 * i));
    }
    ty_tym_set_crc(b, n);
}

/* The input's shape with every variable dimension set to 1; 0 when it has too many elements. */
static int
concrete_shape(const ty_io_info *in, int64_t *shape, size_t *nbytes)
{
    uint64_t n = 1;
    for (int d = 0; d < in->ndim; d++) {
        shape[d] = in->shape[d] < 0 ? 1 : in->shape[d];
        if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n) || n > MAX_INPUT_ELEMS) {
            return 0;
        }
    }
    *nbytes = (size_t)n * ty_dtype_size(in->dtype);
    return 1;
}

/* Reads every byte of an output (ASan checks the view stays inside its storage). */
static void
read_output(const ty_tensor *y)
{
    size_t nbytes = (size_t)ty_tensor_numel(y) * ty_dtype_size(ty_tensor_dtype(y));
    void *buf = nbytes <= MEM_LIMIT ? malloc(nbytes ? nbytes : 1) : NULL;
    if (buf && ty_tensor_copy_to(y, buf, nbytes) != TY_OK) {
        memset(buf, 0, nbytes);
    }
    free(buf);
}

/* Fills buf with the last (up to 64) bytes of the file, repeated. */
static void
fill_values(unsigned char *buf, size_t n, const unsigned char *file, size_t size)
{
    size_t k = size < 64 ? size : 64;
    for (size_t i = 0; i < n; i++) {
        buf[i] = k ? file[size - k + i % k] : 0;
    }
}

/* Sets every input (values from the file) and runs once; skipped when an input is too big. */
static void
run_once(ty_model *m, const unsigned char *file, size_t size)
{
    static unsigned char values[MAX_INPUT_ELEMS * 16];
    ty_session *s = NULL;
    if (ty_session_new(m, &s) != TY_OK) {
        return;
    }
    int ok = ty_session_set_threads(s, 1) == TY_OK;
    for (int i = 0; ok && i < ty_model_num_inputs(m); i++) {
        ty_io_info in;
        int64_t shape[TY_MAX_DIMS];
        size_t nbytes = 0;
        ok = ty_model_input(m, i, &in) == TY_OK && concrete_shape(&in, shape, &nbytes) &&
             nbytes <= sizeof values;
        if (ok) {
            fill_values(values, nbytes, file, size);
            ok = ty_session_set_input(s, in.name, in.dtype, in.ndim, shape, values, nbytes) ==
                 TY_OK;
        }
    }
    if (ok && ty_session_run(s) == TY_OK) {
        for (int i = 0; i < ty_model_num_outputs(m); i++) {
            const ty_tensor *y = NULL;
            if (ty_session_output(s, i, &y) == TY_OK) {
                read_output(y);
            }
        }
    }
    ty_session_free(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (ty_mem_set_limit(MEM_LIMIT) != TY_OK || ty_set_num_threads(1) != TY_OK) {
        return 1;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, data, size);
    fix_header(copy, size);
    ty_model *m = NULL;
    if (ty_model_load_buffer(copy, size, 0, &m) == TY_OK) {
        for (int i = 0; i < ty_model_num_ops(m); i++) {
            (void)ty_model_op_type(m, i);
        }
        (void)ty_model_metadata(m);
        run_once(m, copy, size);
        ty_model_free(m);
    }
    free(copy);
    ty_mem_empty_cache(); /* cached blocks would hide use-after-free from ASan */
    return 0;
}
