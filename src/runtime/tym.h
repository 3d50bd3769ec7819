/* The .tym model: format constants (docs/tym-format.md) and the loaded model's structure,
 * shared by the reader, the writer and the sessions. Private to src/runtime. */
#ifndef TY_TYM_H
#define TY_TYM_H

#include <stdatomic.h>

#include "ops/fastrun.h"
#include "ops/op.h"
#include "tianyuan/runtime.h"

#define TYM_MAGIC "TYMODEL"          /* 8 bytes with its NUL */
enum {
    TYM_MAJOR = 1,
    TYM_MINOR = 0,
    TYM_HEADER = 64,
    TYM_ALIGN = 64,
    TYM_NAME_MAX = 4096,
    TYM_META_MAX = 16 << 20,
    TYM_MAX_OUT = TY_MAX_OUTPUTS,
};
enum { TYM_P_INT = 0, TYM_P_FLOAT = 1, TYM_P_LIST = 2, TYM_P_DTYPE = 3 };
/* The optional pseudo-param holding the algorithm an op ran with (fastrun; integer kind). */
#define TYM_ALGO_FIELD "@algo"

uint32_t ty_tym_crc32(uint32_t crc, const void *data, size_t n);
/* Whether a params field holds a dtype (serialized by name). */
int ty_tym_field_is_dtype(const ty_field_desc *f);

/* The memory a model's bytes live in: freed when the model and every weight storage
 * (which may outlive the model as a returned view) are gone. */
typedef struct tym_region {
    _Atomic int refs;
    void *base;
    size_t size;
    int kind; /* 0 borrowed, 1 malloc'd, 2 mmapped */
} tym_region;

typedef struct tym_io {
    char *name;
    ty_dtype dtype;
    int ndim;
    int64_t shape[TY_MAX_DIMS];
    int vid; /* outputs: the value returned */
} tym_io;

typedef struct tym_op {
    ty_op op;
    char *name;
    void *params;
    int nin, nout;
    int *in;       /* value ids */
    int first_out; /* value id of output 0; the others follow */
    int algo1;     /* the recorded fastrun algorithm + 1 (0: none, the session's policy) */
} tym_op;

struct ty_model {
    _Atomic int refs; /* the caller's handle and each session */
    tym_region *region;
    char *metadata;
    int ninputs, nweights, nops, noutputs, nvalues;
    tym_io *inputs, *outputs;
    ty_tensor **weights;
    char **weight_names; /* per weight: its name as dumped ("" unless keep_param_name) */
    tym_op *ops;
    int *last_use; /* per value: the last op that reads it, nops for outputs, -1 unread */
    int64_t weight_bytes;
};

/* Batch analysis of a recording (tym_batch.c): per value, 0 when independent of the batch,
 * m > 0 when dimension 0 is batch x m item by item, -1 unknown. Returns whether the nodes in
 * need_n take any batch size (no needed value unknown). */
int ty_tym_batch_lead(const ty_trace *tr, const char *need_n, int64_t *lead);
/* A reshape of a value with lead m into out: the output's lead when whole items map to whole
 * rows (the reshape may then be written as (-1, rest)), else -1. */
int64_t ty_tym_reshape_lead(const ty_meta *in, int64_t m, const ty_meta *out);
/* Whether a slice of in takes every item along dimension 0 (its stop may then be written as
 * INT64_MAX, "to the end"). */
int ty_tym_slice_keeps_items(const ty_meta *in, const ty_p_slice *p);

/* Stores the CRC of a whole model file into its header. */
void ty_tym_set_crc(unsigned char *file, size_t n);

/* A freshly written model whose batch dimensions are marked variable: the probe runs it at
 * another batch size and, when the graph cannot take it (a weight sized like the batch, say),
 * marks those dimensions fixed again. */
typedef struct tym_probe {
    unsigned char *file;
    size_t nbytes;
    int nin;
    const size_t *in_pos;   /* per input: file position of its dims */
    const int64_t *batch;   /* per input: dimension 0 as traced where it varies, else -1 */
    int nout;
    const size_t *out_pos;  /* per output: file position of its dims */
    const int64_t *out_dim; /* per output: dimension 0 as traced where it varies, else -1 */
} tym_probe;
ty_status ty_tym_probe_batch(const tym_probe *p) TY_NODISCARD;

/* Parses the bytes of region into a new model (taking the caller's region reference). */
ty_status ty_tym_parse(tym_region *region, ty_model **out) TY_NODISCARD;
void ty_tym_region_unref(tym_region *r);
void ty_model_unref(ty_model *m);

#endif
