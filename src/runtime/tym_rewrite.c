/* trace.dump's rewrites for inference (optimize_for_inference): a copy of a finished
 * recording, rewritten, which the writer (tym_write.c) then serializes like any recording.
 *
 * Same bits (TY_TYM_FOLD, TY_TYM_CSE): the tensors the function read become constants, and
 * the graph passes the replay uses (src/graph/passes/cse.c, fold.c) run on the copy: a node
 * equal to an earlier one reads that node's outputs, and a node of constants only is computed
 * now, with the forward the runtime would run, and stored as a weight (when that weight is no
 * bigger than its inputs: a batch-sized broadcast of a parameter stays an op; and not a view,
 * which stays the view eager execution reads).
 * Opt-in (TY_TYM_FUSE_CONV_BIAS, TY_TYM_FUSE_Z): a conv2d followed by per-channel affine ops
 * (its bias, an eval-mode BatchNorm's (x - mean) / sqrt(var + eps) * w + b), then optionally a
 * residual add (z) and an activation, becomes one conv_bias op: the scales are folded into
 * the weights, the shifts into one bias (in double, rounded once), which changes float
 * results in the last bits. A chain that does not match exactly is left alone.
 * TY_TYM_IO16XC32: float32 inputs and outputs become float16, converted at the edges. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"
#include "runtime/tym.h"

enum { MAX_AFFINE = 8 };
enum { ACT_IDENTITY = 0, ACT_RELU, ACT_SIGMOID, ACT_HSWISH, ACT_RELU6 };

/* ---- the working copy ---- */
static ty_status
copy_node(const gnode *src, gnode *dst)
{
    size_t ps = ty_op_params(src->op)->size;
    *dst = *src;
    dst->params = malloc(ps ? ps : 1);
    dst->in = malloc(sizeof(int) * (size_t)(src->nin ? src->nin : 1));
    dst->out = malloc(sizeof(int) * (size_t)(src->nout ? src->nout : 1));
    if (!dst->params || !dst->in || !dst->out) {
        free(dst->params);
        free(dst->in);
        free(dst->out);
        return ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    }
    memcpy(dst->params, src->params, ps);
    memcpy(dst->in, src->in, sizeof(int) * (size_t)src->nin);
    memcpy(dst->out, src->out, sizeof(int) * (size_t)src->nout);
    dst->state = NS_EXEC;
    dst->canon = 0;
    dst->group = -1;
    return TY_OK;
}

static void
free_node(gnode *n)
{
    free(n->params);
    free(n->in);
    free(n->out);
}

/* A copy of tr's forward graph (no backward blocks); on failure *out holds what was made. */
static ty_status
copy_trace(const ty_trace *tr, ty_trace *t)
{
    size_t nv = (size_t)tr->nv + 1, nn = (size_t)tr->nn + 1;
    t->v = malloc(sizeof(gvalue) * nv);
    t->n = calloc(nn, sizeof(gnode));
    t->arg_vid = malloc(sizeof(int) * ((size_t)tr->nargs + 1));
    t->out_vid = malloc(sizeof(int) * ((size_t)tr->nout + 1));
    t->root = malloc(sizeof(int) * nv);
    TY_CHECK(t->v && t->n && t->arg_vid && t->out_vid && t->root, TY_ERR_OOM,
             "trace.dump: out of memory");
    t->cap_v = (int)nv;
    t->cap_n = (int)nn;
    for (int i = 0; i < tr->nv; i++, t->nv++) {
        t->v[i] = tr->v[i];
        if (t->v[i].ref) {
            ty_tensor_retain(t->v[i].ref);
        }
    }
    for (int i = 0; i < tr->nn; i++, t->nn++) {
        TY_TRY(copy_node(&tr->n[i], &t->n[i]));
    }
    t->nargs = tr->nargs;
    t->nout = tr->nout;
    memcpy(t->arg_vid, tr->arg_vid, sizeof(int) * (size_t)tr->nargs);
    memcpy(t->out_vid, tr->out_vid, sizeof(int) * (size_t)tr->nout);
    t->device = tr->device;
    t->mode = MODE_IDLE;
    ty_trace_roots(t);
    return TY_OK;
}

