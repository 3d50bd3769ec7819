/* The framework's own thread pool (DESIGN.md "Performance model").
 *
 * ty_parallel_for splits [0, n) into chunks that depend only on (n, grain, thread count), so a
 * kernel whose chunks write disjoint outputs gives the same bits on every call. Workers start
 * lazily on the first parallel call; the calling thread runs chunks too, and the threads take
 * chunks from a shared counter, so a late worker costs about one chunk. One parallel region
 * runs at a time: a second thread calling ty_parallel_for waits for the first region to finish.
 * Waiting threads spin briefly, then sleep. */
#ifndef TY_THREADPOOL_H
#define TY_THREADPOOL_H

#include <stdint.h>

#include "tianyuan/tianyuan.h"

typedef void (*ty_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Runs fn over [0, n): chunks are a pure function of (n, grain, thread count) so results are
 * deterministic; blocks until all chunks finish. With t threads there are up to 4 chunks per
 * thread (as many per thread, each at least grain), sizes differing by at most one; a call of
 * fn covers one chunk or several consecutive ones. One thread, or a call made from inside a
 * region (nested), runs fn(ctx, 0, n) once in the caller. grain = minimum chunk size (values
 * < 1 mean 1).
 * n <= 0 does nothing. fn must not fail in a way that needs to be reported: record errors in
 * ctx. */
void ty_parallel_for(int64_t n, int64_t grain, ty_range_fn fn, void *ctx);

/* Number of chunks ty_parallel_for(n, grain, ...) would use now (at least 1 when n > 0). */
int64_t ty_parallel_num_chunks(int64_t n, int64_t grain);

/* Nonzero while the calling thread is running chunks of a parallel region (a nested
 * ty_parallel_for would run serially). */
int ty_parallel_in_region(void);

/* Sets the calling thread's own thread count (n in [1, 1024]; 0 or out of range: none, the
 * process setting applies again) and returns the previous one (0: none). ty_get_num_threads
 * on this thread answers it, so a runtime session runs with its count while another thread
 * runs with another. The pool's workers are shared: regions of two threads that both use
 * workers still take turns, a thread counting 1 never waits for them. */
int ty_thread_override_swap(int n);

#endif
