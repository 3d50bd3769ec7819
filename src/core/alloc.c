/* CPU caching allocator: freed blocks are kept in size-keyed free lists and reused for
 * requests of the same rounded size, so a steady training loop stops calling malloc.
 * The memory limit covers both live and cached bytes: cached blocks are returned to the system
 * before a request fails, and a freed block that would push the total over the limit is not
 * cached. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/core.h"

enum { ALIGN = 64, NBUCKET = 1024 };

/* Blocks of HUGE_PAGE bytes or more (a graph's arena, a convolution's scratch) start on a
 * 2 MiB boundary and ask for transparent huge pages: their data comes cold from memory on
 * every inference, and on a virtual machine each 4 KiB page's TLB miss walks two page tables
 * (MobileNetV2 at batch 1, one thread, 6 alternating pairs: 1.086x; ResNet-50 1.041x). A tail
 * past the last whole huge page takes one too when it fills at least half of it, so a block
 * holds at most 1 MiB more than it asked for (huge pages for the whole rounded size measured
 * 1-2% faster still, for up to 2 MiB more per block). A hint: refused, it costs only speed. */
enum { HUGE_PAGE = 2 << 20 };

static void *
system_alloc(size_t size)
{
#ifdef MADV_HUGEPAGE
    if (size >= HUGE_PAGE) {
        size_t whole = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
        void *p = aligned_alloc(HUGE_PAGE, whole);
        size_t tail = size % HUGE_PAGE;
        if (p) {
            (void)madvise(p, tail >= HUGE_PAGE / 2 ? whole : size - tail, MADV_HUGEPAGE);
        }
        return p;
    }
#endif
    return aligned_alloc(ALIGN, size);
}

typedef struct block {
    struct block *next;
    size_t size;
} block;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static block *buckets[NBUCKET];
static ty_mem_stats stats;
static _Atomic(ty_mem_pressure_fn) pressure_hook;
static _Atomic(ty_mem_taken_fn) taken_hook;

void
ty_mem_set_pressure_hook(ty_mem_pressure_fn before, ty_mem_taken_fn after)
{
    atomic_store(&taken_hook, after);
    atomic_store(&pressure_hook, before);
}

/* Small requests round to 512 B, medium to 64 KiB, large to 1 MiB: bounded waste, few classes. */
static size_t
round_size(size_t n)
{
    size_t q = n <= (1u << 20) ? 512 : (n <= (64u << 20) ? (64u << 10) : (1u << 20));
    if (n == 0) {
        n = 1;
    }
    return (n + q - 1) / q * q;
}

static size_t
bucket_of(size_t size)
{
    return (size / 512) % NBUCKET;
}

static block *
take_cached(size_t size)
{
    block **pp = &buckets[bucket_of(size)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->size == size) {
            block *b = *pp;
            *pp = b->next;
            stats.cached -= (int64_t)size;
            return b;
        }
    }
    return NULL;
}

/* Returns cached blocks to the system until at most keep bytes stay cached. */
static void
trim_cache_locked(int64_t keep)
{
    for (int i = 0; i < NBUCKET && stats.cached > keep; i++) {
        while (buckets[i] && stats.cached > keep) {
            block *b = buckets[i];
            buckets[i] = b->next;
            stats.cached -= (int64_t)b->size;
            free(b);
        }
    }
}

static void
release_cache_locked(void)
{
    trim_cache_locked(0);
}

/* Whether size more bytes from the system fit the limit once the cache is trimmed (it is
 * trimmed only as far as needed). */
static int
fits_limit_locked(size_t size)
{
    if (stats.limit <= 0) {
        return 1;
    }
    int64_t room = stats.limit - stats.allocated - (int64_t)size;
    if (room < 0) {
        return 0;
    }
    trim_cache_locked(room);
    return 1;
}

static ty_status alloc_locked(size_t nbytes, size_t size, void **out);

