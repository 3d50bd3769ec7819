/* The tracer's data structures, shared by the trace*.c files and the graph passes
 * (src/graph/passes/).
 * Private to src/graph and the bindings. */
#ifndef TY_TRACE_IMPL_H
#define TY_TRACE_IMPL_H

#include <stdlib.h>
#include <string.h>

#include "graph/ptrmap.h"
#include "ops/op.h"

enum vkind { V_ARG, V_EXTERNAL, V_CONST, V_NODE };
enum { MODE_IDLE = 0, MODE_RECORD = 1, MODE_REPLAY = 2 };

typedef struct gvalue {
    enum vkind kind;
    int index; /* ARG: argument position; NODE: node index */
    int out_index;
    ty_tensor *ref; /* CONST: the captured tensor (retained) */
    ty_meta meta;
} gvalue;

/* What the passes decided for a node (fixed when the recording is compiled). */
enum nstate {
    NS_EXEC = 0, /* executed (unless dead in a call) */
    NS_CSE,      /* same as an earlier node: its outputs are views of that node's outputs */
    NS_FOLDED,   /* inputs all constant: computed once when compiling */
};

typedef struct gnode {
    ty_op op;
    void *params;
    int nin, nout;
    int *in, *out;   /* value ids */
    int alias;       /* a view op whose outputs shared input 0's memory when recorded */
    int materialize; /* a view op that had to copy when recorded (reshape of a strided input) */
    int algo1;       /* fastrun's algorithm + 1 used by its first execution (0: none yet) */
    /* set by the passes */
    int state;            /* enum nstate */
    int canon;            /* NS_CSE: the earlier node it duplicates */
    int group;            /* fused elementwise group, or -1 */
    ty_ew_loop ew_loop; /* group members: the typed loop of the compute dtype */
    double ew_pv[2];       /* and its float params */
} gnode;

typedef struct gbackward {
    int start, end; /* nodes [start, end) are this backward's ops */
    int ny, nx;
    int *ys, *xs, *grads; /* value ids; grads[j] = -1 where there is no gradient */
} gbackward;

typedef struct gevent {
    int is_backward;
    int index;
} gevent;

/* A run of consecutive elementwise nodes executed block by block. */
typedef struct gfuse {
    int first, last; /* node indices; members are the nodes in between with group == id */
    int nnodes;
    int64_t numel; /* elements of every member's output */
    int head;      /* a float32 conv2d or conv_bias node (first) whose output the group
                      finishes tile by tile as the convolution writes it (ops/conv.h's tile
                      hook), or -1 */
} gfuse;

/* Pass switches (TY_TRACE_PASSES, a bit mask; all on by default). */
enum {
    TY_PASS_DCE = 1,
    TY_PASS_CSE = 2,
    TY_PASS_FOLD = 4,
    TY_PASS_FUSE = 8,
    TY_PASS_FORWARD = 16,
    TY_PASS_SUBLINEAR = 32, /* runs only where the trace has a sublinear config */
    TY_PASS_ALL = 63
};

/* trace(sublinear_memory_config=...): how the sublinear pass searches (sublinear.c). */
typedef struct ty_sublinear_cfg {
    int enabled;
    int thresh_nr_try;     /* candidate segment budgets tried around Chen's sqrt(n) */
    int genetic_nr_iter;   /* rounds of the mutation search after it (0: none) */
    int genetic_pool_size; /* keep-sets per round */
    int64_t lb_bytes;      /* the arena peak under which the cheapest recompute wins */
    int dtr;               /* trace(dtr_config=...): threshold is the bound instead */
    int64_t threshold;     /* DTR: the planned arena peak to stay under (0: the lowest) */
    int64_t min_drop;      /* DTR: values of fewer bytes are always kept */
} ty_sublinear_cfg;

/* The executor's hook (a profiled session's timer): before and after each executed node, in
 * order, after with its outputs computed (a fused group runs whole at its first member, so the
 * later members' calls come with nothing run between them; dead, folded and CSE'd nodes are
 * not executed). Either may be NULL; an error from after stops the run. */
typedef struct ty_trace_exec_hook {
    void (*before)(void *ud, struct ty_trace *tr, int node);
    ty_status (*after)(void *ud, struct ty_trace *tr, int node);
    void *ud;
} ty_trace_exec_hook;

