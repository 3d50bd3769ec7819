/* DTR: dynamic tensor rematerialization (Kirisame et al., "Dynamic Tensor Rematerialization").
 *
 * A dispatcher hook records, for each recomputable op output, an entry: the op, a copy of its
 * params, views of its inputs (its own) and which output it was. The entry holds a reference on the
 * output's storage, so it is found by storage (a hash map) and dies when nobody else holds the
 * storage. Under pressure the hook frees the data of the entries with the lowest
 * cost / (bytes x staleness) and marks their storage deferred with the entry's own deferral;
 * a read of that storage (ty_check_readable) calls back here and the op runs again through the
 * same kernel lookup, so the bits are the first run's. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imperative/dtr.h"
#include "imperative/tape.h"
#include "tianyuan/dtr.h"

typedef struct dtr_entry {
    ty_deferral deferral; /* first: storage->deferred points here while evicted */
    ty_storage *storage;  /* retained */
    ty_op op;
    void *params; /* a copy */
    int nin, nout, out_index;
    ty_tensor **in;       /* retained */
    uint32_t *in_version; /* input storage versions when computed */
    uint32_t version;     /* this storage's version when computed */
    double cost;          /* bytes the op touches: a deterministic proxy for its time */
    uint64_t last_use;
    int64_t times_evicted;
    int busy; /* used by the call or recomputation in flight: not evictable */
    int evicted;
    int pinned; /* pinned while busy: never evicted, freed with its lineage */
    uint64_t chain_epoch; /* pick when chain_cost was last worked out */
    double chain_cost;    /* evicted: its cost plus its evicted ancestors' */
    int mark;  /* 1: its lineage reads the storage an in-place write is about to change */
    int index; /* in all_entries */
    int lineage_refs; /* views of this storage that entries hold as inputs */
    struct dtr_entry *next; /* hash chain */
} dtr_entry;

enum { NBUCKETS = 4096, SWEEP_EVERY = 256, MAX_RECOMPUTE_DEPTH = 4096, SAMPLE_MIN = 64 };

static pthread_mutex_t mu;
static _Atomic int rerun_kernels; /* recomputations whose kernel runs now */
static ty_dtr_config config;
static ty_dtr_stats stats;
static dtr_entry *buckets[NBUCKETS];
static dtr_entry **all_entries;
static int nentries, cap_entries;
static uint64_t clock_now, pick_epoch, sample_seed = 0x9e3779b97f4a7c15ull;
/* The clock when the outermost call in flight began: entries used since (by it, the ops its
 * forward applies, or the recomputations they asked for) are read by kernels still running. */
static uint64_t in_use_since;
static int recompute_depth;

static size_t
bucket_of(const ty_storage *s)
{
    uintptr_t p = (uintptr_t)s >> 4;
    return (size_t)((p ^ (p >> 12)) % NBUCKETS);
}

static dtr_entry *
find(const ty_storage *s)
{
    for (dtr_entry *e = buckets[bucket_of(s)]; e; e = e->next) {
        if (e->storage == s) {
            return e;
        }
    }
    return NULL;
}

static int64_t
live_bytes(void)
{
    ty_mem_stats m = {.struct_size = sizeof m};
    ty_mem_get_stats(&m);
    return m.allocated;
}

/* Live bytes DTR keeps under: its threshold, or the allocator's limit when that is lower (an
 * allocation past the limit fails whatever the threshold says). */
static int64_t
budget(void)
{
    ty_mem_stats m = {.struct_size = sizeof m};
    ty_mem_get_stats(&m);
    int64_t b = config.eviction_threshold;
    return m.limit > 0 && m.limit < b ? m.limit : b;
}

/* ---- entries ---- */
static void
unlink_entry(dtr_entry *e)
{
    dtr_entry **p = &buckets[bucket_of(e->storage)];
    while (*p != e) {
        p = &(*p)->next;
    }
    *p = e->next;
    all_entries[e->index] = all_entries[--nentries];
    all_entries[e->index]->index = e->index;
}

/* Forgets e; its storage keeps its data unless e was the last holder. */
static void
free_entry(dtr_entry *e)
{
    unlink_entry(e);
    if (e->evicted) { /* only when nobody else holds the storage */
        e->storage->deferred = NULL;
        stats.evicted_now--;
    }
    ty_storage_release(e->storage);
    for (int i = 0; i < e->nin; i++) {
        ty_storage *s = e->in[i]->storage; /* alive while an entry holds it */
        dtr_entry *p = find(s);
        if (p) {
            p->lineage_refs--;
        }
        ty_tensor_release(e->in[i]);
        if (p && !p->busy && atomic_load(&p->storage->refcnt) == 1) {
            free_entry(p); /* its data was kept only for this lineage */
        }
    }
    free(e->in);
    free(e->in_version);
    free(e->params);
    free(e);
    stats.entries--;
}

