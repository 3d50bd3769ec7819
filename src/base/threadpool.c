/* Thread pool: a fixed set of workers woken through one condition variable per region.
 *
 * A region is published as a generation number plus a job. A worker that sees the new
 * generation joins the job (counted in `active`) and takes chunks until none are left: first
 * its own range of them, then the rest of the others' (see job and run_chunks). The caller
 * takes chunks too; when none are left it closes the job, so workers that wake later skip it,
 * and waits only for the workers that joined. The job can therefore live on the caller's
 * stack, and a worker the OS has not scheduled yet never delays the caller: a region has up
 * to CHUNKS_PER_THREAD chunks per thread, so a late worker costs about one chunk, not its
 * whole share. A thread takes its own range half at a time, so one that runs slower (on a
 * virtual machine a vCPU whose core is shared runs a quarter slower for seconds at a time)
 * has chunks left for the others to take from the back. Chunk boundaries are fixed by (n, grain, thread count); which thread runs a
 * chunk is not, so kernels must make chunks write disjoint outputs. (Boundaries fixed by
 * (n, grain) alone, 8 chunks whatever the thread count, were tried: unless the count divides
 * into equal home ranges, one thread gets more chunks than another, and ResNet-18 ran 3-10%
 * slower at 2 threads.)
 *
 * Waiting threads spin for a fixed time (SPIN_NS, measured on the clock rather than counted in
 * pause instructions, whose cost varies tenfold between CPUs), then sleep: the regions of one
 * inference come back within that time and find the workers awake, and an idle pool burns no
 * core for longer than that. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "base/threadpool.h"

enum {
    MAX_THREADS = 1024,
    /* A region splits into up to this many chunks per thread, so a late or slow worker
     * leaves the others a small part of the work. */
    CHUNKS_PER_THREAD = 8,
    /* How long a waiting thread spins before it sleeps: longer than the gaps between the
     * regions of a small model's inference (a few to tens of microseconds, with rare longer
     * serial stretches), short enough that an idle pool gives its cores back within a third of
     * a millisecond. At 100 us ShuffleNetV2's batch-1 p90/median in infer_latency.py was
     * 1.35-1.73 (the old pool's 4000 pauses: 1.05-1.10); at 300 us, 1.06-1.10. */
    SPIN_NS = 300 * 1000,
    SPIN_CLOCK_EVERY = 32, /* pause instructions between two reads of the clock */
    /* Two reads of the clock this far apart (32 pauses take 0.3 to 2 us) mean the thread was
     * descheduled in between. */
    SPIN_PREEMPTED_NS = 20 * 1000,
};

/* The chunks are dealt out in contiguous home ranges, one per thread slot (the caller is slot
 * 0, worker i slot i + 1): a thread runs its own range from the front, so on time it touches
 * the same part of the data in every region (what the previous op left in its cache), then
 * takes chunks from the back of the others' ranges. A range is one atomic word: its next chunk
 * in the low half, its end in the high half. */
typedef struct job {
    ty_range_fn fn;
    void *ctx;
    int64_t n;
    int64_t nchunks;
    int nslots;
    atomic_ullong range[MAX_THREADS];
} job;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int num_threads; /* the setting; applied to the workers at the next region */

/* submit_mu serialises regions and worker resizes; mu guards the fields below it. */
static pthread_mutex_t submit_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t *workers; /* submit_mu */
static int nworkers;       /* submit_mu */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static atomic_ullong generation; /* written under mu; read without it while spinning */
static int stopping;             /* mu */
static job *current;             /* the open job, or NULL; mu */
static atomic_int active;        /* workers inside the current job; incremented under mu */

static _Thread_local int in_region;
/* A thread's own thread count (a runtime session's), or 0: the process setting applies. */
static _Thread_local int thread_override;

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t
now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins until done(arg), SPIN_NS have passed, or the thread was descheduled while spinning
 * (two reads of the clock far apart: the machine has more runnable threads than cores, and
 * spinning on would only take turns from the thread we wait for); returns done(arg)'s answer.
 * (Turning spinning off for a while after that was tried: on a virtual machine, whose vCPUs
 * stop now and then, it made every region of a quiet inference pay a wake-up.) */
