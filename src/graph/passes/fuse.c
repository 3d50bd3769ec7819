/* Elementwise fusion (DESIGN.md "Performance model": chains of elementwise ops become one
 * pass over memory with identical float results). A maximal run of consecutive elementwise
 * nodes whose outputs share one shape runs block by block: for each block of BLOCK elements,
 * every member's typed loop (the loop the unfused kernel runs) in node order. Blocks are
 * fixed by size, so the split is deterministic, and each element is computed by the same
 * code as unfused, so the bits are the same. Intermediates that neither escape nor are read
 * outside the group live only in a per-chunk scratch block.
 *
 * Compile time fixes the groups from the recorded metas: members compute in the dtype of
 * all their inputs (no cast: ty_elemw_forward would cast first), and read inputs that
 * broadcast into the output (a bias (1, C, 1, 1) over (N, C, H, W)). A member reading a
 * broadcast input runs its part of a block in runs: the trailing dims over which every
 * operand moves with the output or stays put (H * W elements with the bias element fixed),
 * so its loop still sees strides 1 or 0. Members whose runs are short stay out (the loop
 * calls would cost more than the pass saved). Each call checks that the group's outside
 * inputs are contiguous (or single elements); a group that is not runs unfused.
 *
 * A float32 conv2d (or conv_bias applying its bias and activation tile by tile) computing
 * just before a group's first member, which reads its output,
 * heads the group: the convolution runs the group on each tile of its output as it finishes
 * it (ops/conv.h's tile hook), while the tile is in cache, and the group may write over the
 * tile in place. A group that is a chain of per-channel steps (batch norm, residual add,
 * activation) runs the leaner loop of fuse_chain.h. Same loops on the same values: the same
 * bits. */
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "graph/passes/fuse_chain.h"
#include "graph/trace_impl.h"
#include "ops/conv.h"

/* HEAD_BLOCK: the block of a group with a head convolution, small enough that its scratch
 * stays on the stack of the convolution's threads (which run it tile by tile). */
enum { BLOCK = 8192, HEAD_BLOCK = 256, GRAIN_BLOCKS = 4, MAX_EW_IN = TY_ELEMW_MAX_IN };
enum { MAX_OPS = 1 + MAX_EW_IN, MIN_RUN = 16 };
/* Small groups keep their steps and scratch on the stack: a malloc per call would cost about
 * what fusing a few thousand elements saves. */
enum { STACK_STEPS = 8, STACK_SCRATCH = 16384 };

/* Strides (elements) of a contiguous array of shape (nd, sh) read broadcast into out's shape:
 * 0 along broadcast dims. Returns 0 when sh does not broadcast into out. */
static int
bcast_strides(const ty_meta *out, int nd, const int64_t *sh, int64_t *bs)
{
    int lead = out->ndim - nd;
    int64_t cs = 1;
    if (lead < 0) {
        return 0;
    }
    for (int d = out->ndim - 1; d >= 0; d--) {
        int64_t k = d >= lead ? sh[d - lead] : 1;
        if (k != 1 && k != out->shape[d]) {
            return 0;
        }
        bs[d] = k == 1 ? 0 : cs;
        cs *= k;
    }
    return 1;
}

/* The first dim of the longest trailing block of dims over which each operand (strides bs)
 * moves with the contiguous output (mode 1) or stays put (mode 0); mode -1: all size 1. */
static int
run_start(const ty_meta *out, int nops, const int64_t (*bs)[TY_MAX_DIMS], int *mode)
{
    int64_t os = 1;
    for (int i = 0; i < nops; i++) {
        mode[i] = -1;
    }
    for (int d = out->ndim - 1; d >= 0; os *= out->shape[d--]) {
        for (int i = 0; i < nops && out->shape[d] != 1; i++) {
            int m = bs[i][d] == os ? 1 : (bs[i][d] == 0 ? 0 : -2);
            if (m == -2 || (mode[i] >= 0 && m != mode[i])) {
                return d + 1;
            }
            mode[i] = m;
        }
    }
    return 0;
}