static ty_status restore(const ty_deferral *d, ty_storage *s);

static ty_status
grow_entries(void)
{
    if (nentries < cap_entries) {
        return TY_OK;
    }
    int cap = cap_entries ? cap_entries * 2 : 256;
    dtr_entry **p = realloc(all_entries, sizeof(*p) * (size_t)cap);
    TY_CHECK(p, TY_ERR_OOM, "DTR: out of memory recording lineage");
    all_entries = p;
    cap_entries = cap;
    return TY_OK;
}

/* Multiply-adds per element of output 0 for the ops whose time is their arithmetic (the rest
 * are bound by the bytes they move): read from the shapes, so the same call always costs the
 * same. */
static double
macs_per_output(const ty_call *c, ty_tensor *const *out)
{
    if ((c->op == TY_OP_CONV2D || c->op == TY_OP_CONV_BIAS) && c->nin >= 2 &&
        out[0]->ndim >= 2 && out[0]->shape[1] > 0) { /* weight: (OC, IC/G, KH, KW) */
        return (double)ty_tensor_numel(c->in[1]) / (double)out[0]->shape[1];
    }
    if (c->op == TY_OP_MATMUL && c->in[0]->ndim >= 2) {
        const ty_p_matmul *p = c->params;
        const ty_tensor *a = c->in[0];
        return (double)a->shape[a->ndim - (p->transpose_a ? 2 : 1)];
    }
    return 0;
}

/* A deterministic proxy for the call's time, in bytes moved: the bytes it reads and writes,
 * plus its arithmetic at a rate in flops per byte. A matmul's is MATMUL_FLOPS_PER_BYTE, chosen
 * by outcome: on the 12-layer 512-wide encoder 64 recomputes least (32 does 16% more, though less
 * on a 4-layer one); 16 or less keeps so many matmul outputs that the evicted chains of the cheap
 * ops grow, and a small MLP then runs out of room at half its peak (test_dtr.py). A conv's is
 * CONV_FLOPS_PER_BYTE, near what it costs: a narrow conv's GEMM packs its im2col operand, which
 * takes as long as its arithmetic (ResNet-110's 16-channel 3x3 conv at batch 48: 4.7 ms, 20
 * times a relu of its output, about 2 flops per byte the relu moves). At 64 it was priced at 1.5
 * relus, below the batch norm and relu that rebuild the relu output the conv reads, so DTR
 * evicted conv outputs: 60 convs recomputed per ResNet-110 step at 3x the plain batch under the
 * plain step's memory; at 4, 38 (and 90 batch norms and relus instead of 60: 6% less CPU). */
enum { MATMUL_FLOPS_PER_BYTE = 64, CONV_FLOPS_PER_BYTE = 4 };

static double
call_cost(const ty_call *c, ty_tensor *const *out)
{
    double bytes = 0;
    for (int i = 0; i < c->nin; i++) {
        bytes += (double)c->in[i]->storage->nbytes;
    }
    for (int i = 0; i < c->nout; i++) {
        bytes += (double)out[i]->storage->nbytes;
    }
    double flops = 2.0 * macs_per_output(c, out) * (double)ty_tensor_numel(out[0]);
    int conv = c->op == TY_OP_CONV2D || c->op == TY_OP_CONV_BIAS;
    return bytes + flops / (conv ? CONV_FLOPS_PER_BYTE : MATMUL_FLOPS_PER_BYTE);
}

/* e keeps views of its own of c's inputs, so that a storage's holders other than lineage can
 * be told apart (see lineage_only). */
static ty_status
hold_inputs(dtr_entry *e, const ty_call *c)
{
    for (int i = 0; i < c->nin; i++) {
        const ty_tensor *t = c->in[i];
        if (ty_tensor_view(t, t->ndim, t->shape, t->strides, t->offset, &e->in[i]) != TY_OK) {
            for (int j = 0; j < i; j++) {
                ty_tensor_release(e->in[j]);
            }
            return TY_ERR_OOM;
        }
        e->in_version[i] = atomic_load(&t->storage->version);
        dtr_entry *p = find(t->storage);
        if (p) {
            p->lineage_refs++;
        }
    }
    return TY_OK;
}

