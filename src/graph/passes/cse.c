/* Common-subexpression elimination: a node with the same op, params and input values as an
 * earlier one computes nothing; its outputs become views of the earlier node's outputs.
 * Random, in-place, view and data-dependent ops never merge, nor do nodes whose inputs or
 * outputs an in-place op writes (the two would read different values), nor a node whose
 * outputs are returned (two returned tensors would share memory). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"

enum { CSE_BAD = TY_F_RANDOM | TY_F_WRITES | TY_F_VIEW | TY_F_DYN };

static int
mergeable(const ty_trace *tr, const gnode *n, const char *pinned)
{
    if ((ty_op_defs[n->op].flags & CSE_BAD) || n->alias || n->materialize ||
        n->state != NS_EXEC) {
        return 0;
    }
    for (int i = 0; i < n->nin; i++) {
        if (pinned[tr->root[n->in[i]]] & 1) {
            return 0;
        }
    }
    for (int i = 0; i < n->nout; i++) {
        if (pinned[tr->root[n->out[i]]] & 1) {
            return 0;
        }
    }
    return 1;
}

static int
returned(const ty_trace *tr, const gnode *n, const char *pinned)
{
    for (int i = 0; i < n->nout; i++) {
        if (pinned[tr->root[n->out[i]]] & 2) {
            return 1;
        }
    }
    return 0;
}

static uint64_t
node_hash(const gnode *n, const int *vc)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)n->op;
    for (int i = 0; i < n->nin; i++) {
        h = (h ^ (uint64_t)(unsigned)vc[n->in[i]]) * 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int
same_meta(const ty_meta *a, const ty_meta *b)
{
    return a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

static int
same_node(const ty_trace *tr, const gnode *a, const gnode *b, const int *vc)
{
    if (a->op != b->op || a->nin != b->nin || a->nout != b->nout) {
        return 0;
    }
    for (int i = 0; i < a->nin; i++) {
        if (vc[a->in[i]] != vc[b->in[i]]) {
            return 0;
        }
    }
    for (int i = 0; i < a->nout; i++) {
        if (!same_meta(&tr->v[a->out[i]].meta, &tr->v[b->out[i]].meta)) {
            return 0;
        }
    }
    return ty_trace_params_equal(a->op, a->params, b->params);
}

typedef struct cse_table {
    int *head, *next, mask;
    int *vc; /* per value: the value it equals (itself unless a CSE'd output) */
} cse_table;

static int
lookup(const ty_trace *tr, const cse_table *t, int ni)
{
    const gnode *n = &tr->n[ni];
    for (int j = t->head[node_hash(n, t->vc) & (uint64_t)t->mask]; j >= 0; j = t->next[j]) {
        if (same_node(tr, &tr->n[j], n, t->vc)) {
            return j;
        }
    }
    return -1;
}

static void
merge_all(ty_trace *tr, cse_table *t, const char *pinned)
{
    for (int ni = 0; ni < tr->nn; ni++) {
        gnode *n = &tr->n[ni];
        if (!mergeable(tr, n, pinned)) {
            continue;
        }
        int hit = lookup(tr, t, ni);
        if (hit >= 0 && !returned(tr, n, pinned)) {
            n->state = NS_CSE;
            n->canon = hit;
            for (int i = 0; i < n->nout; i++) {
                t->vc[n->out[i]] = tr->n[hit].out[i];
            }
            tr->ncse++;
            continue;
        }
        int h = (int)(node_hash(n, t->vc) & (uint64_t)t->mask);
        t->next[ni] = t->head[h];
        t->head[h] = ni;
    }
}

ty_status
ty_pass_cse(ty_trace *tr)
{
    int nb = 16;
    while (nb < 2 * tr->nn) {
        nb *= 2;
    }
    cse_table t = {malloc(sizeof(int) * (size_t)nb),
                   malloc(sizeof(int) * (size_t)(tr->nn ? tr->nn : 1)), nb - 1,
                   malloc(sizeof(int) * (size_t)(tr->nv ? tr->nv : 1))};
    char *pinned = NULL;
    ty_status st = (t.head && t.next && t.vc) ? ty_pass_pinned(tr, &pinned)
                                             : ty_set_error(TY_ERR_OOM, "trace: out of memory");
    if (st == TY_OK) {
        memset(t.head, 0xff, sizeof(int) * (size_t)nb);
        for (int v = 0; v < tr->nv; v++) {
            t.vc[v] = v;
        }
        merge_all(tr, &t, pinned);
        ty_trace_roots(tr);
    }
    free(pinned);
    free(t.head);
    free(t.next);
    free(t.vc);
    return st;
}