static int64_t
dims_numel(const ty_meta *m, int from)
{
    int64_t n = 1;
    for (int d = from; d < m->ndim; d++) {
        n *= m->shape[d];
    }
    return n;
}

/* Whether a member reading with strides bs runs whole blocks or runs of MIN_RUN or more. */
static int
runs_ok(const ty_meta *out, int nops, const int64_t (*bs)[TY_MAX_DIMS])
{
    int mode[MAX_OPS];
    int start = run_start(out, nops, bs, mode);
    return start == 0 || dims_numel(out, start) >= MIN_RUN;
}

static int
ew_inputs_ok(const ty_trace *tr, const gnode *n, ty_dtype dt, const ty_meta *om)
{
    int64_t bs[MAX_EW_IN][TY_MAX_DIMS];
    for (int i = 0; i < n->nin; i++) {
        const ty_meta *m = &tr->v[n->in[i]].meta;
        if (m->dtype != dt || !bcast_strides(om, m->ndim, m->shape, bs[i])) {
            return 0;
        }
    }
    return runs_ok(om, n->nin, (const int64_t(*)[TY_MAX_DIMS])bs);
}

/* Whether n can be a member; fills its loop and params from the device's elementwise kernel. */
static int
ew_member(const ty_trace *tr, gnode *n)
{
    const ty_op_def *def = &ty_op_defs[n->op];
    if (n->state != NS_EXEC || (def->flags & (TY_F_VIEW | TY_F_WRITES | TY_F_RANDOM | TY_F_DYN)) ||
        n->alias || n->materialize || n->nout != 1 || n->nin < 1 || n->nin > MAX_EW_IN) {
        return 0;
    }
    ty_dtype in[MAX_EW_IN];
    for (int i = 0; i < n->nin; i++) {
        in[i] = tr->v[n->in[i]].meta.dtype;
    }
    ty_ew_kernel k;
    ty_elemw_kernel(tr->device, n->op, n->params, n->nin, in, &k);
    const ty_meta *om = &tr->v[n->out[0]].meta;
    if (!k.loop || om->dtype != k.out || !ew_inputs_ok(tr, n, k.compute, om)) {
        return 0;
    }
    n->ew_loop = k.loop;
    memcpy(n->ew_pv, k.pv, sizeof n->ew_pv);
    return 1;
}

