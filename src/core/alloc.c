/* CPU caching allocator: freed blocks are kept in size-keyed free lists and reused for
 * requests of the same rounded size, so a steady training loop stops calling malloc.
 * The memory limit covers both live and cached bytes: cached blocks are returned to the system
 * before a request fails, and a freed block that would push the total over the limit is not
 * cached. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __GLIBC__ /* defined by the headers above */
#include <malloc.h>
#endif

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

/* Scratch slots (ty_mem_scratch_alloc): blocks a kernel took for one call, kept aside when
 * given back so the next call's workspace, of whatever size, lands on the same, still cached
 * memory. A taken slot counts its request as allocated and the rest of its block as cached,
 * so the counters (and a memory cap) see what a kernel asked for, as with ty_mem_alloc. */
enum { SCRATCH_SLOTS = 4 };
typedef struct scratch_slot {
    block *b;    /* NULL: empty */
    size_t size; /* the block's */
    size_t used; /* while busy: the request's rounded size */
    int busy;
} scratch_slot;
static scratch_slot slots[SCRATCH_SLOTS];
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

/* Returns cached blocks to the system until at most keep bytes stay cached: the size-keyed
 * lists first, then idle scratch slots. */
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
    for (int i = 0; i < SCRATCH_SLOTS && stats.cached > keep; i++) {
        if (slots[i].b && !slots[i].busy) {
            stats.cached -= (int64_t)slots[i].size;
            free(slots[i].b);
            slots[i].b = NULL;
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
#ifdef __GLIBC__
    /* free() keeps blocks below glibc's mmap threshold, which rises to 32 MiB once such a
     * block is freed, in its heap: without a trim the memory stays resident (a traced CIFAR
     * ResNet-18 step, its recording's values freed: 591 MB resident, trimmed 322 MB). */
    malloc_trim(0);
#endif
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

/* ---- scratch ---- */

/* The idle slot that fits size most tightly, or -1. The slots keep the largest workspaces
 * given back, so after one inference every request of the next fits one. */
static int
fitting_slot_locked(size_t size)
{
    int best = -1;
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        const scratch_slot *sl = &slots[i];
        if (sl->b && !sl->busy && sl->size >= size &&
            (best < 0 || sl->size < slots[best].size)) {
            best = i;
        }
    }
    return best;
}

/* Under a memory cap or DTR, scratch is plain ty_mem_alloc: a slot's block, larger than the
 * request, would hold bytes the cap cannot trim, and DTR makes room inside ty_mem_alloc. */
static int
plain_only_locked(void)
{
    return stats.limit > 0 || atomic_load(&pressure_hook) != NULL;
}

ty_status
ty_mem_scratch_alloc(size_t nbytes, void **out)
{
    size_t size = round_size(nbytes);
    pthread_mutex_lock(&mu);
    int i = plain_only_locked() || nbytes > ((size_t)1 << 60) ? -1 : fitting_slot_locked(size);
    if (i >= 0) { /* cached to live: the same total, so no limit is crossed */
        slots[i].busy = 1;
        slots[i].used = size;
        stats.cached -= (int64_t)size;
        stats.allocated += (int64_t)size;
        stats.n_requests++;
        if (stats.allocated > stats.peak) {
            stats.peak = stats.allocated;
        }
        *out = slots[i].b;
        pthread_mutex_unlock(&mu);
        return TY_OK;
    }
    pthread_mutex_unlock(&mu);
    return ty_mem_alloc(nbytes, out);
}

/* The slot a block given back from ty_mem_alloc takes: an empty one, else the smallest idle
 * one smaller than it (whose block goes to the size-keyed lists), else -1. */
static int
slot_for_locked(size_t size)
{
    int pick = -1;
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        if (!slots[i].b) {
            return i;
        }
        if (!slots[i].busy && slots[i].size < size &&
            (pick < 0 || slots[i].size < slots[pick].size)) {
            pick = i;
        }
    }
    if (pick >= 0) { /* still cached, now in its list */
        block *old = slots[pick].b;
        old->size = slots[pick].size;
        old->next = buckets[bucket_of(old->size)];
        buckets[bucket_of(old->size)] = old;
        slots[pick].b = NULL;
    }
    return pick;
}

/* Gives back slot i's block, taken for used bytes. */
static void
give_back_slot_locked(int i)
{
    scratch_slot *sl = &slots[i];
    stats.allocated -= (int64_t)sl->used;
    sl->busy = 0;
    if (stats.limit > 0 && stats.allocated + stats.cached + (int64_t)sl->used > stats.limit) {
        stats.cached -= (int64_t)(sl->size - sl->used); /* over the limit: not kept */
        free(sl->b);
        sl->b = NULL;
        return;
    }
    stats.cached += (int64_t)sl->used;
}

void
ty_mem_scratch_free(void *p, size_t nbytes)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&mu);
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        if (slots[i].b == p && slots[i].busy) {
            give_back_slot_locked(i);
            pthread_mutex_unlock(&mu);
            return;
        }
    }
    size_t size = round_size(nbytes);
    int i = plain_only_locked() ? -1 : slot_for_locked(size);
    if (i < 0) {
        pthread_mutex_unlock(&mu);
        ty_mem_free(p, nbytes);
        return;
    }
    stats.allocated -= (int64_t)size; /* ty_mem_free's counting; slot i is empty */
    if (stats.limit > 0 && stats.allocated + stats.cached + (int64_t)size > stats.limit) {
        pthread_mutex_unlock(&mu);
        free(p);
        return;
    }
    slots[i] = (scratch_slot){.b = p, .size = size};
    stats.cached += (int64_t)size;
    pthread_mutex_unlock(&mu);
}
