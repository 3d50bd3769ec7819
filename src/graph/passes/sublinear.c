/* Sublinear memory (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost").
 *
 * A backward block reads forward values (saved activations) that would stay alive from the
 * forward into the backward. This pass keeps only some of them (checkpoints) and recomputes
 * the others inside the block: just before the first backward node that reads a dropped
 * value, copies of the forward nodes that computed it (and of its dropped ancestors, back to
 * kept values) are inserted, and the backward nodes read the copies. A copy has the recorded
 * op and params, so it runs the same kernel on the same inputs and gives the same bits.
 * Random, in-place and data-dependent ops are never copied (their outputs are kept), nor a
 * node whose inputs an in-place op writes before the block ends (a copy would read another
 * value), nor one whose outputs are written in place or returned.
 *
 * Which values to keep: Chen's segmentation (walk the forward nodes accumulating output
 * bytes; a node that passes the segment budget is a checkpoint and starts a new segment),
 * with thresh_nr_try budgets around total/sqrt(n), each scored by the arena peak that the
 * memory planner would give the rewritten schedule and by its recompute cost (the copies'
 * bytes moved plus their arithmetic, a proxy for time); plans that drop the saved values
 * cheapest to recompute per byte first (with the unsaved ancestors their recompute needs:
 * a softmax with its scores' matmul), as many as fit the bound; then, with
 * genetic_nr_iter > 0, a
 * deterministic mutation/crossover search from the best keep-sets; then each copied node,
 * the dearest per byte first, is kept instead when the plan stays as good (a matmul output
 * is kept and its bias add recomputed, not the other way round). A plan whose peak is within
 * the bound (lb_memory, MegEngine's lower bound of the bottleneck) beats one over it, and
 * among those the cheaper recompute wins, so the room up to the bound goes to the values
 * that cost most to recompute; with no bound the lowest peak wins, then the cheaper plan.
 * The graph is rewritten only when the best schedule's peak is below the plain one's.
 *
 * trace(dtr_config=...) is the same rewrite with DTR's eviction threshold as the bound,
 * decided once at compile time instead of per op: nothing is recomputed while the plain peak
 * is under it, and values smaller than evictee_minimum_size are never dropped. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/memplan.h"
#include "graph/trace_impl.h"

enum { NOT_COPYABLE = TY_F_RANDOM | TY_F_WRITES | TY_F_DYN };

/* A candidate schedule: the recorded nodes in order, with recompute copies inserted. */
typedef struct sched {
    int n, cap;
    int *node;  /* per entry: the recorded node it runs */
    char *copy; /* per entry: a recompute copy */
    int *io;    /* per entry: where its inputs (mapped to copies) then outputs are in vals */
    int *vals;
    int nvals, capvals;
    int nv, capv; /* values, new ones (ids from tr->nv) included */
    int *src;     /* per new value (by id): the recorded value it recomputes */
    int *def;     /* per new value (by id): its entry */
    int *pos;     /* per recorded node: its entry */
    int *vroot;   /* per value: the value owning its memory */
    int *cur;     /* per recorded value: its copy in the block being built, or -1 */
    int *first;   /* per recorded node (and nn): the first entry made when reaching it */
    int ncopies;
    double cost; /* the copies' node_cost, summed */
} sched;

typedef struct ctx {
    ty_trace *tr;
    char *pinned;   /* ty_pass_pinned */
    char *returned; /* per root: returned by the traced function (memory of its own) */
    int *block;     /* per node: the backward block it is in, or -1 */
    int *region;    /* per node outside blocks: the first block after it, or -1 */
    char *copyable; /* per node: may be copied into its region's block */
    int *cand;      /* the non-view copyable nodes, in order: their outputs may be dropped */
    int ncand;
    size_t *bytes; /* per recorded value */
    double *cost;  /* per recorded node: node_cost */
    char *saved;   /* per root: read in a backward block by the plain schedule */
} ctx;

/* Grows arrays that share one capacity (elements of elt[i] bytes) to hold need elements;
 * on failure the capacity stays, and arrays already grown are merely larger. */
static ty_status
grow_all(int n, void **const *arrays, const size_t *elt, int *cap, int need)
{
    if (need <= *cap) {
        return TY_OK;
    }
    int nc = *cap ? *cap : 64;
    while (nc < need) {
        nc *= 2;
    }
    for (int i = 0; i < n; i++) {
        void *q = realloc(*arrays[i], elt[i] * (size_t)nc);
        TY_CHECK(q, TY_ERR_OOM, "sublinear memory: out of memory");
        *arrays[i] = q;
    }
    *cap = nc;
    return TY_OK;
}

/* ---- what a recompute costs ---- */

/* Multiply-adds per element of the output for the ops whose time is their arithmetic (conv,
 * matmul); 0 for the rest, which are bound by the bytes they move. */
