#include <stdlib.h>
#include <string.h>

#include "imperative/grad_reads.h"
#include "imperative/tape.h"
#include "ops/gradkit.h"
#include "ops/op.h"

struct ty_node {
    _Atomic int64_t refcnt;
    ty_op op;
    void *params;
    int nin, nout;
    ty_tensor **in;     /* saved inputs (detached views, or shells: see save_views) */
    ty_tensor **out;    /* saved outputs (likewise) */
    uint32_t *versions; /* of the saved inputs' then outputs' memory when saved */
    ty_ad_meta **edges; /* per input: its autodiff meta, or NULL when untracked */
    int freed;          /* saved tensors released after a backward */
    ty_custom_grad custom;
    void *custom_ctx;
    void (*custom_free)(void *);
    /* scratch of one backward pass */
    int64_t pass, deps;
    ty_tensor **grad;
};

static _Atomic int recording;
static _Thread_local int suspended;
static _Thread_local int backward_depth;

/* The tape's extension slot of every tensor: its ty_ad_meta, or 0 when untracked. */
static int ad_slot = -1;

static inline ty_ad_meta *
AD(const ty_tensor *t)
{
    return ad_slot < 0 ? NULL : (ty_ad_meta *)t->ext[ad_slot];
}

static inline void
set_ad(ty_tensor *t, ty_ad_meta *m)
{
    if (ad_slot >= 0) {
        t->ext[ad_slot] = (uintptr_t)m;
    } else {
        ty_ad_meta_release(m); /* no tape (ty_init not called): nothing is tracked */
    }
}
static _Atomic int64_t pass_counter;

static void node_release(ty_node *n);

static void
free_saved(ty_node *n)
{
    for (int i = 0; n->in && i < n->nin; i++) {
        ty_tensor_release(n->in[i]);
        n->in[i] = NULL;
    }
    for (int i = 0; n->out && i < n->nout; i++) {
        ty_tensor_release(n->out[i]);
        n->out[i] = NULL;
    }
    n->freed = 1;
}

