/* Private op machinery: the row type of the op table, the call record, hooks. */
#ifndef TY_OP_H
#define TY_OP_H

#include "core/core.h"

/* Flags in the op table (ops.def). */
enum {
    TY_F_BCAST = 1u << 0,   /* numpy broadcasting of inputs */
    TY_F_INPLACE = 1u << 1, /* output may reuse input 0's memory */
    TY_F_DIFF = 1u << 2,    /* differentiable: has a grad rule */
    TY_F_VIEW = 1u << 3,    /* forward returns views of input 0 (no allocation) */
    TY_F_DYN = 1u << 4,     /* output shape depends on values: forward allocates */
    TY_F_RANDOM = 1u << 5,  /* stateful: draws from the generator or communicates (the dist_*
                             * collectives); never folded, deduplicated, dropped or recomputed */
    TY_F_WRITES = 1u << 6,  /* writes into input 0 (in-place update): a side effect */
    /* The gradient rule reads only the shapes and dtypes of the float inputs / of the outputs,
     * so autodiff keeps no values for them (an elementwise row's formula says this itself). */
    TY_F_NO_SAVE_IN = 1u << 7,
    TY_F_NO_SAVE_OUT = 1u << 8,
};

typedef struct ty_meta {
    ty_dtype dtype;
    int ndim;
    int64_t shape[TY_MAX_DIMS];
} ty_meta;

/* One application of an op: what every infer/forward/grad function receives. */
typedef struct ty_call {
    ty_op op;
    const void *params; /* never NULL: defaults are filled in */
    int nin;
    ty_tensor *const *in;
    int nout;
} ty_call;

typedef ty_status (*ty_infer_fn)(const ty_call *c, ty_meta *out);
/* out[i] are preallocated contiguous tensors, except for TY_F_VIEW / TY_F_DYN ops,
 * whose forward stores new references into out[i]. */
typedef ty_status (*ty_forward_fn)(const ty_call *c, ty_tensor **out);
/* Gradient rule written with ty_apply: given the outputs and the output gradients (NULL where
 * an output got no gradient), store new references into gin[i], or NULL where input i gets none. */
typedef ty_status (*ty_grad_fn)(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                                ty_tensor **gin);

typedef struct ty_op_def {
    const char *name;
    const char *family;
    int nin, nout; /* -1: variadic */
    uint32_t flags;
    const ty_params_desc *params;
    ty_infer_fn infer;
    ty_forward_fn forward;
    ty_grad_fn grad;
} ty_op_def;

extern const ty_op_def ty_op_defs[TY_OP_COUNT];

/* Checks every field of a params struct against its params.def range. */
ty_status ty_params_check(const ty_params_desc *d, const void *params) TY_NODISCARD;

/* The forward kernel of op on a device, or NULL: the CPU column is the forward column of
 * ops.def; a backend adds its own column here instead of touching the op rows. */
ty_forward_fn ty_op_forward(ty_device_type dev, ty_op op);

/* Declarations of every function the table names. */
#define TY_OP(ENUM, name, family, nin, nout, params, flags, infer, fwd, grad)                     \
    ty_status infer(const ty_call *, ty_meta *);                                                   \
    ty_status fwd(const ty_call *, ty_tensor **);                                                  \
    ty_status grad(const ty_call *, ty_tensor *const *, ty_tensor *const *, ty_tensor **);
#define TY_NOGRAD ty_no_grad
#include "tianyuan/ops.def"
#undef TY_OP

/* ---- dispatcher hooks: the one place upper layers (the tape, the tracer) plug in ----
 * A backward pass of the autodiff tape is an event of the registry too: before it runs
 * (BEGIN) a hook may record it, or compute the gradients itself and set done (a traced
 * replay); after it (END) hooks see the gradients. */
typedef enum ty_backward_phase { TY_BACKWARD_BEGIN, TY_BACKWARD_END } ty_backward_phase;
typedef struct ty_backward_event {
    int ny;
    ty_tensor *const *ys;
    ty_tensor *const *dys;
    int nx;
    ty_tensor *const *xs;
    ty_tensor **grads; /* nx slots: new references, NULL where x got no gradient */
    int done;          /* set by a BEGIN hook that computed grads itself */
} ty_backward_event;

/* What a hook is, so that a caller can suspend one kind on its thread (a traced replay
 * suspends autodiff recording: its backward is replayed as recorded ops). */
enum { TY_HOOK_AUTODIFF = 1u << 0, TY_HOOK_TRACE = 1u << 1, TY_HOOK_DTR = 1u << 2 };

typedef struct ty_hook {
    /* after every successful ty_apply (may be NULL) */
    ty_status (*after)(void *ud, const ty_call *c, ty_tensor *const *out);
    void *ud;
    uint32_t kind; /* TY_HOOK_* (0: never suspended) */
    ty_status (*backward)(void *ud, ty_backward_phase phase, ty_backward_event *ev);
    /* before an eager call runs (may be NULL), then its inputs are made readable: DTR marks
     * them in use and keeps what an in-place write would make unrecomputable */
    ty_status (*before)(void *ud, const ty_call *c);
} ty_hook;
ty_status ty_hook_add(const ty_hook *h) TY_NODISCARD;
void ty_hook_remove(const ty_hook *h);
/* Nonzero when a ty_apply on this thread would reach no interceptor and no live hook other
 * than ones of the given kinds: a fused kernel that bypasses the dispatcher (the optimizer's
 * update) may run only then, after checking those kinds are idle itself. */