struct ty_trace {
    gvalue *v;
    int nv, cap_v;
    gnode *n;
    int nn, cap_n;
    gevent *ev;
    int nev, cap_ev;
    gbackward *bw;
    int nbw, cap_bw;
    int nargs, nout;
    int *arg_vid, *out_vid;
    char why[256]; /* non-empty: the recording cannot be replayed, and why */
    /* per-call state */
    int mode, in_backward, cursor;
    ty_device_type device; /* where the recorded ops ran (their kernels are looked up there) */
    int symbolic;      /* recording without computing: outputs pending until end_record */
    ty_ptrmap map;     /* tensor -> value id */
    ty_tensor **bound; /* replay: the tensor of each value (new references) */
    ty_tensor **kept;  /* record: tensors retained so their addresses stay unique */
    int nkept, cap_kept;
    int ndropped;      /* record: kept[0, ndropped) had their data freed (drop_unheld) */
    int sweep_at;      /* record: nkept at which drop_unheld runs next ... */
    size_t kept_bytes; /* ... or when this many bytes were kept since it last ran */
    /* memory plan: intermediates that do not outlive a replay live in one reused arena */
    int *root;      /* per value: the value whose memory it uses (itself unless a view) */
    void *arena;
    size_t arena_size;
    int64_t arena_allocs; /* how often the arena had to be (re)allocated */
    /* the last plan, reused while the same values escape, live and fuse */
    char *plan_key;
    size_t *plan_off; /* per value: arena offset, or SIZE_MAX when not in the arena */
    /* passes (src/graph/passes/) */
    unsigned passes;    /* TY_PASS_* in effect */
    ty_tensor **folded; /* per value: the folded constant (retained), or NULL */
    gfuse *groups;
    int ngroups;
    char *live;    /* per node: executed in the last call (DCE) */
    char *scratch; /* per value: kept in a fused group's scratch block in the last call */
    char *gon;     /* per group: fused in the last call */
    int *fwd_src;  /* per node: the assign's source when it may be forwarded, or -1 */
    char *fwd_on;  /* per node: the assign is forwarded in this call */
    char *fwd_val; /* per value: computed straight into an assign's destination this call */
    int ncse, nfolded, nexecuted, ndead;
    /* calls without the host (run.c): after one full call, only the values that change per
     * call are bound anew, the others keep their tensors (and arena memory) */
    ty_trace_exec_hook exec_hook;
    ty_sublinear_cfg sublinear;
    int sublinear_done; /* the rewrite ran (a symbolic recording compiles twice) */
    int nrecomputed;    /* recompute copies it added to the backward blocks */
    char *pass_log; /* TY_TRACE_DUMP=2: the graph after each compile pass */
    int prepared;
    struct ty_fuse_cache **fcache; /* per group: its steps kept over host-less calls (fuse.c) */
    char *percall;         /* per value: bound anew on every call */
    int *percall_nodes;    /* the nodes with such outputs, in order */
    int npercall_nodes;
    struct glayout *layout; /* per value: the argument's or external's layout when prepared */
    _Atomic int busy;
};

/* Where a tensor's elements were when a host-less run was prepared. */
typedef struct glayout {
    const void *storage;
    int64_t offset;
    int64_t strides[TY_MAX_DIMS];
} glayout;

/* The tensor a value has in the current call: constants are their captured tensors. */
static inline ty_tensor *
ty_trace_value(ty_trace *tr, int vid)
{
    if (tr->v[vid].kind == V_CONST) {
        return tr->v[vid].ref;
    }
    return tr->bound[vid];
}

/* ---- the calling thread's trace (trace.c) ---- */
/* The trace this thread records or replays, or NULL. */
ty_trace *ty_trace_current(void);
/* Nonzero while ty_trace_pause holds: ops run eagerly and are neither recorded nor matched. */
int ty_trace_paused(void);
/* What a trace does with the tape's backward passes (dispatcher backward events): a
 * recording records them (begin, end); a replay computes them from the recording (replace). */
typedef struct ty_trace_bw_fns {
    ty_status (*replace)(ty_trace *tr, int ny, ty_tensor *const *ys, ty_tensor *const *dys,
                         int nx, ty_tensor *const *xs, ty_tensor **grads);
    ty_status (*begin)(ty_trace *tr, int ny, ty_tensor *const *ys, int nx, ty_tensor *const *xs);
    ty_status (*end)(ty_trace *tr, int nx, ty_tensor *const *grads);
} ty_trace_bw_fns;
/* Makes tr this thread's trace, handling backward passes with fns. */
void ty_trace_attach(ty_trace *tr, const ty_trace_bw_fns *fns);
/* Records one dispatcher call into tr (trace_record.c). */
ty_status ty_trace_record_call(ty_trace *tr, const ty_call *c, ty_tensor *const *out) TY_NODISCARD;
/* Registers the tracer with the dispatcher and takes its tensor extension slot (ty_init). */
ty_status ty_trace_init(void) TY_NODISCARD;
/* Fails unless ty_init registered the tracer. */
ty_status ty_trace_check_init(void) TY_NODISCARD;
/* The deferral of a value a trace computes later: reading it is a TraceError. */
extern const ty_deferral ty_trace_pending;
/* ty_trace_mark_literal / ty_trace_mark_replaced, read back. */
int ty_trace_is_literal(const ty_tensor *t);
int ty_trace_is_replaced(const ty_tensor *t);
/* Ends tr's recording or replay on this thread. */
void ty_trace_detach(ty_trace *tr);
/* Drops the tensors a recording retained, and the tensor -> value map. */
void ty_trace_release_kept(ty_trace *tr);