static double
macs_per_output(const ty_trace *tr, const gnode *n)
{
    const ty_meta *out = &tr->v[n->out[0]].meta;
    if ((n->op == TY_OP_CONV2D || n->op == TY_OP_CONV_BIAS) && n->nin >= 2 && out->ndim >= 2 &&
        out->shape[1] > 0) { /* weight: (OC, IC/G, KH, KW) */
        return (double)ty_meta_numel(&tr->v[n->in[1]].meta) / (double)out->shape[1];
    }
    if (n->op == TY_OP_MATMUL && tr->v[n->in[0]].meta.ndim >= 2) {
        const ty_p_matmul *p = n->params;
        const ty_meta *a = &tr->v[n->in[0]].meta;
        return (double)a->shape[a->ndim - (p->transpose_a ? 2 : 1)];
    }
    return 0;
}

/* A deterministic proxy for a node's time, in bytes moved: what it reads and writes, plus
 * its arithmetic at FLOPS_PER_BYTE (about what a 2-core AVX-512 machine does: a matmul of
 * width 512 then costs some 30 times an elementwise op over its output). Views cost nothing. */
enum { FLOPS_PER_BYTE = 16 };

static double
node_cost(const ty_trace *tr, const gnode *n)
{
    if (n->alias || n->nout < 1) {
        return 0;
    }
    double bytes = 0;
    for (int i = 0; i < n->nin; i++) {
        bytes += (double)ty_meta_nbytes(&tr->v[n->in[i]].meta);
    }
    for (int i = 0; i < n->nout; i++) {
        bytes += (double)ty_meta_nbytes(&tr->v[n->out[i]].meta);
    }
    double flops = 2.0 * macs_per_output(tr, n) * (double)ty_meta_numel(&tr->v[n->out[0]].meta);
    return bytes + flops / FLOPS_PER_BYTE;
}

/* ---- which nodes may be copied ---- */

static int
written_between(const ty_trace *tr, int root, int from, int to)
{
    for (int k = from + 1; k < to && k < tr->nn; k++) {
        const gnode *w = &tr->n[k];
        if ((ty_op_defs[w->op].flags & TY_F_WRITES) && w->nin >= 1 && tr->root[w->in[0]] == root) {
            return 1;
        }
    }
    return 0;
}

static int
node_copyable(const ctx *c, int m)
{
    const ty_trace *tr = c->tr;
    const gnode *n = &tr->n[m];
    int b = c->region[m];
    if (b < 0 || n->state != NS_EXEC || (ty_op_defs[n->op].flags & NOT_COPYABLE)) {
        return 0;
    }
    for (int i = 0; i < n->nout; i++) {
        if (c->pinned[tr->root[n->out[i]]] || tr->folded[n->out[i]]) {
            return 0;
        }
    }
    for (int i = 0; i < n->nin; i++) {
        if ((c->pinned[tr->root[n->in[i]]] & 1) &&
            written_between(tr, tr->root[n->in[i]], m, tr->bw[b].end)) {
            return 0;
        }
    }
    return 1;
}

static ty_status
find_regions(ctx *c)
{
    ty_trace *tr = c->tr;
    for (int ni = 0; ni < tr->nn; ni++) {
        c->block[ni] = c->region[ni] = -1;
    }
    for (int b = 0; b < tr->nbw; b++) {
        for (int ni = tr->bw[b].start; ni < tr->bw[b].end; ni++) {
            c->block[ni] = b;
        }
    }
    for (int ni = tr->nn - 1, next = -1; ni >= 0; ni--) {
        if (c->block[ni] >= 0) {
            next = c->block[ni];
        } else {
            c->region[ni] = next;
        }
    }
    for (int ni = 0; ni < tr->nn; ni++) {
        c->copyable[ni] = (char)node_copyable(c, ni);
        c->cost[ni] = node_cost(tr, &tr->n[ni]);
        if (c->copyable[ni] && !tr->n[ni].alias) {
            c->cand[c->ncand++] = ni;
        }
    }
    for (int v = 0; v < tr->nv; v++) {
        c->bytes[v] = ty_meta_nbytes(&tr->v[v].meta);
        c->saved[v] = 0;
    }
    for (int ni = 0; ni < tr->nn; ni++) {
        for (int i = 0; c->block[ni] >= 0 && tr->n[ni].state == NS_EXEC && i < tr->n[ni].nin; i++) {
            c->saved[tr->root[tr->n[ni].in[i]]] = 1;
        }
    }
    return TY_OK;
}

/* ---- building a schedule for a keep-set (keep: per recorded value, 1 unless dropped) ---- */

static int
droppable(const ctx *c, const sched *s, const char *keep, int x, int b)
{
    const ty_trace *tr = c->tr;
    if (x >= tr->nv || tr->v[x].kind != V_NODE || s->cur[x] >= 0) {
        return 0;
    }
    int m = tr->v[x].index;
    return c->copyable[m] && c->region[m] == b && !keep[tr->root[x]];
}

static ty_status
new_value(sched *s, int src, int def, int *out)
{
    void **const arrays[] = {(void **)&s->src, (void **)&s->def, (void **)&s->vroot};
    const size_t elt[] = {sizeof(int), sizeof(int), sizeof(int)};
    TY_TRY(grow_all(3, arrays, elt, &s->capv, s->nv + 1));
    s->src[s->nv] = src;
    s->def[s->nv] = def;
    s->vroot[s->nv] = s->nv;
    *out = s->nv++;
    return TY_OK;
}

