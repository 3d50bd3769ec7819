/* The algorithm policy (tianyuan.h, ty_algo_policy): a process default, and a per-thread
 * override that a runtime session sets for the length of a run; kernels that choose between
 * algorithms read ty_algo_policy_current(). */
#include <stdatomic.h>

#include "base/base.h"

static atomic_int default_policy = TY_ALGO_HEURISTIC;
static _Thread_local ty_algo_policy policy; /* 0: none, the default applies */

int
ty_algo_policy_valid(int p)
{
    return p == TY_ALGO_HEURISTIC || p == TY_ALGO_PROFILE || p == TY_ALGO_REPRODUCIBLE ||
           p == TY_ALGO_PROFILE_REPRODUCIBLE;
}

ty_algo_policy
ty_algo_policy_current(void)
{
    return policy ? policy : (ty_algo_policy)atomic_load(&default_policy);
}

ty_algo_policy
ty_algo_policy_swap(ty_algo_policy p)
{
    ty_algo_policy old = policy;
    policy = ty_algo_policy_valid(p) ? p : (ty_algo_policy)0;
    return old;
}

ty_status
ty_set_algo_policy(ty_algo_policy p)
{
    TY_CHECK(ty_algo_policy_valid((int)p), TY_ERR_INVALID_ARG,
             "ty_set_algo_policy: %d is not a policy (1, 2, 4 or 6)", (int)p);
    atomic_store(&default_policy, (int)p);
    return TY_OK;
}

ty_algo_policy
ty_get_algo_policy(void)
{
    return (ty_algo_policy)atomic_load(&default_policy);
}