static int
same_shape(const ty_meta *a, const ty_meta *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* Ends the open run: a group when it has two members or more (a head counts). */
static void
close_run(ty_trace *tr, gfuse *run)
{
    if (run->nnodes >= 2) {
        tr->groups[tr->ngroups++] = *run;
    } else if (run->nnodes == 1) {
        tr->n[run->first].group = -1;
    }
    run->nnodes = 0;
}

static int
is_f32(const ty_trace *tr, int vid)
{
    return tr->v[vid].meta.dtype == TY_FLOAT32;
}

/* Whether node ni runs a kernel (a view runs nothing: its base's memory is its memory). */
static int
computes(const ty_trace *tr, int ni)
{
    const gnode *n = &tr->n[ni];
    return n->state == NS_EXEC && !(n->alias && !(ty_op_defs[n->op].flags & TY_F_WRITES));
}

/* Whether node hi, the node computing just before member ni, can head ni's group: a float32
 * conv2d (or a conv_bias that applies its bias and activation tile by tile) whose output
 * (of the group's shape, nonempty) ni reads. The convolution then runs
 * the group over each tile of its output as it finishes it (ops/conv.h), so the members
 * read it from cache; every element still goes through the same loops, so the bits stay. */
static int
can_head(const ty_trace *tr, int hi, int ni)
{
    const gnode *h = &tr->n[hi], *n = &tr->n[ni];
    int conv = h->op == TY_OP_CONV2D && h->nin == 2;
    int conv_bias = h->op == TY_OP_CONV_BIAS && h->nin == 3 && is_f32(tr, h->in[2]) &&
                    ty_conv_bias_runs_fused(h->params, h->nin, TY_FLOAT32);
    if (!(conv || conv_bias) || h->state != NS_EXEC || h->alias || h->materialize ||
        h->nout != 1 || !is_f32(tr, h->in[0]) || !is_f32(tr, h->in[1]) ||
        !is_f32(tr, h->out[0]) || ty_meta_numel(&tr->v[h->in[1]].meta) <= 0 ||
        ty_meta_numel(&tr->v[h->out[0]].meta) <= 0 ||
        !same_shape(&tr->v[h->out[0]].meta, &tr->v[n->out[0]].meta)) {
        return 0;
    }
    for (int i = 0; i < n->nin; i++) {
        if (n->in[i] == h->out[0]) {
            return 1;
        }
    }
    return 0;
}

void
ty_pass_fuse(ty_trace *tr)
{
    gfuse run = {0, 0, 0, 0, -1};
    const ty_meta *shape = NULL;
    int prev = -1; /* the node before ni that computes (views of constants lie between) */
    for (int ni = 0; ni < tr->nn; prev = computes(tr, ni) ? ni : prev, ni++) {
        gnode *n = &tr->n[ni];
        if (n->state != NS_EXEC) {
            continue; /* computes nothing at run time: does not break a run */
        }
        int member = ew_member(tr, n);
        const ty_meta *om = &tr->v[n->out[0]].meta;
        if (!member || !run.nnodes || !same_shape(om, shape)) {
            close_run(tr, &run);
        }
        if (!member) {
            continue;
        }
        if (!run.nnodes) {
            run = (gfuse){ni, ni, 0, ty_meta_numel(om), -1};
            shape = om;
            if (prev >= 0 && can_head(tr, prev, ni)) {
                run.first = run.head = prev;
                tr->n[prev].group = tr->ngroups;
                run.nnodes = 1;
            }
        }
        n->group = tr->ngroups;
        run.last = ni;
        run.nnodes++;
    }
    close_run(tr, &run);
}

/* ---- per call ---- */

/* Whether value vid's memory is written by a member of group g. */
static int
in_group(const ty_trace *tr, int vid, int g)
{
    int r = tr->root[vid];
    return tr->v[r].kind == V_NODE && tr->n[tr->v[r].index].group == g;
}

/* The shape every member of group g computes. */
static const ty_meta *
group_meta(const ty_trace *tr, const gfuse *g)
{
    return &tr->v[tr->n[g->first].out[0]].meta;
}

/* The strides (elements, into the group's shape gm) with which a member of group gi reads
 * value vid: a member's output moves with the output; an outside input must be contiguous
 * or a single element. Returns 0 when the value cannot be read in place. */
static int
operand_strides(ty_trace *tr, int vid, int gi, const ty_meta *gm, int64_t *bs)
{
    if (in_group(tr, vid, gi)) {
        return ty_meta_numel(&tr->v[vid].meta) == ty_meta_numel(gm) &&
               bcast_strides(gm, gm->ndim, gm->shape, bs);
    }
    const ty_tensor *t = ty_trace_value(tr, vid);
    if (!t) {
        return 0;
    }
    if (ty_tensor_numel(t) == 1) {
        memset(bs, 0, sizeof(int64_t) * TY_MAX_DIMS);
        return 1;
    }
    return ty_tensor_is_contiguous(t) && bcast_strides(gm, t->ndim, t->shape, bs);
}

static int
member_ok(ty_trace *tr, const gnode *n, int gi, const ty_meta *gm)
{
    int64_t bs[MAX_EW_IN][TY_MAX_DIMS];
    for (int i = 0; i < n->nin; i++) {
        if (!operand_strides(tr, n->in[i], gi, gm, bs[i])) {
            return 0;
        }
    }
    return runs_ok(gm, n->nin, (const int64_t(*)[TY_MAX_DIMS])bs);
}

static int
group_ok(ty_trace *tr, int gi)
{
    const gfuse *g = &tr->groups[gi];
    const ty_meta *gm = group_meta(tr, g);
    int nlive = 0;
    if (g->head >= 0 && !tr->live[g->head]) {
        return 0;
    }
    for (int ni = g->first; ni <= g->last; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->group != gi || !tr->live[ni] || ni == g->head) {
            continue;
        }
        nlive++;
        if (!member_ok(tr, n, gi, gm)) {
            return 0;
        }
    }
    return nlive >= (g->head >= 0 ? 1 : 2);
}