static int
spin_until(int (*done)(void *), void *arg)
{
    int64_t start = now_ns(), last = start;
    for (unsigned i = 1;; i++) {
        if (done(arg)) {
            return 1;
        }
        cpu_relax();
        if (i % SPIN_CLOCK_EVERY == 0) {
            int64_t t = now_ns();
            if (t - last > SPIN_PREEMPTED_NS || t - start >= SPIN_NS) {
                return done(arg);
            }
            last = t;
        }
    }
}

static int
parse_env_threads(void)
{
    const char *s = getenv("TY_NUM_THREADS");
    if (!s || !*s) {
        return 0;
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 1 || v > MAX_THREADS) {
        return 0; /* invalid: fall back to the processor count */
    }
    return (int)v;
}

/* After fork() only the forking thread exists: forget the workers (they are gone) and
 * reinitialise the locks, which another thread may have held at the fork. */
static void
reset_after_fork(void)
{
    pthread_mutex_init(&submit_mu, NULL);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&work_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
    workers = NULL; /* the array leaks once per fork; freeing here is not async-safe */
    nworkers = 0;
    stopping = 0;
    atomic_store(&active, 0);
    current = NULL;
}

static void
pool_init(void)
{
    int n = parse_env_threads();
    if (n == 0) {
        long p = sysconf(_SC_NPROCESSORS_ONLN);
        n = p < 1 ? 1 : (p > MAX_THREADS ? MAX_THREADS : (int)p);
    }
    atomic_store(&num_threads, n);
    pthread_atfork(NULL, NULL, reset_after_fork);
}

int
ty_get_num_threads(void)
{
    if (thread_override > 0) {
        return thread_override;
    }
    pthread_once(&init_once, pool_init);
    return atomic_load_explicit(&num_threads, memory_order_relaxed);
}

int
ty_thread_override_swap(int n)
{
    int old = thread_override;
    thread_override = n > 0 && n <= MAX_THREADS ? n : 0;
    return old;
}

ty_status
ty_set_num_threads(int n)
{
    if (n < 1 || n > MAX_THREADS) {
        return ty_set_error(TY_ERR_INVALID_ARG,
                            "set_num_threads: got %d threads, expected a value in [1, %d]", n,
                            MAX_THREADS);
    }
    pthread_once(&init_once, pool_init);
    /* Workers are resized at the start of the next region, under submit_mu, so this is safe
     * from any thread, even from inside a region. */
    atomic_store(&num_threads, n);
    return TY_OK;
}

int
ty_parallel_in_region(void)
{
    return in_region;
}

int64_t
ty_parallel_num_chunks(int64_t n, int64_t grain)
{
    if (n <= 0) {
        return 0;
    }
    if (grain < 1) {
        grain = 1;
    }
    int64_t t = ty_get_num_threads();
    if (t == 1) {
        return 1; /* one thread runs the range in one call, without per-chunk overhead */
    }
    /* every thread's home range the same number of chunks, each chunk at least grain */
    int64_t c = n / grain;
    if (c <= 1) {
        return 1;
    }
    int64_t slots = c < t ? c : t;
    int64_t per = c / slots < CHUNKS_PER_THREAD ? c / slots : CHUNKS_PER_THREAD;
    return slots * per;
}

/* Where chunk c of nchunks over [0, n) begins: floor(c * n / nchunks), so sizes differ by at
 * most one and equal runs of chunks (the threads' home ranges) hold equal work. */
static int64_t
chunk_begin(const job *j, int64_t c)
{
    int64_t q = j->n / j->nchunks, r = j->n % j->nchunks;
    return c * q + c * r / j->nchunks;
}

