/* Tracing (DESIGN.md promise 3): a dispatcher hook records the op applications of one call
 * of a function; later calls replay it. During a replay the function body runs again, but
 * every ty_apply is only matched against the recording (operator, params, where each input
 * comes from) and returns a tensor whose data is pending; ty_trace_end_replay then executes
 * the recorded program in one go, with no per-op Python work and no autodiff tape (a
 * backward is replayed as the block of ops it recorded).
 *
 * Values of the program: ARG (the traced function's tensor arguments), EXTERNAL (tensors
 * from outside — parameters, optimizer state, tensors made from host data — bound afresh on
 * every call), CONST (Python literals, and tensors the autodiff seeds: checked or baked) and
 * NODE outputs.
 *
 * trace_record.c records, trace_replay.c matches a replay, trace_plan.c finds what escapes
 * and plans memory, trace_exec.c runs the nodes, trace_print.c prints; this file holds the
 * calling thread's trace and a trace's lifetime. */
#include <stdlib.h>
#include <string.h>

#include "graph/ptrmap.h"
#include "graph/trace_impl.h"
#include "ops/op.h"

/* ---- the calling thread's trace ---- */
static _Thread_local ty_trace *active;
static _Thread_local int paused;
static _Thread_local const ty_trace_bw_fns *bw_fns;

const ty_deferral ty_trace_pending = {
    TY_ERR_TRACE,
    "data unreadable: inside a traced function (replayed, or recorded with symbolic=True) "
    "tensor values are computed only when the call ends; move the read out of the function or "
    "return the tensor (or the traced call failed)",
    NULL};

ty_trace *
ty_trace_current(void)
{
    return active;
}

int
ty_trace_paused(void)
{
    return paused;
}

void
ty_trace_attach(ty_trace *tr, const ty_trace_bw_fns *fns)
{
    active = tr;
    bw_fns = fns;
}

/* ---- the tracer's dispatcher hook ---- */
static ty_status
trace_after(void *ud, const ty_call *c, ty_tensor *const *out)
{
    (void)ud;
    if (!active || paused || active->mode != MODE_RECORD) {
        return TY_OK;
    }
    return ty_trace_record_call(active, c, out);
}

static ty_status
trace_backward(void *ud, ty_backward_phase phase, ty_backward_event *ev)
{
    (void)ud;
    if (!active || paused || !bw_fns) {
        return TY_OK;
    }
    if (phase == TY_BACKWARD_END) {
        return bw_fns->end ? bw_fns->end(active, ev->nx, ev->grads) : TY_OK;
    }
    if (bw_fns->replace) {
        TY_TRY(bw_fns->replace(active, ev->ny, ev->ys, ev->dys, ev->nx, ev->xs, ev->grads));
        ev->done = 1;
        return TY_OK;
    }
    return bw_fns->begin ? bw_fns->begin(active, ev->ny, ev->ys, ev->nx, ev->xs) : TY_OK;
}

/* The tracer's extension slot of every tensor: TY_MARK_* bits. */
enum { TY_MARK_LITERAL = 1u << 0, TY_MARK_REPLACED = 1u << 1 };
static int marks_slot = -1;

ty_status
ty_trace_init(void)
{
    if (marks_slot >= 0) {
        return TY_OK;
    }
    int slot;
    TY_TRY(ty_tensor_ext_register(NULL, &slot));
    ty_hook h = {.after = trace_after, .kind = TY_HOOK_TRACE, .backward = trace_backward};
    TY_TRY(ty_hook_add(&h));
    marks_slot = slot;
    return TY_OK;
}

ty_status
ty_trace_check_init(void)
{
    TY_CHECK(marks_slot >= 0, TY_ERR_INTERNAL,
             "trace: the tracer is not initialized (call ty_init() first)");
    return TY_OK;
}

static void
mark(ty_tensor *t, uintptr_t bit)
{
    if (t && marks_slot >= 0) {
        t->ext[marks_slot] |= bit;
    }
}