/* The group a live node runs in this call, or -1. */
static int
fused_group(const ty_trace *tr, const gnode *n)
{
    return n->group >= 0 && tr->gon[n->group] ? n->group : -1;
}

static ty_status
mark_scratch(ty_trace *tr, const char *esc)
{
    char *outside = calloc((size_t)(tr->nv ? tr->nv : 1), 1); /* per root */
    TY_CHECK(outside, TY_ERR_OOM, "trace: out of memory");
    memset(tr->scratch, 0, (size_t)tr->nv);
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        int g = fused_group(tr, n);
        for (int i = 0; tr->live[ni] && n->state == NS_EXEC && i < n->nin; i++) {
            if (g < 0 || !in_group(tr, n->in[i], g)) {
                outside[tr->root[n->in[i]]] = 1;
            }
        }
    }
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        int g = fused_group(tr, n);
        if (n->state == NS_EXEC && tr->live[ni] && g >= 0 && tr->groups[g].head != ni) {
            int v = n->out[0];
            tr->scratch[v] = tr->root[v] == v && !esc[v] && !outside[v];
        }
    }
    free(outside);
    return TY_OK;
}

ty_status
ty_fuse_prepare(ty_trace *tr, const char *esc)
{
    for (int g = 0; g < tr->ngroups; g++) {
        tr->gon[g] = (char)group_ok(tr, g);
    }
    return mark_scratch(tr, esc);
}

/* One operand of a member's loop: a scratch slot, or memory read with stride 1 or 0 (within
 * a run, or throughout when the member runs whole blocks). */
typedef struct fop {
    char *base;
    int64_t stride;
    int slot;
    size_t soff; /* the slot's byte offset in the scratch */
    size_t es;
} fop;

typedef struct fstep {
    ty_ew_loop loop;
    const double *pv;
    int nops;
    fop op[MAX_OPS];
    /* a member reading a broadcast input runs in runs of `run` elements (0: whole blocks) */
    int64_t run;
    int nd;                             /* dims outside a run, size-1 dims left out */
    int64_t shape[TY_MAX_DIMS];         /* their sizes */
    int64_t ostr[MAX_OPS][TY_MAX_DIMS]; /* per operand: their strides in elements */
} fstep;

typedef struct fctx {
    fstep *steps;
    int *outv, *slot; /* per step: output value, scratch slot or -1 */
    int nsteps, nslots;
    size_t slot_bytes; /* a block's bytes; less for groups smaller than a block */
    int64_t block;     /* elements per block */
    int64_t numel;
    const float *head_y; /* a head convolution's output, where the tile hook's ranges lie */
    ty_fchain chain;     /* a head group that is a chain runs it (chain.n > 0) */
    int gi;
    const ty_meta *gm;
    _Atomic int failed;
} fctx;

static void
run_step(const fstep *st, char *scr, int64_t off, int64_t n)
{
    char *p[MAX_OPS];
    int64_t s[MAX_OPS];
    for (int i = 0; i < st->nops; i++) {
        const fop *o = &st->op[i];
        if (o->slot >= 0) {
            p[i] = scr + o->soff;
            s[i] = 1;
        } else {
            p[i] = o->base + off * o->stride * (int64_t)o->es;
            s[i] = o->stride;
        }
    }
    st->loop(n, p, s, st->pv);
}

/* Moves the outer index to the next run, and each operand's offset (at) with it. */
static void
next_run(const fstep *st, int64_t *idx, int64_t *at)
{
    for (int d = st->nd - 1; d >= 0; d--) {
        int wrap = ++idx[d] == st->shape[d];
        for (int i = 0; i < st->nops; i++) {
            at[i] += wrap ? -(st->shape[d] - 1) * st->ostr[i][d] : st->ostr[i][d];
        }
        if (!wrap) {
            return;
        }
        idx[d] = 0;
    }
}