/* Runs chunks [c0, c1) in one call: the kernel sees their union, which it computes as it
 * would the chunks one by one (chunks write disjoint outputs, whatever their boundaries). */
static void
run_chunks_of(const job *j, int64_t c0, int64_t c1)
{
    j->fn(j->ctx, chunk_begin(j, c0), chunk_begin(j, c1));
}

static unsigned long long
pack_range(uint32_t next, uint32_t end)
{
    return (unsigned long long)end << 32 | next;
}

/* Takes chunks of slot s's range: the owner half of what is left (at least one chunk),
 * another thread one chunk from the back. Returns the first taken and sets *count, or returns
 * -1 when the range is empty. */
static int64_t
take_chunks(job *j, int s, int owner, int64_t *count)
{
    unsigned long long r = atomic_load_explicit(&j->range[s], memory_order_relaxed);
    for (;;) {
        uint32_t next = (uint32_t)r, end = (uint32_t)(r >> 32);
        if (next >= end) {
            return -1;
        }
        uint32_t k = owner ? (end - next + 1) / 2 : 1;
        unsigned long long want = owner ? pack_range(next + k, end) : pack_range(next, end - 1);
        if (atomic_compare_exchange_weak_explicit(&j->range[s], &r, want, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *count = k;
            return owner ? next : end - 1;
        }
    }
}

static void
deal_chunks(job *j, int nthreads)
{
    j->nslots = (int)(j->nchunks < nthreads ? j->nchunks : nthreads);
    for (int s = 0; s < j->nslots; s++) {
        uint32_t b = (uint32_t)(j->nchunks * s / j->nslots);
        uint32_t e = (uint32_t)(j->nchunks * (s + 1) / j->nslots);
        atomic_init(&j->range[s], pack_range(b, e));
    }
}

/* Runs slot's own range from the front, half of what is left a call, then the others' chunks
 * one by one from the back until none is left. A thread on time covers the part of the data
 * it had in the previous region in a few calls (one chunk a call measured 3-10% slower on
 * ResNet-18, and taking chunks across the threads crossed the data between cores at every
 * op); a late or slow thread finds the chunks the others took from the back of its range
 * gone. (Its whole range in one call left nothing to take once a thread had started: on a
 * Zen 3 virtual machine whose second vCPU ran 28% slower for seconds at a time, the other
 * thread waited out a third of each 1x1 convolution. Half at a time, 8 chunks a thread,
 * deployed, 2 threads, medians of alternating runs when the machine was idle: ShuffleNetV2
 * 4.68 -> 3.03 ms and 4.56 -> 4.30, MobileNetV2 6.58 -> 6.24, ResNet-18 and ResNet-50 within
 * noise, 21.72 -> 21.68 and 55.6 -> 54.1.) */
static void
run_chunks(job *j, int slot)
{
    int64_t c, k;
    while (slot < j->nslots && (c = take_chunks(j, slot, 1, &k)) >= 0) {
        run_chunks_of(j, c, c + k);
    }
    for (int i = 1; i <= j->nslots; i++) {
        int s = (slot + i) % j->nslots;
        while ((c = take_chunks(j, s, 0, &k)) >= 0) {
            run_chunks_of(j, c, c + k);
        }
    }
}

static int
generation_moved(void *seen)
{
    return atomic_load_explicit(&generation, memory_order_relaxed) !=
           *(unsigned long long *)seen;
}

static int
workers_left(void *unused)
{
    (void)unused;
    return atomic_load_explicit(&active, memory_order_acquire) == 0;
}

static unsigned long long start_generation; /* submit_mu; read by workers as they start */

static void *
worker_main(void *arg)
{
    int slot = (int)(uintptr_t)arg;
    unsigned long long seen = start_generation; /* set before the workers start */
    in_region = 1; /* anything a worker runs is inside a region */
    for (;;) {
        /* Spin first: regions come back to back (GEMM packs, then computes; one op after
         * another in an inference), and a sleeping worker costs a wake-up per region. */
        spin_until(generation_moved, &seen);
        pthread_mutex_lock(&mu);
        while (!stopping && atomic_load_explicit(&generation, memory_order_relaxed) == seen) {
            pthread_cond_wait(&work_cv, &mu);
        }
        if (stopping) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        seen = atomic_load_explicit(&generation, memory_order_relaxed);
        job *j = current;
        if (j) {
            atomic_fetch_add_explicit(&active, 1, memory_order_relaxed);
        }
        pthread_mutex_unlock(&mu);
        if (!j) {
            continue; /* woke after the caller closed the job */
        }

        run_chunks(j, slot);

        /* The caller may return, freeing the job, once active reaches 0: do not touch j. */
        if (atomic_fetch_sub_explicit(&active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&done_cv);
            pthread_mutex_unlock(&mu);
        }
    }
}

/* Joins every worker. Called with submit_mu held and no region running. */
static void
stop_workers(void)
{
    pthread_mutex_lock(&mu);
    stopping = 1;
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i], NULL);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
    pthread_mutex_lock(&mu);
    stopping = 0;
    pthread_mutex_unlock(&mu);
}

