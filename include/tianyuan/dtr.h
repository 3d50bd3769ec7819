/* DTR, dynamic tensor rematerialization in eager mode (MegEngine's megengine.dtr).
 *
 * While enabled, every op output that can be recomputed remembers its lineage (op, params,
 * inputs). When the allocator's live bytes pass the eviction threshold, DTR frees the data of
 * the outputs with the lowest cost / (bytes x staleness) and recomputes it, with the same
 * kernels, when it is read again (by an op, a copy to the host, or backward). Tensors made from
 * host data, outputs of random ops, in-place destinations and pinned tensors are never
 * evicted. */
#ifndef TIANYUAN_DTR_H
#define TIANYUAN_DTR_H

#include "tianyuan/tianyuan.h"

typedef struct ty_dtr_config {
    int enabled;
    int64_t eviction_threshold;  /* live bytes above which DTR evicts (0: never on its own) */
    int64_t evictee_minimum_size; /* smaller outputs get no lineage: never evicted */
    int sqrt_sampling;            /* choose among sqrt(n) sampled candidates instead of all */
} ty_dtr_config;

typedef struct ty_dtr_stats {
    int64_t evictions;    /* tensors evicted (by pressure or _drop) */
    int64_t recomputes;   /* evicted tensors brought back */
    int64_t entries;      /* tensors with a lineage now */
    int64_t evicted_now;  /* of those, evicted now */
} ty_dtr_stats;

TY_API ty_status ty_dtr_set_config(const ty_dtr_config *cfg) TY_NODISCARD;
TY_API void ty_dtr_get_config(ty_dtr_config *out);
TY_API void ty_dtr_get_stats(ty_dtr_stats *out);
/* Never evicts t's storage from now on and forgets its lineage (parameters, optimizer state). */
TY_API ty_status ty_dtr_pin(ty_tensor *t) TY_NODISCARD;
/* Evicts t's storage now when DTR can recompute it; *dropped says whether it did. */
TY_API ty_status ty_dtr_drop(ty_tensor *t, int *dropped) TY_NODISCARD;
/* Whether t's storage is evicted now, and how many times DTR has evicted it. */
TY_API void ty_dtr_tensor_info(const ty_tensor *t, int *evicted, int64_t *times_evicted);

#endif
