/* Escape analysis and the memory plan of a call (cached while the same values escape, live
 * and fuse), then the run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/memplan.h"
#include "graph/trace_impl.h"
#include "ops/op.h"

/* A planned buffer: a compute node's output whose tensors nobody outside holds. */
static int
is_candidate(const ty_trace *tr, int vid)
{
    return tr->root[vid] == vid && tr->v[vid].kind == V_NODE && tr->bound[vid] &&
           tr->bound[vid]->storage->deferred && !tr->bound[vid]->storage->data;
}

/* Marks roots whose memory is referenced from outside the trace (returned, stored in Python
 * objects): those get memory of their own; forced[] marks the outputs of a host-less run. */
static ty_status
escaping_roots(ty_trace *tr, const char *forced, char *escapes)
{
    /* internal[r]: tensors of the trace on root r's memory; a tensor referenced by more
     * than the trace, or memory referenced by more tensors, is seen from outside */
    int *internal = calloc((size_t)(tr->nv ? tr->nv : 1), sizeof(int));
    TY_CHECK(internal, TY_ERR_OOM, "trace: out of memory");
    for (int v = 0; v < tr->nv; v++) {
        if (tr->bound[v]) {
            internal[tr->root[v]]++;
            if (atomic_load(&tr->bound[v]->refcnt) > 1) {
                escapes[tr->root[v]] = 1;
            }
        }
    }
    for (int v = 0; v < tr->nv; v++) {
        if (forced && forced[v]) {
            escapes[v] = 1;
        } else if (is_candidate(tr, v)) {
            escapes[v] |= atomic_load(&tr->bound[v]->storage->refcnt) > internal[v];
        }
    }
    free(internal);
    return TY_OK;
}

/* The plan depends on what escapes, what is live and which groups fuse in this call. */
static size_t
key_size(const ty_trace *tr)
{
    return (size_t)tr->nv + 2 * (size_t)tr->nn + (size_t)tr->ngroups + 1;
}

static void
make_key(const ty_trace *tr, const char *esc, char *key)
{
    memcpy(key, esc, (size_t)tr->nv);
    memcpy(key + tr->nv, tr->live, (size_t)tr->nn);
    memcpy(key + tr->nv + tr->nn, tr->gon, (size_t)tr->ngroups);
    memcpy(key + tr->nv + tr->nn + tr->ngroups, tr->fwd_on, (size_t)tr->nn);
    key[tr->nv + 2 * tr->nn + tr->ngroups] = 0;
}

/* Places the planned values of this call in the arena; true when a cached plan applied. */
static int
apply_cached_plan(ty_trace *tr, const char *key)
{
    if (!tr->plan_key || memcmp(tr->plan_key, key, key_size(tr)) != 0) {
        return 0;
    }
    for (int v = 0; v < tr->nv; v++) {
        if (tr->plan_off[v] != SIZE_MAX && is_candidate(tr, v)) {
            ty_storage *sto = tr->bound[v]->storage;
            sto->data = (char *)tr->arena + tr->plan_off[v];
            sto->deleter = ty_noop_deleter;
        }
    }
    return 1;
}

static void
cache_plan(ty_trace *tr, const char *key, int nitems, const int *vid_of, const size_t *off)
{
    free(tr->plan_key);
    free(tr->plan_off);
    tr->plan_key = malloc(key_size(tr));
    tr->plan_off = malloc(sizeof(size_t) * (size_t)(tr->nv ? tr->nv : 1));
    if (!tr->plan_key || !tr->plan_off) {
        free(tr->plan_key);
        free(tr->plan_off);
        tr->plan_key = NULL;
        tr->plan_off = NULL;
        return; /* no cache: the next call plans again */
    }
    memcpy(tr->plan_key, key, key_size(tr));
    for (int v = 0; v < tr->nv; v++) {
        tr->plan_off[v] = SIZE_MAX;
    }
    for (int i = 0; i < nitems; i++) {
        tr->plan_off[vid_of[i]] = off[i];
    }
}

/* Whether candidate v needs no memory this call: its node is dead, or it stays in a fused
 * group's scratch block. */
