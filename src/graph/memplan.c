/* Two plans of one arena, the smaller kept: (1) a simulated allocation over the node
 * sequence: at each node its new buffers take the best fitting free block (or the block of an
 * input they may overwrite in place), then buffers read for the last time are freed and
 * merged with their neighbours; (2) blocks placed biggest first at the lowest offset clear of
 * those alive at the same time. Both share the same in-place links. The high-water mark is
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

/* The in-place decisions of the simulation: share[i] is the item whose block item i takes
 * over at its def (the input dies there, same aligned size), or -1. */
static void
inplace_links(int n, const ty_mp_item *items, const int *by_def, char *moved, int *share)
{
    for (int k = 0; k < n; k++) {
        int it = by_def[k], src = items[it].inplace_of;
        share[it] = -1;
        if (src >= 0 && !moved[src] && items[src].last == items[it].def &&
            align_up(items[src].size ? items[src].size : 1) ==
                align_up(items[it].size ? items[it].size : 1)) {
            share[it] = src;
            moved[src] = 1;
        }
    }
}

/* The first-fit simulation in node order: frees blocks as values die, so a long-lived small
 * value may land in the hole of a big one and split it (the arena then outgrows the live
 * bytes: the reference CNN's step planned 85 MB for 58 MB live). */
static ty_status
plan_in_order(int n, const ty_mp_item *items, const int *by_def, const int *by_last,
              const int *share, size_t *offsets, size_t *arena_size)
{
    freelist f = {0};
    ty_status st = TY_OK;
    int maxn = 0;
    for (int i = 0; i < n; i++) {
        maxn = items[i].last + 1 > maxn ? items[i].last + 1 : maxn;
    }
    char *moved = calloc((size_t)(n ? n : 1), 1);
    TY_CHECK(moved, TY_ERR_OOM, "memory plan: out of memory");
    int di = 0, li = 0;
    for (int node = 0; st == TY_OK && node < maxn; node++) {
        for (; di < n && items[by_def[di]].def == node; di++) {
            int it = by_def[di];
            if (share[it] >= 0) {
                offsets[it] = offsets[share[it]];
                moved[share[it]] = 1;
            } else {
                offsets[it] = take(&f, align_up(items[it].size ? items[it].size : 1));
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
    free(moved);
    return st;
}

/* A placed block, by offset in plan_by_size's scan: the fields it reads, side by side. */
typedef struct placed_block {
    size_t off, size;
    int def, last;
} placed_block;

static size_t
item_size(const ty_mp_item *it)
{
    return align_up(it->size ? it->size : 1);
}

typedef struct by_size_key {
    size_t size;
    int index;
} by_size_key;

static int
biggest_first(const void *a, const void *b)
{
    const by_size_key *x = a, *y = b;
    if (x->size != y->size) {
        return x->size < y->size ? 1 : -1;
    }
    return (x->index > y->index) - (x->index < y->index);
}

/* The lowest offset for a block of size alive over [def, last], clear of the placed blocks
 * (sorted by offset) alive at the same time. */
static size_t
lowest_clear(const placed_block *placed, int k, size_t size, int def, int last)
{
    size_t off = 0;
    for (int p = 0; p < k; p++) {
        const placed_block *q = &placed[p];
        if (q->def > last || def > q->last) {
            continue; /* never alive together */
        }
        if (off + size <= q->off) {
            break; /* fits below q, and the rest lie higher */
        }
        off = q->off + q->size > off ? q->off + q->size : off;
    }
    return off;
}

/* Greedy by size: an in-place chain is one block over its members' lifetimes; blocks go
 * biggest first at the lowest offset clear of every placed block alive at the same time. */
static ty_status
plan_by_size(int n, const ty_mp_item *items, const int *share,
             size_t *offsets, size_t *arena_size)
{
    size_t cnt = (size_t)(n ? n : 1);
    int *root = malloc(sizeof(int) * cnt);
    int *last = malloc(sizeof(int) * cnt);
    by_size_key *order = malloc(sizeof(by_size_key) * cnt);
    placed_block *placed = malloc(sizeof(placed_block) * cnt); /* by offset */
    if (!root || !last || !order || !placed) {
        free(root);
        free(last);
        free(order);
        free(placed);
        return ty_set_error(TY_ERR_OOM, "memory plan: out of memory");
    }
    for (int i = 0; i < n; i++) { /* a chain's root: the first block, whatever the ties */
        int r = i;
        for (int steps = 0; share[r] >= 0 && steps < n; steps++) {
            r = share[r];
        }
        root[i] = r;
        last[i] = items[i].last;
    }
    int nroots = 0;
    for (int i = 0; i < n; i++) {
        if (last[root[i]] < items[i].last) {
            last[root[i]] = items[i].last;
        }
    }
    for (int i = 0; i < n; i++) {
        if (root[i] == i) { /* biggest first, ties in index order */
            order[nroots++] = (by_size_key){item_size(&items[i]), i};
        }
    }
    qsort(order, (size_t)nroots, sizeof(by_size_key), biggest_first);
    size_t hwm = 0;
    for (int k = 0; k < nroots; k++) {
        int r = order[k].index;
        size_t size = order[k].size;
        size_t off = lowest_clear(placed, k, size, items[r].def, last[r]);
        offsets[r] = off;
        hwm = off + size > hwm ? off + size : hwm;
        int j = k;
        while (j > 0 && placed[j - 1].off > off) {
            j--;
        }
        memmove(&placed[j + 1], &placed[j], sizeof(placed_block) * (size_t)(k - j));
        placed[j] = (placed_block){off, size, items[r].def, last[r]};
    }
    for (int i = 0; i < n; i++) {
        offsets[i] = offsets[root[i]];
    }
    *arena_size = hwm;
    free(root);
    free(last);
    free(order);
    free(placed);
    return TY_OK;
}

/* Both plans honour the same in-place links; the smaller arena wins (the node-order one on
 * a tie, so plans that it already packs tightly stay as they were). */
ty_status
ty_memplan(int n, const ty_mp_item *items, size_t *offsets, size_t *arena_size)
{
    size_t cnt = (size_t)(n ? n : 1);
    int *by_def = malloc(sizeof(int) * cnt);
    int *by_last = malloc(sizeof(int) * cnt);
    int *share = malloc(sizeof(int) * cnt);
    char *moved = calloc(cnt, 1);
    int64_t *key = calloc(cnt, sizeof(int64_t));
    size_t *alt = malloc(sizeof(size_t) * cnt);
    ty_status st = (by_def && by_last && share && moved && key && alt)
                       ? TY_OK
                       : ty_set_error(TY_ERR_OOM, "memory plan: out of memory");
    if (st == TY_OK) {
        for (int i = 0; i < n; i++) {
            key[i] = (int64_t)items[i].def * (n + 1) + i;
        }
        sort_by(n, key, by_def);
        for (int i = 0; i < n; i++) {
            key[i] = (int64_t)items[i].last * (n + 1) + i;
        }
        sort_by(n, key, by_last);
        inplace_links(n, items, by_def, moved, share);
        st = plan_in_order(n, items, by_def, by_last, share, offsets, arena_size);
    }
    size_t alt_size = 0;
    if (st == TY_OK) {
        st = plan_by_size(n, items, share, alt, &alt_size);
    }
    if (st == TY_OK && alt_size < *arena_size) {
        memcpy(offsets, alt, sizeof(size_t) * (size_t)n);
        *arena_size = alt_size;
    }
    free(by_def);
    free(by_last);
    free(share);
    free(moved);
    free(key);
    free(alt);
    return st;
}
