/* Pass statistics and the printed graph after passes: used by the bindings and tests. */
#ifndef TY_TRACE_PASSES_H
#define TY_TRACE_PASSES_H

#include "tianyuan/tianyuan.h"

typedef struct ty_trace_stats {
    int nodes;        /* recorded nodes */
    int executed;     /* nodes executed in the last call (fused members included) */
    int dead;         /* nodes skipped in the last call by dead-code elimination */
    int cse;          /* nodes computed by an earlier identical node */
    int folded;       /* nodes folded into constants when compiling */
    int fused_groups; /* elementwise groups (of two nodes or more) */
    int fused_nodes;  /* their members */
    int forwarded;    /* assigns whose source was computed in the destination (last call) */
    int64_t arena_bytes;
} ty_trace_stats;

ty_status ty_trace_get_stats(const ty_trace *tr, ty_trace_stats *out) TY_NODISCARD;
/* ty_trace_dump, or with after_passes the graph with dead, CSE'd, folded nodes and fused
 * groups marked. *out is freed with ty_free. */
ty_status ty_trace_dump_ex(const ty_trace *tr, int after_passes, char **out) TY_NODISCARD;
/* With TY_TRACE_DUMP=2 when compiled: the graph after each pass (borrowed; "" otherwise). */
const char *ty_trace_pass_log(const ty_trace *tr);

#endif