/* Appends a value (stealing ref); its id, or -1 when out of memory (ref released). */
static int
add_value(ty_trace *t, enum vkind kind, const ty_meta *m, ty_tensor *ref)
{
    if (t->nv == t->cap_v) {
        int cap = t->cap_v * 2 + 8;
        gvalue *v = realloc(t->v, sizeof(gvalue) * (size_t)cap);
        if (!v) {
            ty_tensor_release(ref);
            ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
            return -1;
        }
        t->v = v;
        t->cap_v = cap;
    }
    t->v[t->nv] = (gvalue){.kind = kind, .ref = ref, .meta = *m};
    return t->nv++;
}

/* Drops the nodes marked in drop and reads vmap[v] wherever value v was read. */
static void
compact(ty_trace *t, const char *drop, const int *vmap)
{
    int k = 0;
    for (int ni = 0; ni < t->nn; ni++) {
        gnode *n = &t->n[ni];
        if (drop && drop[ni]) {
            free_node(n);
            continue;
        }
        for (int i = 0; vmap && i < n->nin; i++) {
            n->in[i] = vmap[n->in[i]];
        }
        n->state = NS_EXEC;
        t->n[k++] = *n;
    }
    t->nn = k;
    for (int i = 0; vmap && i < t->nout; i++) {
        t->out_vid[i] = vmap[t->out_vid[i]];
    }
}

/* Node outputs point at their nodes again, and the view roots are recomputed. */
static ty_status
finish(ty_trace *t)
{
    for (int ni = 0; ni < t->nn; ni++) {
        for (int k = 0; k < t->n[ni].nout; k++) {
            gvalue *v = &t->v[t->n[ni].out[k]];
            v->kind = V_NODE;
            v->index = ni;
            v->out_index = k;
        }
    }
    int *root = realloc(t->root, sizeof(int) * (size_t)(t->nv + 1));
    TY_CHECK(root, TY_ERR_OOM, "trace.dump: out of memory");
    t->root = root;
    ty_trace_roots(t);
    return TY_OK;
}

/* ---- same bits: constants, CSE, folding ---- */
static int
has_writes(const ty_trace *t)
{
    for (int ni = 0; ni < t->nn; ni++) {
        if (ty_op_flags(t->n[ni].op) & TY_F_WRITES) {
            return 1;
        }
    }
    return 0;
}

/* The tensors the function read hold their values now: constants of the model. */
static ty_status
externals_to_consts(ty_trace *t)
{
    for (int i = 0; i < t->nv; i++) {
        gvalue *v = &t->v[i];
        if (v->kind != V_EXTERNAL) {
            continue;
        }
        TY_CHECK(v->ref, TY_ERR_INTERNAL, "trace.dump: external %d has no tensor", i);
        TY_CHECK(!ty_trace_is_replaced(v->ref), TY_ERR_TRACE,
                 "trace.dump: a tensor the function read was rebound since it was traced "
                 "(update parameters in place, or trace again)");
        TY_TRY(ty_check_readable(v->ref));
        v->kind = V_CONST;
    }
    return TY_OK;
}

static ty_status
run_cse(ty_trace *t, ty_tym_rewrite_stats *stats)
{
    TY_TRY(ty_pass_cse(t));
    char *drop = calloc((size_t)t->nn + 1, 1);
    int *vmap = malloc(sizeof(int) * ((size_t)t->nv + 1));
    if (!drop || !vmap) {
        free(drop);
        free(vmap);
        return ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    }
    for (int i = 0; i < t->nv; i++) {
        vmap[i] = i;
    }
    for (int ni = 0; ni < t->nn; ni++) {
        const gnode *n = &t->n[ni];
        if (n->state == NS_CSE) {
            drop[ni] = 1;
            stats->cse++;
            for (int k = 0; k < n->nout; k++) {
                vmap[n->out[k]] = t->n[n->canon].out[k]; /* a canon is never merged itself */
            }
        }
    }
    compact(t, drop, vmap);
    free(drop);
    free(vmap);
    return finish(t);
}

/* A folded node is stored when its outputs take no more bytes than its inputs. */
static int
worth_storing(const ty_trace *t, const gnode *n)
{
    size_t in = 0, out = 0;
    for (int i = 0; i < n->nin; i++) {
        in += ty_meta_nbytes(&t->v[n->in[i]].meta);
    }
    for (int i = 0; i < n->nout; i++) {
        out += ty_meta_nbytes(&t->v[n->out[i]].meta);
    }
    return n->nin > 0 && out <= in;
}