/* Appends an entry for node ni, its inputs mapped to this block's copies when map is set. */
static ty_status
emit(const ctx *c, sched *s, int ni, int is_copy, int map)
{
    const gnode *n = &c->tr->n[ni];
    void **const arrays[] = {(void **)&s->node, (void **)&s->copy, (void **)&s->io};
    const size_t elt[] = {sizeof(int), 1, sizeof(int)};
    void **const vals[] = {(void **)&s->vals};
    const size_t vals_elt[] = {sizeof(int)};
    TY_TRY(grow_all(3, arrays, elt, &s->cap, s->n + 1));
    TY_TRY(grow_all(1, vals, vals_elt, &s->capvals, s->nvals + n->nin + n->nout));
    int e = s->n++;
    s->node[e] = ni;
    s->copy[e] = (char)is_copy;
    s->io[e] = s->nvals;
    for (int i = 0; i < n->nin; i++) {
        int x = n->in[i];
        s->vals[s->nvals++] = map && s->cur[x] >= 0 ? s->cur[x] : x;
    }
    for (int i = 0; i < n->nout; i++) {
        int y = n->out[i];
        if (is_copy) {
            TY_TRY(new_value(s, y, e, &y));
            s->cur[n->out[i]] = y;
            if (n->alias) {
                s->vroot[y] = s->vroot[s->vals[s->io[e]]];
            }
        }
        s->vals[s->nvals++] = y;
    }
    if (is_copy) {
        s->ncopies++;
        s->cost += c->cost[ni];
    } else {
        s->pos[ni] = e;
    }
    return TY_OK;
}

/* Copies the node of dropped value x into block b, its dropped ancestors first. */
static ty_status
recompute(const ctx *c, sched *s, const char *keep, int x, int b)
{
    const gnode *n = &c->tr->n[c->tr->v[x].index];
    for (int i = 0; i < n->nin; i++) {
        if (droppable(c, s, keep, n->in[i], b)) {
            TY_TRY(recompute(c, s, keep, n->in[i], b));
        }
    }
    return s->cur[x] >= 0 ? TY_OK : emit(c, s, c->tr->v[x].index, 1, 1);
}

static ty_status
build(const ctx *c, const char *keep, sched *s)
{
    const ty_trace *tr = c->tr;
    s->n = s->nvals = s->ncopies = 0;
    s->cost = 0;
    s->nv = tr->nv;
    memcpy(s->vroot, tr->root, sizeof(int) * (size_t)tr->nv);
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        int b = c->block[ni];
        if (b >= 0 && ni == tr->bw[b].start) {
            memset(s->cur, 0xff, sizeof(int) * (size_t)tr->nv);
        }
        s->first[ni] = s->n;
        for (int i = 0; b >= 0 && n->state == NS_EXEC && i < n->nin; i++) {
            if (droppable(c, s, keep, n->in[i], b)) {
                TY_TRY(recompute(c, s, keep, n->in[i], b));
            }
        }
        TY_TRY(emit(c, s, ni, 0, b >= 0));
    }
    s->first[tr->nn] = s->n;
    return TY_OK;
}

/* ---- scoring: the arena the memory planner would need for the schedule ---- */

static int
planned(const ctx *c, const sched *s, int v)
{
    const ty_trace *tr = c->tr;
    if (s->vroot[v] != v) {
        return 0;
    }
    if (v >= tr->nv) {
        return 1;
    }
    /* gradients are planned too: a call's gradients live in the arena until the optimizer */
    return tr->v[v].kind == V_NODE && tr->n[tr->v[v].index].state == NS_EXEC &&
           !tr->folded[v] && !c->returned[v];
}

static ty_status
score(const ctx *c, const sched *s, size_t *peak)
{
    const ty_trace *tr = c->tr;
    int *item_of = malloc(sizeof(int) * (size_t)s->nv);
    ty_mp_item *items = malloc(sizeof(ty_mp_item) * (size_t)s->nv);
    size_t *off = malloc(sizeof(size_t) * (size_t)s->nv);
    ty_status st = item_of && items && off ? TY_OK
                                          : ty_set_error(TY_ERR_OOM, "sublinear memory: out of memory");
    int nitems = 0;
    for (int v = 0; st == TY_OK && v < s->nv; v++) {
        item_of[v] = -1;
        if (planned(c, s, v)) {
            int def = v >= tr->nv ? s->def[v] : s->pos[tr->v[v].index];
            size_t bytes = c->bytes[v >= tr->nv ? s->src[v] : v];
            items[nitems] = (ty_mp_item){def, def, bytes, -1};
            item_of[v] = nitems++;
        }
    }
    for (int e = 0; st == TY_OK && e < s->n; e++) {
        const gnode *n = &tr->n[s->node[e]];
        for (int i = 0; n->state == NS_EXEC && i < n->nin; i++) {
            int it = item_of[s->vroot[s->vals[s->io[e] + i]]];
            if (it >= 0 && items[it].last < e) {
                items[it].last = e;
            }
        }
    }
    if (st == TY_OK) {
        st = ty_memplan(nitems, items, off, peak);
    }
    free(item_of);
    free(items);
    free(off);
    return st;
}