static ty_status
record(const ty_call *c, ty_tensor *const *out, int k)
{
    const ty_op_def *def = &ty_op_defs[c->op];
    TY_TRY(grow_entries());
    dtr_entry *e = calloc(1, sizeof(*e));
    size_t psize = def->params->size;
    if (e) {
        e->params = malloc(psize ? psize : 1);
        e->in = calloc((size_t)c->nin + 1, sizeof(ty_tensor *));
        e->in_version = calloc((size_t)c->nin + 1, sizeof(uint32_t));
    }
    if (!e || !e->params || !e->in || !e->in_version) {
        if (e) {
            free(e->params);
            free(e->in);
            free(e->in_version);
        }
        free(e);
        return ty_set_error(TY_ERR_OOM, "DTR: out of memory recording lineage");
    }
    memcpy(e->params, c->params, psize);
    e->deferral = (ty_deferral){TY_ERR_INTERNAL, "evicted by DTR", restore};
    e->op = c->op;
    e->nin = c->nin;
    e->nout = c->nout;
    e->out_index = k;
    if (hold_inputs(e, c) != TY_OK) {
        free(e->params);
        free(e->in);
        free(e->in_version);
        free(e);
        return ty_set_error(TY_ERR_OOM, "DTR: out of memory recording lineage");
    }
    e->storage = out[k]->storage;
    ty_storage_retain(e->storage);
    e->version = atomic_load(&e->storage->version);
    e->cost = call_cost(c, out);
    e->last_use = clock_now;
    size_t b = bucket_of(e->storage);
    e->next = buckets[b];
    buckets[b] = e;
    e->index = nentries;
    all_entries[nentries++] = e;
    stats.entries++;
    return TY_OK;
}

/* Outputs that a rerun of the call reproduces into memory of their own: a view op's only when
 * it copied (a reshape of a transposed tensor; its rerun copies again, from the same layout). */
static int
recordable(const ty_call *c, ty_tensor *const *out)
{
    uint32_t f = ty_op_defs[c->op].flags;
    if (f & (TY_F_DYN | TY_F_RANDOM | TY_F_WRITES)) {
        return 0;
    }
    for (int i = 0; i < c->nin && (f & TY_F_VIEW); i++) {
        for (int k = 0; k < c->nout; k++) {
            if (out[k]->storage == c->in[i]->storage) {
                return 0;
            }
        }
    }
    return 1;
}

static int
plain_storage(const ty_storage *s)
{
    return s->deleter == NULL && s->data != NULL && s->deferred == NULL;
}

/* ---- eviction ---- */
static int
inputs_unchanged(const dtr_entry *e)
{
    for (int i = 0; i < e->nin; i++) {
        if (atomic_load(&e->in[i]->storage->version) != e->in_version[i]) {
            return 0;
        }
    }
    return 1;
}

/* Entries whose storage nobody else holds, or whose lineage no longer describes their data
 * (they or an input were written in place), go; an evicted one stays until it is dead. */
static void
sweep(void)
{
    for (int i = nentries - 1; i >= 0; i--) {
        if (i >= nentries) {
            continue; /* freeing cascaded past the end */
        }
        dtr_entry *e = all_entries[i];
        int dead = atomic_load(&e->storage->refcnt) == 1;
        int stale = !e->evicted && (atomic_load(&e->storage->version) != e->version ||
                                    !inputs_unchanged(e));
        if (!e->busy && (dead || stale || e->pinned)) {
            free_entry(e);
        }
    }
}

/* Entries used by the calls in flight (since in_use_since) stay: bringing back one of an op's
 * inputs must not evict another, nor may scratch taken inside a kernel evict what it reads. */
static int
evictable(const dtr_entry *e)
{
    return !e->evicted && !e->busy && !e->pinned && e->last_use < in_use_since &&
           plain_storage(e->storage) &&
           (int64_t)e->storage->nbytes >= config.evictee_minimum_size &&
           atomic_load(&e->storage->version) == e->version && inputs_unchanged(e);
}

enum { MAX_CHAIN_DEPTH = 64 };

/* What a rerun of e costs with the evicted ancestors it needs rebuilt first (the DTR paper's
 * e*, counted up the chain; a shared ancestor counts once per path, an over-estimate). Worked
 * out once per pick, so a scan stays linear in the entries. */
static double
chain_cost(dtr_entry *e, int depth)
{
    if (e->chain_epoch == pick_epoch) {
        return e->chain_cost;
    }
    double cost = e->cost;
    for (int i = 0; i < e->nin && depth < MAX_CHAIN_DEPTH; i++) {
        dtr_entry *p = e->in[i]->storage->deferred ? find(e->in[i]->storage) : NULL;
        cost += p && p->evicted ? chain_cost(p, depth + 1) : 0;
    }
    e->chain_epoch = pick_epoch;
    e->chain_cost = cost;
    return cost;
}

/* Held by nothing but other entries' lineage (a matmul output a bias add read, the scores a
 * softmax read): plain eager would have freed it, and its data only spares recomputing it when
 * a dependent is recomputed, which the dependent's chain cost counts once it is evicted. */
static int
lineage_only(const dtr_entry *e)
{
    return atomic_load(&e->storage->refcnt) == 1 + e->lineage_refs;
}

