/* DTR from C: ty_tensor_data on a tensor DTR evicted recomputes it first (the same bits) and
 * keeps it from then on, since the pointer's holder is invisible to DTR. */
#include <string.h>

#include "harness.h"
#include "tianyuan/dtr.h"
#include "tianyuan/tianyuan.h"

enum { LEN = 4096 };

static ty_status
unary(const char *name, ty_tensor *a, ty_tensor **out)
{
    ty_op op;
    ty_status st = ty_op_from_name(name, &op);
    return st == TY_OK ? ty_apply(op, NULL, 1, &a, 1, out) : st;
}

TEST(dtr_tensor_data_recomputes_an_evicted_tensor_and_keeps_it)
{
    CHECK_OK(ty_init());
    static float v[LEN], want[LEN];
    for (int i = 0; i < LEN; i++) {
        v[i] = (float)(i % 97) / 50.0f - 1.0f;
    }
    int64_t shape[1] = {LEN};
    ty_tensor *x = NULL, *y = NULL;
    CHECK_OK(ty_tensor_from_data(TY_FLOAT32, 1, shape, v, sizeof v, &x));
    ty_dtr_config saved, cfg = {.enabled = 1, .eviction_threshold = 0, .evictee_minimum_size = 0};
    ty_dtr_get_config(&saved);
    CHECK_OK(ty_dtr_set_config(&cfg));
    ty_status st = unary("exp", x, &y);
    CHECK(ty_dtr_set_config(&saved) == TY_OK);
    REQUIRE(st == TY_OK);
    CHECK_OK(ty_tensor_copy_to(y, want, sizeof want));
    int dropped = 0, evicted = 0;
    int64_t times = 0;
    CHECK_OK(ty_dtr_drop(y, &dropped));
    ty_dtr_tensor_info(y, &evicted, &times);
    CHECK(dropped == 1 && evicted == 1 && times == 1);
    const float *p = ty_tensor_data(y);
    REQUIRE(p != NULL);
    CHECK(memcmp(p, want, sizeof want) == 0);
    ty_dtr_tensor_info(y, &evicted, &times);
    CHECK(evicted == 0);
    CHECK_OK(ty_dtr_drop(y, &dropped));
    CHECK(dropped == 0); /* the pointer is out: never evicted again */
    CHECK(memcmp(ty_tensor_data(y), want, sizeof want) == 0);
    ty_tensor_release(y);
    ty_tensor_release(x);
}
