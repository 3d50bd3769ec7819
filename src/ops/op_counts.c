/* Op counters: a dispatcher hook that counts successful applications per op, registered only
 * while counting is on (profiling; the op table's tests measure their coverage with it). */
#include <stdatomic.h>

#include "ops/op.h"

static atomic_int_fast64_t op_counts[TY_OP_COUNT];
static int counting;

static ty_status
count_op(void *ud, const ty_call *c, ty_tensor *const *out)
{
    (void)ud;
    (void)out;
    atomic_fetch_add_explicit(&op_counts[c->op], 1, memory_order_relaxed);
    return TY_OK;
}

static const ty_hook count_hook = {.after = count_op};

ty_status
ty_op_counts_start(void)
{
    int64_t drop[TY_OP_COUNT];
    ty_op_counts_take(drop);
    if (!counting) {
        TY_TRY(ty_hook_add(&count_hook));
        counting = 1;
    }
    return TY_OK;
}

void
ty_op_counts_take(int64_t *counts)
{
    for (int op = 0; op < TY_OP_COUNT; op++) {
        counts[op] = atomic_exchange_explicit(&op_counts[op], 0, memory_order_relaxed);
    }
}

void
ty_op_counts_stop(void)
{
    if (counting) {
        ty_hook_remove(&count_hook);
        counting = 0;
    }
}