/* views: whether a folded view of a constant (a reshaped or transposed parameter) is stored
 * as a copy. Not for same bits: the next kernel would read another layout than eager's
 * view, and a kernel may take another path for it. */
static ty_status
run_fold(ty_trace *t, int views, ty_tym_rewrite_stats *stats)
{
    t->folded = calloc((size_t)t->nv + 1, sizeof(ty_tensor *));
    char *drop = calloc((size_t)t->nn + 1, 1);
    ty_status st = t->folded && drop ? ty_pass_fold(t)
                                     : ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    for (int ni = 0; st == TY_OK && ni < t->nn; ni++) {
        const gnode *n = &t->n[ni];
        if (n->state != NS_FOLDED || !worth_storing(t, n) ||
            (!views && (ty_op_flags(n->op) & TY_F_VIEW))) {
            continue;
        }
        for (int k = 0; k < n->nout; k++) {
            gvalue *v = &t->v[n->out[k]];
            v->kind = V_CONST;
            v->index = 0;
            v->ref = t->folded[n->out[k]];
            t->folded[n->out[k]] = NULL;
        }
        drop[ni] = 1;
        stats->folded++;
    }
    if (st == TY_OK) {
        compact(t, drop, NULL);
        st = finish(t);
    }
    for (int i = 0; t->folded && i < t->nv; i++) {
        ty_tensor_release(t->folded[i]);
    }
    free(t->folded);
    t->folded = NULL;
    free(drop);
    return st;
}

/* ---- conv2d + per-channel affine ops (+ z) (+ activation) -> conv_bias ---- */
typedef struct uses {
    int *count; /* per value: reads by nodes, plus one per time it is returned */
    int *user;  /* per value: the last node reading it */
    char *drop; /* per node: taken into a fused chain already */
} uses;

static ty_status
count_uses(const ty_trace *t, uses *u)
{
    u->count = calloc((size_t)t->nv + 1, sizeof(int));
    u->user = calloc((size_t)t->nv + 1, sizeof(int));
    TY_CHECK(u->count && u->user, TY_ERR_OOM, "trace.dump: out of memory");
    for (int ni = 0; ni < t->nn; ni++) {
        for (int i = 0; i < t->n[ni].nin; i++) {
            u->count[t->n[ni].in[i]]++;
            u->user[t->n[ni].in[i]] = ni;
        }
    }
    for (int i = 0; i < t->nout; i++) {
        u->count[t->out_vid[i]]++;
        u->user[t->out_vid[i]] = -1; /* returned: never fused away */
    }
    return TY_OK;
}

typedef struct chain {
    int64_t oc;
    double *scale, *shift; /* per output channel: conv * scale + shift */
    int scaled;            /* a mul or div: the weights change */
    int naffine;
    int nodes[MAX_AFFINE + 3], nnodes; /* conv, affine ops, z's add, activation */
    int cur;                           /* the chain's value so far */
    int z, mode;
} chain;

