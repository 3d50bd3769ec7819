/* A small open-addressing hash map from tensor pointers to value ids (the tracer's lookup). */
#ifndef TY_PTRMAP_H
#define TY_PTRMAP_H

#include "core/core.h"

typedef struct ty_ptrmap {
    const void **keys;
    int *vals;
    int64_t cap, n;
} ty_ptrmap;

int ty_ptrmap_get(const ty_ptrmap *m, const void *key, int *val);
ty_status ty_ptrmap_put(ty_ptrmap *m, const void *key, int val) TY_NODISCARD;
void ty_ptrmap_clear(ty_ptrmap *m);
void ty_ptrmap_free(ty_ptrmap *m);

#endif
