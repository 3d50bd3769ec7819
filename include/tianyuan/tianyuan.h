/* Tianyuan (天元) public C API.
 *
 * Conventions (CPython's): a function that returns a tensor through an out-parameter
 * returns a NEW reference that the caller must ty_tensor_release(); arguments are BORROWED.
 * Every function that can fail returns ty_status; on failure ty_last_error() holds a
 * thread-local message naming the op, shapes and dtypes.
 *
 * Example:
 *
 *     #include <tianyuan/tianyuan.h>
 *     int64_t shape[2] = {2, 3};
 *     ty_tensor *a = NULL, *b = NULL, *c = NULL;
 *     if (ty_tensor_full(TY_FLOAT32, 2, shape, 1.0, &a) != TY_OK) goto fail;
 *     if (ty_tensor_full(TY_FLOAT32, 2, shape, 2.0, &b) != TY_OK) goto fail;
 *     ty_tensor *in[2] = {a, b};
 *     if (ty_apply(TY_OP_ADD, NULL, 2, in, 1, &c) != TY_OK) goto fail;
 *     // ((float *)ty_tensor_data(c))[0] == 3.0f
 *   fail:
 *     ty_tensor_release(a); ty_tensor_release(b); ty_tensor_release(c);
 */
#ifndef TIANYUAN_H
#define TIANYUAN_H

#include <stddef.h>
#include <float.h> /* DBL_MAX in params ranges */
#include <math.h> /* INFINITY in params defaults */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TY_API_VERSION 1
#define TY_MAX_DIMS 8
/* Outputs of one op call (split asks for more through several calls); inputs are unbounded. */
#define TY_MAX_OUTPUTS 64

#if defined(__GNUC__) || defined(__clang__)
#define TY_API __attribute__((visibility("default")))
#define TY_NODISCARD __attribute__((warn_unused_result))
#else
#define TY_API
#define TY_NODISCARD
#endif

/* Status codes: explicit values, append-only. */
typedef enum ty_status {
    TY_OK = 0,
    TY_ERR_INVALID_ARG = 1,
    TY_ERR_SHAPE = 2,
    TY_ERR_DTYPE = 3,
    TY_ERR_OOM = 4,
    TY_ERR_UNSUPPORTED = 5,
    TY_ERR_DEVICE = 6,
    TY_ERR_IO = 7,
    TY_ERR_FORMAT = 8,
    TY_ERR_INTERNAL = 9,
    TY_ERR_INDEX = 10,
    TY_ERR_TRACE = 11, /* a traced function diverged from its recording */
    TY_ERR_TIMEOUT = 12, /* a collective waited past its timeout (tianyuan/dist.h) */
} ty_status;

/* dtypes: explicit values, append-only (serialized by value in .tym). */
typedef enum ty_dtype {
    TY_FLOAT32 = 0,
    TY_FLOAT64 = 1,
    TY_FLOAT16 = 2,
    TY_BFLOAT16 = 3,
    TY_INT8 = 4,
    TY_UINT8 = 5,
    TY_INT16 = 6,
    TY_INT32 = 7,
    TY_INT64 = 8,
    TY_BOOL = 9,
    TY_DTYPE_COUNT = 10
} ty_dtype;

typedef struct ty_tensor ty_tensor;

/* Devices: values explicit, append-only. NULL is a device with memory but no kernels (tests
 * use it to exercise the "no kernel for this device" paths that a partial backend hits). */
typedef enum ty_device_type {
    TY_DEVICE_CPU = 0,
    TY_DEVICE_CUDA = 1,
    TY_DEVICE_NULL = 2,
    TY_DEVICE_TYPE_COUNT = 3
} ty_device_type;

/* ---- op parameters: one struct per row of params.def ---- */
#define TY_LIST_MAX 16
typedef struct ty_i64list {
    int32_t n;
    int64_t v[TY_LIST_MAX];
} ty_i64list;

/* Ranges of params.def fields: lo, hi and the status a value outside gets. ty_apply checks
 * them for every caller. */
