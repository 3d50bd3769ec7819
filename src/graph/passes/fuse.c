/* Elementwise fusion (DESIGN.md "Performance model": chains of elementwise ops become one
 * pass over memory with identical float results). A maximal run of consecutive elementwise
 * nodes whose outputs share one shape runs block by block: for each block of BLOCK elements,
 * every member's typed loop (the loop the unfused kernel runs) in node order. Blocks are
 * fixed by size, so the split is deterministic, and each element is computed by the same
 * code as unfused, so the bits are the same. Intermediates that neither escape nor are read
 * outside the group live only in a per-chunk scratch block.
 *
 * Compile time fixes the groups from the recorded metas: members compute in the dtype of
 * all their inputs (no cast: ty_elemw_forward would cast first), and read inputs of the
 * output's element count or single elements. Each call checks that the group's outside
 * inputs are contiguous (or single elements); a group that is not runs unfused. */
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "graph/trace_impl.h"

enum { BLOCK = 8192, BLOCK_BYTES = BLOCK * 8, GRAIN_BLOCKS = 4, MAX_EW_IN = 3 };

static int64_t
meta_numel(const ty_meta *m)
{
    int64_t n = 1;
    for (int d = 0; d < m->ndim; d++) {
        n *= m->shape[d];
    }
    return n;
}

/* The compute dtype ty_elemw_forward would pick (elemw.c compute_dtype). */
static int
ew_dtype(const ty_trace *tr, const gnode *n, const ty_elemw_info *info, ty_dtype *out)
{
    ty_dtype dt = tr->v[n->in[0]].meta.dtype;
    for (int i = 1; i < n->nin; i++) {
        dt = ty_promote(dt, tr->v[n->in[i]].meta.dtype);
    }
    if (info->kind == TY_EW_LOGIC) {
        dt = TY_BOOL;
    } else if (info->kind == TY_EW_UNARY || info->kind == TY_EW_BINARY) {
        if (info->cls == TY_EWC_FLT && !ty_dtype_is_float(dt)) {
            dt = TY_FLOAT32;
        } else if (dt == TY_BOOL) {
            dt = TY_INT32;
        }
    }
    *out = dt;
    return (unsigned)dt < TY_DTYPE_COUNT && info->loop[dt] != NULL;
}

/* The op's first two float params (elemw.c float_params). */
static void
ew_params(const gnode *n, double pv[2])
{
    const ty_params_desc *d = ty_op_defs[n->op].params;
    int k = 0;
    pv[0] = pv[1] = 0.0;
    for (int i = 0; i < d->nfields && k < 2; i++) {
        if (d->fields[i].kind == TY_FK_F64) {
            pv[k++] = *(const double *)((const char *)n->params + d->fields[i].offset);
        }
    }
}

static int
ew_inputs_ok(const ty_trace *tr, const gnode *n, ty_dtype dt, int64_t numel)
{
    for (int i = 0; i < n->nin; i++) {
        const ty_meta *m = &tr->v[n->in[i]].meta;
        int64_t k = meta_numel(m);
        if (m->dtype != dt || (k != numel && k != 1)) {
            return 0;
        }
    }
    return 1;
}

/* Whether n can be a member; fills its loop and params. */
static int
ew_member(const ty_trace *tr, gnode *n)
{
    const ty_op_def *def = &ty_op_defs[n->op];
    const ty_elemw_info *info = &ty_elemw_table[n->op];
    ty_dtype dt;
    if (n->state != NS_EXEC || info->kind == TY_EW_NONE || def->forward != ty_elemw_forward ||
        (def->flags & (TY_F_VIEW | TY_F_WRITES | TY_F_RANDOM | TY_F_DYN)) || n->alias ||
        n->materialize || n->nout != 1 || n->nin < 1 || n->nin > MAX_EW_IN ||
        !ew_dtype(tr, n, info, &dt)) {
        return 0;
    }
    const ty_meta *om = &tr->v[n->out[0]].meta;
    int to_bool = info->kind == TY_EW_CMP || info->kind == TY_EW_LOGIC || info->kind == TY_EW_PRED;
    if (om->dtype != (to_bool ? TY_BOOL : dt) || !ew_inputs_ok(tr, n, dt, meta_numel(om))) {
        return 0;
    }
    n->ew_loop = info->loop[dt];
    ew_params(n, n->ew_pv);
    return 1;
}

