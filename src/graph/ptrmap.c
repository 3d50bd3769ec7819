#include <stdlib.h>
#include <string.h>

#include "graph/ptrmap.h"

static uint64_t
hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
}

int
ty_ptrmap_get(const ty_ptrmap *m, const void *key, int *val)
{
    if (!m->cap) {
        return 0;
    }
    for (uint64_t i = hash_ptr(key) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->keys[i]) {
            return 0;
        }
        if (m->keys[i] == key) {
            *val = m->vals[i];
            return 1;
        }
    }
}

static ty_status
rehash(ty_ptrmap *m, int64_t cap)
{
    const void **keys = calloc((size_t)cap, sizeof(void *));
    int *vals = calloc((size_t)cap, sizeof(int));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return ty_set_error(TY_ERR_OOM, "trace: out of memory");
    }
    ty_ptrmap old = *m;
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->n = 0;
    for (int64_t i = 0; i < old.cap; i++) {
        if (old.keys[i]) {
            ty_status st = ty_ptrmap_put(m, old.keys[i], old.vals[i]);
            (void)st; /* cannot fail: the new table has room */
        }
    }
    free(old.keys);
    free(old.vals);
    return TY_OK;
}

ty_status
ty_ptrmap_put(ty_ptrmap *m, const void *key, int val)
{
    if ((m->n + 1) * 2 > m->cap) {
        TY_TRY(rehash(m, m->cap ? m->cap * 2 : 256));
    }
    for (uint64_t i = hash_ptr(key) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->keys[i] || m->keys[i] == key) {
            m->n += !m->keys[i];
            m->keys[i] = key;
            m->vals[i] = val;
            return TY_OK;
        }
    }
}

void
ty_ptrmap_clear(ty_ptrmap *m)
{
    if (m->cap) {
        memset(m->keys, 0, sizeof(void *) * (size_t)m->cap);
    }
    m->n = 0;
}

void
ty_ptrmap_free(ty_ptrmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}
