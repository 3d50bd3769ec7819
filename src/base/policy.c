/* The calling thread's algorithm policy (tianyuan.h, ty_algo_policy): a runtime session sets
 * it for the length of a run, kernels that choose between algorithms read it. */
#include "base/base.h"

static _Thread_local ty_algo_policy policy = TY_ALGO_HEURISTIC;

int
ty_algo_policy_valid(int p)
{
    return p == TY_ALGO_HEURISTIC || p == TY_ALGO_PROFILE || p == TY_ALGO_REPRODUCIBLE ||
           p == TY_ALGO_PROFILE_REPRODUCIBLE;
}

ty_algo_policy
ty_algo_policy_current(void)
{
    return policy;
}

ty_algo_policy
ty_algo_policy_swap(ty_algo_policy p)
{
    ty_algo_policy old = policy;
    policy = ty_algo_policy_valid(p) ? p : TY_ALGO_HEURISTIC;
    return old;
}