/* The DTR heuristic: cost (with the evicted chain a rerun would need first) over
 * bytes x staleness; lower is a better victim. A tensor only lineage holds goes before any
 * that something reads (the biggest and stalest first): keeping those instead recomputed
 * nearly every matmul of a 12-layer encoder's step once in its backward, twice what it
 * recomputes so. */
static double
score(dtr_entry *e)
{
    double stale = (double)(clock_now - e->last_use) + 1.0;
    if (lineage_only(e)) {
        return -(double)e->storage->nbytes * stale;
    }
    return chain_cost(e, 0) / ((double)e->storage->nbytes * stale);
}

static uint64_t
next_sample(void)
{
    sample_seed = sample_seed * 6364136223846793005ull + 1442695040888963407ull;
    return sample_seed >> 33;
}

static dtr_entry *
pick_victim(void)
{
    pick_epoch++;
    dtr_entry *best = NULL;
    double best_score = INFINITY;
    int n = nentries;
    /* a sample of sqrt(n), but never fewer than SAMPLE_MIN: a small set is scanned whole */
    int tries = config.sqrt_sampling ? (int)ceil(sqrt((double)n)) : n;
    tries = tries < SAMPLE_MIN ? (n < SAMPLE_MIN ? n : SAMPLE_MIN) : tries;
    for (int t = 0; t < tries && n > 0; t++) {
        dtr_entry *e = all_entries[config.sqrt_sampling ? (int)(next_sample() % (uint64_t)n) : t];
        if (evictable(e)) {
            double s = score(e);
            if (s < best_score) {
                best = e;
                best_score = s;
            }
        }
    }
    if (!best && config.sqrt_sampling) { /* the sample held no candidate: look at all */
        for (int t = 0; t < n; t++) {
            if (evictable(all_entries[t]) && score(all_entries[t]) < best_score) {
                best = all_entries[t];
                best_score = score(best);
            }
        }
    }
    return best;
}

static void
evict(dtr_entry *e)
{
    ty_storage_drop_data(e->storage, &e->deferral);
    e->evicted = 1;
    e->times_evicted++;
    stats.evictions++;
    stats.evicted_now++;
}

/* Evicts until need more bytes fit under the budget; 0 when nothing is left to evict. */
static int
evict_for(int64_t need)
{
    int64_t limit = budget();
    while (live_bytes() + need > limit) {
        dtr_entry *v = pick_victim();
        if (!v) {
            return 0;
        }
        evict(v);
    }
    return 1;
}

/* evict_for, after letting go of the entries nobody needs. Within one call (one clock tick)
 * little dies between sweeps, and a call under pressure made room up to three times (for its
 * evicted inputs, its outputs, its kernels' scratch), each sweep walking every entry: the
 * first sweeps, the others sweep only when there is nothing left to evict. */
static int
make_room(int64_t need)
{
    static uint64_t swept_at = UINT64_MAX;
    if (live_bytes() + need <= budget()) {
        return 1;
    }
    int swept = swept_at != clock_now;
    if (swept) {
        sweep();
        swept_at = clock_now;
    }
    if (evict_for(need)) {
        return 1;
    }
    if (!swept) {
        sweep();
    }
    return !swept && evict_for(need);
}

/* ---- recomputation ---- */
static ty_status
rerun(dtr_entry *e)
{
    const ty_op_def *def = &ty_op_defs[e->op];
    ty_call c = {e->op, e->params, e->nin, e->in, e->nout};
    ty_meta meta[TY_MAX_OUTPUTS];
    ty_tensor *out[TY_MAX_OUTPUTS] = {0};
    ty_device_type dev = e->storage->device;
    ty_forward_fn fwd = ty_op_forward(dev, e->op);
    TY_CHECK(fwd, TY_ERR_UNSUPPORTED, "DTR: no kernel to recompute %s", def->name);
    ty_status st = def->infer(&c, meta);
    for (int i = 0; i < e->nout && st == TY_OK && !(def->flags & TY_F_VIEW); i++) {
        st = ty_tensor_new_on(dev, meta[i].dtype, meta[i].ndim, meta[i].shape, &out[i]);
    } /* a view op makes its outputs: one recorded here copies again */
    if (st == TY_OK) {
        atomic_fetch_add(&rerun_kernels, 1);
        st = fwd(&c, out);
        atomic_fetch_sub(&rerun_kernels, 1);
    }
    ty_storage *got = st == TY_OK ? out[e->out_index]->storage : NULL;
    if (got && got->nbytes == e->storage->nbytes && plain_storage(got) &&
        atomic_load(&got->refcnt) == 1) { /* its own new memory (not an input's): take it */
        e->storage->data = got->data;
        got->data = NULL;
    } else if (st == TY_OK) {
        st = ty_set_error(TY_ERR_INTERNAL, "DTR: %s recomputed %zu bytes instead of %zu",
                          def->name, got ? got->nbytes : 0, e->storage->nbytes);
    }
    for (int i = 0; i < e->nout; i++) {
        ty_tensor_release(out[i]);
    }
    return st;
}