static int
marked(const ty_tensor *t, uintptr_t bit)
{
    return marks_slot >= 0 && (t->ext[marks_slot] & bit);
}

void
ty_trace_mark_literal(ty_tensor *t)
{
    mark(t, TY_MARK_LITERAL);
}

void
ty_trace_mark_replaced(ty_tensor *t)
{
    mark(t, TY_MARK_REPLACED);
}

int
ty_trace_is_literal(const ty_tensor *t)
{
    return marked(t, TY_MARK_LITERAL);
}

int
ty_trace_is_replaced(const ty_tensor *t)
{
    return marked(t, TY_MARK_REPLACED);
}

void
ty_trace_release_kept(ty_trace *tr)
{
    for (int i = 0; i < tr->nkept; i++) {
        ty_tensor_release(tr->kept[i]);
    }
    tr->nkept = 0;
    tr->ndropped = 0;
    tr->sweep_at = 0;
    tr->kept_bytes = 0;
    ty_ptrmap_clear(&tr->map);
}

void
ty_trace_detach(ty_trace *tr)
{
    if (active == tr) {
        active = NULL;
        ty_set_intercept(NULL, NULL);
        bw_fns = NULL;
        ty_hooks_suspend(TY_HOOK_AUTODIFF, 0);
    }
    tr->mode = MODE_IDLE;
    tr->in_backward = 0;
}

/* ---- lifetime ---- */
void
ty_trace_abort(ty_trace *tr)
{
    if (!tr) {
        return;
    }
    ty_trace_detach(tr);
    ty_trace_release_kept(tr);
    ty_trace_release_bound(tr);
    atomic_store(&tr->busy, 0);
}

void
ty_trace_release(ty_trace *tr)
{
    if (!tr) {
        return;
    }
    ty_trace_abort(tr);
    for (int i = 0; i < tr->nv; i++) {
        ty_tensor_release(tr->v[i].ref);
    }
    for (int i = 0; i < tr->nn; i++) {
        free(tr->n[i].params);
        free(tr->n[i].in);
        free(tr->n[i].out);
    }
    for (int i = 0; i < tr->nbw; i++) {
        free(tr->bw[i].ys);
        free(tr->bw[i].xs);
        free(tr->bw[i].grads);
    }
    ty_ptrmap_free(&tr->map);
    ty_mem_free(tr->arena, tr->arena_size);
    ty_trace_free_compiled(tr);
    free(tr->root);
    free(tr->percall);
    free(tr->percall_nodes);
    free(tr->layout);
    free(tr->v);
    free(tr->n);
    free(tr->ev);
    free(tr->bw);
    free(tr->arg_vid);
    free(tr->out_vid);
    free(tr->kept);
    free(tr);
}

int
ty_trace_num_nodes(const ty_trace *tr)
{
    return tr ? tr->nn : 0;
}

int64_t
ty_trace_arena_bytes(const ty_trace *tr)
{
    return tr ? (int64_t)tr->arena_size : 0;
}

void
ty_trace_pause(int on)
{
    paused += on ? 1 : (paused > 0 ? -1 : 0);
}

ty_status
ty_trace_get_stats(const ty_trace *tr, ty_trace_stats *out)
{
    TY_CHECK(tr && out, TY_ERR_INVALID_ARG, "trace: NULL argument");
    memset(out, 0, sizeof *out);
    out->nodes = tr->nn;
    out->executed = tr->nexecuted;
    out->dead = tr->ndead;
    out->cse = tr->ncse;
    out->folded = tr->nfolded;
    out->fused_groups = tr->ngroups;
    for (int g = 0; g < tr->ngroups; g++) {
        out->fused_nodes += tr->groups[g].nnodes;
    }
    for (int ni = 0; tr->fwd_on && ni < tr->nn; ni++) {
        out->forwarded += tr->fwd_on[ni];
    }
    out->arena_bytes = (int64_t)tr->arena_size;
    out->recomputed = tr->nrecomputed;
    return TY_OK;
}
