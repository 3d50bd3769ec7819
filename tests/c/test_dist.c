/* The communicator in one process (tianyuan/dist.h): the world of one before init and with
 * the "self" backend, argument checks, rank-order combines, and engines that are missing.
 * The multi-process tests are tests/dist/run.sh (mpirun). */
#include <stdlib.h>
#include <string.h>

#include "dist/dist_impl.h"
#include "harness.h"

static ty_status
run(ty_dist_coll c, int group, const void *send, void *recv, int64_t count, ty_dtype dt, int root)
{
    ty_dist_args a = {c, group, send, recv, count, dt, TY_DIST_SUM, root};
    return ty_dist_run(&a);
}

TEST(dist_world_of_one_before_init)
{
    int rank = -1, size = 0;
    CHECK(!ty_dist_is_initialized());
    CHECK(strcmp(ty_dist_backend(), "none") == 0);
    CHECK_OK(ty_dist_rank(TY_DIST_WORLD, &rank));
    CHECK_OK(ty_dist_size(TY_DIST_WORLD, &size));
    CHECK(rank == 0 && size == 1);
    float x[3] = {1, 2, 3}, y[3] = {0};
    for (int c = TY_COLL_ALL_REDUCE; c <= TY_COLL_ALL_TO_ALL; c++) {
        memset(y, 0, sizeof y);
        CHECK_OK(run((ty_dist_coll)c, TY_DIST_WORLD, x, y, 3, TY_FLOAT32, 0));
        CHECK(memcmp(x, y, sizeof x) == 0);
    }
    CHECK_OK(ty_dist_barrier(TY_DIST_WORLD));
}

TEST(dist_send_to_itself)
{
    int64_t a[2] = {5, -6}, b[2] = {0};
    CHECK(run(TY_COLL_RECV, 0, NULL, b, 2, TY_INT64, 0) == TY_ERR_INVALID_ARG);
    CHECK(strstr(ty_last_error(), "recv") != NULL);
    CHECK_OK(run(TY_COLL_SEND, 0, a, NULL, 2, TY_INT64, 0));
    CHECK(run(TY_COLL_RECV, 0, NULL, b, 1, TY_INT64, 0) == TY_ERR_SHAPE);
    CHECK_OK(run(TY_COLL_RECV, 0, NULL, b, 2, TY_INT64, 0));
    CHECK(b[0] == 5 && b[1] == -6);
}

TEST(dist_checks_arguments)
{
    float x = 1, y = 0;
    CHECK(run(TY_COLL_ALL_REDUCE, 7, &x, &y, 1, TY_FLOAT32, 0) == TY_ERR_INVALID_ARG);
    CHECK(strstr(ty_last_error(), "all_reduce: unknown group 7") != NULL);
    CHECK(run(TY_COLL_BROADCAST, 0, &x, &y, 1, TY_FLOAT32, 1) == TY_ERR_INDEX);
    CHECK(strstr(ty_last_error(), "broadcast: root 1 outside group 0") != NULL);
    CHECK(run(TY_COLL_SEND, 0, &x, NULL, 1, TY_FLOAT32, -1) == TY_ERR_INDEX);
    CHECK(strstr(ty_last_error(), "peer -1") != NULL);
    CHECK(run(TY_COLL_ALL_GATHER, 0, NULL, &y, 1, TY_FLOAT32, 0) == TY_ERR_INVALID_ARG);
    CHECK(run(TY_COLL_ALL_REDUCE, 0, &x, &y, -1, TY_FLOAT32, 0) == TY_ERR_UNSUPPORTED);
    CHECK(run(TY_COLL_ALL_REDUCE, 0, &x, &y, 1, (ty_dtype)99, 0) == TY_ERR_DTYPE);
    ty_dist_args bad = {TY_COLL_COUNT, 0, &x, &y, 1, TY_FLOAT32, TY_DIST_SUM, 0};
    CHECK(ty_dist_run(&bad) == TY_ERR_INVALID_ARG);
    bad.coll = TY_COLL_ALL_REDUCE;
    bad.mode = (ty_dist_mode)3;
    CHECK(ty_dist_run(&bad) == TY_ERR_INVALID_ARG);
    CHECK(ty_dist_set_timeout(0) == TY_ERR_INVALID_ARG);
    CHECK(ty_dist_set_timeout(NAN) == TY_ERR_INVALID_ARG);
}