static void
set_inputs_busy(dtr_entry *e, int delta)
{
    for (int i = 0; i < e->nin; i++) {
        dtr_entry *p = find(e->in[i]->storage);
        if (p) {
            p->busy += delta;
        }
    }
}

static ty_status
restore_inputs(dtr_entry *e)
{
    const char *name = ty_op_defs[e->op].name;
    for (int i = 0; i < e->nin; i++) {
        TY_CHECK(atomic_load(&e->in[i]->storage->version) == e->in_version[i], TY_ERR_INVALID_ARG,
                 "DTR: cannot recompute an evicted output of %s: its input %d was written in "
                 "place since",
                 name, i);
        TY_TRY(ty_check_readable(e->in[i]));
    }
    return TY_OK;
}

static ty_status
recompute(dtr_entry *e)
{
    const char *name = ty_op_defs[e->op].name;
    TY_CHECK(recompute_depth < MAX_RECOMPUTE_DEPTH, TY_ERR_OOM,
             "DTR: recomputing an output of %s needs a chain of more than %d evicted tensors",
             name, MAX_RECOMPUTE_DEPTH);
    recompute_depth++;
    e->busy++;
    set_inputs_busy(e, 1);
    ty_status st = restore_inputs(e);
    if (st == TY_OK && config.enabled && config.eviction_threshold > 0 &&
        !make_room((int64_t)e->storage->nbytes)) {
        st = ty_set_error(TY_ERR_OOM,
                          "DTR: recomputing an evicted output of %s (%zu bytes) does not fit under "
                          "the eviction threshold of %lld bytes (%lld bytes live that DTR cannot "
                          "evict); raise tianyuan.dtr.eviction_threshold",
                          name, e->storage->nbytes, (long long)config.eviction_threshold,
                          (long long)live_bytes());
    }
    if (st == TY_OK) {
        st = rerun(e);
    }
    if (st == TY_OK) {
        e->storage->deferred = NULL;
        e->evicted = 0;
        /* used just now, but only the op in flight's own inputs are kept from eviction */
        e->last_use = e->last_use == clock_now ? clock_now : clock_now - 1;
        stats.recomputes++;
        stats.evicted_now--;
    }
    set_inputs_busy(e, -1);
    e->busy--;
    recompute_depth--;
    return st;
}

static ty_status
restore(const ty_deferral *d, ty_storage *s)
{
    (void)s;
    pthread_mutex_lock(&mu);
    dtr_entry *e = (dtr_entry *)(uintptr_t)d; /* the deferral is the entry's first member */
    ty_status st = e->evicted ? recompute(e) : TY_OK;
    pthread_mutex_unlock(&mu);
    return st;
}

/* ---- the dispatcher hook ---- */
static int evicting(void);

static void
set_call_busy(const ty_call *c, ty_tensor *const *out, int delta)
{
    for (int i = 0; i < c->nin + c->nout; i++) {
        ty_tensor *t = i < c->nin ? c->in[i] : out[i - c->nin];
        dtr_entry *e = find(t->storage);
        if (e) {
            e->busy += delta;
        }
    }
}

/* Outputs under evictee_minimum_size are never evicted, so they get no lineage: a dependent's
 * lineage holds them as it holds a parameter. A ResNet's batch norms make about six
 * per-channel tensors each (batch and running statistics); recorded, they doubled the entries
 * that every sweep, victim pick and in-place write walks. */
static ty_status
record_outputs(const ty_call *c, ty_tensor *const *out)
{
    for (int k = 0; k < c->nout && recordable(c, out); k++) {
        const ty_storage *s = out[k]->storage;
        if (plain_storage(s) && (int64_t)s->nbytes >= config.evictee_minimum_size && !find(s)) {
            TY_TRY(record(c, out, k));
        }
    }
    return TY_OK;
}

static ty_status
after(void *ud, const ty_call *c, ty_tensor *const *out)
{
    (void)ud;
    if (!config.enabled && nentries == 0) {
        return TY_OK;
    }
    pthread_mutex_lock(&mu);
    for (int i = 0; i < c->nin; i++) {
        dtr_entry *e = find(c->in[i]->storage);
        if (e) {
            e->last_use = clock_now;
        }
    }
    /* A backward pass's gradients live only until the next rule has read them: their lineage
     * would only chain each gradient to the last (a recomputation reaching back through the
     * whole pass), so they are not recorded, and the activations they read are not held. */
    ty_status st = config.enabled && !ty_ad_in_backward() ? record_outputs(c, out) : TY_OK;
    if (st == TY_OK && evicting()) { /* for what the kernel allocated beyond its outputs */
        set_call_busy(c, out, 1);
        (void)make_room(0); /* an op never fails for want of victims; a recomputation does */
        set_call_busy(c, out, -1);
    } else if (clock_now % SWEEP_EVERY == 0 && !ty_in_forward()) {
        sweep();
    }
    pthread_mutex_unlock(&mu);
    return st;
}

