/* Compiling a recording: the passes that run once (CSE, constant folding, fusion groups), in
 * that order, and the facts they share. Every pass keeps the replay's results bitwise equal
 * to eager execution: nodes are removed or merged only where the same kernels would have
 * computed the same bits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"

/* TY_TRACE_PASSES=<mask> (TY_PASS_*) switches passes off, for debugging and comparisons. */
static unsigned
passes_from_env(void)
{
    const char *e = getenv("TY_TRACE_PASSES");
    if (!e || !*e) {
        return TY_PASS_ALL;
    }
    char *end;
    long v = strtol(e, &end, 0);
    return (*end || v < 0) ? TY_PASS_ALL : (unsigned)v & TY_PASS_ALL;
}

ty_status
ty_pass_pinned(const ty_trace *tr, char **out)
{
    char *p = calloc((size_t)(tr->nv ? tr->nv : 1), 1);
    TY_CHECK(p, TY_ERR_OOM, "trace: out of memory");
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        if ((ty_op_defs[n->op].flags & TY_F_WRITES) && n->nin >= 1) {
            p[tr->root[n->in[0]]] |= 1;
        }
    }
    for (int i = 0; i < tr->nout; i++) {
        p[tr->root[tr->out_vid[i]]] |= 2;
    }
    for (int b = 0; b < tr->nbw; b++) {
        for (int j = 0; j < tr->bw[b].nx; j++) {
            if (tr->bw[b].grads[j] >= 0) {
                p[tr->root[tr->bw[b].grads[j]]] |= 2;
            }
        }
    }
    *out = p;
    return TY_OK;
}

/* Before any call: live as if only the outputs and gradients escaped (for printing). */
static ty_status
static_liveness(ty_trace *tr)
{
    char *pinned;
    TY_TRY(ty_pass_pinned(tr, &pinned));
    for (int v = 0; v < tr->nv; v++) {
        pinned[v] = (pinned[v] & 2) != 0;
    }
    ty_status st = ty_pass_live(tr, pinned);
    free(pinned);
    return st;
}

void
ty_trace_free_compiled(ty_trace *tr)
{
    ty_fuse_forget(tr); /* before groups: it walks them */
    for (int i = 0; tr->folded && i < tr->nv; i++) {
        ty_tensor_release(tr->folded[i]);
    }
    free(tr->folded);
    free(tr->live);
    free(tr->scratch);
    free(tr->groups);
    free(tr->gon);
    free(tr->plan_key);
    free(tr->plan_off);
    free(tr->fwd_src);
    free(tr->fwd_on);
    free(tr->fwd_val);
    free(tr->pass_log);
    tr->fwd_src = NULL;
    tr->fwd_on = tr->fwd_val = NULL;
    tr->folded = NULL;
    tr->live = tr->scratch = tr->gon = tr->plan_key = tr->pass_log = NULL;
    tr->groups = NULL;
    tr->plan_off = NULL;
}

/* Forgets what an earlier compile decided (a symbolic recording compiles twice). */
static void
reset_compiled(ty_trace *tr)
{
    ty_trace_free_compiled(tr);
    tr->ngroups = tr->ncse = tr->nfolded = 0;
    for (int ni = 0; ni < tr->nn; ni++) {
        tr->n[ni].state = NS_EXEC;
        tr->n[ni].canon = 0;
        tr->n[ni].group = -1;
    }
    ty_trace_roots(tr);
}

static ty_status
fuse_groups(ty_trace *tr)
{
    ty_pass_fuse(tr);
    return TY_OK;
}

/* The compile-time passes, in order. The sublinear memory rewrite (copies of forward nodes
 * in the backward blocks that read their values again) runs after folding and before fusion,
 * so that fusion, forwarding and the memory plan see the recompute nodes. */
static const struct {
    unsigned bit;
    const char *name;
    ty_status (*run)(ty_trace *tr);
} pipeline[] = {
    {TY_PASS_CSE, "cse", ty_pass_cse},
    {TY_PASS_FOLD, "constant folding", ty_pass_fold},
    {TY_PASS_SUBLINEAR, "sublinear memory", ty_pass_sublinear},
    {TY_PASS_FUSE, "elementwise fusion", fuse_groups},
    {TY_PASS_FORWARD, "assign forwarding", ty_pass_forward},
};

/* TY_TRACE_DUMP=2: the graph after each pass, kept for tianyuan.jit to print. */
static void
log_pass(ty_trace *tr, const char *name)
{
    const char *e = getenv("TY_TRACE_DUMP");
    char *text = NULL;
    if (!e || strcmp(e, "2") != 0 || ty_trace_dump_ex(tr, 1, &text) != TY_OK) {
        ty_clear_error();
        return;
    }
    size_t old = tr->pass_log ? strlen(tr->pass_log) : 0, add = strlen(name) + strlen(text) + 16;
    char *log = realloc(tr->pass_log, old + add);
    if (log) {
        snprintf(log + old, add, "== after %s ==\n%s", name, text);
        tr->pass_log = log;
    }
    ty_free(text);
}

ty_status
ty_trace_compile(ty_trace *tr, unsigned mask)
{
    size_t nv = (size_t)(tr->nv ? tr->nv : 1), nn = (size_t)(tr->nn ? tr->nn : 1);
    reset_compiled(tr);
    tr->passes = passes_from_env() & mask;
    tr->folded = calloc(nv, sizeof(ty_tensor *));
    tr->live = malloc(nn);
    tr->scratch = calloc(nv, 1);
    tr->groups = malloc(sizeof(gfuse) * (nn / 2 + 1));
    TY_CHECK(tr->folded && tr->live && tr->scratch && tr->groups, TY_ERR_OOM,
             "trace: out of memory");
    memset(tr->live, 1, nn);
    for (size_t i = 0; i < sizeof pipeline / sizeof pipeline[0]; i++) {
        if (tr->passes & pipeline[i].bit) {
            TY_TRY(pipeline[i].run(tr));
            log_pass(tr, pipeline[i].name);
        }
    }
    tr->gon = calloc((size_t)(tr->ngroups ? tr->ngroups : 1), 1);
    TY_CHECK(tr->gon, TY_ERR_OOM, "trace: out of memory");
    return static_liveness(tr);
}