int ty_dispatch_only_hooks(uint32_t kinds);
/* Announces a phase of a backward pass to every hook (in registration order); a BEGIN
 * stops at the first hook that sets ev->done. */
ty_status ty_hooks_backward(ty_backward_phase phase, ty_backward_event *ev) TY_NODISCARD;
/* Suspends (on) or resumes the hooks of the given kinds on this thread. */
void ty_hooks_suspend(uint32_t kinds, int on);

/* The replay interceptor: when set on this thread, ty_apply hands each call to it instead
 * of running it (a traced replay matches calls against its recording). */
typedef ty_status (*ty_intercept_fn)(void *ud, const ty_call *c, ty_tensor **out);
void ty_set_intercept(ty_intercept_fn fn, void *ud);
/* Whether this thread is inside an op's forward (an op applied from a forward is nested): a
 * hook must not take memory its caller's forward still reads. */
int ty_in_forward(void);
/* Whether any thread is inside a dispatched op's forward (its kernels, their worker threads). */
int ty_forwards_in_flight(void);
/* Runs a call for real: infer, allocate, forward, hooks (what ty_apply does normally). */
ty_status ty_run_call(const ty_call *c, ty_tensor **out) TY_NODISCARD;
/* Runs a call without computing (symbolic tracing): outputs are views, or tensors of the
 * inferred meta deferred for `why`, whose data the caller computes later; hooks run as usual. */
ty_status ty_run_call_lazy(const ty_call *c, const ty_deferral *why,
                           ty_tensor **out) TY_NODISCARD;
/* Whether a view op's forward would copy for these inputs (a reshape the layout forbids). */
int ty_view_copies(const ty_call *c);

/* ---- convenience wrappers over ty_apply for use inside ops and grad rules ---- */
ty_status ty_op1(ty_op op, const void *p, ty_tensor *a, ty_tensor **out) TY_NODISCARD;
ty_status ty_op2(ty_op op, const void *p, ty_tensor *a, ty_tensor *b, ty_tensor **out) TY_NODISCARD;
ty_status ty_op3(ty_op op, const void *p, ty_tensor *a, ty_tensor *b, ty_tensor *c,
                 ty_tensor **out) TY_NODISCARD;
/* 0-d tensor holding value. */
ty_status ty_scalar(ty_dtype dt, double value, ty_tensor **out) TY_NODISCARD;
/* Sums g over broadcast dimensions so that it has shape (ndim, shape): the adjoint of
 * broadcasting, used by every broadcasting grad rule. Returns a new reference. */
ty_status ty_sum_to_shape(ty_tensor *g, int ndim, const int64_t *shape,
                          ty_tensor **out) TY_NODISCARD;

/* Broadcast shapes a and b (numpy rules) into out; TY_ERR_SHAPE when incompatible. */
ty_status ty_broadcast_shapes(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                              int64_t *out) TY_NODISCARD;
/* Normalise axis into [0, ndim); TY_ERR_INDEX naming the op when out of range. */
ty_status ty_norm_axis(int64_t axis, int ndim, int *out) TY_NODISCARD;
void ty_meta_of(const ty_tensor *t, ty_meta *m);
/* Elements and bytes of a value of meta m (shapes already checked by inference). */
int64_t ty_meta_numel(const ty_meta *m);
size_t ty_meta_nbytes(const ty_meta *m);
/* The first two float params of an elementwise op (leaky_relu's slope, clip's bounds), as
 * its typed loop takes them. */
void ty_elemw_float_params(ty_op op, const void *params, double pv[2]);
/* Inputs of an elementwise op (where included). */
enum { TY_ELEMW_MAX_IN = 3 };
/* The dtype elementwise op `op` computes in for inputs of dtypes in[0..nin): their
 * promotion, then bool for logic ops, float32 for float-only math on integers, int32 for
 * arithmetic on bools. The unfused forward and fusion both pick their loop by it, so a fused
 * group computes bitwise what eager execution computes. */
ty_dtype ty_elemw_compute_dtype(ty_op op, int nin, const ty_dtype *in);

/* The inner loop of an elementwise kernel: p[0] is the output, p[1..] the inputs, s[i] their
 * strides in elements, pv the op's float params. Same signature on every device. */
typedef void (*ty_ew_loop)(int64_t n, char *const *p, const int64_t *s, const double *pv);
typedef struct ty_ew_kernel {
    ty_ew_loop loop;  /* NULL: not a plain elementwise op on this device at these dtypes */
    ty_dtype compute; /* the dtype the loop reads its inputs as (no cast inside) */
    ty_dtype out;     /* the output dtype (bool for comparisons and predicates) */
    double pv[2];     /* the op's float params */
} ty_ew_kernel;
/* The loop that op's unfused forward runs on dev for inputs of these dtypes: the per-device
 * lookup the graph's fusion pass uses, so a fused group runs the very loops eager runs. */
void ty_elemw_kernel(ty_device_type dev, ty_op op, const void *params, int nin,
                     const ty_dtype *in, ty_ew_kernel *out);

/* Runs the forward kernel of c on the device of its inputs: no inference, allocation or
 * hooks (the graph's executor, which planned outputs itself). */
ty_status ty_call_forward(const ty_call *c, ty_tensor **out) TY_NODISCARD;

#endif