/* ---- in-place writes ---- */
static ty_status keep_for_write(const ty_call *c);
static int
depends_on(dtr_entry *e, const ty_storage *s)
{
    if (e->mark == 0) {
        e->mark = 2;
        for (int i = 0; i < e->nin && e->mark == 2; i++) {
            dtr_entry *p = e->in[i]->storage == s ? NULL : find(e->in[i]->storage);
            e->mark = e->in[i]->storage == s || (p && depends_on(p, s)) ? 1 : 2;
        }
    }
    return e->mark == 1;
}

/* Drops the lineage of every tensor that still holds its data and would be recomputed from the
 * written storage's old contents. */
static void
cut_dependents(void)
{
    for (int i = nentries - 1; i >= 0; i--) {
        if (i < nentries && all_entries[i]->mark == 1 && !all_entries[i]->evicted &&
            !all_entries[i]->busy) {
            free_entry(all_entries[i]);
        }
    }
}

static ty_status
restore_dependents(void)
{
    for (int i = 0; i < nentries; i++) {
        all_entries[i]->busy += all_entries[i]->mark == 1;
    }
    ty_status st = TY_OK;
    int again = 1;
    while (again && st == TY_OK) { /* a recomputation's sweep may reorder the entries */
        again = 0;
        for (int i = 0; i < nentries && st == TY_OK; i++) {
            if (all_entries[i]->mark == 1 && all_entries[i]->evicted) {
                st = recompute(all_entries[i]);
                again = 1;
            }
        }
    }
    for (int i = 0; i < nentries; i++) {
        all_entries[i]->busy -= all_entries[i]->mark == 1;
    }
    return st;
}

/* Evicted dependents still held read the written storage's old contents when recomputed: their
 * lineage is pointed at a copy of it (one storage's bytes, instead of rebuilding at once every
 * evicted chain that reads it). The copy has no lineage, so it is never evicted; it dies with
 * the last entry reading it. */
static ty_status
snapshot_for_dependents(const ty_storage *s)
{
    ty_tensor *copy = NULL;
    ty_status st = TY_OK;
    for (int i = 0; i < nentries && st == TY_OK; i++) {
        dtr_entry *e = all_entries[i];
        for (int k = 0; k < e->nin && st == TY_OK; k++) {
            ty_tensor *t = e->in[k], *v = NULL;
            if (t->storage != s) {
                continue;
            }
            if (!copy) {
                int64_t n = (int64_t)s->nbytes;
                TY_TRY(ty_tensor_new_on(s->device, TY_UINT8, 1, &n, &copy));
                memcpy(copy->storage->data, s->data, s->nbytes);
            }
            st = ty_tensor_view(copy, t->ndim, t->shape, t->strides, t->offset, &v);
            if (st == TY_OK) {
                v->dtype = t->dtype;
                dtr_entry *p = find(t->storage);
                if (p) {
                    p->lineage_refs--;
                }
                ty_tensor_release(t);
                e->in[k] = v;
                e->in_version[k] = atomic_load(&copy->storage->version);
            }
        }
    }
    ty_tensor_release(copy);
    return st == TY_OK ? TY_OK : ty_set_error(st, "DTR: out of memory keeping a written input");
}

/* Before an op writes a storage in place, nothing may be left whose lineage reads its old
 * contents: the lineage of tensors that hold their data is dropped; evicted ones that someone
 * still holds get a copy of the old contents (or, off the CPU, are brought back). */
static void
touch_inputs(const ty_call *c)
{
    clock_now++;
    if (!ty_in_forward()) {
        in_use_since = clock_now;
    }
    for (int i = 0; i < c->nin; i++) {
        dtr_entry *e = find(c->in[i]->storage);
        if (e) {
            e->last_use = clock_now;
        }
    }
}

/* Bytes the call's outputs will take (0 when its forward allocates them itself, or when the
 * call is invalid: the dispatcher then reports it). */
static int64_t
output_bytes(const ty_call *c)
{
    const ty_op_def *def = &ty_op_defs[c->op];
    ty_meta meta[TY_MAX_OUTPUTS];
    if ((def->flags & (TY_F_VIEW | TY_F_DYN)) || def->infer(c, meta) != TY_OK) {
        return 0;
    }
    int64_t bytes = 0;
    for (int i = 0; i < c->nout; i++) {
        int64_t n = 1;
        for (int d = 0; d < meta[i].ndim; d++) {
            n *= meta[i].shape[d];
        }
        bytes += n * (int64_t)ty_dtype_size(meta[i].dtype);
    }
    return bytes;
}

