#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* ---- memos ---- */

typedef struct ty_storage_memo {
    struct ty_storage_memo *next;
    ty_memo_key key;
    uint32_t version;
    void *data;
    size_t nbytes;
} ty_storage_memo;

/* One lock for every storage's memos: taken once per call of a kernel that keeps one, next
 * to whole convolutions, so it is never contended for long. */
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

static ty_storage_memo *
memo_of(ty_storage *s, const ty_memo_key *key)
{
    for (ty_storage_memo *e = s->memos; e; e = e->next) {
        if (memcmp(&e->key, key, sizeof(*key)) == 0) {
            return e;
        }
    }
    return NULL;
}

const void *
ty_storage_memo_find(ty_storage *s, const ty_memo_key *key, uint32_t version)
{
    pthread_mutex_lock(&memo_lock);
    ty_storage_memo *e = memo_of(s, key);
    const void *data = e && e->version == version ? e->data : NULL;
    pthread_mutex_unlock(&memo_lock);
    return data;
}

bool
ty_storage_memo_put(ty_storage *s, const ty_memo_key *key, uint32_t version, void *data,
                    size_t nbytes, const void **used)
{
    *used = data;
    pthread_mutex_lock(&memo_lock);
    ty_storage_memo *e = memo_of(s, key);
    if (e && e->version == version) { /* another thread computed the same first */
        *used = e->data;
        pthread_mutex_unlock(&memo_lock);
        ty_mem_free(data, nbytes);
        return true;
    }
    /* a stale memo's readers are gone: a write into s cannot overlap a read of it */
    ty_storage_memo *fresh = e ? e : calloc(1, sizeof(*fresh));
    if (!fresh) { /* no room to keep it: the caller still owns data */
        pthread_mutex_unlock(&memo_lock);
        return false;
    }
    if (e) {
        ty_mem_free(e->data, e->nbytes);
    } else {
        fresh->key = *key;
        fresh->next = s->memos;
        s->memos = fresh;
    }
    fresh->version = version;
    fresh->data = data;
    fresh->nbytes = nbytes;
    pthread_mutex_unlock(&memo_lock);
    return true;
}

static void
free_memos(ty_storage *s)
{
    for (ty_storage_memo *e = s->memos, *next; e; e = next) {
        next = e->next;
        ty_mem_free(e->data, e->nbytes);
        free(e);
    }
}

ty_status
ty_storage_new_on(ty_device_type dev, size_t nbytes, ty_storage **out)
{
    const ty_device *d = ty_device_get(dev);
    TY_CHECK(d, TY_ERR_DEVICE, "device %s is not available in this build", ty_device_name(dev));
    ty_storage *s = calloc(1, sizeof(*s));
    if (!s) {
        return ty_set_error(TY_ERR_OOM, "out of memory allocating a storage header");
    }
    ty_status st = d->alloc(nbytes, &s->data);
    if (st != TY_OK) {
        free(s);
        return st;
    }
    atomic_init(&s->refcnt, 1);
    s->nbytes = nbytes;
    s->device = dev;
    *out = s;
    return TY_OK;
}

ty_status
ty_storage_new(size_t nbytes, ty_storage **out)
{
    return ty_storage_new_on(TY_DEVICE_CPU, nbytes, out);
}

void
ty_storage_retain(ty_storage *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

void
ty_storage_release(ty_storage *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
    free_memos(s); /* the last reference: no reader left */
    if (s->deleter) {
        s->deleter(s->ctx);
    } else if (s->data) {
        ty_device_get(s->device)->free(s->data, s->nbytes);
    }
    free(s);
}

void
ty_storage_drop_data(ty_storage *s, const ty_deferral *why)
{
    void *data = s->data;
    s->data = NULL;
    s->deferred = why;
    ty_device_get(s->device)->free(data, s->nbytes);
}

void
ty_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t st = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = st;
        /* only an empty tensor (a 0 elsewhere in its shape) gets this far: its strides address
         * nothing, so they stop growing instead of overflowing */
        if (__builtin_mul_overflow(st, shape[i] > 0 ? shape[i] : 1, &st)) {
            st = strides[i];
        }
    }
}