static int
same_shape(const ty_meta *a, const ty_meta *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* Ends the open run: a group when it has two members or more. */
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

void
ty_pass_fuse(ty_trace *tr)
{
    gfuse run = {0, 0, 0, 0};
    const ty_meta *shape = NULL;
    for (int ni = 0; ni < tr->nn; ni++) {
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
            run = (gfuse){ni, ni, 0, meta_numel(om)};
            shape = om;
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

static int
outside_input_ok(ty_trace *tr, int vid, int64_t numel)
{
    const ty_tensor *t = ty_trace_value(tr, vid);
    if (!t) {
        return 0;
    }
    int64_t k = ty_tensor_numel(t);
    return k == 1 || (k == numel && ty_tensor_is_contiguous(t));
}

static int
group_ok(ty_trace *tr, int gi)
{
    const gfuse *g = &tr->groups[gi];
    int nlive = 0;
    for (int ni = g->first; ni <= g->last; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->group != gi || !tr->live[ni]) {
            continue;
        }
        nlive++;
        for (int i = 0; i < n->nin; i++) {
            if (!in_group(tr, n->in[i], gi) && !outside_input_ok(tr, n->in[i], g->numel)) {
                return 0;
            }
        }
    }
    return nlive >= 2;
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
        if (n->state == NS_EXEC && tr->live[ni] && fused_group(tr, n) >= 0) {
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

/* One operand of a member's loop: a scratch slot, or memory (stride 0: a single element). */
typedef struct fop {
    char *base;
    int64_t stride;
    int slot;
    size_t es;
} fop;

typedef struct fstep {
    ty_elemw_loop loop;
    const double *pv;
    int nops;
    fop op[1 + MAX_EW_IN];
} fstep;

typedef struct fctx {
    fstep *steps;
    int *outv, *slot; /* per step: output value, scratch slot or -1 */
    int nsteps, nslots;
    int64_t numel;
    _Atomic int failed;
} fctx;

static void
run_step(const fstep *st, char *scr, int64_t off, int64_t n)
{
    char *p[1 + MAX_EW_IN];
    int64_t s[1 + MAX_EW_IN];
    for (int i = 0; i < st->nops; i++) {
        const fop *o = &st->op[i];
        if (o->slot >= 0) {
            p[i] = scr + (size_t)o->slot * BLOCK_BYTES;
            s[i] = 1;
        } else {
            p[i] = o->base + off * o->stride * (int64_t)o->es;
            s[i] = o->stride;
        }
    }
    st->loop(n, p, s, st->pv);
}

static void
run_blocks(void *vctx, int64_t b0, int64_t b1)
{
    fctx *c = vctx;
    char *scr = c->nslots ? malloc((size_t)c->nslots * BLOCK_BYTES) : NULL;
    if (c->nslots && !scr) {
        atomic_store(&c->failed, 1);
        return;
    }
    for (int64_t b = b0; b < b1; b++) {
        int64_t off = b * BLOCK, n = c->numel - off < BLOCK ? c->numel - off : BLOCK;
        for (int k = 0; k < c->nsteps; k++) {
            run_step(&c->steps[k], scr, off, n);
        }
    }
    free(scr);
}

static ty_status
operand(ty_trace *tr, const fctx *c, int vid, fop *o)
{
    o->es = ty_dtype_size(tr->v[vid].meta.dtype);
    o->slot = -1;
    for (int k = 0; k < c->nsteps; k++) {
        if (c->outv[k] == tr->root[vid] && c->slot[k] >= 0) {
            o->slot = c->slot[k];
            return TY_OK;
        }
    }
    ty_tensor *t = ty_trace_value(tr, vid);
    TY_CHECK(t, TY_ERR_INTERNAL, "trace: unbound operand of a fused group");
    TY_TRY(ty_trace_provide(t));
    o->base = ty_tensor_ptr(t);
    o->stride = ty_tensor_numel(t) == 1 ? 0 : 1;
    return TY_OK;
}

static ty_status
add_step(ty_trace *tr, fctx *c, const gnode *n)
{
    fstep *s = &c->steps[c->nsteps];
    s->loop = n->ew_loop;
    s->pv = n->ew_pv;
    s->nops = 1 + n->nin;
    for (int i = 0; i < n->nin; i++) {
        TY_TRY(operand(tr, c, n->in[i], &s->op[1 + i]));
    }
    int v = n->out[0];
    c->outv[c->nsteps] = v;
    c->slot[c->nsteps] = tr->scratch[v] ? c->nslots++ : -1;
    c->nsteps++;
    TY_TRY(operand(tr, c, v, &s->op[0]));
    s->op[0].stride = 1;
    return TY_OK;
}

ty_status
ty_fuse_run(ty_trace *tr, int gi)
{
    const gfuse *g = &tr->groups[gi];
    fctx c = {malloc(sizeof(fstep) * (size_t)g->nnodes), malloc(sizeof(int) * (size_t)g->nnodes),
              malloc(sizeof(int) * (size_t)g->nnodes), 0, 0, g->numel, 0};
    ty_status st = (c.steps && c.outv && c.slot) ? TY_OK
                                                 : ty_set_error(TY_ERR_OOM, "trace: out of memory");
    for (int ni = g->first; st == TY_OK && ni <= g->last; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->group == gi && n->state == NS_EXEC && tr->live[ni]) {
            st = add_step(tr, &c, n);
        }
    }
    if (st == TY_OK) {
        ty_parallel_for((g->numel + BLOCK - 1) / BLOCK, GRAIN_BLOCKS, run_blocks, &c);
        if (atomic_load(&c.failed)) {
            st = ty_set_error(TY_ERR_OOM, "trace: out of memory for a fused group's scratch");
        }
    }
    free(c.steps);
    free(c.outv);
    free(c.slot);
    return st;
}