/* Evicts before the call allocates, so live bytes stay under the threshold instead of passing
 * it by one op's outputs: its evicted inputs come back first (each making room for itself),
 * then room is made for its outputs. Its inputs were just used, so neither step evicts them. */
static ty_status
room_for_call(const ty_call *c)
{
    for (int i = 0; i < c->nin; i++) {
        const ty_deferral *d = c->in[i]->storage->deferred;
        if (d && d->restore == restore) {
            TY_TRY(ty_check_readable(c->in[i]));
        }
    }
    (void)make_room(output_bytes(c)); /* as after an op: a call never fails for want of victims */
    return TY_OK;
}

static int
evicting(void)
{
    return config.enabled && config.eviction_threshold > 0 && !ty_in_forward();
}

static ty_status
before(void *ud, const ty_call *c)
{
    (void)ud;
    if (nentries == 0) {
        return TY_OK;
    }
    pthread_mutex_lock(&mu);
    touch_inputs(c);
    ty_status st = ty_op_defs[c->op].flags & TY_F_WRITES && c->nin > 0 ? keep_for_write(c)
                                                                         : TY_OK;
    if (st == TY_OK && evicting()) {
        st = room_for_call(c);
    }
    pthread_mutex_unlock(&mu);
    return st;
}

/* Cuts and restores the dependents of the storage c writes. */
static int
read_by_lineage(const ty_storage *s)
{
    for (int i = 0; i < nentries; i++) {
        for (int k = 0; k < all_entries[i]->nin; k++) {
            if (all_entries[i]->in[k]->storage == s) {
                return 1;
            }
        }
    }
    return 0;
}

static ty_status
keep_for_write(const ty_call *c)
{
    const ty_storage *s = c->in[0]->storage;
    if (!read_by_lineage(s)) { /* a running statistic, a parameter: nothing to cut or keep */
        return TY_OK;
    }
    for (int i = 0; i < nentries; i++) {
        all_entries[i]->mark = 0;
    }
    for (int i = 0; i < nentries; i++) {
        (void)depends_on(all_entries[i], s);
    }
    cut_dependents();
    sweep(); /* evicted dependents held by nothing but cut lineage go */
    int copyable = s->device == TY_DEVICE_CPU && s->data && !s->deferred;
    ty_status st = copyable ? snapshot_for_dependents(s) : restore_dependents();
    if (st == TY_OK) {
        cut_dependents();
    }
    return st;
}

/* Gradients go to the optimizer, which writes parameters in place: they are kept (never
 * evicted), and their lineage, which reaches back through the whole step, is let go. */
static ty_status
on_backward(void *ud, ty_backward_phase phase, ty_backward_event *ev)
{
    (void)ud;
    if (phase != TY_BACKWARD_END || nentries == 0) {
        return TY_OK;
    }
    for (int i = 0; i < ev->nx; i++) {
        if (ev->grads[i]) {
            TY_TRY(ty_dtr_pin(ev->grads[i]));
        }
    }
    return TY_OK;
}

/* The allocator's calls around taking memory: kernel scratch (conv's im2col and packing
 * buffers, on any worker thread) makes room as an op's outputs do. Only inside a dispatched
 * forward or a recomputation, where what the kernels read is marked in use; elsewhere (a trace
 * replay) a read pointer may be held unmarked. room_mu is held from the check until the bytes
 * are counted, so two threads never both take the last room. In a recomputation its thread
 * holds mu and waits in the kernel, where only allocations call here: room_mu alone guards the
 * eviction. Elsewhere no thread waits in a kernel holding mu. */
static pthread_mutex_t room_mu = PTHREAD_MUTEX_INITIALIZER;

static int
before_alloc(int64_t nbytes)
{
    int in_rerun = atomic_load(&rerun_kernels) > 0;
    if (!in_rerun && !ty_forwards_in_flight()) {
        return 0;
    }
    pthread_mutex_lock(&room_mu);
    if (live_bytes() + nbytes > budget()) {
        /* a thread that holds mu may be waiting for room_mu: never wait for mu holding it */
        int locked = in_rerun || pthread_mutex_trylock(&mu) == 0;
        if (locked) { /* short of victims, the allocation itself reports it; no sweep:
                         * releasing lineage would release tensors on a worker thread */
            (void)evict_for(nbytes);
        }
        if (locked && !in_rerun) {
            pthread_mutex_unlock(&mu);
        }
    }
    return 1;
}

static void
after_alloc(int held)
{
    if (held) {
        pthread_mutex_unlock(&room_mu);
    }
}

static ty_status pin_storage(const ty_storage *s);

/* A raw pointer to t's bytes escapes (ty_tensor_data, DLPack): they are kept from now on. */
static ty_status
on_data_escape(const ty_tensor *t)
{
    if (nentries == 0) {
        return TY_OK;
    }
    pthread_mutex_lock(&mu);
    ty_status st = pin_storage(t->storage);
    pthread_mutex_unlock(&mu);
    return st;
}