ty_status
ty_shape_numel(int ndim, const int64_t *shape, int64_t *out)
{
    char buf[TY_SHAPE_BUF];
    TY_CHECK(ndim >= 0 && ndim <= TY_MAX_DIMS, TY_ERR_SHAPE,
             "rank %d is out of range [0, %d]", ndim, TY_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        TY_CHECK(shape[i] >= 0, TY_ERR_SHAPE, "negative dimension in shape %s",
                 ty_shape_str(ndim, shape, buf, sizeof buf));
        TY_CHECK(!__builtin_mul_overflow(n, shape[i], &n) && n <= ((int64_t)1 << 56), TY_ERR_OOM,
                 "shape %s has too many elements", ty_shape_str(ndim, shape, buf, sizeof buf));
    }
    *out = n;
    return TY_OK;
}

/* memcpy of n dims; shape pointers may be NULL for 0-d tensors (memcpy(NULL) is UB). */
static void
copy_dims(int64_t *dst, const int64_t *src, int n)
{
    if (n > 0) {
        memcpy(dst, src, sizeof(int64_t) * (size_t)n);
    }
}

static ty_tensor *
tensor_alloc_header(void)
{
    ty_tensor *t = calloc(1, sizeof(*t));
    if (t) {
        atomic_init(&t->refcnt, 1);
    } else {
        ty_set_error(TY_ERR_OOM, "out of memory allocating a tensor header");
    }
    return t;
}

ty_status
ty_tensor_new_like_meta(ty_dtype dt, int ndim, const int64_t *shape, ty_tensor **out)
{
    return ty_tensor_new_on(TY_DEVICE_CPU, dt, ndim, shape, out);
}

ty_status
ty_tensor_empty_on(ty_device_type dev, ty_dtype dt, int ndim, const int64_t *shape,
                   ty_tensor **out)
{
    TY_CHECK(out && (shape || ndim == 0), TY_ERR_INVALID_ARG, "ty_tensor_empty_on: NULL argument");
    return ty_tensor_new_on(dev, dt, ndim, shape, out);
}

ty_device_type
ty_tensor_device(const ty_tensor *t)
{
    return t->storage->device;
}

ty_status
ty_tensor_new_on(ty_device_type dev, ty_dtype dt, int ndim, const int64_t *shape, ty_tensor **out)
{
    int64_t n;
    TY_CHECK((unsigned)dt < TY_DTYPE_COUNT, TY_ERR_DTYPE, "invalid dtype code %d", (int)dt);
    TY_TRY(ty_shape_numel(ndim, shape, &n));
    ty_tensor *t = tensor_alloc_header();
    if (!t) {
        return TY_ERR_OOM;
    }
    ty_status st = ty_storage_new_on(dev, (size_t)n * ty_dtype_size(dt), &t->storage);
    if (st != TY_OK) {
        free(t);
        return st;
    }
    t->dtype = dt;
    t->ndim = ndim;
    copy_dims(t->shape, shape, ndim);
    ty_contiguous_strides(ndim, shape, t->strides);
    *out = t;
    return TY_OK;
}

ty_status
ty_tensor_empty(ty_dtype dt, int ndim, const int64_t *shape, ty_tensor **out)
{
    TY_CHECK(out && (shape || ndim == 0), TY_ERR_INVALID_ARG, "ty_tensor_empty: NULL argument");
    return ty_tensor_new_like_meta(dt, ndim, shape, out);
}

ty_status
ty_tensor_view(const ty_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
               int64_t offset, ty_tensor **out)
{
    ty_tensor *v = tensor_alloc_header();
    if (!v) {
        return TY_ERR_OOM;
    }
    ty_storage_retain(t->storage);
    v->storage = t->storage;
    v->dtype = t->dtype;
    v->ndim = ndim;
    copy_dims(v->shape, shape, ndim);
    copy_dims(v->strides, strides, ndim);
    v->offset = offset;
    *out = v;
    return TY_OK;
}

void
ty_tensor_retain(ty_tensor *t)
{
    if (t) {
        atomic_fetch_add_explicit(&t->refcnt, 1, memory_order_relaxed);
    }
}

static ty_ext_release_fn ext_release[TY_TENSOR_EXT_SLOTS];
static _Atomic int ext_used;

ty_status
ty_tensor_ext_register(ty_ext_release_fn release, int *slot)
{
    int i = atomic_fetch_add(&ext_used, 1);
    if (i >= TY_TENSOR_EXT_SLOTS) {
        atomic_fetch_sub(&ext_used, 1);
        return ty_set_error(TY_ERR_INTERNAL, "all %d tensor extension slots are taken",
                            TY_TENSOR_EXT_SLOTS);
    }
    ext_release[i] = release;
    *slot = i;
    return TY_OK;
}

