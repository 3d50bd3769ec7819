/* Dead-code elimination, decided on every call: a node runs when it has a side effect
 * (writes in place, or draws from the generator: the stream must advance as in eager
 * execution), or when the memory of one of its outputs escapes the trace (returned, held by
 * Python) or is read by a node that runs. */
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"

ty_status
ty_pass_live(ty_trace *tr, const char *esc)
{
    if (!(tr->passes & TY_PASS_DCE)) {
        memset(tr->live, 1, (size_t)tr->nn);
        return TY_OK;
    }
    char *need = calloc((size_t)(tr->nv ? tr->nv : 1), 1); /* per root: read by a live node */
    TY_CHECK(need, TY_ERR_OOM, "trace: out of memory");
    for (int ni = tr->nn - 1; ni >= 0; ni--) {
        const gnode *n = &tr->n[ni];
        int live = (ty_op_defs[n->op].flags & (TY_F_WRITES | TY_F_RANDOM)) != 0;
        for (int i = 0; i < n->nout && !live; i++) {
            int r = tr->root[n->out[i]];
            live = esc[r] || need[r];
        }
        tr->live[ni] = (char)live;
        for (int i = 0; live && n->state == NS_EXEC && i < n->nin; i++) {
            need[tr->root[n->in[i]]] = 1;
        }
    }
    free(need);
    return TY_OK;
}
