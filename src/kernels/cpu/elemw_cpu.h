/* Elementwise CPU kernels generated from scalar.def, and the strided N-d iterator. */
#ifndef TY_ELEMW_CPU_H
#define TY_ELEMW_CPU_H

#include <stdint.h>

#include "tianyuan/tianyuan.h"

/* Inner loop over n elements: p[0] is the output, p[1..] the inputs; s[i] are strides in
 * elements of each operand; pv holds the op's float params (p0, p1). */
typedef void (*ty_elemw_loop)(int64_t n, char *const *p, const int64_t *s, const double *pv);

enum ty_elemw_kind {
    TY_EW_NONE = 0,
    TY_EW_UNARY,  /* x -> same dtype */
    TY_EW_BINARY, /* x, y -> same dtype */
    TY_EW_CMP,    /* x, y -> bool */
    TY_EW_LOGIC,  /* bool, bool -> bool */
    TY_EW_PRED,   /* x -> bool */
};
/* Which dtypes an op computes in (scalar.def's CLASS): every numeric one, floats (integer
 * inputs compute in float32), or integers only (no float loop: a float input is a dtype error). */
enum ty_elemw_class { TY_EWC_ANY = 0, TY_EWC_FLT = 1, TY_EWC_INT = 2 };

typedef struct ty_elemw_info {
    int8_t kind;
    int8_t cls;
    ty_elemw_loop loop[TY_DTYPE_COUNT]; /* by input (compute) dtype; NULL = unsupported */
} ty_elemw_info;

extern const ty_elemw_info ty_elemw_table[TY_OP_COUNT];

/* Runs loop over an N-d broadcast iteration space. strides[op][d] in elements (0 where
 * broadcast), esize[op] in bytes; op 0 is the output. Parallel over chunks fixed by the shape. */
void ty_cpu_iterate(int ndim, const int64_t *shape, int nops, char *const *data,
                    const int64_t (*strides)[TY_MAX_DIMS], const size_t *esize, ty_elemw_loop loop,
                    const double *pv);

/* Strided copy with dtype conversion (floats saturate into integers, NaN -> 0). */
ty_elemw_loop ty_cpu_convert_loop(ty_dtype from, ty_dtype to);

/* where(cond, x, y) for an element size of esize bytes. */
ty_elemw_loop ty_cpu_where_loop(size_t esize);

#endif