#define TY_RANGE(lo, hi) lo, hi, TY_ERR_INVALID_ARG
#define TY_ANY_I64 TY_RANGE(INT64_MIN, INT64_MAX)
#define TY_NONNEG TY_RANGE(0, INT64_MAX)
#define TY_POSITIVE TY_RANGE(1, INT64_MAX)
#define TY_BOOL_RANGE TY_RANGE(0, 1)
#define TY_DTYPE_RANGE 0, (TY_DTYPE_COUNT - 1), TY_ERR_DTYPE
#define TY_AXIS_RANGE (-TY_MAX_DIMS), (TY_MAX_DIMS - 1), TY_ERR_INDEX
#define TY_NEW_AXIS_RANGE (-TY_MAX_DIMS - 1), TY_MAX_DIMS, TY_ERR_INDEX /* may insert an axis */
#define TY_DIMS 0, INT64_MAX, TY_ERR_SHAPE
#define TY_DIMS_OR_INFER (-1), INT64_MAX, TY_ERR_SHAPE /* -1: inferred (reshape) */
#define TY_ANY_F64 TY_RANGE(-INFINITY, INFINITY) /* NaN allowed */
#define TY_FINITE TY_RANGE(-DBL_MAX, DBL_MAX)

#define TY_FI64(f, d, ...) int64_t f;
#define TY_FF64(f, d, ...) double f;
#define TY_FLIST(f, ...) ty_i64list f;
#define TY_PARAMS(name, fields)                                                                    \
    typedef struct ty_p_##name {                                                                   \
        fields int32_t end_;                                                                       \
    } ty_p_##name;
#include "tianyuan/params.def"
#undef TY_PARAMS
#undef TY_FI64
#undef TY_FF64
#undef TY_FLIST

/* Reflection over params structs (for bindings and serializers). */
typedef enum ty_field_kind { TY_FK_I64 = 0, TY_FK_F64 = 1, TY_FK_LIST = 2 } ty_field_kind;
typedef struct ty_field_desc {
    const char *name;
    ty_field_kind kind;
    size_t offset;
    double def;
    int64_t ilo, ihi;  /* range of an int field or of a list's entries */
    double flo, fhi;   /* range of a float field */
    int range_status;  /* the ty_status of a value outside the range */
} ty_field_desc;
typedef struct ty_params_desc {
    const char *name;
    size_t size;
    int nfields;
    const ty_field_desc *fields;
    const void *defaults; /* a struct holding every default */
} ty_params_desc;

/* The op enum, expanded from src/ops/ops.def (values append-only). */
typedef enum ty_op {
#define TY_OP(ENUM, name, family, nin, nout, params, flags, infer, fwd, grad) TY_OP_##ENUM,
#include "tianyuan/ops.def"
#undef TY_OP
    TY_OP_COUNT
} ty_op;

TY_API int ty_api_version(void);
/* Registers the autodiff tape and the tracer with the dispatcher. Call once before using
 * autodiff or tracing (the Python module does); later calls return the first result.
 * Without it ops run, but ty_ad_attach and ty_trace_begin_* fail saying so. */
TY_API ty_status ty_init(void) TY_NODISCARD;
TY_API const char *ty_version(void);