/* ---- the search ---- */

typedef struct best {
    char *keep;
    size_t peak;
    double cost;
} best;

/* The arena peak a plan may reach for its recompute cost to count first: sublinear memory's
 * lb_memory (MegEngine's "lower bound of the bottleneck": a trade of memory for speed) or
 * DTR's threshold; 0: none, the lowest peak is sought. */
static int
fits(const ty_sublinear_cfg *cfg, size_t peak)
{
    int64_t bound = cfg->dtr ? cfg->threshold : cfg->lb_bytes;
    return bound > 0 && peak <= (size_t)bound;
}

/* A plan within the bound beats one over it; among those within it, the lower recompute cost
 * (then the lower peak); among those over it, the lower peak (then the lower cost). */
static int
better(const ty_sublinear_cfg *cfg, size_t peak, double cost, const best *b)
{
    if (fits(cfg, peak) != fits(cfg, b->peak)) {
        return fits(cfg, peak);
    }
    if (fits(cfg, peak)) {
        return cost < b->cost || (cost == b->cost && peak < b->peak);
    }
    return peak < b->peak || (peak == b->peak && cost < b->cost);
}

/* Builds and scores keep; it becomes the best when better. peak_out and won are optional. */
static ty_status
try_keep(const ctx *c, sched *s, const char *keep, best *bst, size_t *peak_out, int *won_out)
{
    size_t peak;
    TY_TRY(build(c, keep, s));
    TY_TRY(score(c, s, &peak));
    int won = better(&c->tr->sublinear, peak, s->cost, bst);
    if (won) {
        memcpy(bst->keep, keep, (size_t)c->tr->nv);
        bst->peak = peak;
        bst->cost = s->cost;
    }
    if (peak_out) {
        *peak_out = peak;
    }
    if (won_out) {
        *won_out = won;
    }
    return TY_OK;
}

static size_t
cand_bytes(const ctx *c, int m)
{
    size_t b = 0;
    for (int i = 0; i < c->tr->n[m].nout; i++) {
        b += c->bytes[c->tr->n[m].out[i]];
    }
    return b;
}

/* Chen's segments: a node that fills the budget is a checkpoint; the others are dropped. */
static void
chen_keep(const ctx *c, double budget, char *keep)
{
    memset(keep, 1, (size_t)c->tr->nv);
    double acc = 0;
    for (int k = 0; k < c->ncand; k++) {
        const gnode *n = &c->tr->n[c->cand[k]];
        size_t bytes = cand_bytes(c, c->cand[k]);
        if (c->tr->sublinear.dtr && (int64_t)bytes < c->tr->sublinear.min_drop) {
            continue; /* too small to be worth recomputing: kept, outside the segments */
        }
        acc += (double)bytes;
        if (acc >= budget) {
            acc = 0;
            continue;
        }
        for (int i = 0; i < n->nout; i++) {
            keep[n->out[i]] = 0;
        }
    }
}

static ty_status
search_chen(const ctx *c, sched *s, char *keep, best *bst)
{
    const ty_sublinear_cfg *cfg = &c->tr->sublinear;
    double total = 0;
    for (int k = 0; k < c->ncand; k++) {
        total += (double)cand_bytes(c, c->cand[k]);
    }
    double base = total / sqrt((double)c->ncand);
    int tries = cfg->thresh_nr_try > 0 ? cfg->thresh_nr_try : 1;
    /* budgets from base/4 to base*4, geometrically (with a bound: from base/64, where
     * segments are short and few values are dropped); base alone for one try */
    double lo = fits(cfg, 0) ? 64.0 : 4.0;
    for (int t = 0; t < tries; t++) {
        double f = tries == 1 ? 1.0 : pow(lo * 4.0, (double)t / (tries - 1)) / lo;
        double budget = base * f;
        chen_keep(c, budget, keep);
        TY_TRY(try_keep(c, s, keep, bst, NULL, NULL));
    }
    return TY_OK;
}

/* ---- the cheapest drops first ---- */

enum { MAX_CHAIN = 64 };

/* Drops value x of block b's region and the ancestors that only its recompute needs (those
 * the plain backward does not read); returns their recompute cost. */
static double
drop_value(const ctx *c, char *keep, int x, int b, int depth)
{
    const ty_trace *tr = c->tr;
    if (x >= tr->nv || tr->v[x].kind != V_NODE || depth > MAX_CHAIN) {
        return 0;
    }
    int m = tr->v[x].index;
    const gnode *n = &tr->n[m];
    if (!c->copyable[m] || c->region[m] != b ||
        (tr->sublinear.dtr && (int64_t)cand_bytes(c, m) < tr->sublinear.min_drop)) {
        return 0;
    }
    double cost = 0;
    if (!n->alias) {
        if (!keep[tr->root[x]]) {
            return 0; /* dropped already */
        }
        for (int i = 0; i < n->nout; i++) {
            keep[n->out[i]] = 0;
        }
        cost = c->cost[m];
    }
    for (int i = 0; i < n->nin; i++) {
        if (!c->saved[tr->root[n->in[i]]]) {
            cost += drop_value(c, keep, n->in[i], b, depth + 1);
        }
    }
    return cost;
}