static int
unplanned(const ty_trace *tr, int v)
{
    return tr->scratch[v] || !tr->live[tr->v[v].index];
}

/* Whether outside value x may be overwritten by member `self`'s output: read as itself
 * only, and only by members up to self (each block reads it before self writes that block). */
static int
group_inplace_ok(const ty_trace *tr, const gnode *n, int x)
{
    const gfuse *g = &tr->groups[n->group];
    int self = (int)(n - tr->n);
    int64_t k = 1;
    /* a head convolution's output counts as outside: its tiles are final when members read them */
    if (tr->root[x] != x || tr->v[x].kind != V_NODE ||
        (tr->n[tr->v[x].index].group == n->group && tr->v[x].index != g->head) ||
        tr->v[x].meta.dtype != tr->v[n->out[0]].meta.dtype) {
        return 0;
    }
    for (int d = 0; d < tr->v[x].meta.ndim; d++) {
        k *= tr->v[x].meta.shape[d];
    }
    for (int mi = g->first; k == g->numel && mi <= g->last; mi++) {
        const gnode *m = &tr->n[mi];
        for (int j = 0; tr->live[mi] && m->group == n->group && j < m->nin; j++) {
            /* a head convolution reads x all along the group, not block by block */
            if (tr->root[m->in[j]] == x && (m->in[j] != x || mi > self || mi == g->head)) {
                return 0;
            }
        }
    }
    return k == g->numel;
}

static int
group_inplace_src(const ty_trace *tr, const gnode *n)
{
    const gfuse *g = &tr->groups[n->group];
    if (g->head == (int)(n - tr->n)) {
        return -1; /* a convolution never overwrites what it reads */
    }
    for (int mi = g->first; mi <= (int)(n - tr->n); mi++) {
        const gnode *m = &tr->n[mi];
        for (int j = 0; tr->live[mi] && m->group == n->group && j < m->nin; j++) {
            if (group_inplace_ok(tr, n, m->in[j])) {
                return m->in[j];
            }
        }
    }
    return -1;
}

/* A fused group runs block by block: what it reads or writes stays alive over the whole
 * group, so no buffer of the group shares memory with another at a different offset. */
static void
group_lifetimes(const ty_trace *tr, const gnode *n, const int *item_of, ty_mp_item *items)
{
    const gfuse *g = &tr->groups[n->group];
    for (int i = 0; i < n->nin; i++) {
        int it = item_of[tr->root[n->in[i]]];
        if (it >= 0 && items[it].last < g->last) {
            items[it].last = g->last;
        }
    }
    int it = item_of[n->out[0]];
    if (it >= 0) {
        items[it].def = g->first;
        items[it].last = items[it].last < g->last ? g->last : items[it].last;
        int x = group_inplace_src(tr, n);
        if (x >= 0 && item_of[x] >= 0 && items[item_of[x]].size == items[it].size) {
            items[it].def = g->last; /* takes x's block when x dies at the group */
            items[it].inplace_of = item_of[x];
        }
    }
}

/* In place over input 0 only when no other input reads that memory through another view
 * (x * x[::-1] would read elements already overwritten). */
static int
inplace_safe(const ty_trace *tr, const gnode *n)
{
    if (!(ty_op_defs[n->op].flags & TY_F_INPLACE) || n->nin < 1 ||
        tr->root[n->in[0]] != n->in[0]) {
        return 0;
    }
    for (int i = 1; i < n->nin; i++) {
        if (tr->root[n->in[i]] == n->in[0] && n->in[i] != n->in[0]) {
            return 0;
        }
    }
    return 1;
}

static void
item_lifetimes(const ty_trace *tr, const int *item_of, ty_mp_item *items)
{
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->state != NS_EXEC || !tr->live[ni]) {
            continue; /* runs nothing, reads nothing */
        }
        if (n->group >= 0 && tr->gon[n->group]) {
            group_lifetimes(tr, n, item_of, items);
            continue;
        }
        for (int i = 0; i < n->nin; i++) {
            int it = item_of[tr->root[n->in[i]]];
            if (it >= 0 && items[it].last < ni) {
                items[it].last = ni;
            }
        }
        /* an elementwise op may overwrite its input when that input dies here */
        int it_out = n->nout == 1 && !n->alias ? item_of[n->out[0]] : -1;
        int it_in = n->nin >= 1 ? item_of[tr->root[n->in[0]]] : -1;
        if (it_out >= 0 && it_in >= 0 && items[it_in].size == items[it_out].size &&
            inplace_safe(tr, n)) {
            items[it_out].inplace_of = it_in; /* same bytes: no broadcast into a larger out */
        }
    }
}