ty_status
ty_mem_alloc(size_t nbytes, void **out)
{
    if (nbytes > ((size_t)1 << 60)) {
        return ty_set_error(TY_ERR_OOM, "out of memory: requested %zu bytes", nbytes);
    }
    size_t size = round_size(nbytes);
    ty_mem_pressure_fn before = atomic_load(&pressure_hook);
    ty_mem_taken_fn after = atomic_load(&taken_hook);
    if (!before || !after) {
        return alloc_locked(nbytes, size, out);
    }
    int token = before((int64_t)size); /* it frees memory, so it runs before the lock is taken */
    ty_status st = alloc_locked(nbytes, size, out);
    after(token);
    return st;
}

static ty_status
alloc_locked(size_t nbytes, size_t size, void **out)
{
    pthread_mutex_lock(&mu);
    block *b = take_cached(size); /* a cache hit moves bytes from cached to live: same total */
    if (!b && !fits_limit_locked(size)) {
        int64_t used = stats.allocated, limit = stats.limit;
        pthread_mutex_unlock(&mu);
        return ty_set_error(TY_ERR_OOM,
                            "out of memory: requested %zu bytes with %lld allocated and a "
                            "limit of %lld bytes",
                            nbytes, (long long)used, (long long)limit);
    }
    if (!b) {
        b = system_alloc(size);
        if (!b && stats.cached > 0) {
            release_cache_locked();
            b = system_alloc(size);
        }
        if (!b) {
            int64_t used = stats.allocated;
            pthread_mutex_unlock(&mu);
            return ty_set_error(TY_ERR_OOM,
                                "out of memory: requested %zu bytes with %lld bytes allocated",
                                nbytes, (long long)used);
        }
        stats.n_alloc_calls++;
        if (stats.allocated + stats.cached + (int64_t)size > stats.peak_reserved) {
            stats.peak_reserved = stats.allocated + stats.cached + (int64_t)size;
        }
    }
    stats.n_requests++;
    stats.allocated += (int64_t)size;
    if (stats.allocated > stats.peak) {
        stats.peak = stats.allocated;
    }
    pthread_mutex_unlock(&mu);
    *out = b;
    return TY_OK;
}

void
ty_mem_free(void *p, size_t nbytes)
{
    if (!p) {
        return;
    }
    size_t size = round_size(nbytes);
    block *b = p;
    b->size = size;
    pthread_mutex_lock(&mu);
    stats.allocated -= (int64_t)size;
    if (stats.limit > 0 && stats.allocated + stats.cached + (int64_t)size > stats.limit) {
        pthread_mutex_unlock(&mu); /* over the limit (lowered since): do not cache */
        free(b);
        return;
    }
    b->next = buckets[bucket_of(size)];
    buckets[bucket_of(size)] = b;
    stats.cached += (int64_t)size;
    pthread_mutex_unlock(&mu);
}

void
ty_mem_get_stats(ty_mem_stats *out)
{
    pthread_mutex_lock(&mu);
    *out = stats;
    pthread_mutex_unlock(&mu);
    out->struct_size = sizeof(*out);
}

void
ty_mem_reset_peak(void)
{
    pthread_mutex_lock(&mu);
    stats.peak = stats.allocated;
    stats.peak_reserved = stats.allocated + stats.cached;
    pthread_mutex_unlock(&mu);
}

void
ty_mem_empty_cache(void)
{
    pthread_mutex_lock(&mu);
    release_cache_locked();
    pthread_mutex_unlock(&mu);
}

ty_status
ty_mem_set_limit(int64_t bytes)
{
    TY_CHECK(bytes >= 0, TY_ERR_INVALID_ARG,
             "set_memory_limit: limit must be >= 0 bytes (0 = no limit), got %lld",
             (long long)bytes);
    pthread_mutex_lock(&mu);
    stats.limit = bytes;
    if (bytes > 0) { /* never cache beyond the new limit */
        int64_t room = bytes - stats.allocated;
        trim_cache_locked(room > 0 ? room : 0);
    }
    pthread_mutex_unlock(&mu);
    return TY_OK;
}