typedef struct ranked {
    int node;
    double ratio; /* recompute cost per saved byte freed */
} ranked;

static int
by_ratio(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->ratio != y->ratio) {
        return x->ratio < y->ratio ? -1 : 1;
    }
    return (x->node > y->node) - (x->node < y->node);
}

/* The candidates whose outputs the plain backward reads, by the cost of dropping them (their
 * own recompute and that of the unsaved ancestors it needs) per byte freed. */
static int
rank_drops(const ctx *c, char *scratch, ranked *out)
{
    const ty_trace *tr = c->tr;
    int n = 0;
    for (int k = 0; k < c->ncand; k++) {
        int m = c->cand[k];
        size_t bytes = 0;
        for (int i = 0; i < tr->n[m].nout; i++) {
            bytes += c->saved[tr->n[m].out[i]] ? c->bytes[tr->n[m].out[i]] : 0;
        }
        if (bytes == 0) {
            continue;
        }
        memset(scratch, 1, (size_t)tr->nv);
        double cost = drop_value(c, scratch, tr->n[m].out[0], c->region[m], 0);
        if (cost > 0) {
            out[n++] = (ranked){m, cost / (double)bytes};
        }
    }
    qsort(out, (size_t)n, sizeof(ranked), by_ratio);
    return n;
}

static void
keep_all_but(const ctx *c, const ranked *order, int count, char *keep)
{
    memset(keep, 1, (size_t)c->tr->nv);
    for (int k = 0; k < count; k++) {
        int m = order[k].node;
        drop_value(c, keep, c->tr->n[m].out[0], c->region[m], 0);
    }
}

/* Plans that drop the values cheapest to recompute per byte first: with a bound, the
 * shortest such prefix that fits (found by bisection: dropping more lowers the peak);
 * without one, prefixes of 1/8 to all of them. */
