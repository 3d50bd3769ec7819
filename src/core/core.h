/* Private core definitions: storage, tensor layout, errors, allocator. */
#ifndef TY_CORE_H
#define TY_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

/* A device: how its memory is obtained and returned. Kernels are keyed by device in the ops
 * layer (ty_device_forward), so a backend adds a memory vtable here and a kernel column there. */
typedef struct ty_device {
    ty_device_type type;
    const char *name;
    ty_status (*alloc)(size_t nbytes, void **out);
    void (*free)(void *p, size_t nbytes);
} ty_device;

/* The device of a type, or NULL when its backend is not built. */
const ty_device *ty_device_get(ty_device_type type);

struct ty_deferral;
struct ty_storage_memo;
typedef struct ty_storage {
    _Atomic int64_t refcnt;
    ty_device_type device;
    void *data;
    size_t nbytes;
    void (*deleter)(void *); /* NULL: memory came from the caching allocator */
    void *ctx;
    /* Set while an upper layer has not computed the data yet (data may be NULL): reading
     * fails with its status and message. NULL for ordinary storage. */
    const struct ty_deferral *deferred;
    _Atomic uint32_t version; /* bumped by every in-place write: autodiff checks it */
    /* Set by the layer that made the storage when its values are fixed for its whole life (a
     * deployed model's weights): kernels may then keep data derived from them (memos below)
     * instead of deriving it on every call. Eager tensors never set it. */
    bool constant;
    struct ty_storage_memo *memos; /* guarded by the memo lock; freed with the storage */
} ty_storage;

/* ---- memos: data a kernel derives once from a constant storage ----
 * A memo is keyed by what it was computed for (kind, shapes, ISA, the operand's offset) and by
 * the storage's version when its computation began; an in-place write bumps the version, so
 * the memo stops matching and the next put replaces it. Its bytes come from ty_mem_alloc and
 * count in the allocator's stats like the storage's own. */
enum { TY_MEMO_KEY_WORDS = 8 };
typedef struct ty_memo_key {
    int64_t w[TY_MEMO_KEY_WORDS]; /* w[0]: the kind (a tag of the kernel), then its keys */
} ty_memo_key;

/* The data of s's memo for key at version, or NULL when there is none. */
const void *ty_storage_memo_find(ty_storage *s, const ty_memo_key *key, uint32_t version);
/* Gives s the memo data (nbytes from ty_mem_alloc) computed for key at version and sets *used
 * to the data to read: data, or the equal memo another thread put first (data is then freed).
 * A memo of the same key at another version is replaced. Returns false when s could not take
 * it (out of memory): the caller still owns data and *used is data. */
bool ty_storage_memo_put(ty_storage *s, const ty_memo_key *key, uint32_t version, void *data,
                         size_t nbytes, const void **used);

/* Why a storage's data cannot be read yet: owned by the layer that defers it. When restore
 * is set, a read first asks it to bring the data back (DTR recomputes an evicted tensor);
 * it clears storage->deferred on success. */
typedef struct ty_deferral {
    ty_status status;
    const char *message;
    ty_status (*restore)(const struct ty_deferral *d, struct ty_storage *s);
} ty_deferral;

/* Extension slots: one word per tensor owned by an upper layer (the autodiff tape's meta, the
 * tracer's marks). A layer registers its slot once at init with the function that releases
 * a nonzero word when the tensor dies (NULL for plain bits); core never looks inside. */
enum { TY_TENSOR_EXT_SLOTS = 4 };
typedef void (*ty_ext_release_fn)(uintptr_t word);
ty_status ty_tensor_ext_register(ty_ext_release_fn release, int *slot) TY_NODISCARD;

struct ty_tensor {
    _Atomic int64_t refcnt;
    ty_storage *storage;
    ty_dtype dtype;
    int ndim;
    int64_t shape[TY_MAX_DIMS];
    int64_t strides[TY_MAX_DIMS]; /* elements */
    int64_t offset;               /* elements */
    uintptr_t ext[TY_TENSOR_EXT_SLOTS]; /* upper layers' words, 0 when unused */
};

/* Marks an in-place write of t's memory (values the autodiff tape saved are now stale). */
static inline void
ty_storage_written(ty_tensor *t)
{
    atomic_fetch_add_explicit(&t->storage->version, 1, memory_order_relaxed);
}

/* Fails with the deferral's status and message when t's data is not computed yet (after
 * asking the deferral's restore, when it has one). */
ty_status ty_check_readable(const ty_tensor *t) TY_NODISCARD;

