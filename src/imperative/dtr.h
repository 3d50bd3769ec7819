/* DTR (dynamic tensor rematerialization): a dispatcher hook that records lineage, evicts under
 * pressure and recomputes on read. The public API is in include/tianyuan/dtr.h. */
#ifndef TY_DTR_H
#define TY_DTR_H

#include "ops/op.h"

/* Registers the DTR hook with the dispatcher (ty_init, after the tape and the tracer). */
ty_status ty_dtr_init(void) TY_NODISCARD;
/* Nonzero when DTR is off and tracks nothing: its hook would do nothing for a call (a fused
 * kernel that bypasses the dispatcher may run then). */
int ty_dtr_idle(void);

#endif