/* Brings the worker count to want. A failed pthread_create leaves fewer workers; chunking does
 * not depend on the worker count, so results do not change, only speed. submit_mu held. */
static void
resize_workers(int want)
{
    if (want == nworkers) {
        return;
    }
    if (nworkers > 0) {
        stop_workers();
    }
    if (want <= 0) {
        return;
    }
    workers = malloc(sizeof(*workers) * (size_t)want);
    if (!workers) {
        return;
    }
    pthread_mutex_lock(&mu);
    start_generation = atomic_load_explicit(&generation, memory_order_relaxed);
    pthread_mutex_unlock(&mu);
    /* Workers block every signal (they inherit the mask), so process signals such as SIGINT
     * reach the application's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&workers[i], NULL, worker_main, (void *)(uintptr_t)(i + 1)) != 0) {
            break;
        }
        nworkers++;
    }
    if (masked) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
}

void
ty_parallel_for(int64_t n, int64_t grain, ty_range_fn fn, void *ctx)
{
    if (n <= 0) {
        return;
    }
    int64_t nchunks = ty_parallel_num_chunks(n, grain);
    if (nchunks == 1 || in_region) {
        fn(ctx, 0, n); /* one caller: the whole range at once */
        return;
    }
    pthread_mutex_lock(&submit_mu);
    /* A thread with its own count only grows the pool: shrinking it for one session would
     * restart the workers every time sessions with other counts take turns. Surplus workers
     * find no chunk left, as chunks depend on the count of the caller alone. */
    int want = ty_get_num_threads() - 1;
    if (!thread_override || want > nworkers) {
        resize_workers(want);
    }
    if (nworkers == 0) {
        pthread_mutex_unlock(&submit_mu);
        fn(ctx, 0, n);
        return;
    }
    job j; /* not zeroed: deal_chunks sets the ranges in use, of MAX_THREADS */
    j.fn = fn;
    j.ctx = ctx;
    j.n = n;
    j.nchunks = nchunks;
    deal_chunks(&j, ty_get_num_threads());

    pthread_mutex_lock(&mu);
    current = &j;
    atomic_fetch_add_explicit(&generation, 1, memory_order_relaxed);
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&mu);

    in_region = 1;
    run_chunks(&j, 0);
    in_region = 0;

    /* Every chunk is taken. Close the job, then wait for the workers that joined it; each has
     * at most one chunk left, so spin before sleeping. */
    pthread_mutex_lock(&mu);
    current = NULL;
    pthread_mutex_unlock(&mu);
    spin_until(workers_left, NULL);
    pthread_mutex_lock(&mu);
    while (atomic_load_explicit(&active, memory_order_acquire) > 0) {
        pthread_cond_wait(&done_cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&submit_mu);
}
