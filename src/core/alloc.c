/* CPU caching allocator: freed blocks are kept in size-keyed free lists and reused for
 * requests of the same rounded size, so a steady training loop stops calling malloc. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

enum { ALIGN = 64, NBUCKET = 1024 };

typedef struct block {
    struct block *next;
    size_t size;
} block;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static block *buckets[NBUCKET];
static ty_mem_stats stats;

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

static void
release_cache_locked(void)
{
    for (int i = 0; i < NBUCKET; i++) {
        while (buckets[i]) {
            block *b = buckets[i];
            buckets[i] = b->next;
            stats.cached -= (int64_t)b->size;
            free(b);
        }
    }
}

ty_status
ty_mem_alloc(size_t nbytes, void **out)
{
    if (nbytes > ((size_t)1 << 60)) {
        return ty_set_error(TY_ERR_OOM, "out of memory: requested %zu bytes", nbytes);
    }
    size_t size = round_size(nbytes);
    pthread_mutex_lock(&mu);
    if (stats.limit > 0 && stats.allocated + (int64_t)size > stats.limit) {
        int64_t used = stats.allocated, limit = stats.limit;
        pthread_mutex_unlock(&mu);
        return ty_set_error(TY_ERR_OOM,
                            "out of memory: requested %zu bytes with %lld allocated and a "
                            "limit of %lld bytes",
                            nbytes, (long long)used, (long long)limit);
    }
    block *b = take_cached(size);
    if (!b) {
        b = aligned_alloc(ALIGN, size);
        if (!b && stats.cached > 0) {
            release_cache_locked();
            b = aligned_alloc(ALIGN, size);
        }
        if (!b) {
            int64_t used = stats.allocated;
            pthread_mutex_unlock(&mu);
            return ty_set_error(TY_ERR_OOM,
                                "out of memory: requested %zu bytes with %lld bytes allocated",
                                nbytes, (long long)used);
        }
        stats.n_alloc_calls++;
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
    pthread_mutex_unlock(&mu);
}

void
ty_mem_empty_cache(void)
{
    pthread_mutex_lock(&mu);
    release_cache_locked();
    pthread_mutex_unlock(&mu);
}

void
ty_mem_set_limit(int64_t bytes)
{
    pthread_mutex_lock(&mu);
    stats.limit = bytes > 0 ? bytes : 0;
    pthread_mutex_unlock(&mu);
}