/* A traced replay reads t outside the dispatcher: it comes back when evicted, and counts as used
 * now, so nothing evicts it before the next dispatched call begins (bringing back a node's later
 * input must not evict an earlier one, evicted or not). */
static ty_status
on_replay_read(const ty_tensor *t)
{
    if (nentries == 0) {
        return TY_OK;
    }
    pthread_mutex_lock(&mu);
    dtr_entry *e = find(t->storage);
    ty_status st = e && e->evicted ? recompute(e) : TY_OK;
    if (e && st == TY_OK) {
        e->last_use = clock_now; /* in_use_since <= clock_now: kept until a call ticks */
    }
    pthread_mutex_unlock(&mu);
    return st;
}

int
ty_dtr_idle(void)
{
    pthread_mutex_lock(&mu);
    int idle = !config.enabled && nentries == 0;
    pthread_mutex_unlock(&mu);
    return idle;
}

ty_status
ty_dtr_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE); /* recomputation reads inputs */
    int rc = pthread_mutex_init(&mu, &a);
    pthread_mutexattr_destroy(&a);
    TY_CHECK(rc == 0, TY_ERR_INTERNAL, "DTR: cannot create its lock");
    config.evictee_minimum_size = 1 << 20;
    ty_set_data_escape_hook(on_data_escape);
    ty_set_replay_read_hook(on_replay_read);
    ty_hook h = {.after = after, .kind = TY_HOOK_DTR, .backward = on_backward, .before = before};
    return ty_hook_add(&h);
}

/* ---- public API ---- */
ty_status
ty_dtr_set_config(const ty_dtr_config *cfg)
{
    TY_CHECK(cfg, TY_ERR_INVALID_ARG, "dtr: NULL config");
    TY_CHECK(cfg->eviction_threshold >= 0, TY_ERR_INVALID_ARG,
             "dtr: eviction_threshold must be >= 0 bytes, got %lld",
             (long long)cfg->eviction_threshold);
    TY_CHECK(cfg->evictee_minimum_size >= 0, TY_ERR_INVALID_ARG,
             "dtr: evictee_minimum_size must be >= 0 bytes, got %lld",
             (long long)cfg->evictee_minimum_size);
    pthread_mutex_lock(&mu);
    config = *cfg;
    config.enabled = cfg->enabled != 0;
    int on = config.enabled && config.eviction_threshold > 0;
    ty_mem_set_pressure_hook(on ? before_alloc : NULL, on ? after_alloc : NULL);
    pthread_mutex_unlock(&mu);
    return TY_OK;
}

void
ty_dtr_get_config(ty_dtr_config *out)
{
    pthread_mutex_lock(&mu);
    *out = config;
    pthread_mutex_unlock(&mu);
}

void
ty_dtr_get_stats(ty_dtr_stats *out)
{
    pthread_mutex_lock(&mu);
    sweep();
    *out = stats;
    pthread_mutex_unlock(&mu);
}

/* Brings s back when evicted and forgets its lineage, so it is never evicted again (an entry
 * busy in a recomputation is kept until then, marked pinned). */
static ty_status
pin_storage(const ty_storage *s)
{
    dtr_entry *e = find(s);
    ty_status st = e && e->evicted ? recompute(e) : TY_OK;
    if (e && st == TY_OK) {
        e->pinned = 1;
        if (!e->busy) {
            free_entry(e);
        }
    }
    return st;
}

ty_status
ty_dtr_pin(ty_tensor *t)
{
    TY_CHECK(t, TY_ERR_INVALID_ARG, "dtr: NULL tensor");
    pthread_mutex_lock(&mu);
    ty_status st = pin_storage(t->storage);
    pthread_mutex_unlock(&mu);
    return st;
}

ty_status
ty_dtr_drop(ty_tensor *t, int *dropped)
{
    TY_CHECK(t && dropped, TY_ERR_INVALID_ARG, "dtr: NULL argument");
    pthread_mutex_lock(&mu);
    dtr_entry *e = find(t->storage);
    *dropped = e && !e->evicted && !e->busy && !e->pinned && plain_storage(e->storage) &&
               atomic_load(&e->storage->version) == e->version && inputs_unchanged(e);
    if (*dropped) {
        evict(e);
    }
    pthread_mutex_unlock(&mu);
    return TY_OK;
}

void
ty_dtr_tensor_info(const ty_tensor *t, int *evicted, int64_t *times_evicted)
{
    pthread_mutex_lock(&mu);
    dtr_entry *e = t ? find(t->storage) : NULL;
    *evicted = e ? e->evicted : 0;
    *times_evicted = e ? e->times_evicted : 0;
    pthread_mutex_unlock(&mu);
}