static void
release_ext(ty_tensor *t)
{
    int used = atomic_load_explicit(&ext_used, memory_order_relaxed);
    for (int i = 0; i < used && i < TY_TENSOR_EXT_SLOTS; i++) {
        if (t->ext[i] && ext_release[i]) {
            ext_release[i](t->ext[i]);
        }
    }
}

void
ty_tensor_release(ty_tensor *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refcnt, 1, memory_order_acq_rel) != 1) {
        return;
    }
    release_ext(t);
    ty_storage_release(t->storage);
    free(t);
}

ty_dtype
ty_tensor_dtype(const ty_tensor *t)
{
    return t->dtype;
}

int
ty_tensor_ndim(const ty_tensor *t)
{
    return t->ndim;
}

const int64_t *
ty_tensor_shape(const ty_tensor *t)
{
    return t->shape;
}

const int64_t *
ty_tensor_strides(const ty_tensor *t)
{
    return t->strides;
}

int64_t
ty_tensor_numel(const ty_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) { /* the other dims of an empty tensor may multiply past int64 */
            return 0;
        }
    }
    for (int i = 0; i < t->ndim; i++) {
        n *= t->shape[i];
    }
    return n;
}

int
ty_tensor_is_contiguous(const ty_tensor *t)
{
    int64_t st = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != st) {
            return 0;
        }
        if (__builtin_mul_overflow(st, t->shape[i], &st)) {
            return 1; /* only an empty tensor's dims overflow; its strides address nothing */
        }
    }
    return 1;
}

static _Atomic(ty_data_escape_fn) data_escape_hook;

void
ty_set_data_escape_hook(ty_data_escape_fn fn)
{
    atomic_store(&data_escape_hook, fn);
}

static _Atomic(ty_replay_read_fn) replay_read_hook;

void
ty_set_replay_read_hook(ty_replay_read_fn fn)
{
    atomic_store(&replay_read_hook, fn);
}

ty_status
ty_replay_read(const ty_tensor *t)
{
    ty_replay_read_fn hook = atomic_load(&replay_read_hook);
    return hook ? hook(t) : TY_OK;
}

/* The bytes are read through the pointer later, by code no deferral can intercept: they are
 * brought back now (an evicted tensor is recomputed) and kept; data that is not there yet (a
 * traced placeholder, a deferred error) is refused. Kernels writing an output use
 * ty_tensor_ptr. */
void *
ty_tensor_data(const ty_tensor *t)
{
    if (!t) {
        ty_set_error(TY_ERR_INVALID_ARG, "ty_tensor_data: NULL tensor");
        return NULL;
    }
    ty_data_escape_fn hook = atomic_load(&data_escape_hook);
    if (ty_check_readable(t) != TY_OK || (hook && hook(t) != TY_OK)) {
        return NULL;
    }
    return ty_tensor_ptr(t);
}

ty_status
ty_tensor_full(ty_dtype dt, int ndim, const int64_t *shape, double value, ty_tensor **out)
{
    TY_CHECK(out && (shape || ndim == 0), TY_ERR_INVALID_ARG, "ty_tensor_full: NULL argument");
    ty_tensor *t;
    TY_TRY(ty_tensor_new_like_meta(dt, ndim, shape, &t));
    int64_t n = ty_tensor_numel(t);
    size_t es = ty_dtype_size(dt);
    char *p = ty_tensor_ptr(t);
    if (n > 0) {
        ty_store_f64(p, dt, value);
        for (int64_t i = 1; i < n; i++) {
            memcpy(p + i * (int64_t)es, p, es);
        }
    }
    *out = t;
    return TY_OK;
}

ty_status
ty_tensor_from_data(ty_dtype dt, int ndim, const int64_t *shape, const void *data,
                    size_t nbytes, ty_tensor **out)
{
    TY_CHECK(out && (shape || ndim == 0), TY_ERR_INVALID_ARG,
             "ty_tensor_from_data: NULL argument");
    ty_tensor *t;
    TY_TRY(ty_tensor_new_like_meta(dt, ndim, shape, &t));
    size_t need = (size_t)ty_tensor_numel(t) * ty_dtype_size(dt);
    if (nbytes != need || (need && !data)) {
        ty_tensor_release(t);
        return ty_set_error(TY_ERR_INVALID_ARG,
                            "ty_tensor_from_data: got %zu bytes, shape needs %zu", nbytes, need);
    }
    if (need) {
        memcpy(ty_tensor_ptr(t), data, need);
    }
    *out = t;
    return TY_OK;
}

