/* The NCCL engine (GPUs): libnccl.so.2 loaded with dlopen at init. Without it (or without
 * a GPU) init fails cleanly with TY_ERR_UNSUPPORTED "NCCL not available". */
#include <dlfcn.h>

#include "dist/dist_impl.h"

static ty_status
nccl_init(int *rank, int *size, void **world)
{
    (void)rank, (void)size, (void)world;
    void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        return ty_set_error(TY_ERR_UNSUPPORTED, "dist init: NCCL not available (%s)", dlerror());
    }
    dlclose(lib);
    return ty_set_error(TY_ERR_UNSUPPORTED, "dist init: NCCL not available (tensors live on the "
                        "CPU in this build: no CUDA device backend)");
}

static ty_status
nccl_finalize(int broken)
{
    (void)broken;
    return TY_OK;
}

static void
nccl_abort(int code)
{
    (void)code;
}

static ty_status
nccl_new_group(void *world, int n, const int *ranks, void **comm)
{
    (void)world, (void)n, (void)ranks, (void)comm;
    return ty_set_error(TY_ERR_UNSUPPORTED, "new_group: NCCL not available");
}

static void
nccl_free_group(void *comm)
{
    (void)comm;
}

static int
nccl_can_reduce(ty_dtype dt, ty_dist_mode mode)
{
    (void)dt, (void)mode;
    return 0;
}

static ty_status
nccl_start(void *comm, int size, const ty_dist_args *a, void **req)
{
    (void)comm, (void)size, (void)req;
    return ty_set_error(TY_ERR_UNSUPPORTED, "%s: NCCL not available", ty_dist_coll_name(a->coll));
}

static ty_status
nccl_test(void *req, int *done)
{
    (void)req;
    *done = 1;
    return TY_OK;
}

const ty_dist_engine ty_dist_nccl_backend = {
    "nccl",          nccl_init,       nccl_finalize, nccl_abort, nccl_new_group,
    nccl_free_group, nccl_can_reduce, nccl_start,    nccl_test,
};