/* Set by the layer that may free a storage's data under pressure (DTR): ty_tensor_data calls
 * it before a raw pointer to t's bytes escapes, so that layer brings the data back and keeps
 * it from then on (the pointer's holder is invisible to it). */
typedef ty_status (*ty_data_escape_fn)(const ty_tensor *t);
void ty_set_data_escape_hook(ty_data_escape_fn fn);

/* Set by the same layer: a traced replay reads t outside the dispatcher (which marks a call's
 * inputs in use), so before each node it says so here; the layer brings t back when it was
 * freed and keeps it while the node's other tensors are brought back. */
typedef ty_status (*ty_replay_read_fn)(const ty_tensor *t);
void ty_set_replay_read_hook(ty_replay_read_fn fn);
ty_status ty_replay_read(const ty_tensor *t) TY_NODISCARD;

/* ---- allocator ---- */
ty_status ty_mem_alloc(size_t nbytes, void **out) TY_NODISCARD;
void ty_mem_free(void *p, size_t nbytes);
/* A kernel's workspace for one call, given back before the call returns: like ty_mem_alloc,
 * but a given-back block is kept aside and the next request it fits (up to about twice its
 * size) gets it again, whatever its size, so consecutive layers' workspaces share memory
 * that is still in cache and in the TLB (a request of a size not seen since the previous
 * inference otherwise gets a block last touched then). Give it back with
 * ty_mem_scratch_free and the same nbytes; its contents are undefined. */
ty_status ty_mem_scratch_alloc(size_t nbytes, void **out) TY_NODISCARD;
void ty_mem_scratch_free(void *p, size_t nbytes);
/* A layer that can free memory (DTR) makes room before kernel scratch is taken, not only before
 * op outputs: before(rounded bytes) runs outside the allocator's lock before every ty_mem_alloc
 * and after(what before returned) once the allocation is done, so the layer can hold its room
 * until the bytes are counted. NULL: none. */
typedef int (*ty_mem_pressure_fn)(int64_t nbytes);
typedef void (*ty_mem_taken_fn)(int token);
void ty_mem_set_pressure_hook(ty_mem_pressure_fn before, ty_mem_taken_fn after);

/* ---- storage/tensor internals ---- */
void ty_noop_deleter(void *ctx);
ty_status ty_storage_new(size_t nbytes, ty_storage **out) TY_NODISCARD; /* on the CPU */
ty_status ty_storage_new_on(ty_device_type dev, size_t nbytes, ty_storage **out) TY_NODISCARD;
void ty_storage_retain(ty_storage *s);
void ty_storage_release(ty_storage *s);
/* Frees s's data (computed, device-allocated: no deleter) while s lives on: reading it then
 * raises why's error (DTR's eviction, a trace recording's values that nothing holds). */
void ty_storage_drop_data(ty_storage *s, const ty_deferral *why);
/* New contiguous tensor with the given meta. */
ty_status ty_tensor_new_like_meta(ty_dtype dt, int ndim, const int64_t *shape,
                                  ty_tensor **out) TY_NODISCARD;
ty_status ty_tensor_new_on(ty_device_type dev, ty_dtype dt, int ndim, const int64_t *shape,
                           ty_tensor **out) TY_NODISCARD;
/* New view sharing t's storage with a new layout; no autodiff meta. */
ty_status ty_tensor_view(const ty_tensor *t, int ndim, const int64_t *shape,
                         const int64_t *strides, int64_t offset, ty_tensor **out) TY_NODISCARD;
void ty_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
/* A contiguous tensor whose storage has no memory yet, deferred for `why` (a traced replay's
 * placeholder): the owner gives it memory and clears storage->deferred. */
ty_status ty_tensor_view_pending(ty_dtype dt, int ndim, const int64_t *shape, size_t nbytes,
                                 const ty_deferral *why, ty_tensor **out) TY_NODISCARD;
/* Checked product of dims (TY_ERR_SHAPE on negative or overflow). */
ty_status ty_shape_numel(int ndim, const int64_t *shape, int64_t *out) TY_NODISCARD;
static inline char *
ty_tensor_ptr(const ty_tensor *t)
{
    return (char *)t->storage->data + t->offset * (int64_t)ty_dtype_size(t->dtype);
}

/* ---- random ---- */
/* Reserves n counters of the global generator; returns the key and the first counter. */
void ty_random_reserve(uint64_t n, uint64_t *key, uint64_t *counter);
/* Counter-based generator: 64 random bits for (key, counter). */
uint64_t ty_random_bits(uint64_t key, uint64_t counter);

#endif