void
ty_ad_meta_release(ty_ad_meta *m)
{
    if (!m || atomic_fetch_sub_explicit(&m->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
    node_release(m->node);
    free(m);
}

static void
node_release(ty_node *n)
{
    if (!n || atomic_fetch_sub_explicit(&n->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
    free_saved(n);
    for (int i = 0; n->edges && i < n->nin; i++) {
        ty_ad_meta_release(n->edges[i]);
    }
    if (n->custom_free) {
        n->custom_free(n->custom_ctx);
    }
    free(n->in);
    free(n->out);
    free(n->versions);
    free(n->edges);
    free(n->params);
    free(n);
}

static ty_ad_meta *
meta_new(ty_node *node, int idx)
{
    ty_ad_meta *m = calloc(1, sizeof(*m));
    if (m) {
        atomic_init(&m->refcnt, 1);
        m->node = node;
        m->out_index = idx;
        if (node) {
            atomic_fetch_add(&node->refcnt, 1);
        }
    }
    return m;
}

ty_status
ty_ad_attach(ty_tensor *t)
{
    TY_CHECK(t, TY_ERR_INVALID_ARG, "attach: NULL tensor");
    TY_CHECK(ty_dtype_is_float(t->dtype), TY_ERR_DTYPE,
             "attach: only float tensors can have gradients, got %s", ty_dtype_name(t->dtype));
    TY_CHECK(ad_slot >= 0, TY_ERR_INTERNAL,
             "attach: autodiff is not initialized (call ty_init() first)");
    if (AD(t)) {
        return TY_OK;
    }
    set_ad(t, meta_new(NULL, 0));
    TY_CHECK(AD(t), TY_ERR_OOM, "attach: out of memory");
    return TY_OK;
}

void
ty_ad_detach(ty_tensor *t)
{
    if (t) {
        ty_ad_meta_release(AD(t));
        set_ad(t, NULL);
    }
}

int
ty_ad_is_tracked(const ty_tensor *t)
{
    return t && AD(t) != NULL;
}

void
ty_ad_set_recording(int on)
{
    if (on) {
        atomic_fetch_add(&recording, 1);
    } else if (atomic_load(&recording) > 0) {
        atomic_fetch_sub(&recording, 1);
    }
}

int
ty_ad_recording(void)
{
    return atomic_load(&recording) > 0 && suspended == 0;
}

int
ty_ad_in_backward(void)
{
    return backward_depth > 0;
}

void
ty_ad_suspend(int on)
{
    suspended += on ? 1 : (suspended > 0 ? -1 : 0);
}

/* ---- recording ---- */
/* What a saved tensor the rule never reads becomes: its shape and dtype without memory, so
 * the tape holds no values nobody needs (a read fails loudly instead of giving wrong bits). */
static const ty_deferral not_kept = {
    TY_ERR_INTERNAL,
    "autodiff: a gradient rule read a tensor the tape did not keep (the op row's "
    "TY_F_NO_SAVE_* flag or its gradient formula is wrong)",
    NULL};

static int
bit_set(uint64_t mask, int i)
{
    return i >= 64 || ((mask >> i) & 1);
}

/* Views of src[i] where `keep` has bit first + i set or the tensor is not float (indices and
 * conditions are always kept), shape-only shells elsewhere. */
static ty_status
save_views(int n, ty_tensor *const *src, uint64_t keep, int first, ty_tensor ***dst)
{
    *dst = calloc((size_t)(n ? n : 1), sizeof(ty_tensor *));
    TY_CHECK(*dst, TY_ERR_OOM, "autodiff: out of memory");
    for (int i = 0; i < n; i++) {
        const ty_tensor *t = src[i];
        if (bit_set(keep, first + i) || !ty_dtype_is_float(t->dtype)) {
            TY_TRY(ty_tensor_view(t, t->ndim, t->shape, t->strides, t->offset, &(*dst)[i]));
        } else {
            TY_TRY(ty_tensor_view_pending(t->dtype, t->ndim, t->shape, 0, &not_kept, &(*dst)[i]));
        }
    }
    return TY_OK;
}

static ty_status
save_versions(ty_node *n)
{
    n->versions = malloc(sizeof(uint32_t) * (size_t)(n->nin + n->nout + 1));
    TY_CHECK(n->versions, TY_ERR_OOM, "autodiff: out of memory");
    for (int i = 0; i < n->nin + n->nout; i++) {
        const ty_tensor *t = i < n->nin ? n->in[i] : n->out[i - n->nin];
        n->versions[i] = atomic_load(&t->storage->version);
    }
    return TY_OK;
}

/* Re-saves the versions of n's inputs held in storage s (after a notional write of s that
 * left the values n read unchanged). */
static void
resync_versions(ty_node *n, const ty_storage *s)
{
    for (int i = 0; n->versions && n->in && i < n->nin; i++) {
        if (n->in[i] && n->in[i]->storage == s) {
            n->versions[i] = atomic_load(&s->version);
        }
    }
}

ty_status
ty_ad_rebind(ty_tensor *old, ty_tensor *replacement)
{
    TY_CHECK(old && replacement, TY_ERR_INVALID_ARG, "rebind: NULL tensor");
    if (!AD(old) || AD(old)->node || old == replacement) {
        return TY_OK; /* not an attached leaf: gradients flow through the replacing op */
    }
    ty_storage_written(old);
    ty_node *n = AD(replacement) ? AD(replacement)->node : NULL;
    if (n) { /* the op making the replacement (setitem's slice_set) read old before the rebind */
        resync_versions(n, old->storage);
        return TY_OK;
    }
    return ty_dtype_is_float(replacement->dtype) ? ty_ad_attach(replacement) : TY_OK;
}

/* A tensor an op's rule reads, written in place since it was saved, would give a wrong
 * gradient. (Custom functions keep what they need themselves.) */
static ty_status
check_versions(const ty_node *n)
{
    for (int i = 0; !n->custom && n->versions && i < n->nin + n->nout; i++) {
        const ty_tensor *t = i < n->nin ? n->in[i] : n->out[i - n->nin];
        TY_CHECK(!t || atomic_load(&t->storage->version) == n->versions[i], TY_ERR_INVALID_ARG,
                 "backward: %s %d of %s, saved for its gradient, was modified in place since "
                 "(_assign, setitem, set_value, an optimizer step): the gradient would be wrong "
                 "or lost; modify a copy, or run backward first",
                 i < n->nin ? "input" : "output", i < n->nin ? i : i - n->nin, ty_op_name(n->op));
    }
    return TY_OK;
}

/* `keep`: the saved tensors whose values the rule reads (bit i: input i, nin + j: output j). */
static ty_status
make_node(int nin, ty_tensor *const *in, int nout, ty_tensor *const *out, uint64_t keep,
          ty_node **res)
{
    ty_node *n = calloc(1, sizeof(*n));
    TY_CHECK(n, TY_ERR_OOM, "autodiff: out of memory");
    atomic_init(&n->refcnt, 1);
    n->nin = nin;
    n->nout = nout;
    ty_status st = save_views(nin, in, keep, 0, &n->in);
    if (st == TY_OK) {
        st = save_views(nout, out, keep, nin, &n->out);
    }
    if (st == TY_OK) {
        st = save_versions(n);
    }
    if (st == TY_OK && !(n->edges = calloc((size_t)(nin ? nin : 1), sizeof(ty_ad_meta *)))) {
        st = ty_set_error(TY_ERR_OOM, "autodiff: out of memory");
    }
    if (st != TY_OK) {
        node_release(n);
        return st;
    }
    for (int i = 0; i < nin; i++) {
        if (AD(in[i]) && ty_dtype_is_float(in[i]->dtype)) {
            n->edges[i] = AD(in[i]);
            atomic_fetch_add(&AD(in[i])->refcnt, 1);
        }
    }
    *res = n;
    return TY_OK;
}

/* Gives each float output a meta pointing at n; drops the creator's reference to n. */
static ty_status
link_outputs(ty_node *n, int nout, ty_tensor *const *out)
{
    ty_status st = TY_OK;
    for (int i = 0; i < nout && st == TY_OK; i++) {
        if (!ty_dtype_is_float(out[i]->dtype)) {
            continue;
        }
        ty_ad_meta *m = meta_new(n, i);
        if (!m) {
            st = ty_set_error(TY_ERR_OOM, "autodiff: out of memory");
            break;
        }
        ty_ad_meta_release(AD(out[i]));
        set_ad(out[i], m);
    }
    node_release(n);
    return st;
}

static int
any_tracked(int nin, ty_tensor *const *in)
{
    for (int i = 0; i < nin; i++) {
        if (AD(in[i]) && ty_dtype_is_float(in[i]->dtype)) {
            return 1;
        }
    }
    return 0;
}

static ty_status
tape_after(void *ud, const ty_call *c, ty_tensor *const *out)
{
    (void)ud;
    const ty_op_def *def = &ty_op_defs[c->op];
    if (!ty_ad_recording() || !(def->flags & TY_F_DIFF) ||
        !any_tracked(c->nin, c->in)) {
        return TY_OK;
    }
    uint64_t wanted = 0;
    for (int i = 0; i < c->nin && i < 64; i++) {
        wanted |= (uint64_t)(AD(c->in[i]) && ty_dtype_is_float(c->in[i]->dtype)) << i;
    }
    ty_node *n;
    TY_TRY(make_node(c->nin, c->in, c->nout, out, ty_grad_reads(c, wanted), &n));
    n->op = c->op;
    n->params = malloc(def->params->size);
    if (!n->params) {
        node_release(n);
        return ty_set_error(TY_ERR_OOM, "autodiff: out of memory");
    }
    memcpy(n->params, c->params, def->params->size);
    return link_outputs(n, c->nout, out);
}

ty_status
ty_ad_custom_node(int nin, ty_tensor *const *in, int nout, ty_tensor *const *out,
                  ty_custom_grad fn, void *ctx, void (*free_ctx)(void *))
{
    TY_CHECK(fn && nin >= 0 && nout >= 1 && (nin == 0 || in) && out, TY_ERR_INVALID_ARG,
             "custom node: bad arguments");
    for (int i = 0; i < nin; i++) {
        TY_CHECK(in[i], TY_ERR_INVALID_ARG, "custom node: input %d is NULL", i);
    }
    for (int i = 0; i < nout; i++) {
        TY_CHECK(out[i], TY_ERR_INVALID_ARG, "custom node: output %d is NULL", i);
    }
    ty_node *n; /* a custom function keeps what its backward needs itself */
    TY_TRY(make_node(nin, in, nout, out, 0, &n));
    n->custom = fn;
    n->custom_ctx = ctx;
    n->custom_free = free_ctx;
    return link_outputs(n, nout, out);
}

static void
release_ad_word(uintptr_t word)
{
    ty_ad_meta_release((ty_ad_meta *)word);
}

ty_status
ty_tape_init(void)
{
    if (ad_slot >= 0) {
        return TY_OK;
    }
    int slot;
    TY_TRY(ty_tensor_ext_register(release_ad_word, &slot));
    ty_hook h = {.after = tape_after, .kind = TY_HOOK_AUTODIFF};
    TY_TRY(ty_hook_add(&h));
    ad_slot = slot;
    return TY_OK;
}

/* ---- the reverse pass ---- */
typedef struct bw_state {
    ty_node **nodes; /* every node reachable from the roots */
    int64_t n, cap;
    int64_t pass;
    ty_grad_ready_fn on_ready; /* ty_backward_notify's callback, or NULL */
    void *ready_ud;
    int64_t *pending; /* per target: edges of collected nodes not yet run (on_ready only) */
    int nx;
    ty_tensor *const *xs;
    ty_tensor **grads;
    int create_graph;
    int free_graph; /* saved tensors go as soon as their node has run */
} bw_state;

static ty_status
push_node(bw_state *s, ty_node *n)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        ty_node **p = realloc(s->nodes, sizeof(ty_node *) * (size_t)cap);
        TY_CHECK(p, TY_ERR_OOM, "backward: out of memory");
        s->nodes = p;
        s->cap = cap;
    }
    s->nodes[s->n++] = n;
    return TY_OK;
}

/* Finds every reachable node (iteratively: graph depth is user-controlled) and counts,
 * for each, the edges that consume its outputs. */
static ty_status
collect(bw_state *s, int ny, ty_tensor *const *ys)
{
    int64_t head = 0;
    for (int i = 0; i < ny; i++) {
        ty_node *n = AD(ys[i]) ? AD(ys[i])->node : NULL;
        if (n && n->pass != s->pass) {
            n->pass = s->pass;
            n->deps = 0;
            TY_TRY(push_node(s, n));
        }
    }
    while (head < s->n) {
        ty_node *n = s->nodes[head++];
        TY_CHECK(!n->freed || n->custom, TY_ERR_INVALID_ARG,
                 "backward through a graph whose saved tensors were already freed (a second "
                 "backward needs retain_graph)");
        n->grad = calloc((size_t)n->nout, sizeof(ty_tensor *));
        TY_CHECK(n->grad, TY_ERR_OOM, "backward: out of memory");
        for (int i = 0; i < n->nin; i++) {
            ty_node *p = n->edges[i] ? n->edges[i]->node : NULL;
            if (!p) {
                continue;
            }
            if (p->pass != s->pass) {
                p->pass = s->pass;
                p->deps = 0;
                TY_TRY(push_node(s, p));
            }
            p->deps++;
        }
    }
    return TY_OK;
}

static ty_status
accumulate(ty_tensor **slot, ty_tensor *g)
{
    if (!*slot) {
        ty_tensor_retain(g);
        *slot = g;
        return TY_OK;
    }
    ty_tensor *sum;
    TY_TRY(ty_op2(TY_OP_ADD, NULL, *slot, g, &sum));
    ty_tensor_release(*slot);
    *slot = sum;
    return TY_OK;
}

/* Routes gradient g into edge e: to the requested targets and to the producing node. */
static ty_status
route(bw_state *s, ty_ad_meta *e, ty_tensor *g)
{
    for (int j = 0; j < s->nx; j++) {
        if (AD(s->xs[j]) == e) {
            TY_TRY(accumulate(&s->grads[j], g));
        }
    }
    if (e->node && e->node->pass == s->pass) {
        TY_TRY(accumulate(&e->node->grad[e->out_index], g));
    }
    return TY_OK;
}

/* For higher-order gradients the grad rule must see its saved tensors as tracked: inputs
 * carry their own autodiff meta, outputs a fresh meta pointing back at this node. Built only
 * for the duration of the rule, so saved tensors never reference their own node (no cycle). */
static ty_status
tracked_views(ty_node *n, ty_tensor **in, ty_tensor **out)
{
    for (int i = 0; i < n->nin; i++) {
        const ty_tensor *t = n->in[i];
        TY_TRY(ty_tensor_view(t, t->ndim, t->shape, t->strides, t->offset, &in[i]));
        if (n->edges[i]) {
            atomic_fetch_add(&n->edges[i]->refcnt, 1);
            set_ad(in[i], n->edges[i]);
        }
    }
    for (int i = 0; i < n->nout; i++) {
        const ty_tensor *t = n->out[i];
        TY_TRY(ty_tensor_view(t, t->ndim, t->shape, t->strides, t->offset, &out[i]));
        if (ty_dtype_is_float(t->dtype)) {
            set_ad(out[i], meta_new(n, i));
            TY_CHECK(AD(out[i]), TY_ERR_OOM, "backward: out of memory");
        }
    }
    return TY_OK;
}

static void
release_views(int n, ty_tensor **v)
{
    for (int i = 0; v && i < n; i++) {
        ty_tensor_release(v[i]);
    }
    free(v);
}

static ty_status
call_rule_wanted(ty_node *n, ty_tensor **gin, int create_graph)
{
    if (!create_graph) {
        ty_call c = {n->op, n->params, n->nin, n->in, n->nout};
        return ty_op_defs[n->op].grad(&c, n->out, n->grad, gin);
    }
    ty_tensor **in = calloc((size_t)(n->nin ? n->nin : 1), sizeof(ty_tensor *));
    ty_tensor **out = calloc((size_t)n->nout, sizeof(ty_tensor *));
    ty_status st = (in && out) ? tracked_views(n, in, out)
                               : ty_set_error(TY_ERR_OOM, "backward: out of memory");
    if (st == TY_OK) {
        ty_call c = {n->op, n->params, n->nin, in, n->nout};
        st = ty_op_defs[n->op].grad(&c, out, n->grad, gin);
    }
    release_views(n->nin, in);
    release_views(n->nout, out);
    return st;
}

/* Runs n's rule telling it which inputs lead to a tracked tensor (the others' gradients
 * would be dropped). */
static ty_status
call_rule(ty_node *n, ty_tensor **gin, int create_graph)
{
    uint64_t mask = ~(uint64_t)0;
    for (int i = 0; i < n->nin && i < 64; i++) {
        if (!n->edges[i]) {
            mask &= ~((uint64_t)1 << i);
        }
    }
    uint64_t old = ty_grad_set_wanted(mask);
    int old_recorded = ty_grad_set_recorded(create_graph);
    ty_status st = call_rule_wanted(n, gin, create_graph);
    ty_grad_set_recorded(old_recorded);
    ty_grad_set_wanted(old);
    return st;
}

/* ---- relu(batch_norm_train(x)): one fused backward ----
 * relu's rule would write relu_backward(y, g) to memory for the batch norm's rule to read
 * twice; batch_norm_train_relu_backward reads g and y instead, with the same bits. Taken when
 * the batch norm's only use in this pass is the relu's input (its output 0): no other gradient
 * reaches it, and the relu's gradient is not one the caller asked for. Not when recording a
 * higher-order graph: the fused op has no gradient. */

/* Whether e is one of the tensors the caller asked gradients for. */
static int
is_target(const bw_state *s, const ty_ad_meta *e)
{
    for (int j = 0; j < s->nx; j++) {
        if (AD(s->xs[j]) == e) {
            return 1;
        }
    }
    return 0;
}

/* The batch norm node whose backward relu node n can run fused with, or NULL. */
static ty_node *
relu_bn_pair(const bw_state *s, const ty_node *n)
{
    if (n->op != TY_OP_RELU || n->custom || s->create_graph || !n->grad[0] || !n->edges[0]) {
        return NULL;
    }
    const ty_ad_meta *e = n->edges[0];
    ty_node *p = e->node;
    if (!p || p->custom || p->op != TY_OP_BATCH_NORM_TRAIN || p->pass != s->pass ||
        e->out_index != 0 || p->deps != 1 || is_target(s, e)) {
        return NULL;
    }
    for (int k = 0; k < p->nout; k++) {
        if (p->grad[k]) {
            return NULL;
        }
    }
    const ty_tensor *g = n->grad[0], *y = n->out[0], *x = p->in[0];
    if (g->dtype != y->dtype || y->dtype != x->dtype || g->ndim != y->ndim ||
        memcmp(g->shape, y->shape, sizeof(int64_t) * (size_t)g->ndim) != 0) {
        return NULL; /* left to the ops' own rules and checks */
    }
    return p;
}

/* Runs relu node n and batch norm node bn as one: bn's input gradients are routed now, and
 * neither node gets a gradient slot filled, so bn has nothing left to run. */
static ty_status
run_relu_bn(bw_state *s, ty_node *n, ty_node *bn)
{
    TY_TRY(check_versions(n));
    TY_TRY(check_versions(bn));
    ty_tensor *in[6] = {n->grad[0], n->out[0], bn->in[0], bn->out[1], bn->out[2], bn->in[1]};
    ty_tensor *res[3] = {NULL, NULL, NULL};
    ty_status st = ty_apply(TY_OP_BATCH_NORM_TRAIN_RELU_BACKWARD, bn->params, 6, in, 3, res);
    if (st != TY_OK) {
        ty_error_prefix(ty_op_name(bn->op));
    }
    for (int i = 0; i < 3; i++) {
        if (st == TY_OK && res[i] && bn->edges[i]) {
            st = route(s, bn->edges[i], res[i]);
        }
        ty_tensor_release(res[i]);
    }
    return st;
}

static ty_status
run_node(bw_state *s, ty_node *n)
{
    int any = 0;
    for (int i = 0; i < n->nout; i++) {
        any |= n->grad[i] != NULL;
    }
    if (!any) {
        return TY_OK;
    }
    ty_node *bn = relu_bn_pair(s, n);
    if (bn) {
        return run_relu_bn(s, n, bn);
    }
    ty_tensor **gin = calloc((size_t)(n->nin ? n->nin : 1), sizeof(ty_tensor *));
    TY_CHECK(gin, TY_ERR_OOM, "backward: out of memory");
    ty_status st = check_versions(n);
    if (st != TY_OK) {
        free(gin);
        return st;
    }
    if (n->custom) {
        st = n->custom(n->custom_ctx, n->nout, n->grad, n->nin, gin);
    } else {
        st = call_rule(n, gin, s->create_graph);
        if (st != TY_OK) {
            ty_error_prefix(ty_op_name(n->op));
        }
    }
    for (int i = 0; i < n->nin; i++) {
        if (st == TY_OK && gin[i] && n->edges[i]) {
            st = route(s, n->edges[i], gin[i]);
        }
        ty_tensor_release(gin[i]);
    }
    free(gin);
    return st;
}

/* ---- "gradient of target j is final" notifications (ty_backward_notify) ---- */
static ty_status
notify_ready(bw_state *s, int j)
{
    TY_TRY(s->on_ready(s->ready_ud, j, s->grads[j]));
    s->pending[j] = -1; /* fired: never again */
    return TY_OK;
}

/* Counts, per target, the edges of collected nodes that may still route a gradient to it,
 * then fires the targets no node feeds (their gradient is the seed's, or none). */
static ty_status
arm_ready(bw_state *s, ty_grad_ready_fn on_ready, void *ud)
{
    if (!on_ready || s->nx == 0) {
        return TY_OK;
    }
    s->on_ready = on_ready;
    s->ready_ud = ud;
    s->pending = calloc((size_t)s->nx, sizeof(int64_t));
    TY_CHECK(s->pending, TY_ERR_OOM, "backward: out of memory");
    for (int64_t k = 0; k < s->n; k++) {
        const ty_node *n = s->nodes[k];
        for (int i = 0; i < n->nin; i++) {
            for (int j = 0; n->edges[i] && j < s->nx; j++) {
                s->pending[j] += AD(s->xs[j]) == n->edges[i];
            }
        }
    }
    for (int j = 0; j < s->nx; j++) {
        if (s->pending[j] == 0) {
            TY_TRY(notify_ready(s, j));
        }
    }
    return TY_OK;
}

/* n's rule has run (and routed its gradients): each target it fed has one edge less to wait
 * for, and fires when none is left. */
static ty_status
note_ran(bw_state *s, const ty_node *n)
{
    for (int i = 0; s->pending && i < n->nin; i++) {
        for (int j = 0; n->edges[i] && j < s->nx; j++) {
            if (AD(s->xs[j]) == n->edges[i] && --s->pending[j] == 0) {
                TY_TRY(notify_ready(s, j));
            }
        }
    }
    return TY_OK;
}

/* After a backward a hook computed: every target is final at once. */
static ty_status
notify_all(ty_grad_ready_fn on_ready, void *ud, int nx, ty_tensor **grads)
{
    ty_status st = TY_OK;
    for (int j = 0; on_ready && j < nx && st == TY_OK; j++) {
        st = on_ready(ud, j, grads[j]);
    }
    for (int j = 0; st != TY_OK && j < nx; j++) {
        ty_tensor_release(grads[j]);
        grads[j] = NULL;
    }
    return st;
}

static ty_status
seed(bw_state *s, int ny, ty_tensor *const *ys, ty_tensor *const *dys)
{
    for (int i = 0; i < ny; i++) {
        ty_tensor *dy = dys ? dys[i] : NULL, *ones = NULL;
        if (!dy) {
            TY_TRY(ty_tensor_full(ys[i]->dtype, ys[i]->ndim, ys[i]->shape, 1.0, &ones));
            dy = ones;
        }
        char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
        ty_status st = TY_OK;
        if (dy->ndim != ys[i]->ndim ||
            memcmp(dy->shape, ys[i]->shape, sizeof(int64_t) * (size_t)dy->ndim) != 0) {
            st = ty_set_error(TY_ERR_SHAPE, "backward: dy of shape %s does not match y of shape %s",
                              ty_shape_str(dy->ndim, dy->shape, b1, sizeof b1),
                              ty_shape_str(ys[i]->ndim, ys[i]->shape, b2, sizeof b2));
        }
        if (st == TY_OK && AD(ys[i])) {
            st = route(s, AD(ys[i]), dy);
        }
        ty_tensor_release(ones);
        TY_TRY(st);
    }
    return TY_OK;
}

/* Once n's rule has run, this pass needs neither its output gradients nor (unless the
 * graph is retained) its saved tensors: freed now, backward's peak is the forward's live
 * set plus the gradients in flight, not plus every gradient of the pass. */
static void
release_spent(bw_state *s, ty_node *n)
{
    for (int k = 0; k < n->nout; k++) {
        ty_tensor_release(n->grad[k]);
        n->grad[k] = NULL;
    }
    if (s->free_graph && !n->custom) {
        free_saved(n);
    }
}

static ty_status
propagate(bw_state *s)
{
    /* Kahn's order: a node runs once every consumer of its outputs has run. */
    int64_t nready = 0;
    ty_node **ready = malloc(sizeof(ty_node *) * (size_t)(s->n ? s->n : 1));
    TY_CHECK(ready, TY_ERR_OOM, "backward: out of memory");
    for (int64_t i = 0; i < s->n; i++) {
        if (s->nodes[i]->deps == 0) {
            ready[nready++] = s->nodes[i];
        }
    }
    ty_status st = TY_OK;
    while (nready > 0 && st == TY_OK) {
        ty_node *n = ready[--nready];
        st = run_node(s, n);
        if (st == TY_OK) {
            release_spent(s, n);
        }
        for (int i = 0; i < n->nin; i++) {
            ty_node *p = n->edges[i] ? n->edges[i]->node : NULL;
            if (p && p->pass == s->pass && --p->deps == 0) {
                ready[nready++] = p;
            }
        }
        if (st == TY_OK) {
            st = note_ran(s, n);
        }
    }
    free(ready);
    return st;
}

ty_status
ty_backward(int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx, ty_tensor *const *xs,
            ty_tensor **grads, int retain_graph, int create_graph)
{
    return ty_backward_notify(ny, ys, dys, nx, xs, grads, retain_graph, create_graph, NULL, NULL);
}

ty_status
ty_backward_notify(int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx,
                   ty_tensor *const *xs, ty_tensor **grads, int retain_graph, int create_graph,
                   ty_grad_ready_fn on_ready, void *ud)
{
    TY_CHECK(ny >= 1 && ys && (nx == 0 || (xs && grads)), TY_ERR_INVALID_ARG,
             "backward: bad arguments");
    for (int i = 0; i < ny; i++) {
        TY_CHECK(ys[i], TY_ERR_INVALID_ARG, "backward: y %d is NULL", i);
    }
    for (int j = 0; j < nx; j++) {
        TY_CHECK(xs[j], TY_ERR_INVALID_ARG, "backward: x %d is NULL", j);
    }
    for (int j = 0; j < nx; j++) {
        grads[j] = NULL;
    }
    ty_backward_event ev = {ny, ys, dys, nx, xs, grads, 0};
    TY_TRY(ty_hooks_backward(TY_BACKWARD_BEGIN, &ev));
    if (ev.done) { /* computed by a hook (a traced replay) */
        return notify_all(on_ready, ud, nx, grads);
    }
    bw_state s = {.pass = atomic_fetch_add(&pass_counter, 1) + 1, .nx = nx, .xs = xs,
                  .grads = grads, .create_graph = create_graph,
                  .free_graph = !retain_graph && !create_graph};
    if (!create_graph) {
        ty_ad_suspend(1);
    }
    backward_depth++;
    ty_status st = collect(&s, ny, ys);
    if (st == TY_OK) {
        st = seed(&s, ny, ys, dys);
    }
    if (st == TY_OK) {
        st = arm_ready(&s, on_ready, ud);
    }
    if (st == TY_OK) {
        st = propagate(&s);
    }
    backward_depth--;
    if (!create_graph) {
        ty_ad_suspend(0);
    }
    for (int64_t i = 0; i < s.n; i++) {
        ty_node *n = s.nodes[i];
        for (int k = 0; n->grad && k < n->nout; k++) {
            ty_tensor_release(n->grad[k]);
        }
        free(n->grad);
        n->grad = NULL;
        n->pass = 0;
        if (!retain_graph && !create_graph && st == TY_OK && !n->custom) {
            free_saved(n);
        }
    }
    free(s.nodes);
    free(s.pending);
    if (st == TY_OK) {
        st = ty_hooks_backward(TY_BACKWARD_END, &ev);
    }
    if (st != TY_OK) {
        for (int j = 0; j < nx; j++) {
            ty_tensor_release(grads[j]);
            grads[j] = NULL;
        }
    }
    return st;
}