static int
same_meta(const ty_meta *a, const ty_meta *b)
{
    return a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* The node reading the chain's value, when it is its only use. */
static const gnode *
sole_user(const ty_trace *t, const uses *u, const chain *c, int *ni)
{
    if (u->count[c->cur] != 1) {
        return NULL;
    }
    *ni = u->user[c->cur];
    if (*ni < 0 || u->drop[*ni] || t->n[*ni].op == TY_OP_CONV_BIAS) {
        return NULL;
    }
    const gnode *m = &t->n[*ni];
    return m->nout == 1 && same_meta(&t->v[m->out[0]].meta, &t->v[c->cur].meta) ? m : NULL;
}

/* A float32 constant that varies at most along the channel (dimension 1 of the output):
 * its first element and the stride between channels. */
static int
channel_const(const ty_trace *t, int vid, int64_t oc, const float **base, int64_t *stride)
{
    const gvalue *v = &t->v[vid];
    if (v->kind != V_CONST || !v->ref || v->meta.dtype != TY_FLOAT32 || v->meta.ndim > 4 ||
        v->ref->dtype != TY_FLOAT32 || ty_check_readable(v->ref) != TY_OK) {
        ty_clear_error();
        return 0;
    }
    *stride = 0;
    for (int j = 0; j < v->meta.ndim; j++) {
        int d = j + 4 - v->meta.ndim;
        int64_t s = v->meta.shape[j];
        if (d == 1 && s == oc && s > 1) {
            *stride = v->ref->strides[j];
        } else if (s != 1) {
            return 0;
        }
    }
    *base = (const float *)(const void *)ty_tensor_ptr(v->ref);
    return 1;
}

/* Takes node m into the chain when it adds, subtracts, multiplies or divides the chain's
 * value by a per-channel constant. */
static int
affine_step(const ty_trace *t, const gnode *m, chain *c)
{
    if (m->nin != 2 || m->in[0] == m->in[1] || c->naffine == MAX_AFFINE) {
        return 0;
    }
    int first = m->in[0] == c->cur;
    const float *k;
    int64_t ks;
    if (!channel_const(t, first ? m->in[1] : m->in[0], c->oc, &k, &ks)) {
        return 0;
    }
    int add = m->op == TY_OP_ADD, sub = m->op == TY_OP_SUB && first;
    int mul = m->op == TY_OP_MUL, div = m->op == TY_OP_DIV && first;
    if (!(add || sub || mul || div)) {
        return 0;
    }
    for (int64_t o = 0; o < c->oc; o++) {
        double v = k[o * ks];
        if (add || sub) {
            c->shift[o] += add ? v : -v;
        } else {
            c->scale[o] = mul ? c->scale[o] * v : c->scale[o] / v;
            c->shift[o] = mul ? c->shift[o] * v : c->shift[o] / v;
        }
    }
    c->scaled |= mul || div;
    c->naffine++;
    return 1;
}

static int
act_mode(const gnode *m)
{
    switch (m->op) {
    case TY_OP_RELU:
        return ACT_RELU;
    case TY_OP_SIGMOID:
        return ACT_SIGMOID;
    case TY_OP_HSWISH:
        return ACT_HSWISH;
    case TY_OP_RELU6:
        return ACT_RELU6;
    case TY_OP_CLIP: {
        const ty_p_clip *p = m->params;
        return p->lower == 0.0 && p->upper == 6.0 ? ACT_RELU6 : -1;
    }
    default:
        return -1;
    }
}

/* Extends the chain of conv2d node ci as far as the pattern goes. */
static void
match_chain(const ty_trace *t, const uses *u, unsigned flags, chain *c)
{
    int ni;
    const gnode *m;
    while ((m = sole_user(t, u, c, &ni)) && affine_step(t, m, c)) {
        c->nodes[c->nnodes++] = ni;
        c->cur = m->out[0];
    }
    m = sole_user(t, u, c, &ni);
    if (m && (flags & TY_TYM_FUSE_Z) && m->op == TY_OP_ADD && m->in[0] != m->in[1]) {
        int z = m->in[0] == c->cur ? m->in[1] : m->in[0];
        if (t->v[z].kind != V_CONST && same_meta(&t->v[z].meta, &t->v[c->cur].meta)) {
            c->z = z;
            c->nodes[c->nnodes++] = ni;
            c->cur = m->out[0];
        }
    }
    m = sole_user(t, u, c, &ni);
    if (m && m->nin == 1 && act_mode(m) > 0) {
        c->mode = act_mode(m);
        c->nodes[c->nnodes++] = ni;
        c->cur = m->out[0];
    }
}

/* A new float32 constant made from the chain: the convolution's weights w scaled per output
 * channel, or (w NULL) the bias (1, OC, 1, 1). Its value id goes to *vid. */
static ty_status
chain_const(ty_trace *t, const chain *c, const ty_tensor *w, int *vid)
{
    int64_t bshape[4] = {1, c->oc, 1, 1};
    const int64_t *shape = w ? w->shape : bshape;
    ty_meta m = {TY_FLOAT32, 4, {shape[0], shape[1], shape[2], shape[3]}};
    ty_tensor *k;
    TY_TRY(ty_tensor_new_on(TY_DEVICE_CPU, TY_FLOAT32, 4, shape, &k));
    float *p = (float *)(void *)ty_tensor_ptr(k);
    if (!w) {
        for (int64_t o = 0; o < c->oc; o++) {
            p[o] = (float)c->shift[o];
        }
    } else {
        int64_t per = shape[1] * shape[2] * shape[3];
        ty_status st = ty_tensor_copy_to(w, p, sizeof(float) * (size_t)(per * c->oc));
        if (st != TY_OK) {
            ty_tensor_release(k);
            return st;
        }
        for (int64_t i = 0; i < per * c->oc; i++) {
            p[i] = (float)((double)p[i] * c->scale[i / per]);
        }
    }
    k->storage->constant = true; /* a deployed model's weight, like those read from the file */
    *vid = add_value(t, V_CONST, &m, k);
    return *vid >= 0 ? TY_OK : TY_ERR_OOM;
}

/* Replaces the chain's last node by conv_bias and marks the others dropped. */
static ty_status
fuse_chain(ty_trace *t, const chain *c, char *drop)
{
    const gnode *conv = &t->n[c->nodes[0]];
    int x = conv->in[0], w = conv->in[1], algo1 = conv->algo1;
    const ty_p_conv *cp = conv->params;
    ty_p_conv_bias p = {.stride_h = cp->stride_h, .stride_w = cp->stride_w, .pad_h = cp->pad_h,
                        .pad_w = cp->pad_w, .dilate_h = cp->dilate_h, .dilate_w = cp->dilate_w,
                        .groups = cp->groups, .mode = c->mode};
    int b;
    if (c->scaled) {
        TY_TRY(chain_const(t, c, t->v[w].ref, &w));
    }
    TY_TRY(chain_const(t, c, NULL, &b));
    gnode *last = &t->n[c->nodes[c->nnodes - 1]];
    void *params = malloc(sizeof p);
    int *in = malloc(sizeof(int) * 4);
    if (!params || !in) {
        free(params);
        free(in);
        return ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    }
    memcpy(params, &p, sizeof p);
    in[0] = x;
    in[1] = w;
    in[2] = b;
    in[3] = c->z;
    free(last->params);
    free(last->in);
    last->op = TY_OP_CONV_BIAS;
    last->algo1 = algo1; /* the conv's algorithm: the fused op gives its bits */
    last->params = params;
    last->in = in;
    last->nin = c->z >= 0 ? 4 : 3;
    last->alias = last->materialize = 0;
    for (int i = 0; i < c->nnodes - 1; i++) {
        drop[c->nodes[i]] = 1;
    }
    return TY_OK;
}

/* Whether conv2d node ci can start a chain: float32, and weights the fold can read. */
static int
chain_start(const ty_trace *t, int ci, chain *c)
{
    const gnode *n = &t->n[ci];
    const ty_meta *y = &t->v[n->out[0]].meta;
    if (n->op != TY_OP_CONV2D || y->dtype != TY_FLOAT32 || y->ndim != 4) {
        return 0;
    }
    c->oc = y->shape[1];
    for (int64_t o = 0; o < c->oc; o++) {
        c->scale[o] = 1.0;
        c->shift[o] = 0.0;
    }
    c->scaled = c->naffine = 0;
    c->nodes[0] = ci;
    c->nnodes = 1;
    c->cur = n->out[0];
    c->z = -1;
    c->mode = ACT_IDENTITY;
    return 1;
}

/* A chain is fused when it holds more than the convolution, and scaled weights are
 * constants the dump can compute. */
static int
chain_fusable(const ty_trace *t, const gnode *conv, const chain *c)
{
    const gvalue *w = &t->v[conv->in[1]];
    if (c->nnodes < 2) {
        return 0;
    }
    if (!c->scaled) {
        return 1;
    }
    if (w->kind != V_CONST || !w->ref || w->ref->dtype != TY_FLOAT32 ||
        ty_check_readable(w->ref) != TY_OK) {
        ty_clear_error();
        return 0;
    }
    return 1;
}

static ty_status
fuse_all(ty_trace *t, unsigned flags, const uses *u, chain *c, ty_tym_rewrite_stats *stats)
{
    int nn = t->nn;
    for (int ci = 0; ci < nn; ci++) {
        if (u->drop[ci] || !chain_start(t, ci, c)) {
            continue;
        }
        match_chain(t, u, flags, c);
        if (!chain_fusable(t, &t->n[ci], c)) {
            continue;
        }
        TY_TRY(fuse_chain(t, c, u->drop));
        stats->conv_bias++;
        stats->bn_folded += c->scaled;
        stats->z_fused += c->z >= 0;
    }
    return TY_OK;
}

static int64_t
max_channels(const ty_trace *t)
{
    int64_t oc = 1;
    for (int ni = 0; ni < t->nn; ni++) {
        if (t->n[ni].op != TY_OP_CONV2D || t->n[ni].nout != 1) {
            continue;
        }
        const ty_meta *y = &t->v[t->n[ni].out[0]].meta;
        if (y->ndim == 4 && y->shape[1] > oc) {
            oc = y->shape[1];
        }
    }
    return oc;
}

static ty_status
run_fuse(ty_trace *t, unsigned flags, ty_tym_rewrite_stats *stats)
{
    uses u = {0};
    int64_t oc = max_channels(t);
    chain c = {0};
    c.scale = malloc(sizeof(double) * (size_t)oc);
    c.shift = malloc(sizeof(double) * (size_t)oc);
    char *drop = calloc((size_t)t->nn + 1, 1);
    ty_status st = c.scale && c.shift && drop
                       ? count_uses(t, &u)
                       : ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    u.drop = drop;
    if (st == TY_OK) {
        st = fuse_all(t, flags, &u, &c, stats);
    }
    if (st == TY_OK) {
        compact(t, drop, NULL);
        st = finish(t);
    }
    free(u.count);
    free(u.user);
    free(c.scale);
    free(c.shift);
    free(drop);
    return st;
}

/* ---- a channel shuffle: concat, then an interleave, becomes one concat ----
 * concat(a, b; axis k) -> reshape(.., 2, c, ..) -> transpose(k <-> k+1), as ShuffleNet joins
 * its branches, copies every element twice: the concat, then the reshape that follows the
 * transposed view. The same elements in the same places come from
 * concat(expand_dims(a, k+1), expand_dims(b, k+1); axis k+1): one copy, in rows as long as the
 * dimensions after k. The three nodes become those three (the inputs precede each of them);
 * the transposed value keeps its id and shape, so its readers do not change. Same bits: the
 * elements are only moved. */
static int
is_swap_perm(const ty_i64list *perm, int ndim, int k)
{
    if (perm->n != ndim) {
        return 0;
    }
    for (int d = 0; d < ndim; d++) {
        int64_t want = d == k ? k + 1 : d == k + 1 ? k : d;
        if (perm->v[d] != want) {
            return 0;
        }
    }
    return 1;
}

/* The reshape splitting concat output y's axis k into (2, c), c = each input's size there. */
static int
splits_in_two(const ty_meta *y, int k, int64_t c, const ty_meta *r)
{
    if (r->ndim != y->ndim + 1 || r->dtype != y->dtype || r->shape[k] != 2 ||
        r->shape[k + 1] != c) {
        return 0;
    }
    for (int d = 0; d < y->ndim; d++) {
        if (d != k && r->shape[d < k ? d : d + 1] != y->shape[d]) {
            return 0;
        }
    }
    return 1;
}

/* The node reading value vid when it is its only use (not returned), or -1. */
static int
only_reader(const uses *u, int vid)
{
    return u->count[vid] == 1 ? u->user[vid] : -1;
}

/* Whether concat node ci starts a shuffle; *ri and *ti: its reshape and transpose. */
static int
shuffle_at(const ty_trace *t, const uses *u, int ci, int *ri, int *ti)
{
    const gnode *c = &t->n[ci];
    if (c->op != TY_OP_CONCAT || c->nin != 2 || c->nout != 1 || c->state != NS_EXEC) {
        return 0;
    }
    const ty_meta *y = &t->v[c->out[0]].meta;
    const ty_meta *a = &t->v[c->in[0]].meta, *b = &t->v[c->in[1]].meta;
    int k;
    if (ty_norm_axis(((const ty_p_axis *)c->params)->axis, y->ndim, &k) != TY_OK) {
        ty_clear_error();
        return 0;
    }
    if (!same_meta(a, b) || a->dtype != y->dtype || y->ndim + 1 > TY_MAX_DIMS) {
        return 0;
    }
    *ri = only_reader(u, c->out[0]);
    const gnode *r = *ri >= 0 ? &t->n[*ri] : NULL;
    if (!r || r->op != TY_OP_RESHAPE || r->nout != 1 || r->state != NS_EXEC ||
        !splits_in_two(y, k, a->shape[k], &t->v[r->out[0]].meta)) {
        return 0;
    }
    *ti = only_reader(u, r->out[0]);
    const gnode *tr = *ti >= 0 ? &t->n[*ti] : NULL;
    return tr && tr->op == TY_OP_TRANSPOSE && tr->nout == 1 && tr->state == NS_EXEC &&
           is_swap_perm(&((const ty_p_perm *)tr->params)->perm, y->ndim + 1, k);
}

/* Node n becomes op with params p (size bytes) reading nin values. */
static ty_status
reset_node(gnode *n, ty_op op, const void *p, size_t size, const int *in, int nin)
{
    void *params = malloc(size);
    int *ins = malloc(sizeof(int) * (size_t)nin);
    if (!params || !ins) {
        free(params);
        free(ins);
        return ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    }
    memcpy(params, p, size);
    memcpy(ins, in, sizeof(int) * (size_t)nin);
    free(n->params);
    free(n->in);
    n->op = op;
    n->params = params;
    n->in = ins;
    n->nin = nin;
    n->algo1 = 0;
    return TY_OK;
}

/* Value vid (a node output) becomes src's meta with a dimension of 1 inserted at axis. */
static void
meta_with_unit_dim(ty_trace *t, int vid, int src, int axis)
{
    ty_meta m = t->v[src].meta;
    memmove(&m.shape[axis + 1], &m.shape[axis], sizeof(int64_t) * (size_t)(m.ndim - axis));
    m.shape[axis] = 1;
    m.ndim++;
    t->v[vid].meta = m;
}

static ty_status
fold_shuffle(ty_trace *t, int ci, int ri, int ti)
{
    gnode *c = &t->n[ci], *r = &t->n[ri], *tr = &t->n[ti];
    int a = c->in[0], b = c->in[1], ea = c->out[0], eb = r->out[0];
    int k;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, t->v[ea].meta.ndim, &k));
    ty_p_axes ax = {.axes = {.n = 1, .v = {k + 1}}};
    ty_p_axis cat = {.axis = k + 1};
    int pair[2] = {ea, eb};
    TY_TRY(reset_node(c, TY_OP_EXPAND_DIMS, &ax, sizeof ax, &a, 1));
    TY_TRY(reset_node(r, TY_OP_EXPAND_DIMS, &ax, sizeof ax, &b, 1));
    TY_TRY(reset_node(tr, TY_OP_CONCAT, &cat, sizeof cat, pair, 2));
    c->alias = r->alias = 1; /* views, as the recorder would mark them */
    c->materialize = r->materialize = tr->alias = tr->materialize = 0;
    meta_with_unit_dim(t, ea, a, k + 1);
    meta_with_unit_dim(t, eb, b, k + 1);
    return TY_OK;
}

