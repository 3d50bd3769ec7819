/* Calls without the host (trace(without_host=True)): the function is not called; arguments
 * are bound to the new tensors, externals to the tensors seen when recording (parameters
 * updated in place stay the same tensors), and the recorded program runs.
 *
 * The first call goes through the whole replay pipeline: escape analysis, dead code, fusion
 * and the memory plan. Without Python in between, those decisions hold for every later call
 * with the same layouts, so the call keeps the tensors of the values that are the same on
 * every call (intermediates placed in the arena, views of externals, folded constants); later
 * calls bind the arguments, make the outputs and their views, and run the nodes. */
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"

static void
set_bound(ty_trace *tr, int vid, ty_tensor *t)
{
    ty_tensor_retain(t);
    ty_tensor_release(tr->bound[vid]);
    tr->bound[vid] = t;
}

/* Makes node ni's outputs for this call; only_percall keeps the persistent ones. */
static ty_status
emit_node(ty_trace *tr, int ni, int only_percall)
{
    const gnode *n = &tr->n[ni];
    ty_tensor *small[TY_TRACE_SMALL_ARITY];
    ty_tensor **in = ty_trace_ptrs(small, n->nin + n->nout);
    TY_CHECK(in, TY_ERR_OOM, "trace: out of memory");
    ty_tensor **out = in + n->nin;
    for (int i = 0; i < n->nin; i++) {
        in[i] = ty_trace_value(tr, n->in[i]);
    }
    ty_status st = ty_trace_make_outputs(tr, ni, in, out);
    for (int i = 0; i < n->nout; i++) {
        int v = n->out[i];
        if (st == TY_OK && !only_percall) {
            st = ty_trace_bind(tr, v, out[i]);
        } else if (st == TY_OK && tr->percall[v]) {
            set_bound(tr, v, out[i]);
        }
        ty_tensor_release(out[i]);
    }
    ty_trace_ptrs_free(small, in);
    return st;
}

static int
node_percall(const ty_trace *tr, const gnode *n)
{
    for (int i = 0; i < n->nout; i++) {
        if (tr->percall[n->out[i]]) {
            return 1;
        }
    }
    return 0;
}

/* Binds every value of the call and runs the whole pipeline; forced[] marks output roots. */
static ty_status
full_call(ty_trace *tr, ty_tensor *const *args, char *forced)
{
    tr->bound = calloc((size_t)(tr->nv ? tr->nv : 1), sizeof(ty_tensor *));
    TY_CHECK(tr->bound, TY_ERR_OOM, "trace: out of memory");
    for (int i = 0; i < tr->nargs; i++) {
        TY_TRY(ty_trace_bind(tr, tr->arg_vid[i], args[i]));
    }
    for (int vid = 0; vid < tr->nv; vid++) {
        if (tr->v[vid].kind == V_EXTERNAL) {
            TY_TRY(ty_trace_bind(tr, vid, tr->v[vid].ref));
        }
    }
    for (int ni = 0; ni < tr->nn; ni++) {
        TY_TRY(emit_node(tr, ni, 0));
    }
    for (int i = 0; i < tr->nout; i++) {
        forced[tr->root[tr->out_vid[i]]] = 1;
    }
    return ty_trace_execute(tr, forced);
}

static void
save_layout(glayout *l, const ty_tensor *t)
{
    memset(l, 0, sizeof *l);
    l->storage = t->storage;
    l->offset = t->offset;
    memcpy(l->strides, t->strides, sizeof(int64_t) * (size_t)t->ndim);
}

static int
same_layout(const glayout *l, const ty_tensor *t, int same_memory)
{
    return memcmp(l->strides, t->strides, sizeof(int64_t) * (size_t)t->ndim) == 0 &&
           (!same_memory || (l->storage == t->storage && l->offset == t->offset));
}

/* The decisions of the last full call still hold: arguments have the same strides (fusion
 * depends on contiguity) and externals still sit in the same memory. */
static int
still_valid(const ty_trace *tr, ty_tensor *const *args)
{
    for (int i = 0; i < tr->nargs; i++) {
        if (!same_layout(&tr->layout[tr->arg_vid[i]], args[i], 0)) {
            return 0;
        }
    }
    for (int vid = 0; vid < tr->nv; vid++) {
        if (tr->v[vid].kind == V_EXTERNAL && !same_layout(&tr->layout[vid], tr->v[vid].ref, 1)) {
            return 0;
        }
    }
    return 1;
}

static void
drop_percall(ty_trace *tr)
{
    for (int v = 0; v < tr->nv; v++) {
        if (tr->percall[v]) {
            ty_tensor_release(tr->bound[v]);
            tr->bound[v] = NULL;
        }
    }
}

/* After a full call: the values bound anew per call are the arguments, and the node values
 * on an argument's or an output's memory; the others keep their tensors. */
