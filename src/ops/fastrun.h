/* Fastrun: the one algorithm chooser for ops with more than one algorithm.
 *
 * A call describes its candidates (names, which are usable for this call, the heuristic's
 * pick) and a key (op, shapes, params, dtype); the chooser adds the ISA and thread count.
 * Under HEURISTIC it returns the heuristic's pick. Under PROFILE it times every usable
 * candidate on the actual call (into scratch output, a few repetitions), keeps the fastest in
 * a process cache and in the cache file (fastrun.c: location, format, concurrent writers),
 * and returns it; a later call or process with the same key takes the cached choice.
 *
 * A choice made by profiling depends on timing, so a rerun may not find it again: a trace
 * node records it, and a dumped model stores it (the heuristic's picks are found again from
 * the shapes and are not recorded, so a model run at another batch size chooses as eager
 * would). A node's executor wraps its call in ty_fastrun_scope_begin/end, which forces the
 * recorded choice (and reports a profiled one when the node carried none), so eager, traced
 * and deployed runs use the same algorithm and give the same bits. A recorded algorithm
 * that cannot run the call (a model run at another batch size may exceed Winograd's
 * workspace bound) gives way to the policy's choice. The REPRODUCIBLE flag keeps only the
 * candidates marked reproducible: every algorithm here is, so it removes none today. */
#ifndef TY_OPS_FASTRUN_H
#define TY_OPS_FASTRUN_H

#include "ops/op.h"

enum { TY_FASTRUN_MAX_ALGOS = 8, TY_FASTRUN_KEY_MAX = 256 };

/* Runs algorithm algo of the call described by ctx, into scratch output when scratch. */
typedef ty_status (*ty_fastrun_run_fn)(void *ctx, int algo, int scratch);

typedef struct ty_fastrun_desc {
    const char *op;        /* the op's name, for the cache and error messages */
    /* writes the key: shapes, params, dtype, what the choice depends on (PROFILE only) */
    void (*key)(const void *ctx, char *buf, size_t n);
    int nalgos;            /* names[0 .. nalgos) */
    const char *const *names;
    unsigned usable;       /* bit a: algorithm a can run this call */
    unsigned reproducible; /* bit a: a gives the same bits on every run and thread count */
    int heuristic;         /* a usable algorithm */
    ty_fastrun_run_fn run; /* PROFILE only */
    void *ctx;
} ty_fastrun_desc;

/* The algorithm to run for d: the one a node forces where it can run the call, else the
 * calling thread's policy's. */
ty_status ty_fastrun_choose(const ty_fastrun_desc *d, int *algo) TY_NODISCARD;

/* How many algorithms op chooses between (0: the op has no choice). The range a recorded
 * algorithm of a node of that op must lie in. */
int ty_fastrun_algo_count(ty_op op);
/* The forward convolution's algorithms (conv.c; conv2d and conv_bias choose among them). */
int ty_conv_fwd_algo_count(void);

/* A node's execution: forced is the algorithm the node recorded (-1: none). The forced or
 * profiled choice (-1: none, or the heuristic's) is returned by ty_fastrun_scope_end. Scopes
 * nest. */
typedef struct ty_fastrun_scope {
    int forced, chosen;
} ty_fastrun_scope;
ty_fastrun_scope ty_fastrun_scope_begin(int forced);
int ty_fastrun_scope_end(ty_fastrun_scope saved);

/* The calling thread's last forced or profiled choice since the previous take (-1: none),
 * then forgotten: how an eagerly recorded node learns the algorithm its call used. */
int ty_fastrun_take_last(void);
/* The calling thread's forced algorithm (-1: none): what a node recorded symbolically while
 * a model's op carrying one runs (a runtime session's plan) keeps. */
int ty_fastrun_forced(void);

#endif