static ty_status
run_shuffle(ty_trace *t)
{
    uses u = {0};
    ty_status st = count_uses(t, &u);
    u.drop = calloc((size_t)t->nn + 1, 1); /* here: rewritten already (the counts are stale) */
    if (st == TY_OK && !u.drop) {
        st = ty_set_error(TY_ERR_OOM, "trace.dump: out of memory");
    }
    for (int ci = 0; st == TY_OK && ci < t->nn; ci++) {
        int ri, ti;
        if (!u.drop[ci] && shuffle_at(t, &u, ci, &ri, &ti)) {
            st = fold_shuffle(t, ci, ri, ti);
            u.drop[ci] = u.drop[ri] = u.drop[ti] = 1;
        }
    }
    free(u.count);
    free(u.user);
    free(u.drop);
    return st == TY_OK ? finish(t) : st;
}

/* ---- float16 at the edges ---- */
static ty_status
astype_node(gnode *n, int in, int out, ty_dtype to)
{
    ty_p_astype *p = malloc(sizeof *p);
    n->in = malloc(sizeof(int));
    n->out = malloc(sizeof(int));
    n->params = p;
    TY_CHECK(p && n->in && n->out, TY_ERR_OOM, "trace.dump: out of memory");
    *p = (ty_p_astype){.dtype = to};
    n->op = TY_OP_ASTYPE;
    n->nin = n->nout = 1;
    n->in[0] = in;
    n->out[0] = out;
    n->group = -1;
    return TY_OK;
}

