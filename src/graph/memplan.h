/* Static memory planning: given buffers with lifetimes over a node sequence, assigns each an
 * offset in one arena so that buffers alive at the same time never overlap. */
#ifndef TY_MEMPLAN_H
#define TY_MEMPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "tianyuan/tianyuan.h"

typedef struct ty_mp_item {
    int def;        /* node that writes the buffer first */
    int last;       /* last node that reads it (>= def) */
    size_t size;    /* bytes */
    int inplace_of; /* an item this one may overwrite in place at node def, or -1 */
} ty_mp_item;

/* Fills offsets[i] (64-byte aligned) and *arena_size. Items may be in any order. */
ty_status ty_memplan(int n, const ty_mp_item *items, size_t *offsets,
                     size_t *arena_size) TY_NODISCARD;

#endif