static ty_status
search_cheapest(const ctx *c, sched *s, char *keep, best *bst)
{
    ranked *order = malloc(sizeof(ranked) * (size_t)(c->ncand ? c->ncand : 1));
    TY_CHECK(order, TY_ERR_OOM, "sublinear memory: out of memory");
    int n = rank_drops(c, keep, order);
    ty_status st = TY_OK;
    if (fits(&c->tr->sublinear, 0)) {
        int lo = 1, hi = n; /* the shortest fitting prefix lies in [lo, hi] */
        while (st == TY_OK && lo < hi) {
            int mid = lo + (hi - lo) / 2;
            size_t peak = 0;
            keep_all_but(c, order, mid, keep);
            st = try_keep(c, s, keep, bst, &peak, NULL);
            if (fits(&c->tr->sublinear, peak)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if (st == TY_OK && n > 0) {
            keep_all_but(c, order, lo, keep);
            st = try_keep(c, s, keep, bst, NULL, NULL);
        }
    } else {
        for (int part = 1; st == TY_OK && part <= 8; part++) {
            keep_all_but(c, order, n * part / 8, keep);
            st = try_keep(c, s, keep, bst, NULL, NULL);
        }
    }
    free(order);
    return st;
}

/* A fixed-seed generator: the search, and so the graph, depend on the recording alone. */
static uint32_t
next_rand(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*state >> 33);
}

/* Pool members are keep-sets; each round makes one child per member (crossover of two
 * members, then a few flipped candidates) and keeps the best pool_size of parents and
 * children by peak. */
typedef struct member {
    char *keep;
    size_t peak;
} member;

static int
by_peak(const void *a, const void *b)
{
    const member *x = a, *y = b;
    return (x->peak > y->peak) - (x->peak < y->peak);
}

static void
make_child(const ctx *c, const member *pool, int np, uint64_t *rng, char *child)
{
    const char *pa = pool[next_rand(rng) % (uint32_t)np].keep;
    const char *pb = pool[next_rand(rng) % (uint32_t)np].keep;
    int cut = (int)(next_rand(rng) % (uint32_t)(c->ncand + 1));
    memcpy(child, pa, (size_t)c->tr->nv);
    for (int k = cut; k < c->ncand; k++) {
        const gnode *n = &c->tr->n[c->cand[k]];
        for (int i = 0; i < n->nout; i++) {
            child[n->out[i]] = pb[n->out[i]];
        }
    }
    int flips = 1 + (int)(next_rand(rng) % 3);
    for (int f = 0; f < flips; f++) {
        const gnode *n = &c->tr->n[c->cand[next_rand(rng) % (uint32_t)c->ncand]];
        for (int i = 0; i < n->nout; i++) {
            child[n->out[i]] = (char)!child[n->out[i]];
        }
    }
}

static ty_status
search_genetic(const ctx *c, sched *s, best *bst)
{
    const ty_sublinear_cfg *cfg = &c->tr->sublinear;
    int np = cfg->genetic_pool_size > 1 ? cfg->genetic_pool_size : 2;
    size_t nv = (size_t)c->tr->nv;
    member *pool = calloc((size_t)(2 * np), sizeof(member));
    char *mem = malloc(nv * (size_t)(2 * np));
    ty_status st = pool && mem ? TY_OK : ty_set_error(TY_ERR_OOM, "sublinear memory: out of memory");
    uint64_t rng = 0x5eed5eedull;
    for (int i = 0; st == TY_OK && i < 2 * np; i++) {
        pool[i].keep = mem + nv * (size_t)i;
        memcpy(pool[i].keep, bst->keep, nv);
        pool[i].peak = bst->peak;
    }
    for (int it = 0; st == TY_OK && it < cfg->genetic_nr_iter; it++) {
        for (int i = 0; st == TY_OK && i < np; i++) {
            make_child(c, pool, np, &rng, pool[np + i].keep);
            st = try_keep(c, s, pool[np + i].keep, bst, &pool[np + i].peak, NULL);
        }
        if (st == TY_OK) {
            qsort(pool, (size_t)(2 * np), sizeof(member), by_peak);
        }
    }
    free(mem);
    free(pool);
    return st;
}

/* Recompute cost per byte kept: what keeping a node's outputs instead saves for the room. */
static double
cost_per_byte(const ctx *c, int m)
{
    size_t bytes = cand_bytes(c, m);
    return c->cost[m] / (double)(bytes ? bytes : 1);
}

/* The non-view nodes the plan copies, the dearest per byte first (ties in node order). */
static int
copied_nodes(const ctx *c, const sched *s, int *out)
{
    int n = 0;
    for (int e = 0; e < s->n; e++) {
        int m = s->node[e];
        if (!s->copy[e] || c->tr->n[m].alias) {
            continue;
        }
        double r = cost_per_byte(c, m);
        int j = n++;
        while (j > 0 && (cost_per_byte(c, out[j - 1]) < r ||
                         (cost_per_byte(c, out[j - 1]) == r && out[j - 1] > m))) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = m;
    }
    return n;
}

/* Spends what the bound leaves (or, with none, what does not raise the best peak) on values
 * whose recompute costs most per byte: each node the best plan copies, the dearest first, is
 * kept instead when the plan gets better so (a matmul's output rather than its bias add's). */
static ty_status
search_keep_back(const ctx *c, sched *s, char *keep, best *bst)
{
    const ty_trace *tr = c->tr;
    TY_TRY(build(c, bst->keep, s));
    int *order = malloc(sizeof(int) * (size_t)(s->n ? s->n : 1));
    TY_CHECK(order, TY_ERR_OOM, "sublinear memory: out of memory");
    int n = copied_nodes(c, s, order);
    ty_status st = TY_OK;
    memcpy(keep, bst->keep, (size_t)tr->nv);
    for (int k = 0; st == TY_OK && k < n; k++) {
        const gnode *m = &tr->n[order[k]];
        if (keep[m->out[0]]) {
            continue; /* a node copied in two blocks is listed twice */
        }
        for (int i = 0; i < m->nout; i++) {
            keep[m->out[i]] = 1;
        }
        int won = 0;
        st = try_keep(c, s, keep, bst, NULL, &won);
        for (int i = 0; st == TY_OK && !won && i < m->nout; i++) {
            keep[m->out[i]] = 0;
        }
    }
    free(order);
    return st;
}

/* ---- rewriting the recording to the chosen schedule ---- */

/* A copy of a recorded node: the same op, params (its own copy) and per-node decisions.
 * gnode's owned pointers are params, in and out: a new owned field needs a copy here. */
static ty_status
copy_node(const gnode *from, gnode *to)
{
    size_t psize = ty_op_defs[from->op].params->size;
    *to = *from;
    to->params = malloc(psize ? psize : 1);
    to->in = malloc(sizeof(int) * (size_t)(from->nin ? from->nin : 1));
    to->out = malloc(sizeof(int) * (size_t)from->nout);
    if (!to->params || !to->in || !to->out) {
        free(to->params);
        free(to->in);
        free(to->out);
        return ty_set_error(TY_ERR_OOM, "sublinear memory: out of memory");
    }
    memcpy(to->params, from->params, psize);
    to->group = -1;
    return TY_OK;
}

static ty_status
grow_value_arrays(ty_trace *tr, int nv)
{
    size_t old = (size_t)tr->nv, n = (size_t)nv;
    gvalue *v = realloc(tr->v, sizeof(gvalue) * n);
    TY_CHECK(v, TY_ERR_OOM, "sublinear memory: out of memory");
    tr->v = v;
    tr->cap_v = nv;
    int *root = realloc(tr->root, sizeof(int) * n);
    TY_CHECK(root, TY_ERR_OOM, "sublinear memory: out of memory");
    tr->root = root;
    ty_tensor **folded = realloc(tr->folded, sizeof(ty_tensor *) * n);
    TY_CHECK(folded, TY_ERR_OOM, "sublinear memory: out of memory");
    tr->folded = folded;
    memset(folded + old, 0, sizeof(ty_tensor *) * (n - old));
    char *scratch = realloc(tr->scratch, n);
    TY_CHECK(scratch, TY_ERR_OOM, "sublinear memory: out of memory");
    tr->scratch = scratch;
    memset(scratch + old, 0, n - old);
    if (tr->bound) { /* a symbolic recording's first run: released after compiling */
        ty_tensor **bound = realloc(tr->bound, sizeof(ty_tensor *) * n);
        TY_CHECK(bound, TY_ERR_OOM, "sublinear memory: out of memory");
        tr->bound = bound;
        memset(bound + old, 0, sizeof(ty_tensor *) * (n - old));
    }
    return TY_OK;
}

static ty_status
grow_node_arrays(ty_trace *tr, int nn)
{
    char *live = realloc(tr->live, (size_t)nn);
    TY_CHECK(live, TY_ERR_OOM, "sublinear memory: out of memory");
    tr->live = live;
    memset(live, 1, (size_t)nn);
    gfuse *groups = realloc(tr->groups, sizeof(gfuse) * (size_t)(nn / 2 + 1));
    TY_CHECK(groups, TY_ERR_OOM, "sublinear memory: out of memory");
    tr->groups = groups;
    return TY_OK;
}

/* The new node array: recorded nodes moved (backward inputs mapped), copies made. */
static ty_status
make_nodes(ty_trace *tr, const sched *s, gnode *nodes, int *made)
{
    for (int e = 0; e < s->n; e++) { /* the copies first: only they may fail */
        if (s->copy[e]) {
            TY_TRY(copy_node(&tr->n[s->node[e]], &nodes[e]));
            nodes[e].state = NS_EXEC;
        }
        *made = e + 1;
    }
    for (int e = 0; e < s->n; e++) {
        gnode *n = &nodes[e];
        if (!s->copy[e]) {
            *n = tr->n[s->node[e]];
        }
        memcpy(n->in, s->vals + s->io[e], sizeof(int) * (size_t)n->nin);
        memcpy(n->out, s->vals + s->io[e] + n->nin, sizeof(int) * (size_t)n->nout);
    }
    return TY_OK;
}

static void
renumber(ty_trace *tr, const sched *s)
{
    for (int e = 0; e < s->n; e++) {
        if (!s->copy[e] && tr->n[e].state == NS_CSE) {
            tr->n[e].canon = s->pos[tr->n[e].canon];
        }
    }
    for (int v = 0; v < tr->nv; v++) {
        if (tr->v[v].kind == V_NODE) {
            tr->v[v].index = s->pos[tr->v[v].index];
        }
    }
    for (int v = tr->nv; v < s->nv; v++) {
        tr->v[v] = tr->v[s->src[v]];
        tr->v[v].index = s->def[v];
    }
    for (int i = 0; i < tr->nev; i++) {
        if (!tr->ev[i].is_backward) {
            tr->ev[i].index = s->pos[tr->ev[i].index];
        }
    }
    for (int b = 0; b < tr->nbw; b++) {
        tr->bw[b].start = s->first[tr->bw[b].start];
        tr->bw[b].end = s->first[tr->bw[b].end];
    }
}

static ty_status
apply(ty_trace *tr, const sched *s)
{
    int made = 0;
    gnode *nodes = calloc((size_t)s->n, sizeof(gnode));
    ty_status st = nodes ? TY_OK : ty_set_error(TY_ERR_OOM, "sublinear memory: out of memory");
    if (st == TY_OK) { /* first what may fail, leaving the recording as it was */
        st = grow_value_arrays(tr, s->nv);
    }
    if (st == TY_OK) {
        st = grow_node_arrays(tr, s->n);
    }
    if (st == TY_OK) {
        st = make_nodes(tr, s, nodes, &made);
    }
    if (st != TY_OK) {
        for (int e = 0; e < made; e++) {
            if (s->copy[e]) {
                free(nodes[e].params);
                free(nodes[e].in);
                free(nodes[e].out);
            }
        }
        free(nodes);
        return st;
    }
    free(tr->n);
    tr->n = nodes;
    tr->nn = tr->cap_n = s->n;
    renumber(tr, s);
    tr->nv = s->nv;
    tr->nrecomputed = s->ncopies;
    ty_trace_roots(tr);
    return TY_OK;
}

/* ---- the pass ---- */

static void
free_ctx(ctx *c, sched *s, char *keep, best *bst)
{
    free(c->pinned);
    free(c->returned);
    free(c->block);
    free(c->region);
    free(c->copyable);
    free(c->cand);
    free(c->bytes);
    free(c->cost);
    free(c->saved);
    free(s->node);
    free(s->copy);
    free(s->io);
    free(s->vals);
    free(s->src);
    free(s->def);
    free(s->vroot);
    free(s->cur);
    free(s->first);
    free(s->pos);
    free(keep);
    free(bst->keep);
}

static ty_status
alloc_ctx(ty_trace *tr, ctx *c, sched *s, char **keep, best *bst)
{
    size_t nn = (size_t)tr->nn + 1, nv = (size_t)tr->nv + 1;
    c->tr = tr;
    c->block = malloc(sizeof(int) * nn);
    c->region = malloc(sizeof(int) * nn);
    c->copyable = malloc(nn);
    c->cand = malloc(sizeof(int) * nn);
    c->bytes = malloc(sizeof(size_t) * nv);
    c->cost = malloc(sizeof(double) * nn);
    c->saved = malloc(nv);
    c->returned = calloc(nv, 1);
    s->cur = malloc(sizeof(int) * nv);
    s->first = malloc(sizeof(int) * nn);
    s->pos = malloc(sizeof(int) * nn);
    s->vroot = malloc(sizeof(int) * nv);
    s->capv = (int)nv;
    s->src = malloc(sizeof(int) * nv);
    s->def = malloc(sizeof(int) * nv);
    *keep = malloc(nv);
    bst->keep = malloc(nv);
    TY_CHECK(c->block && c->region && c->copyable && c->cand && c->bytes && c->cost && c->saved && c->returned && s->cur && s->first && s->pos &&
                 s->vroot && s->src && s->def && *keep && bst->keep,
             TY_ERR_OOM, "sublinear memory: out of memory");
    for (int i = 0; i < tr->nout; i++) {
        c->returned[tr->root[tr->out_vid[i]]] = 1;
    }
    return ty_pass_pinned(tr, &c->pinned);
}


static ty_status
choose_and_apply(ctx *c, sched *s, char *keep, best *bst)
{
    ty_trace *tr = c->tr;
    TY_TRY(find_regions(c));
    if (c->ncand < 2) {
        return TY_OK;
    }
    memset(keep, 1, (size_t)tr->nv); /* the plain schedule: what a rewrite must beat */
    bst->peak = SIZE_MAX;
    bst->cost = 0;
    TY_TRY(try_keep(c, s, keep, bst, NULL, NULL));
    size_t plain = bst->peak;
    if (fits(&tr->sublinear, plain)) {
        return TY_OK; /* no pressure: nothing is recomputed */
    }
    TY_TRY(search_chen(c, s, keep, bst));
    TY_TRY(search_cheapest(c, s, keep, bst));
    if (tr->sublinear.genetic_nr_iter > 0) {
        TY_TRY(search_genetic(c, s, bst));
    }
    TY_TRY(search_keep_back(c, s, keep, bst));
    if (bst->peak >= plain) {
        return TY_OK;
    }
    TY_TRY(build(c, bst->keep, s));
    return apply(tr, s);
}

ty_status
ty_pass_sublinear(ty_trace *tr)
{
    if (!tr->sublinear.enabled || tr->sublinear_done || tr->nbw == 0) {
        return TY_OK;
    }
    tr->sublinear_done = 1; /* once: a later compile sees the rewritten graph */
    ctx c = {0};
    sched s = {0};
    char *keep = NULL;
    best bst = {0};
    ty_status st = alloc_ctx(tr, &c, &s, &keep, &bst);
    if (st == TY_OK) {
        st = choose_and_apply(&c, &s, keep, &bst);
    }
    free_ctx(&c, &s, keep, &bst);
    if (st == TY_OK && tr->nrecomputed && tr->arena) {
        /* a symbolic first run sized the arena for the plain graph: plan it anew */
        ty_mem_free(tr->arena, tr->arena_size);
        tr->arena = NULL;
        tr->arena_size = 0;
    }
    return st;
}

ty_status
ty_trace_set_sublinear(ty_trace *tr, int thresh_nr_try, int genetic_nr_iter,
                       int genetic_pool_size, int64_t lb_memory_bytes)
{
    TY_CHECK(tr && tr->mode == MODE_RECORD, TY_ERR_INVALID_ARG,
             "trace: sublinear memory is set on a trace being recorded");
    TY_CHECK(thresh_nr_try >= 0 && genetic_nr_iter >= 0 && genetic_pool_size >= 1 &&
                 lb_memory_bytes >= 0,
             TY_ERR_INVALID_ARG,
             "trace: sublinear memory: thresh_nr_try, genetic_nr_iter and lb_memory must be "
             ">= 0 and genetic_pool_size >= 1");
    tr->sublinear = (ty_sublinear_cfg){1, thresh_nr_try, genetic_nr_iter, genetic_pool_size,
                                       lb_memory_bytes, 0, 0, 0};
    return TY_OK;
}

enum { DTR_BUDGET_TRIES = 16 };

ty_status
ty_trace_set_dtr(ty_trace *tr, int64_t eviction_threshold, int64_t evictee_minimum_size)
{
    TY_CHECK(tr && tr->mode == MODE_RECORD, TY_ERR_INVALID_ARG,
             "trace: dtr_config is set on a trace being recorded");
    TY_CHECK(eviction_threshold >= 0 && evictee_minimum_size >= 0, TY_ERR_INVALID_ARG,
             "trace: dtr_config: eviction_threshold and evictee_minimum_size must be >= 0");
    tr->sublinear = (ty_sublinear_cfg){1, DTR_BUDGET_TRIES, 0, 1, 0, 1, eviction_threshold,
                                       evictee_minimum_size};
    return TY_OK;
}