/* Block [off, off + n) of a member that runs in runs: one loop call per (part of a) run. */
static void
run_step_runs(const fstep *st, char *scr, int64_t off, int64_t n)
{
    int64_t idx[TY_MAX_DIMS], at[MAX_OPS] = {0}, q = off / st->run, w = off % st->run;
    for (int d = st->nd - 1; d >= 0; d--) {
        idx[d] = q % st->shape[d];
        q /= st->shape[d];
        for (int i = 0; i < st->nops; i++) {
            at[i] += idx[d] * st->ostr[i][d];
        }
    }
    char *p[MAX_OPS];
    int64_t s[MAX_OPS];
    for (int64_t done = 0; done < n; done += st->run - w, w = 0, next_run(st, idx, at)) {
        int64_t len = st->run - w < n - done ? st->run - w : n - done;
        for (int i = 0; i < st->nops; i++) {
            const fop *o = &st->op[i];
            if (o->slot >= 0) {
                p[i] = scr + o->soff + (size_t)done * o->es;
                s[i] = 1;
            } else {
                p[i] = o->base + (at[i] + w * o->stride) * (int64_t)o->es;
                s[i] = o->stride;
            }
        }
        st->loop(len, p, s, st->pv);
    }
}

static void
run_steps(const fctx *c, char *scr, int64_t off, int64_t n)
{
    for (int k = 0; k < c->nsteps; k++) {
        const fstep *st = &c->steps[k];
        if (st->run) {
            run_step_runs(st, scr, off, n);
        } else {
            run_step(st, scr, off, n);
        }
    }
}

/* The slots' scratch: local (STACK_SCRATCH bytes) when it fits, else the heap; NULL (and the
 * group marked failed) when the heap has none. */
static char *
slot_scratch(fctx *c, char *local)
{
    size_t need = (size_t)c->nslots * c->slot_bytes;
    char *scr = need <= STACK_SCRATCH ? local : malloc(need);
    if (!scr) {
        atomic_store(&c->failed, 1);
    }
    return scr;
}

static void
run_blocks(void *vctx, int64_t b0, int64_t b1)
{
    fctx *c = vctx;
    _Alignas(64) char local[STACK_SCRATCH];
    char *scr = slot_scratch(c, local);
    if (!scr) {
        return;
    }
    for (int64_t b = b0; b < b1; b++) {
        int64_t off = b * c->block, n = c->numel - off < c->block ? c->numel - off : c->block;
        run_steps(c, scr, off, n);
    }
    if (scr != local) {
        free(scr);
    }
}

/* The tile hook of a head convolution: the members over rows of cols elements at p (in the
 * head's output), ld apart, in pieces of a block (a head group's small block keeps the
 * scratch of a few slots on the stack); a chain runs its own loop. */
static void
run_tile(void *vctx, float *p, int64_t rows, int64_t cols, int64_t ld)
{
    fctx *c = vctx;
    if (c->chain.n) {
        ty_chain_run(&c->chain, c->head_y, p - c->head_y, rows, cols, ld);
        return;
    }
    _Alignas(64) char local[STACK_SCRATCH];
    char *scr = slot_scratch(c, local);
    if (!scr) {
        return;
    }
    if (ld == cols) {
        cols *= rows;
        rows = 1;
    }
    for (int64_t i = 0; i < rows; i++) {
        int64_t off = p - c->head_y + i * ld;
        for (int64_t done = 0; done < cols; done += c->block) {
            run_steps(c, scr, off + done, cols - done < c->block ? cols - done : c->block);
        }
    }
    if (scr != local) {
        free(scr);
    }
}

static ty_status
operand(ty_trace *tr, const fctx *c, int vid, fop *o, int64_t *bs)
{
    o->es = ty_dtype_size(tr->v[vid].meta.dtype);
    o->slot = -1;
    TY_CHECK(operand_strides(tr, vid, c->gi, c->gm, bs), TY_ERR_INTERNAL,
             "trace: a fused group's operand cannot be read in place");
    for (int k = 0; k < c->nsteps; k++) {
        if (c->outv[k] == tr->root[vid] && c->slot[k] >= 0) {
            o->slot = c->slot[k];
            o->soff = (size_t)o->slot * c->slot_bytes;
            return TY_OK;
        }
    }
    ty_tensor *t = ty_trace_value(tr, vid);
    TY_CHECK(t, TY_ERR_INTERNAL, "trace: unbound operand of a fused group");
    TY_TRY(ty_trace_provide(t));
    o->base = ty_tensor_ptr(t);
    return TY_OK;
}