static ty_status
grow_arena(ty_trace *tr, size_t size)
{
    if (size <= tr->arena_size) {
        return TY_OK;
    }
    ty_mem_free(tr->arena, tr->arena_size);
    tr->arena = NULL;
    tr->arena_size = 0;
    if (tr->arena_allocs == 0) {
        /* The recording ran eagerly, its values freed into the allocator's cache; the plan
         * serves every later call, so they would stay resident beside the arena (CIFAR
         * ResNet-18 training, batch 32: 1100 MB resident, given back 373 MB; eager 443). */
        ty_mem_empty_cache();
    }
    TY_TRY(ty_mem_alloc(size, &tr->arena));
    tr->arena_size = size;
    tr->arena_allocs++;
    return TY_OK;
}

static ty_status
plan_memory(ty_trace *tr, const char *esc)
{
    int nv = tr->nv, nitems = 0;
    char *key = malloc(key_size(tr));
    int *item_of = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    ty_mp_item *items = malloc(sizeof(ty_mp_item) * (size_t)(nv ? nv : 1));
    int *vid_of = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
    size_t *off = malloc(sizeof(size_t) * (size_t)(nv ? nv : 1));
    ty_status st = (key && item_of && items && vid_of && off)
                       ? TY_OK
                       : ty_set_error(TY_ERR_OOM, "trace: out of memory");
    if (st == TY_OK) {
        make_key(tr, esc, key);
    }
    int cached = st == TY_OK && apply_cached_plan(tr, key);
    for (int v = 0; st == TY_OK && !cached && v < nv; v++) {
        item_of[v] = -1;
        if (is_candidate(tr, v) && !esc[v] && !unplanned(tr, v) && !tr->fwd_val[v]) {
            int def = tr->v[v].index;
            items[nitems] = (ty_mp_item){def, def, tr->bound[v]->storage->nbytes, -1};
            vid_of[nitems] = v;
            item_of[v] = nitems++;
        }
    }
    size_t size = 0;
    if (st == TY_OK && !cached) {
        item_lifetimes(tr, item_of, items);
        st = ty_memplan(nitems, items, off, &size);
    }
    if (st == TY_OK) {
        st = grow_arena(tr, size);
    }
    for (int i = 0; st == TY_OK && !cached && i < nitems; i++) {
        ty_storage *sto = tr->bound[vid_of[i]]->storage;
        sto->data = (char *)tr->arena + off[i];
        sto->deleter = ty_noop_deleter; /* the trace owns the arena */
    }
    if (st == TY_OK && !cached) {
        cache_plan(tr, key, nitems, vid_of, off);
    }
    free(key);
    free(item_of);
    free(items);
    free(vid_of);
    free(off);
    return st;
}

/* Executes the bound program: escape analysis, dead code, fusion, memory plan, run. */
ty_status
ty_trace_execute(ty_trace *tr, const char *forced)
{
    char *esc = calloc((size_t)(tr->nv ? tr->nv : 1), 1);
    TY_CHECK(esc, TY_ERR_OOM, "trace: out of memory");
    ty_status st = escaping_roots(tr, forced, esc);
    if (st == TY_OK) {
        st = ty_pass_live(tr, esc);
    }
    if (st == TY_OK) {
        st = ty_fuse_prepare(tr, esc);
    }
    if (st == TY_OK) {
        st = ty_forward_prepare(tr, esc);
    }
    if (st == TY_OK) {
        st = plan_memory(tr, esc);
    }
    if (st == TY_OK) {
        ty_forward_apply(tr);
    }
    free(esc);
    return st == TY_OK ? ty_trace_exec_all(tr) : st;
}