static void
prepare(ty_trace *tr, const char *forced)
{
    size_t nv = (size_t)(tr->nv ? tr->nv : 1);
    if (!tr->percall) {
        tr->percall = malloc(nv);
        tr->layout = malloc(nv * sizeof(glayout));
        tr->percall_nodes = malloc(sizeof(int) * (size_t)(tr->nn ? tr->nn : 1));
    }
    if (!tr->percall || !tr->layout || !tr->percall_nodes) {
        ty_trace_release_bound(tr); /* no memory to keep state: every call is a full one */
        return;
    }
    for (int v = 0; v < tr->nv; v++) {
        enum vkind k = tr->v[v].kind, rk = tr->v[tr->root[v]].kind;
        tr->percall[v] = k == V_ARG || (k == V_NODE && (rk == V_ARG || forced[tr->root[v]]));
        if (k == V_ARG || k == V_EXTERNAL) {
            save_layout(&tr->layout[v], tr->bound[v]);
        }
    }
    tr->npercall_nodes = 0;
    for (int ni = 0; ni < tr->nn; ni++) {
        if (node_percall(tr, &tr->n[ni])) {
            tr->percall_nodes[tr->npercall_nodes++] = ni;
        }
    }
    ty_ptrmap_clear(&tr->map); /* nothing is matched without the host */
    drop_percall(tr);
    ty_fuse_forget(tr);
    tr->prepared = 1;
}

static ty_status
fast_call(ty_trace *tr, ty_tensor *const *args)
{
    for (int i = 0; i < tr->nargs; i++) {
        set_bound(tr, tr->arg_vid[i], args[i]);
    }
    for (int i = 0; i < tr->npercall_nodes; i++) {
        TY_TRY(emit_node(tr, tr->percall_nodes[i], 1));
    }
    return ty_trace_exec_all(tr);
}

/* Hands out the outputs; every bound tensor now has its data. */
static void
hand_out(ty_trace *tr, int nout, ty_tensor **outs)
{
    for (int i = 0; i < nout; i++) {
        outs[i] = ty_trace_value(tr, tr->out_vid[i]);
        ty_tensor_retain(outs[i]);
    }
    for (int v = 0; v < tr->nv; v++) {
        if (tr->bound[v]) {
            tr->bound[v]->storage->deferred = NULL;
        }
    }
}

/* Externals are read from the tensors seen when recording: one whose Python Tensor was
 * rebound since (set_value, setitem on a parameter) would be read stale. */
static ty_status
check_externals(const ty_trace *tr)
{
    for (int vid = 0; vid < tr->nv; vid++) {
        TY_CHECK(tr->v[vid].kind != V_EXTERNAL || !ty_trace_is_replaced(tr->v[vid].ref),
                 TY_ERR_TRACE,
                 "trace(without_host=True): a tensor the graph reads (a parameter or state) "
                 "was replaced since recording (set_value, item assignment, load_state_dict "
                 "with another dtype); update it in place with _assign, or trace again");
    }
    return TY_OK;
}

static ty_status
run_call(ty_trace *tr, ty_tensor *const *args, int nout, ty_tensor **outs)
{
    for (int i = 0; i < tr->nargs; i++) {
        TY_CHECK(ty_trace_meta_equal(&tr->v[tr->arg_vid[i]].meta, args[i]), TY_ERR_TRACE,
                 "trace: argument %d has another shape or dtype than recorded", i);
    }
    TY_TRY(check_externals(tr));
    if (tr->prepared && still_valid(tr, args)) {
        TY_TRY(fast_call(tr, args));
        hand_out(tr, nout, outs);
        drop_percall(tr);
        return TY_OK;
    }
    ty_trace_release_bound(tr);
    char *forced = calloc((size_t)(tr->nv ? tr->nv : 1), 1);
    TY_CHECK(forced, TY_ERR_OOM, "trace: out of memory");
    ty_status st = full_call(tr, args, forced);
    if (st == TY_OK) {
        hand_out(tr, nout, outs);
        prepare(tr, forced);
    }
    free(forced);
    return st;
}

ty_status
ty_trace_run(ty_trace *tr, int nargs, ty_tensor *const *args, int nout, ty_tensor **outs)
{
    TY_CHECK(tr && tr->mode == MODE_IDLE && (nargs == 0 || args) && nout == tr->nout,
             TY_ERR_INVALID_ARG, "trace: run on a busy trace or with a wrong output count");
    TY_CHECK(!tr->why[0], TY_ERR_TRACE, "trace: the recording cannot be replayed: %s", tr->why);
    TY_CHECK(nargs == tr->nargs, TY_ERR_TRACE,
             "trace error because input size mismatch: recorded %d tensor arguments, got %d",
             tr->nargs, nargs);
    TY_CHECK(!atomic_exchange(&tr->busy, 1), TY_ERR_TRACE,
             "trace: a traced function was called from two threads at once");
    for (int i = 0; i < nout; i++) {
        outs[i] = NULL;
    }
    ty_status st = run_call(tr, args, nout, outs);
    if (st != TY_OK) {
        ty_trace_release_bound(tr);
    }
    atomic_store(&tr->busy, 0);
    return st;
}