/* Fixes each operand's stride from its mode, and the runs when the member needs them. */
static void
set_runs(fstep *s, const ty_meta *gm, const int64_t (*bs)[TY_MAX_DIMS])
{
    int mode[MAX_OPS];
    int start = run_start(gm, s->nops, bs, mode);
    for (int i = 0; i < s->nops; i++) {
        s->op[i].stride = mode[i] == 0 ? 0 : 1;
    }
    s->run = start ? dims_numel(gm, start) : 0;
    s->nd = 0;
    for (int d = 0; d < start; d++) {
        if (gm->shape[d] != 1) {
            s->shape[s->nd] = gm->shape[d];
            for (int i = 0; i < s->nops; i++) {
                s->ostr[i][s->nd] = bs[i][d];
            }
            s->nd++;
        }
    }
}

static ty_status
add_step(ty_trace *tr, fctx *c, const gnode *n)
{
    fstep *s = &c->steps[c->nsteps];
    int64_t bs[MAX_OPS][TY_MAX_DIMS];
    s->loop = n->ew_loop;
    s->pv = n->ew_pv;
    s->nops = 1 + n->nin;
    for (int i = 0; i < n->nin; i++) {
        TY_TRY(operand(tr, c, n->in[i], &s->op[1 + i], bs[1 + i]));
    }
    int v = n->out[0];
    c->outv[c->nsteps] = v;
    c->slot[c->nsteps] = tr->scratch[v] ? c->nslots++ : -1;
    c->nsteps++;
    TY_TRY(operand(tr, c, v, &s->op[0], bs[0]));
    set_runs(s, c->gm, (const int64_t(*)[TY_MAX_DIMS])bs);
    return TY_OK;
}

/* Host-less calls after the first keep each group's built steps: the memory its operands
 * live in stays the same over such calls unless it touches a value bound anew per call. */
struct ty_fuse_cache {
    fstep *steps;
    int nsteps, nslots;
    ty_fchain chain;
};

void
ty_fuse_forget(ty_trace *tr)
{
    for (int g = 0; tr->fcache && g < tr->ngroups; g++) {
        if (tr->fcache[g]) {
            free(tr->fcache[g]->steps);
            free(tr->fcache[g]);
        }
    }
    free(tr->fcache);
    tr->fcache = NULL;
}

static int
group_persistent(const ty_trace *tr, int gi)
{
    const gfuse *g = &tr->groups[gi];
    for (int ni = g->first; ni <= g->last; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->group != gi || n->state != NS_EXEC || !tr->live[ni] || ni == g->head) {
            continue;
        }
        for (int i = 0; i < n->nin; i++) {
            if (tr->percall[tr->root[n->in[i]]]) {
                return 0;
            }
        }
        if (tr->percall[tr->root[n->out[0]]]) {
            return 0;
        }
    }
    return 1;
}

/* Best effort: without memory the next call builds the steps again. */
static void
keep_steps(ty_trace *tr, int gi, const fctx *c)
{
    if (!tr->fcache) {
        tr->fcache = calloc((size_t)tr->ngroups, sizeof(struct ty_fuse_cache *));
    }
    struct ty_fuse_cache *fc = tr->fcache ? malloc(sizeof *fc) : NULL;
    fstep *steps = fc ? malloc(sizeof(fstep) * (size_t)c->nsteps) : NULL;
    if (!steps) {
        free(fc);
        return;
    }
    memcpy(steps, c->steps, sizeof(fstep) * (size_t)c->nsteps);
    *fc = (struct ty_fuse_cache){steps, c->nsteps, c->nslots, c->chain};
    tr->fcache[gi] = fc;
}

static ty_status
run_plain(fctx *c)
{
    int64_t grain = GRAIN_BLOCKS * BLOCK / c->block;
    ty_parallel_for((c->numel + c->block - 1) / c->block, grain, run_blocks, c);
    TY_CHECK(!atomic_load(&c->failed), TY_ERR_OOM,
             "trace: out of memory for a fused group's scratch");
    return TY_OK;
}

