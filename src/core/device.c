/* The device table. The CPU uses the caching allocator; the NULL device has plain memory and
 * no kernels; CUDA appears here when its backend is built. */
#include <stdlib.h>

#include "core/core.h"

static ty_status
null_alloc(size_t nbytes, void **out)
{
    *out = malloc(nbytes ? nbytes : 1);
    return *out ? TY_OK : ty_set_error(TY_ERR_OOM, "null device: out of memory");
}

static void
null_free(void *p, size_t nbytes)
{
    (void)nbytes;
    free(p);
}

static const ty_device devices[TY_DEVICE_TYPE_COUNT] = {
    [TY_DEVICE_CPU] = {TY_DEVICE_CPU, "cpu", ty_mem_alloc, ty_mem_free},
    [TY_DEVICE_NULL] = {TY_DEVICE_NULL, "null", null_alloc, null_free},
};

const ty_device *
ty_device_get(ty_device_type type)
{
    if ((unsigned)type >= TY_DEVICE_TYPE_COUNT || !devices[type].alloc) {
        return NULL;
    }
    return &devices[type];
}

const char *
ty_device_name(ty_device_type dev)
{
    static const char *names[TY_DEVICE_TYPE_COUNT] = {"cpu", "cuda", "null"};
    return (unsigned)dev < TY_DEVICE_TYPE_COUNT ? names[dev] : "invalid";
}