ty_status
ty_tensor_wrap(ty_dtype dt, int ndim, const int64_t *shape, const int64_t *strides, void *data,
               size_t nbytes, void (*deleter)(void *), void *ctx, ty_tensor **out)
{
    int64_t n;
    TY_CHECK(out && deleter && ((shape && strides) || ndim == 0), TY_ERR_INVALID_ARG,
             "ty_tensor_wrap: NULL argument");
    TY_CHECK((unsigned)dt < TY_DTYPE_COUNT, TY_ERR_DTYPE, "invalid dtype code %d", (int)dt);
    TY_TRY(ty_shape_numel(ndim, shape, &n));
    /* every addressable element must lie inside [data, data + nbytes) */
    int64_t lo = 0, hi = 0;
    int ovf = 0;
    for (int i = 0; i < ndim && n > 0; i++) {
        int64_t span;
        ovf |= __builtin_mul_overflow(shape[i] - 1, strides[i], &span);
        ovf |= span < 0 ? __builtin_add_overflow(lo, span, &lo) : __builtin_add_overflow(hi, span, &hi);
    }
    int64_t es = (int64_t)ty_dtype_size(dt), end = 0;
    ovf |= __builtin_add_overflow(hi, 1, &end) || __builtin_mul_overflow(end, es, &end);
    TY_CHECK(n == 0 || (!ovf && lo == 0 && end <= (int64_t)nbytes), TY_ERR_INVALID_ARG,
             "ty_tensor_wrap: strides reach outside the %zu-byte buffer", nbytes);
    ty_tensor *t = tensor_alloc_header();
    ty_storage *s = calloc(1, sizeof(*s));
    if (!t || !s) {
        free(t);
        free(s);
        return ty_set_error(TY_ERR_OOM, "out of memory wrapping a buffer");
    }
    atomic_init(&s->refcnt, 1);
    s->data = data;
    s->nbytes = nbytes;
    s->deleter = deleter;
    s->ctx = ctx;
    t->storage = s;
    t->dtype = dt;
    t->ndim = ndim;
    copy_dims(t->shape, shape, ndim);
    copy_dims(t->strides, strides, ndim);
    *out = t;
    return TY_OK;
}

void
ty_noop_deleter(void *ctx)
{
    (void)ctx;
}

ty_status
ty_tensor_item(const ty_tensor *t, double *out)
{
    TY_CHECK(t && out, TY_ERR_INVALID_ARG, "item: NULL argument");
    TY_TRY(ty_check_readable(t));
    TY_CHECK(ty_tensor_numel(t) == 1, TY_ERR_SHAPE,
             "only a tensor with one element can be converted to a Python scalar (this one has "
             "%lld)",
             (long long)ty_tensor_numel(t));
    *out = ty_load_f64(ty_tensor_ptr(t), t->dtype);
    return TY_OK;
}

int
ty_tensor_same_storage(const ty_tensor *a, const ty_tensor *b)
{
    return a && b && a->storage == b->storage;
}

ty_status
ty_check_readable(const ty_tensor *t)
{
    const ty_deferral *d = t->storage->deferred;
    if (d && d->restore) {
        TY_TRY(d->restore(d, t->storage));
        d = t->storage->deferred;
    }
    return d ? ty_set_error(d->status, "%s", d->message) : TY_OK;
}

void
ty_free(void *p)
{
    free(p);
}

ty_status
ty_tensor_view_pending(ty_dtype dt, int ndim, const int64_t *shape, size_t nbytes,
                       const ty_deferral *why, ty_tensor **out)
{
    ty_tensor *t = tensor_alloc_header();
    ty_storage *s = calloc(1, sizeof(*s));
    if (!t || !s) {
        free(t);
        free(s);
        return ty_set_error(TY_ERR_OOM, "out of memory allocating a tensor header");
    }
    atomic_init(&s->refcnt, 1);
    s->nbytes = nbytes;
    s->deferred = why;
    t->storage = s;
    t->dtype = dt;
    t->ndim = ndim;
    copy_dims(t->shape, shape, ndim);
    ty_contiguous_strides(ndim, shape, t->strides);
    *out = t;
    return TY_OK;
}
