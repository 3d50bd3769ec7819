/* The "self" engine: a world of one, explicitly (init("self")). The frontend runs every
 * collective of a group of one itself, so this engine is never asked to move data. */
#include "dist/dist_impl.h"

static ty_status
self_init(double timeout_s, int *rank, int *size, void **world)
{
    (void)timeout_s;
    *rank = 0;
    *size = 1;
    *world = NULL;
    return TY_OK;
}

static ty_status
self_finalize(int broken)
{
    (void)broken;
    return TY_OK;
}

static void
self_abort(int code)
{
    (void)code;
}

static ty_status
self_new_group(void *world, int n, const int *ranks, void **comm)
{
    (void)world, (void)n, (void)ranks;
    *comm = NULL;
    return TY_OK;
}

static void
self_free_group(void *comm)
{
    (void)comm;
}

static int
self_can_reduce(ty_dtype dt, ty_dist_mode mode)
{
    (void)dt, (void)mode;
    return 1;
}

static ty_status
self_start(void *comm, int size, const ty_dist_args *a, void **req)
{
    (void)comm, (void)size, (void)req;
    return ty_set_error(TY_ERR_INTERNAL, "%s: the self backend has no peers",
                        ty_dist_coll_name(a->coll));
}

static ty_status
self_test(void *req, int *done)
{
    (void)req;
    *done = 1;
    return TY_OK;
}

const ty_dist_engine ty_dist_self_backend = {
    "self",          self_init,       self_finalize, self_abort, self_new_group,
    self_free_group, self_can_reduce, self_start,    self_test,
};
