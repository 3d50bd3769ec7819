/* The device layer: storage is tagged with its device, the dispatcher looks kernels up by
 * device, and a device without a kernel (the NULL test device) is a clean error, not a crash. */
#include <string.h>

#include "harness.h"
#include "tianyuan/tianyuan.h"

TEST(device_tensors_are_tagged)
{
    int64_t shape[2] = {2, 3};
    ty_tensor *a = NULL, *n = NULL;
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 2, shape, 1.0, &a));
    CHECK_OK(ty_tensor_empty_on(TY_DEVICE_NULL, TY_FLOAT32, 2, shape, &n));
    CHECK(ty_tensor_device(a) == TY_DEVICE_CPU);
    CHECK(ty_tensor_device(n) == TY_DEVICE_NULL);
    CHECK(strcmp(ty_device_name(TY_DEVICE_NULL), "null") == 0);
    ty_tensor_release(a);
    ty_tensor_release(n);
}

TEST(device_without_kernel_is_unsupported)
{
    int64_t shape[1] = {4};
    ty_tensor *n = NULL, *out = NULL;
    CHECK_OK(ty_tensor_empty_on(TY_DEVICE_NULL, TY_FLOAT32, 1, shape, &n));
    ty_tensor *in[2] = {n, n};
    CHECK(ty_apply(TY_OP_ADD, NULL, 2, in, 1, &out) == TY_ERR_UNSUPPORTED);
    CHECK(out == NULL);
    CHECK(strstr(ty_last_error(), "add") && strstr(ty_last_error(), "null"));
    ty_tensor_release(n);
}

TEST(mixed_devices_are_refused)
{
    int64_t shape[1] = {4};
    ty_tensor *n = NULL, *c = NULL, *out = NULL;
    CHECK_OK(ty_tensor_empty_on(TY_DEVICE_NULL, TY_FLOAT32, 1, shape, &n));
    CHECK_OK(ty_tensor_full(TY_FLOAT32, 1, shape, 2.0, &c));
    ty_tensor *in[2] = {c, n};
    CHECK(ty_apply(TY_OP_MUL, NULL, 2, in, 1, &out) == TY_ERR_DEVICE);
    CHECK(strstr(ty_last_error(), "mul") && strstr(ty_last_error(), "cpu"));
    ty_tensor_release(n);
    ty_tensor_release(c);
}

TEST(unbuilt_device_is_a_device_error)
{
    int64_t shape[1] = {4};
    ty_tensor *t = NULL;
    CHECK(ty_tensor_empty_on(TY_DEVICE_CUDA, TY_FLOAT32, 1, shape, &t) == TY_ERR_DEVICE);
    CHECK(t == NULL);
    CHECK(ty_tensor_empty_on((ty_device_type)99, TY_FLOAT32, 1, shape, &t) == TY_ERR_DEVICE);
}