/* Room for a node's tensor pointers (concat takes any number of inputs): the caller's array
 * of TY_TRACE_SMALL_ARITY when n fit, else the heap; zeroed; NULL when out of memory. */
enum { TY_TRACE_SMALL_ARITY = 16 };
static inline ty_tensor **
ty_trace_ptrs(ty_tensor **small, int n)
{
    if (n > TY_TRACE_SMALL_ARITY) {
        return calloc((size_t)n, sizeof(ty_tensor *));
    }
    memset(small, 0, sizeof(ty_tensor *) * TY_TRACE_SMALL_ARITY);
    return small;
}

static inline void
ty_trace_ptrs_free(ty_tensor **small, ty_tensor **p)
{
    if (p != small) {
        free(p);
    }
}

int ty_trace_params_equal(ty_op op, const void *a, const void *b);
/* Recomputes root[] from the view nodes and the CSE'd nodes. */
void ty_trace_roots(ty_trace *tr);
/* Gives a pending storage its memory (values that are not in the arena). */
ty_status ty_trace_provide(ty_tensor *t) TY_NODISCARD;

/* ---- replay pieces shared by trace_replay.c, trace_plan.c, trace_exec.c and run.c ---- */
int ty_trace_meta_equal(const ty_meta *m, const ty_tensor *t);
/* Binds value vid to t (a new reference) and maps t to vid. */
ty_status ty_trace_bind(ty_trace *tr, int vid, ty_tensor *t) TY_NODISCARD;
/* The outputs of node ni for this call (new references): views, or pending placeholders. */
ty_status ty_trace_make_outputs(ty_trace *tr, int ni, ty_tensor *const *in,
                                ty_tensor **out) TY_NODISCARD;
/* Escape analysis, dead code, fusion and memory plan for the bound program, then the run. */
ty_status ty_trace_execute(ty_trace *tr, const char *forced) TY_NODISCARD;
/* The run alone, with the decisions of the last ty_trace_execute. */
ty_status ty_trace_exec_all(ty_trace *tr) TY_NODISCARD;
/* Drops every bound tensor (and a host-less run's prepared state). */
void ty_trace_release_bound(ty_trace *tr);

/* ---- passes ---- */
/* Runs the compile-time passes (CSE, constant folding, fusion groups) of mask (TY_PASS_*)
 * that TY_TRACE_PASSES allows, replacing what an earlier compile decided. */
ty_status ty_trace_compile(ty_trace *tr, unsigned mask) TY_NODISCARD;
/* Frees what compiling and the last call's plan allocated (the trace keeps its recording). */
void ty_trace_free_compiled(ty_trace *tr);
/* Per root: 1 where an in-place op writes it; 2 (or-ed) where it is returned or a gradient. */
ty_status ty_pass_pinned(const ty_trace *tr, char **out) TY_NODISCARD;
ty_status ty_pass_cse(ty_trace *tr) TY_NODISCARD;
ty_status ty_pass_fold(ty_trace *tr) TY_NODISCARD;
void ty_pass_fuse(ty_trace *tr);
/* Per call: live[] from the escaping roots (esc, by root). */
ty_status ty_pass_live(ty_trace *tr, const char *esc) TY_NODISCARD;
/* Per call: which groups fuse (gon[]) and which values need no memory (scratch[]). */
ty_status ty_fuse_prepare(ty_trace *tr, const char *esc) TY_NODISCARD;
/* Marks the assigns whose source may be computed in the destination (fwd_src). */
ty_status ty_pass_forward(ty_trace *tr) TY_NODISCARD;
/* Sublinear memory: copies of forward nodes in the backward blocks (sublinear.c). */
ty_status ty_pass_sublinear(ty_trace *tr) TY_NODISCARD;
/* Per call: which of them are forwarded (fwd_on, fwd_val). */
ty_status ty_forward_prepare(ty_trace *tr, const char *esc) TY_NODISCARD;
/* Points the forwarded sources' storage at their destinations. */
void ty_forward_apply(ty_trace *tr);
/* Drops the steps fused groups kept over host-less calls. */
void ty_fuse_forget(ty_trace *tr);
/* Executes fused group g (its members' memory is provided or planned). */
ty_status ty_fuse_run(ty_trace *tr, int g) TY_NODISCARD;
/* Executes node ni alone, as the executor does (trace_exec.c). */
ty_status ty_trace_exec_one(ty_trace *tr, int ni) TY_NODISCARD;

#endif