TEST(dist_groups_in_a_world_of_one)
{
    int g = -1, rank = -1, size = 0, r0 = 0, r1 = 1;
    CHECK(ty_dist_new_group(1, &r1, &g) == TY_ERR_INDEX);
    CHECK(ty_dist_new_group(0, &r0, &g) == TY_ERR_INVALID_ARG);
    CHECK_OK(ty_dist_new_group(1, &r0, &g));
    CHECK(g > 0);
    CHECK_OK(ty_dist_rank(g, &rank));
    CHECK_OK(ty_dist_size(g, &size));
    CHECK(rank == 0 && size == 1);
    double x = 2.5, y = 0;
    CHECK_OK(run(TY_COLL_ALL_REDUCE, g, &x, &y, 1, TY_FLOAT64, 0));
    CHECK(y == 2.5);
    CHECK_OK(ty_dist_finalize()); /* drops the groups: back to the world of one */
    CHECK(ty_dist_rank(g, &rank) == TY_ERR_INVALID_ARG);
}

TEST(dist_self_backend)
{
    CHECK(ty_dist_init("tcp", 10) == TY_ERR_INVALID_ARG);
    CHECK(ty_dist_init("self", -1) == TY_ERR_INVALID_ARG);
    CHECK_OK(ty_dist_init("self", 10));
    CHECK(ty_dist_is_initialized());
    CHECK(strcmp(ty_dist_backend(), "self") == 0);
    CHECK(ty_dist_init("self", 10) == TY_ERR_INVALID_ARG);
    CHECK(strstr(ty_last_error(), "already initialized") != NULL);
    CHECK(ty_dist_timeout() == 10);
    int32_t x[2] = {1, 2}, y[2] = {0};
    ty_dist_work *w = NULL;
    ty_dist_args a = {TY_COLL_ALL_REDUCE, 0, x, y, 2, TY_INT32, TY_DIST_MAX, 0};
    CHECK_OK(ty_dist_start(&a, &w));
    CHECK_OK(ty_dist_wait(w, 1.0));
    ty_dist_work_free(w);
    CHECK(y[0] == 1 && y[1] == 2);
    CHECK(ty_dist_abort(1) == TY_ERR_INTERNAL); /* nothing to end: it returns */
    CHECK_OK(ty_dist_finalize());
    CHECK(!ty_dist_is_initialized());
    CHECK_OK(ty_dist_set_timeout(300));
}

TEST(dist_nccl_not_available)
{
    /* no GPU build here: a clean error, and the process stays a world of one */
    ty_status s = ty_dist_init("nccl", 10);
    CHECK(s == TY_ERR_UNSUPPORTED);
    CHECK(strstr(ty_last_error(), "NCCL not available") != NULL);
    CHECK(!ty_dist_is_initialized());
}

TEST(dist_mpi_library_that_is_not_open_mpi)
{
    /* the loader reads Open MPI's symbols: another library is refused cleanly at init */
    setenv("TY_MPI_LIBRARY", "libm.so.6", 1);
    ty_status s = ty_dist_init("mpi", 10);
    unsetenv("TY_MPI_LIBRARY");
    CHECK(s == TY_ERR_UNSUPPORTED);
    CHECK(strstr(ty_last_error(), "the MPI library lacks MPI_") != NULL);
    CHECK(!ty_dist_is_initialized());
    setenv("TY_MPI_LIBRARY", "/nonexistent/libmpi.so.40", 1);
    s = ty_dist_init("mpi", 10);
    unsetenv("TY_MPI_LIBRARY");
    CHECK(s == TY_ERR_UNSUPPORTED);
    CHECK(strstr(ty_last_error(), "MPI not available") != NULL);
}

TEST(dist_rank_order_combine)
{
    float a[3] = {1, 5, NAN}, b[3] = {2, 4, 0};
    ty_dist_combine(a, b, 3, TY_FLOAT32, TY_DIST_MAX);
    CHECK(a[0] == 2 && a[1] == 5 && isnan(a[2]));
    int8_t i[2] = {120, -3}, j[2] = {10, 1};
    ty_dist_combine(i, j, 2, TY_INT8, TY_DIST_SUM);
    CHECK(i[0] == (int8_t)130 && i[1] == -2); /* wraps like numpy */
    uint8_t p[2] = {1, 0}, q[2] = {1, 1};
    ty_dist_combine(p, q, 2, TY_BOOL, TY_DIST_MIN);
    CHECK(p[0] == 1 && p[1] == 0);
    float w[2];
    uint16_t h[2] = {0x3c00, 0xc000}, back[2]; /* 1.0, -2.0 */
    ty_dist_widen(w, h, 2, TY_FLOAT16);
    CHECK(w[0] == 1.0f && w[1] == -2.0f);
    ty_dist_narrow(back, w, 2, TY_FLOAT16);
    CHECK(back[0] == h[0] && back[1] == h[1]);
    CHECK(ty_dist_acc_dtype(TY_BFLOAT16) == TY_FLOAT32 && ty_dist_acc_dtype(TY_INT8) == TY_INT8);
}