/* A float16 twin of value vid (an argument, or a node's output); its id or -1. */
static int
half_value(ty_trace *t, int vid, enum vkind kind, int index)
{
    ty_meta m = t->v[vid].meta;
    m.dtype = TY_FLOAT16;
    int h = add_value(t, kind, &m, NULL);
    if (h >= 0) {
        t->v[h].index = index;
    }
    return h;
}

static ty_status
io16_edges(ty_trace *t, gnode *n, int *k, ty_tym_rewrite_stats *stats)
{
    for (int i = 0; i < t->nargs; i++) {
        int a = t->arg_vid[i];
        if (t->v[a].meta.dtype != TY_FLOAT32) {
            continue;
        }
        int h = half_value(t, a, V_ARG, i);
        TY_CHECK(h >= 0, TY_ERR_OOM, "trace.dump: out of memory");
        t->arg_vid[i] = h;
        TY_TRY(astype_node(&n[(*k)++], h, a, TY_FLOAT32));
        stats->io16++;
    }
    for (int ni = 0; ni < t->nn; ni++) {
        n[(*k)++] = t->n[ni];
    }
    t->nn = 0; /* the nodes moved to n */
    for (int i = 0; i < t->nout; i++) {
        int o = t->out_vid[i];
        if (t->v[o].meta.dtype != TY_FLOAT32) {
            continue;
        }
        int h = half_value(t, o, V_NODE, 0);
        TY_CHECK(h >= 0, TY_ERR_OOM, "trace.dump: out of memory");
        t->out_vid[i] = h;
        TY_TRY(astype_node(&n[(*k)++], o, h, TY_FLOAT16));
        stats->io16++;
    }
    return TY_OK;
}

