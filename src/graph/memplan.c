/* A simulated allocation over the node sequence: at each node its new buffers take the best
 * fitting free block (or the block of an input they may overwrite in place), then buffers
 * read for the last time are freed and merged with their neighbours. The high-water mark is
 * the arena size. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "graph/memplan.h"

enum { ALIGN = 64 };

typedef struct block {
    size_t off, size;
} block;

typedef struct freelist {
    block *b;
    int n, cap;
    size_t top; /* end of the used part of the arena */
    size_t hwm; /* the most it ever reached: the arena size */
} freelist;

static size_t
align_up(size_t x)
{
    return (x + ALIGN - 1) / ALIGN * ALIGN;
}

static size_t
take(freelist *f, size_t size)
{
    int best = -1;
    for (int i = 0; i < f->n; i++) {
        if (f->b[i].size >= size && (best < 0 || f->b[i].size < f->b[best].size)) {
            best = i;
        }
    }
    if (best < 0) {
        size_t off = f->top;
        f->top += size;
        f->hwm = f->top > f->hwm ? f->top : f->hwm;
        return off;
    }
    size_t off = f->b[best].off;
    f->b[best].off += size;
    f->b[best].size -= size;
    if (f->b[best].size == 0) {
        f->b[best] = f->b[--f->n];
    }
    return off;
}

static ty_status
give_back(freelist *f, size_t off, size_t size)
{
    for (int i = 0; i < f->n; i++) { /* merge with a neighbour */
        if (f->b[i].off + f->b[i].size == off) {
            f->b[i].size += size;
            return TY_OK;
        }
        if (off + size == f->b[i].off) {
            f->b[i].off = off;
            f->b[i].size += size;
            return TY_OK;
        }
    }
    if (off + size == f->top) {
        f->top = off;
        return TY_OK;
    }
    if (f->n == f->cap) {
        int cap = f->cap ? f->cap * 2 : 64;
        block *b = realloc(f->b, sizeof(block) * (size_t)cap);
        TY_CHECK(b, TY_ERR_OOM, "memory plan: out of memory");
        f->b = b;
        f->cap = cap;
    }
    f->b[f->n++] = (block){off, size};
    return TY_OK;
}

/* Item indices sorted by (key, index); insertion sort: plans have at most a few thousand. */
static void
sort_by(int n, const int64_t *key, int *idx)
{
    for (int i = 0; i < n; i++) {
        idx[i] = i;
    }
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i;
        while (j > 0 && key[idx[j - 1]] > key[v]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

ty_status
ty_memplan(int n, const ty_mp_item *items, size_t *offsets, size_t *arena_size)
{
    int *by_def = malloc(sizeof(int) * (size_t)(n ? n : 1));
    int *by_last = malloc(sizeof(int) * (size_t)(n ? n : 1));
    char *moved = calloc((size_t)(n ? n : 1), 1); /* block handed to an in-place successor */
    freelist f = {0};
    ty_status st = (by_def && by_last && moved) ? TY_OK
                                               : ty_set_error(TY_ERR_OOM, "memory plan: out of memory");
    int64_t *key = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (st == TY_OK && !key) {
        st = ty_set_error(TY_ERR_OOM, "memory plan: out of memory");
    }
    int maxn = 0;
    for (int i = 0; st == TY_OK && i < n; i++) {
        maxn = items[i].last + 1 > maxn ? items[i].last + 1 : maxn;
        key[i] = (int64_t)items[i].def * (n + 1) + i;
    }
    if (st == TY_OK) {
        sort_by(n, key, by_def);
        for (int i = 0; i < n; i++) {
            key[i] = (int64_t)items[i].last * (n + 1) + i;
        }
        sort_by(n, key, by_last);
    }
    free(key);
    int di = 0, li = 0;
    for (int node = 0; st == TY_OK && node < maxn; node++) {
        for (; di < n && items[by_def[di]].def == node; di++) {
            int it = by_def[di], src = items[it].inplace_of;
            size_t size = align_up(items[it].size ? items[it].size : 1);
            if (src >= 0 && !moved[src] && items[src].last == node &&
                align_up(items[src].size ? items[src].size : 1) == size) {
                offsets[it] = offsets[src];
                moved[src] = 1;
            } else {
                offsets[it] = take(&f, size);
            }
        }
        for (; st == TY_OK && li < n && items[by_last[li]].last == node; li++) {
            int it = by_last[li];
            if (!moved[it]) {
                st = give_back(&f, offsets[it], align_up(items[it].size ? items[it].size : 1));
            }
        }
    }
    *arena_size = f.hwm;
    free(f.b);
    free(by_def);
    free(by_last);
    free(moved);
    return st;
}