/* Errors: thread-local message of the last failure on this thread. */
TY_API const char *ty_last_error(void);
TY_API void ty_clear_error(void);
TY_API const char *ty_status_name(ty_status st);
/* Sets this thread's error message and returns st (for callbacks that report failures). */
TY_API ty_status ty_set_error(ty_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* dtypes */
TY_API const char *ty_dtype_name(ty_dtype dt);
TY_API size_t ty_dtype_size(ty_dtype dt);
TY_API int ty_dtype_is_float(ty_dtype dt);
TY_API ty_status ty_dtype_from_name(const char *name, ty_dtype *out) TY_NODISCARD;

/* Tensors: refcounted strided views of refcounted storage. */
TY_API ty_status ty_tensor_empty(ty_dtype dt, int ndim, const int64_t *shape,
                                 ty_tensor **out) TY_NODISCARD;
TY_API ty_status ty_tensor_full(ty_dtype dt, int ndim, const int64_t *shape, double value,
                                ty_tensor **out) TY_NODISCARD;
/* Copies nbytes of contiguous C-order data. */
TY_API ty_status ty_tensor_from_data(ty_dtype dt, int ndim, const int64_t *shape,
                                     const void *data, size_t nbytes,
                                     ty_tensor **out) TY_NODISCARD;
/* Wraps foreign memory without copying; deleter(ctx) runs when the storage dies.
 * strides are in elements. */
TY_API ty_status ty_tensor_wrap(ty_dtype dt, int ndim, const int64_t *shape,
                                const int64_t *strides, void *data, size_t nbytes,
                                void (*deleter)(void *), void *ctx,
                                ty_tensor **out) TY_NODISCARD;
TY_API void ty_tensor_retain(ty_tensor *t);
TY_API void ty_tensor_release(ty_tensor *t); /* NULL is a no-op */

/* A new uninitialised tensor on a device (TY_ERR_DEVICE when that backend is not built). */
TY_API ty_status ty_tensor_empty_on(ty_device_type dev, ty_dtype dt, int ndim,
                                    const int64_t *shape, ty_tensor **out) TY_NODISCARD;
TY_API ty_device_type ty_tensor_device(const ty_tensor *t);
TY_API const char *ty_device_name(ty_device_type dev);
TY_API ty_dtype ty_tensor_dtype(const ty_tensor *t);
TY_API int ty_tensor_ndim(const ty_tensor *t);
TY_API const int64_t *ty_tensor_shape(const ty_tensor *t);   /* borrowed */
TY_API const int64_t *ty_tensor_strides(const ty_tensor *t); /* in elements, borrowed */
TY_API int64_t ty_tensor_numel(const ty_tensor *t);
TY_API int ty_tensor_is_contiguous(const ty_tensor *t);
/* Pointer to element 0 of the view (storage base + offset). A tensor DTR evicted is recomputed
 * first and never evicted again (the pointer stays valid while t lives). NULL when the data
 * cannot be produced (ty_last_error() says why). */
TY_API void *ty_tensor_data(const ty_tensor *t);
/* Copies the view into dst as contiguous C-order data of the tensor's dtype. */
TY_API ty_status ty_tensor_copy_to(const ty_tensor *t, void *dst, size_t nbytes) TY_NODISCARD;
/* Replaces dst's contents (same shape, any dtype) with src's values; dst keeps its storage. */
TY_API ty_status ty_tensor_assign(ty_tensor *dst, const ty_tensor *src) TY_NODISCARD;

/* The dispatcher: the one entry point of every tensor operation.
 * params: the op's params struct (see tianyuan/params.def) or NULL for defaults. Every field
 * is checked against its range in params.def before the op runs (TY_ERR_INVALID_ARG).
 * out: nout slots receiving NEW references. */
TY_API ty_status ty_apply(ty_op op, const void *params, int nin, ty_tensor *const *in, int nout,
                          ty_tensor **out) TY_NODISCARD;
TY_API const char *ty_op_name(ty_op op);
/* Op counters (profiling, test coverage): while started, the dispatcher counts successful
 * applications per op. take() copies TY_OP_COUNT counts and resets them. Start and stop are
 * not thread-safe against ops running on other threads. */
TY_API ty_status ty_op_counts_start(void) TY_NODISCARD;
TY_API void ty_op_counts_take(int64_t *counts);
TY_API void ty_op_counts_stop(void);
TY_API ty_status ty_op_from_name(const char *name, ty_op *out) TY_NODISCARD;
/* Arity of an op: -1 means variadic. */
TY_API int ty_op_nin(ty_op op);
TY_API int ty_op_nout(ty_op op);
TY_API uint32_t ty_op_flags(ty_op op);
TY_API const ty_params_desc *ty_op_params(ty_op op); /* borrowed, static */

/* Memory counters of the CPU caching allocator (bytes). */
typedef struct ty_mem_stats {
    uint32_t struct_size;
    int64_t allocated;
    int64_t peak;
    int64_t cached;
    int64_t n_alloc_calls; /* calls that reached the system allocator */
    int64_t limit;         /* 0 = none */
    int64_t n_requests;    /* every allocation, cache hits included */
    int64_t peak_reserved; /* highest allocated + cached (bytes held from the system) */
} ty_mem_stats;
TY_API void ty_mem_get_stats(ty_mem_stats *out);
TY_API void ty_mem_reset_peak(void);
TY_API void ty_mem_empty_cache(void);
/* Caps live + cached allocator bytes (0 removes the cap; negative is an error). Cached
 * blocks are returned to the system before a request fails. */
TY_API ty_status ty_mem_set_limit(int64_t bytes) TY_NODISCARD;

/* Threads */
TY_API int ty_get_num_threads(void);
TY_API ty_status ty_set_num_threads(int n) TY_NODISCARD;

/* Algorithm policy: how an op with several algorithms picks one (MegEngine's execution
 * strategy names; bit flags). Set per runtime session (ty_session_set_algo_policy); kernels
 * read the calling thread's, else the process default (ty_set_algo_policy). HEURISTIC chooses
 * from shapes, params, dtype and ISA alone. PROFILE ("fast-run") times the candidates on the
 * first call of each (op, shapes, params, dtype, ISA, thread count) and keeps the fastest in
 * a cache file ($TY_FASTRUN_CACHE, else $XDG_CACHE_HOME/tianyuan/fastrun.cache, else
 * ~/.cache/tianyuan/fastrun.cache) that later processes read instead of profiling. Traces and
 * dumped models record the algorithm each node used, so their runs give eager's bits. Every
 * CPU algorithm is reproducible (the same bits on every run and at every thread count), so
 * REPRODUCIBLE removes no candidate. */
typedef enum ty_algo_policy {
    TY_ALGO_HEURISTIC = 1,            /* the default: choose from shapes, params, dtype, ISA */
    TY_ALGO_PROFILE = 2,              /* fast-run: time the candidates, cache the fastest */
    TY_ALGO_REPRODUCIBLE = 4,         /* only algorithms that give the same bits every run */
    TY_ALGO_PROFILE_REPRODUCIBLE = 6, /* both */
} ty_algo_policy;

/* The process default policy: threads that set none (a session sets its own while it runs). */
TY_API ty_status ty_set_algo_policy(ty_algo_policy policy) TY_NODISCARD;
TY_API ty_algo_policy ty_get_algo_policy(void);
/* Testing: PROFILE takes the candidate named algo (the heuristic's pick where that one cannot
 * run the call) instead of the fastest, so tests never depend on timing; NULL or "" restores timing (then the environment variable
 * TY_FASTRUN_TEST_CHOICE, when set, names it, for tests running other processes). */
TY_API void ty_fastrun_set_test_choice(const char *algo);
/* How many times this process profiled (a choice not found in its cache or the file). */
TY_API int64_t ty_fastrun_profile_count(void);
/* Forgets this process's cached choices (the file is kept). */
TY_API void ty_fastrun_forget(void);

/* ---- Autodiff (GradManager semantics): the tape records while recording is on and an
 * input is tracked; ty_backward walks it. ---- */
/* Custom gradient (autodiff.Function): gin[i] receive new references or NULL. */
typedef ty_status (*ty_custom_grad)(void *ctx, int nout, ty_tensor *const *gout, int nin,
                                    ty_tensor **gin);

TY_API ty_status ty_ad_attach(ty_tensor *t) TY_NODISCARD; /* marks t as a tracked leaf */
TY_API void ty_ad_detach(ty_tensor *t);                   /* forgets t's autodiff state */
TY_API int ty_ad_is_tracked(const ty_tensor *t);
/* An object holding old now holds replacement (setitem, set_value): when old is an attached
 * leaf, replacement (if untracked and float) is attached in its place, and old counts as written
 * in place, so a recorded use of it makes ty_backward fail instead of losing its gradient. */
TY_API ty_status ty_ad_rebind(ty_tensor *old, ty_tensor *replacement) TY_NODISCARD;
TY_API void ty_ad_set_recording(int on); /* nests: on=1 pushes, on=0 pops */
TY_API int ty_ad_recording(void);
TY_API void ty_ad_suspend(int on); /* thread-local pause (no_grad), nests */
/* One eager SGD step for one parameter, in place, computing exactly the float32 operations of
 * tianyuan.optimizer.SGD op by op, in the same order (so the bits are the same):
 *     g = grad + param * wd;  buf = buf * mom + g;  g = nesterov ? g + buf * mom : buf;
 *     param = param - lr * g
 * lr, wd, mom: 0-d float32 tensors (wd NULL: no decay; buf NULL: no momentum). *done = 0, with
 * nothing written, where the fused kernel does not apply: another dtype or device, a strided or
 * aliased tensor, data not computed yet, or an observer of the dispatcher (a trace, autodiff
 * recording, DTR, op counting) that must see the ops one by one. */
TY_API ty_status ty_sgd_fused_update(ty_tensor *param, const ty_tensor *grad, ty_tensor *buf,
                                     const ty_tensor *lr, const ty_tensor *wd,
                                     const ty_tensor *mom, int nesterov, int *done) TY_NODISCARD;
TY_API ty_status ty_ad_custom_node(int nin, ty_tensor *const *in, int nout, ty_tensor *const *out,
                                   ty_custom_grad fn, void *ctx, void (*free_ctx)(void *)) TY_NODISCARD;
/* Gradients of ys (seeded with dys, NULL entries meaning ones) with respect to xs.
 * grads[j] receives a new reference, or NULL when xs[j] does not influence ys.
 * Without retain_graph the saved tensors are freed; with create_graph the backward ops
 * are themselves recorded (higher-order gradients). */
TY_API ty_status ty_backward(int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx,
                             ty_tensor *const *xs, ty_tensor **grads, int retain_graph,
                             int create_graph) TY_NODISCARD;
/* Called by ty_backward_notify once the gradient of target j is final (no contribution to it
 * is left in the pass): grad is that gradient (borrowed; NULL when xs[j] gets none), the same
 * tensor grads[j] receives. A status other than TY_OK stops the backward with that error. */
typedef ty_status (*ty_grad_ready_fn)(void *ud, int j, ty_tensor *grad);
/* ty_backward that calls on_ready (when not NULL) exactly once per target, as soon as its
 * gradient is final, while the pass goes on (so a caller can start reducing gradients before
 * backward ends). Targets no node feeds fire right after seeding; a backward a hook computes
 * (a traced replay) fires them all after it, in order of j. */
TY_API ty_status ty_backward_notify(int ny, ty_tensor *const *ys, ty_tensor *const *dys, int nx,
                                    ty_tensor *const *xs, ty_tensor **grads, int retain_graph,
                                    int create_graph, ty_grad_ready_fn on_ready,
                                    void *ud) TY_NODISCARD;


/* Reads the single element of t as a double (TY_ERR_SHAPE when numel != 1). */
TY_API ty_status ty_tensor_item(const ty_tensor *t, double *out) TY_NODISCARD;
TY_API int ty_tensor_same_storage(const ty_tensor *a, const ty_tensor *b);


/* ---- Tracing: record the dispatcher calls of a function once, replay them as a graph ----
 * Recording and replay are per thread. During a replay every ty_apply is matched against
 * the recording and returns tensors whose data is computed by ty_trace_end_replay. */
typedef struct ty_trace ty_trace;
TY_API ty_status ty_trace_begin_record(int nargs, ty_tensor *const *args,
                                       ty_trace **out) TY_NODISCARD;
/* Symbolic recording (trace(symbolic=True)): ops return tensors without data, and reading
 * one fails; ty_trace_end_record computes the whole recording once. */
TY_API ty_status ty_trace_begin_record_symbolic(int nargs, ty_tensor *const *args,
                                                ty_trace **out) TY_NODISCARD;
TY_API ty_status ty_trace_end_record(ty_trace *tr, int nout, ty_tensor *const *outs) TY_NODISCARD;
TY_API ty_status ty_trace_begin_replay(ty_trace *tr, int nargs,
                                       ty_tensor *const *args) TY_NODISCARD;
TY_API ty_status ty_trace_end_replay(ty_trace *tr, int nout, ty_tensor *const *outs) TY_NODISCARD;
/* Replays without calling the function: args bound, externals read from the tensors seen when
 * recording; outs receive new references to the recorded outputs (trace(without_host=True)). */
TY_API ty_status ty_trace_run(ty_trace *tr, int nargs, ty_tensor *const *args, int nout,
                              ty_tensor **outs) TY_NODISCARD;
/* Stops a recording or replay of this thread without finishing it (after an exception). */
TY_API void ty_trace_abort(ty_trace *tr);
TY_API void ty_trace_release(ty_trace *tr);
/* Printable IR: a new malloc'd string (free with ty_free). */
TY_API ty_status ty_trace_dump(const ty_trace *tr, char **out) TY_NODISCARD;
TY_API int ty_trace_num_nodes(const ty_trace *tr);
/* Bytes of the arena that holds a replay's intermediates (0 before the first replay). */
TY_API int64_t ty_trace_arena_bytes(const ty_trace *tr);
/* What the graph passes did (counts of the last compile and call). */
typedef struct ty_trace_stats {
    int nodes;        /* recorded nodes */
    int executed;     /* nodes executed in the last call (fused members included) */
    int dead;         /* nodes skipped in the last call by dead-code elimination */
    int cse;          /* nodes computed by an earlier identical node */
    int folded;       /* nodes folded into constants when compiling */
    int fused_groups; /* elementwise groups (of two nodes or more) */
    int fused_nodes;  /* their members */
    int forwarded;    /* assigns whose source was computed in the destination (last call) */
    int64_t arena_bytes;
    int recomputed; /* forward nodes copied into backward blocks by sublinear memory */
} ty_trace_stats;
TY_API ty_status ty_trace_get_stats(const ty_trace *tr, ty_trace_stats *out) TY_NODISCARD;
/* Sublinear memory for a recording's backward blocks (set before ty_trace_end_record):
 * forward values are recomputed in the backward instead of kept, choosing Chen et al.'s
 * sqrt(n) segments among thresh_nr_try budgets (then genetic_nr_iter rounds of a mutation
 * search over genetic_pool_size keep-sets) by the planned arena peak; budgets below
 * lb_memory_bytes are not tried. Results stay bitwise those of the plain trace. */
TY_API ty_status ty_trace_set_sublinear(ty_trace *tr, int thresh_nr_try, int genetic_nr_iter,
                                        int genetic_pool_size,
                                        int64_t lb_memory_bytes) TY_NODISCARD;
/* DTR for a recording (trace(dtr_config=...)), decided when it is compiled: when the planned
 * arena peak passes eviction_threshold bytes, forward values are recomputed in the backward
 * (the sublinear pass's copies, same bits), choosing the plan with the fewest recomputed
 * nodes that stays under it (the lowest peak when none does); values under
 * evictee_minimum_size bytes are always kept. A threshold of 0 asks for the lowest peak. */
TY_API ty_status ty_trace_set_dtr(ty_trace *tr, int64_t eviction_threshold,
                                  int64_t evictee_minimum_size) TY_NODISCARD;
/* ty_trace_dump, or with after_passes the graph with dead, CSE'd, folded nodes and fused
 * groups marked. *out is freed with ty_free. */
TY_API ty_status ty_trace_dump_ex(const ty_trace *tr, int after_passes, char **out) TY_NODISCARD;
/* With TY_TRACE_DUMP=2 when compiled: the graph after each pass (borrowed; "" otherwise). */
TY_API const char *ty_trace_pass_log(const ty_trace *tr);
/* exclude_from_trace: while paused (nests), ops on this thread run eagerly, unrecorded. */
TY_API void ty_trace_pause(int on);
/* Marks t as made from a Python literal (a constant when traced). */
TY_API void ty_trace_mark_literal(ty_tensor *t);
/* Marks t as no longer held by the Python Tensor that held it (rebound by set_value): a
 * host-less trace reading it refuses to run rather than read stale values. */
TY_API void ty_trace_mark_replaced(ty_tensor *t);
TY_API void ty_free(void *p);

/* Random generator (the global one used by random ops). */
TY_API void ty_random_seed(uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
