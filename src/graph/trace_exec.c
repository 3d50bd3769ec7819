/* Execution of the bound program: each live node in order, fused groups whole. */
#include <string.h>

#include "graph/trace_impl.h"
#include "ops/fastrun.h"
#include "ops/op.h"
#include "ops/strided.h"

/* ---- replay: execution ---- */
ty_status
ty_trace_provide(ty_tensor *t)
{
    ty_storage *s = t->storage;
    TY_TRY(ty_replay_read(t)); /* DTR brings it back and keeps it while the node's others come */
    if (s->deferred && s->deferred->restore) { /* evicted by DTR: recomputed, not given memory */
        return ty_check_readable(t);
    }
    if (s->deferred && !s->data) {
        TY_TRY(ty_mem_alloc(s->nbytes, &s->data));
    }
    return TY_OK;
}

/* out = src's elements in C order: one strided copy into out seen with src's shape (a
 * channel shuffle's transposed view goes straight into the reshape's output). */
static ty_status
copy_c_order(ty_tensor *src, ty_tensor *out)
{
    if (!ty_tensor_is_contiguous(out) || out->dtype != src->dtype) {
        ty_tensor *flat;
        TY_TRY(ty_contiguous(src, &flat));
        memcpy(ty_tensor_ptr(out), ty_tensor_ptr(flat),
               (size_t)ty_tensor_numel(flat) * ty_dtype_size(flat->dtype));
        ty_tensor_release(flat);
        return TY_OK;
    }
    int64_t st[TY_MAX_DIMS];
    ty_tensor *view;
    ty_contiguous_strides(src->ndim, src->shape, st);
    TY_TRY(ty_tensor_view(out, src->ndim, src->shape, st, out->offset, &view));
    ty_status status = ty_strided_copy(view, src);
    ty_tensor_release(view);
    return status;
}

/* Runs node n with room for its input and output tensors. */
static ty_status
exec_node_in(ty_trace *tr, const gnode *n, ty_tensor **in, ty_tensor **out)
{
    const ty_op_def *def = &ty_op_defs[n->op];
    for (int i = 0; i < n->nin; i++) {
        in[i] = ty_trace_value(tr, n->in[i]);
        TY_TRY(ty_trace_provide(in[i]));
    }
    for (int i = 0; i < n->nout; i++) {
        out[i] = tr->bound[n->out[i]];
        TY_TRY(ty_trace_provide(out[i]));
    }
    if (n->alias && !(def->flags & TY_F_WRITES)) {
        return TY_OK; /* a view: its base's memory is its memory */
    }
    if (n->alias) { /* assign, unless its source was computed in place */
        return tr->fwd_on[n - tr->n] ? TY_OK : ty_strided_copy(in[0], in[1]);
    }
    if (n->materialize) { /* a reshape that copied: same elements, C order */
        return copy_c_order(in[0], out[0]);
    }
    ty_call c = {n->op, n->params, n->nin, in, n->nout};
    /* the recorded algorithm, else the policy's, which the node keeps for later runs */
    ty_fastrun_scope saved = ty_fastrun_scope_begin(n->algo1 - 1);
    ty_status st = ty_call_forward(&c, out); /* the device's kernel, as eager looks it up */
    int chosen = ty_fastrun_scope_end(saved);
    if (st == TY_OK && n->algo1 == 0 && chosen >= 0 && ty_fastrun_algo_count(n->op) > 0) {
        tr->n[n - tr->n].algo1 = chosen + 1;
    }
    return st;
}

static ty_status
exec_node(ty_trace *tr, const gnode *n)
{
    ty_tensor *small[TY_TRACE_SMALL_ARITY];
    ty_tensor **io = ty_trace_ptrs(small, n->nin + n->nout);
    TY_CHECK(io, TY_ERR_OOM, "trace: out of memory");
    ty_status st = exec_node_in(tr, n, io, io + n->nin);
    ty_trace_ptrs_free(small, io);
    return st;
}

ty_status
ty_trace_exec_one(ty_trace *tr, int ni)
{
    return exec_node(tr, &tr->n[ni]);
}

/* Runs the live nodes in order; a fused group runs where its first live member is. */
ty_status
ty_trace_exec_all(ty_trace *tr)
{
    int ran = -1;
    tr->nexecuted = tr->ndead = 0;
    for (int ni = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->state != NS_EXEC) {
            continue;
        }
        if (!tr->live[ni]) {
            tr->ndead++;
            continue;
        }
        tr->nexecuted++;
        ty_status st = TY_OK;
        if (tr->exec_hook.before) {
            tr->exec_hook.before(tr->exec_hook.ud, tr, ni);
        }
        if (n->group >= 0 && tr->gon[n->group]) {
            st = n->group != ran ? ty_fuse_run(tr, n->group) : TY_OK;
            ran = n->group;
        } else {
            st = exec_node(tr, n);
        }
        if (st == TY_OK && tr->exec_hook.after) {
            st = tr->exec_hook.after(tr->exec_hook.ud, tr, ni);
        }
        if (st != TY_OK) {
            ty_error_prefix(ty_op_name(n->op));
            return st;
        }
    }
    return TY_OK;
}