/* A group with a head: the convolution runs it tile by tile; a convolution that did not
 * take the hook leaves it to a pass after. */
static ty_status
run_ctx(ty_trace *tr, const gfuse *g, fctx *c)
{
    if (g->head < 0) {
        return run_plain(c);
    }
    ty_tensor *y = ty_trace_value(tr, tr->n[g->head].out[0]);
    TY_CHECK(y, TY_ERR_INTERNAL, "trace: unbound output of a fused convolution");
    TY_TRY(ty_trace_provide(y));
    c->head_y = (const float *)ty_tensor_ptr(y);
    ty_conv_set_tile_hook(run_tile, c, c->head_y);
    ty_epi_bn_f32 bn;
    if (ty_chain_bn_desc(&c->chain, &bn)) { /* which a kernel may run in its registers */
        ty_conv_set_tile_bn(&bn);
    }
    ty_status st = ty_trace_exec_one(tr, g->head);
    int untaken = ty_conv_clear_tile_hook();
    if (st == TY_OK && untaken) {
        return run_plain(c);
    }
    TY_CHECK(st != TY_OK || !atomic_load(&c->failed), TY_ERR_OOM,
             "trace: out of memory for a fused group's scratch");
    return st;
}

/* Elements per block of group g, and the bytes of one scratch slot (8: the widest element). */
static int64_t
group_block(const gfuse *g)
{
    int64_t b = g->head >= 0 ? HEAD_BLOCK : BLOCK;
    return g->numel < b ? (g->numel > 0 ? g->numel : 1) : b; /* an empty group: no blocks */
}

static size_t
slot_bytes(int64_t block)
{
    return ((size_t)block * 8 + 63) & ~(size_t)63;
}

static ty_status
run_cached(ty_trace *tr, int gi, const struct ty_fuse_cache *fc)
{
    const gfuse *g = &tr->groups[gi];
    fctx c = {.steps = fc->steps,
              .nsteps = fc->nsteps,
              .nslots = fc->nslots,
              .chain = fc->chain,
              .block = group_block(g),
              .slot_bytes = slot_bytes(group_block(g)), /* as when built */
              .numel = g->numel,
              .gi = gi,
              .gm = group_meta(tr, g)};
    return run_ctx(tr, g, &c);
}

ty_status
ty_fuse_run(ty_trace *tr, int gi)
{
    if (tr->fcache && tr->fcache[gi]) {
        return run_cached(tr, gi, tr->fcache[gi]);
    }
    const gfuse *g = &tr->groups[gi];
    fstep steps[STACK_STEPS];
    int ints[2 * STACK_STEPS];
    int small = g->nnodes <= STACK_STEPS;
    fctx c = {.steps = small ? steps : malloc(sizeof(fstep) * (size_t)g->nnodes),
              .outv = small ? ints : malloc(sizeof(int) * (size_t)g->nnodes),
              .slot = small ? ints + STACK_STEPS : malloc(sizeof(int) * (size_t)g->nnodes),
              .block = group_block(g),
              .slot_bytes = slot_bytes(group_block(g)),
              .numel = g->numel,
              .gi = gi,
              .gm = group_meta(tr, g)};
    ty_status st = (c.steps && c.outv && c.slot) ? TY_OK
                                                 : ty_set_error(TY_ERR_OOM, "trace: out of memory");
    for (int ni = g->first; st == TY_OK && ni <= g->last; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->group == gi && n->state == NS_EXEC && tr->live[ni] && ni != g->head) {
            st = add_step(tr, &c, n);
        }
    }
    if (st == TY_OK && g->head >= 0) {
        st = ty_chain_build(tr, gi, &c.chain);
    }
    if (st == TY_OK) {
        st = run_ctx(tr, g, &c);
    }
    if (st == TY_OK && tr->prepared && group_persistent(tr, gi)) {
        keep_steps(tr, gi, &c);
    }
    if (!small) {
        free(c.steps);
        free(c.outv);
        free(c.slot);
    }
    return st;
}