static ty_status
run_io16(ty_trace *t, ty_tym_rewrite_stats *stats)
{
    size_t cap = (size_t)t->nn + (size_t)t->nargs + (size_t)t->nout + 1;
    gnode *n = calloc(cap, sizeof(gnode));
    TY_CHECK(n, TY_ERR_OOM, "trace.dump: out of memory");
    int k = 0;
    ty_status st = io16_edges(t, n, &k, stats);
    if (t->nn == 0) { /* the nodes moved: n is the graph now (a half-made node included) */
        free(t->n);
        t->n = n;
        t->nn = k;
        t->cap_n = (int)cap;
    } else { /* failed before: only astype nodes were made */
        for (int i = 0; i < k; i++) {
            free_node(&n[i]);
        }
        free(n);
    }
    return st == TY_OK ? finish(t) : st;
}

static ty_status
rewrite(const ty_trace *tr, unsigned flags, ty_trace *t, ty_tym_rewrite_stats *stats)
{
    TY_TRY(copy_trace(tr, t));
    if (!has_writes(t) && (flags & (TY_TYM_FOLD | TY_TYM_CSE | TY_TYM_FUSE_CONV_BIAS))) {
        TY_TRY(externals_to_consts(t));
        if (flags & TY_TYM_CSE) {
            TY_TRY(run_cse(t, stats));
        }
        if (flags & (TY_TYM_FOLD | TY_TYM_FUSE_CONV_BIAS)) {
            TY_TRY(run_fold(t, (flags & TY_TYM_FUSE_CONV_BIAS) != 0, stats));
        }
        if (flags & TY_TYM_FUSE_CONV_BIAS) {
            TY_TRY(run_fuse(t, flags, stats));
        }
        TY_TRY(run_shuffle(t));
    }
    if (flags & TY_TYM_IO16XC32) {
        TY_TRY(run_io16(t, stats));
    }
    return finish(t);
}

ty_status
ty_tym_rewrite(const ty_trace *tr, unsigned flags, ty_trace **out, ty_tym_rewrite_stats *stats)
{
    TY_CHECK(tr && out && stats, TY_ERR_INVALID_ARG, "trace.dump: NULL argument");
    TY_CHECK(tr->mode == MODE_IDLE && tr->out_vid, TY_ERR_TRACE,
             "trace.dump: the function has not been traced to the end yet");
    TY_CHECK(!(flags & TY_TYM_FUSE_Z) || (flags & TY_TYM_FUSE_CONV_BIAS), TY_ERR_INVALID_ARG,
             "trace.dump: enable_fuse_conv_bias_with_z needs "
             "enable_fuse_conv_bias_nonlinearity=True");
    memset(stats, 0, sizeof *stats);
    ty_trace *t = calloc(1, sizeof *t);
    TY_CHECK(t, TY_ERR_OOM, "trace.dump: out of memory");
    ty_status st = rewrite(tr, flags, t, stats);
    if (st != TY_OK) {
        ty_trace_release(t);
        return st;
    }
    *out = t;
    return TY_OK;
}
