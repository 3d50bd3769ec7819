/* The Tianyuan inference runtime: load a `.tym` model dumped by `trace.dump`, run it, read its
 * outputs. Links only libtianyuan_runtime (libc, libm, pthreads): no autodiff, no Python.
 *
 * A complete program (error handling shortened to one macro):
 *
 *     #include <stdio.h>
 *     #include "tianyuan/runtime.h"
 *
 *     #define CHECK(x) do { if ((x) != TY_OK) { fprintf(stderr, "%s\n", ty_last_error()); return 1; } } while (0)
 *
 *     int main(int argc, char **argv)
 *     {
 *         ty_model *model;
 *         ty_session *s;
 *         CHECK(ty_model_load_file(argv[1], &model));     // mmap; weights are not copied
 *         CHECK(ty_session_new(model, &s));               // any number per model, one per thread
 *         CHECK(ty_session_set_threads(s, 2));            // this session's own; optional
 *         ty_io_info in;
 *         CHECK(ty_model_input(model, 0, &in));           // name, dtype, shape (-1: variable)
 *         float x[1 * 1 * 28 * 28] = {0};
 *         int64_t shape[4] = {1, 1, 28, 28};
 *         CHECK(ty_session_set_input(s, in.name, TY_FLOAT32, 4, shape, x, sizeof x));
 *         CHECK(ty_session_run(s));                       // plans once per input shape
 *         const ty_tensor *y;                             // borrowed: valid until the next run
 *         CHECK(ty_session_output(s, 0, &y));
 *         const float *logits = ty_tensor_data(y);
 *         printf("%g\n", logits[0]);
 *         ty_session_free(s);
 *         ty_model_free(model);
 *         return 0;
 *     }
 *
 * Every function returns a ty_status and sets ty_last_error() on failure; nothing aborts. A
 * model file is hostile input: every size, offset, count, index, dtype, name and shape is
 * checked before use (docs/tym-format.md). How a run executes (plans per input shape, one
 * arena, fused elementwise chains, per-session threads): docs/runtime.md.
 */
#ifndef TIANYUAN_RUNTIME_H
#define TIANYUAN_RUNTIME_H

#include "tianyuan/tianyuan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded model: the graph and its weights, read-only and shared by its sessions. */
typedef struct ty_model ty_model;
/* One execution context of a model: its inputs, outputs and working memory. Use a session from
 * one thread at a time; make one session per thread to run a model concurrently. */
typedef struct ty_session ty_session;

/* Loads a model from a file (mapped into memory, weights used in place). */
TY_API ty_status ty_model_load_file(const char *path, ty_model **out) TY_NODISCARD;
/* Loads a model from memory. The buffer is copied unless borrow is nonzero, in which case the
 * caller keeps it alive and unchanged until ty_model_free. */
TY_API ty_status ty_model_load_buffer(const void *data, size_t nbytes, int borrow,
                                      ty_model **out) TY_NODISCARD;
/* Frees the model once its last session is freed (sessions keep it alive). NULL is a no-op. */
TY_API void ty_model_free(ty_model *model);

/* An input or output of the model. Pointers are borrowed from the model. */
typedef struct ty_io_info {
    const char *name;
    ty_dtype dtype;
    int ndim;
    const int64_t *shape; /* as dumped; -1 marks a dimension that may vary */
} ty_io_info;

TY_API int ty_model_num_inputs(const ty_model *model);
TY_API int ty_model_num_outputs(const ty_model *model);
TY_API ty_status ty_model_input(const ty_model *model, int i, ty_io_info *out) TY_NODISCARD;
TY_API ty_status ty_model_output(const ty_model *model, int i, ty_io_info *out) TY_NODISCARD;
/* Counts of the graph: ops, bytes of weights (for --model-info). */
TY_API int ty_model_num_ops(const ty_model *model);
TY_API int64_t ty_model_weight_bytes(const ty_model *model);
/* Op i's type (its ops.def name, e.g. "conv2d"), or NULL when i is out of range (borrowed). */
TY_API const char *ty_model_op_type(const ty_model *model, int i);
/* The weights: name as dumped (trace.dump(keep_param_name=True) stores the parameter's
 * name, e.g. "layer1.0.conv1.weight"; else ""), dtype and shape (borrowed). */
TY_API int ty_model_num_weights(const ty_model *model);
TY_API ty_status ty_model_weight(const ty_model *model, int i, ty_io_info *out) TY_NODISCARD;
/* Op i's name as dumped (trace.dump(keep_opr_name=True) stores one, else ""), or NULL when
 * i is out of range (borrowed). */
TY_API const char *ty_model_op_name(const ty_model *model, int i);
/* The metadata string the dump stored (user_info etc., JSON), or "" (borrowed). */
TY_API const char *ty_model_metadata(const ty_model *model);

/* A new session of model (which it keeps alive). Sessions share the model's weights. */
TY_API ty_status ty_session_new(ty_model *model, ty_session **out) TY_NODISCARD;
TY_API void ty_session_free(ty_session *s);
/* Sets an input by copying nbytes from data (C order, dtype dt). A shape other than the dumped
 * one is accepted where the input's dimensions may vary (-1 in ty_io_info.shape). */
TY_API ty_status ty_session_set_input(ty_session *s, const char *name, ty_dtype dt, int ndim,
                                      const int64_t *shape, const void *data,
                                      size_t nbytes) TY_NODISCARD;
/* As ty_session_set_input without copying: the caller keeps data (aligned to its dtype's
 * size) alive and unchanged until this input is set again or the session is freed. */
TY_API ty_status ty_session_set_input_borrowed(ty_session *s, const char *name, ty_dtype dt,
                                               int ndim, const int64_t *shape, void *data,
                                               size_t nbytes) TY_NODISCARD;
/* Runs the graph on the inputs set so far (every input must be set).
 *
 * Plans: a run executes through a plan of the inputs' shapes. The first run of a shape
 * signature (the shapes of all inputs together) infers every op's shapes once, groups chains
 * of elementwise ops into fused loops and places the intermediates in one arena (the memory
 * plan of traced Python functions, with the same kernels: the bits are eager's). Later runs of
 * that signature reuse the plan and its arena; another batch or image size makes another
 * plan. Each session caches the plans of its last 8 signatures (least recently used one
 * evicted); plans are not shared between sessions, as each holds its run's memory.
 * A shape the graph cannot take fails in the op that refuses it: the message names the op
 * (index, type, name) and the shapes of the inputs whose dimensions vary. A graph the planner
 * cannot take (an op whose output shape depends on values) and a profiled run execute op by
 * op, allocating each result and releasing the dead ones; they give the same bits. */
TY_API ty_status ty_session_run(ty_session *s) TY_NODISCARD;
/* Output i of the last run (borrowed: valid until the next run or ty_session_free). */
TY_API ty_status ty_session_output(ty_session *s, int i, const ty_tensor **out) TY_NODISCARD;
/* Threads this session's kernels may use, 1 to 1024, or 0: the library default
 * (ty_set_num_threads). The count is the session's own: sessions with different counts run
 * at once in their threads. Results never depend on it. */
TY_API ty_status ty_session_set_threads(ty_session *s, int nthreads) TY_NODISCARD;
/* The count a run of s uses now (its own, or the library default). */
TY_API int ty_session_threads(const ty_session *s);
/* The algorithm policy of this session's runs (ty_algo_policy in tianyuan.h; default
 * TY_ALGO_HEURISTIC). Honestly: every CPU algorithm is reproducible today and chosen from
 * shapes, params, dtype and ISA, so REPRODUCIBLE changes nothing, and PROFILE (fast-run:
 * timing the candidates) is not implemented yet and chooses as HEURISTIC does. */
TY_API ty_status ty_session_set_algo_policy(ty_session *s, ty_algo_policy policy) TY_NODISCARD;
TY_API ty_algo_policy ty_session_algo_policy(const ty_session *s);

/* Bytes of the arena planned for the last run's input shapes (0 before a run, or when the
 * last run went op by op). Outputs are not in it: each run gives them memory of their own. */
TY_API int64_t ty_session_arena_bytes(const ty_session *s);
/* What the session's plans did (for tests and tools). */
typedef struct ty_session_stats {
    int64_t plans_built; /* plans made: runs of a signature not in the cache */
    int64_t plan_hits;   /* runs that found their signature's plan in the cache */
    int cached_plans;    /* plans held now (at most 8) */
    int planned;         /* the last run went through a plan (0: op by op) */
    int64_t arena_bytes; /* ty_session_arena_bytes */
    int fused_groups;    /* the last run's plan: fused elementwise groups (two ops or more) */
    int fused_ops;       /* and the ops in them */
} ty_session_stats;
TY_API ty_status ty_session_get_stats(const ty_session *s, ty_session_stats *out) TY_NODISCARD;

/* Per-op timing (ty_model_op_type and ty_model_op_name name the ops). TY_PROFILE_PLAN: runs
 * go through the plan, as unprofiled ones do, and time each group of ops the plan runs as one
 * (a convolution with the batch norm and activation fused into it, say) as its first op,
 * the others fused into it; ops the plan folded or found dead take no time and are not
 * reported. TY_PROFILE_OPS: each run goes op by op, unfused (see ty_session_run), timing
 * every op alone. 0: off. The bits are the same in every mode. */
enum { TY_PROFILE_PLAN = 1, TY_PROFILE_OPS = 2 };
TY_API ty_status ty_session_set_profiling(ty_session *s, int mode) TY_NODISCARD;
/* Op i's wall time in the last profiled run, in nanoseconds (for a fused group's first op,
 * the whole group's; 0 for the ops fused into it); -1 when it did not run or nothing was
 * recorded. */
TY_API int64_t ty_session_op_time_ns(const ty_session *s, int i);
/* The op whose run computed op i in the last profiled run: i itself, or the first op of the
 * fused group i ran in; -1 when op i did not run or nothing was recorded. */
TY_API int ty_session_op_fused_into(const ty_session *s, int i);

/* ---- writing a model (trace.dump) ---- */
typedef struct ty_tym_dump_options {
    const char *const *input_names;  /* one per traced argument, or NULL: arg_0, arg_1, ... */
    const char *const *output_names; /* one per traced output, or NULL: output_0, ... */
    const char *metadata;            /* stored as is (JSON by convention), or NULL */
    /* Names of tensors the graph reads (trace.dump's keep_param_name / keep_opr_name): a
     * weight read from named[i] may be written as named_as[i] (at most 4096 bytes). */
    int nnamed;
    ty_tensor *const *named;
    const char *const *named_as;
    int keep_param_names; /* weights carry their names from named_as ("" when not named) */
    int keep_op_names;    /* ops are named "<scope>/<type>" when they read a weight named
                           * "<scope>.<leaf>", else "<type>_<position in the model>" */
} ty_tym_dump_options;
/* Serializes a finished recording of tr as a .tym model (docs/tym-format.md): its arguments
 * become the inputs, the tensors it read become weights holding their current values, and the
 * ops the outputs need become the graph (dead ones are dropped). Dimension 0 of the inputs
 * and outputs is marked variable when every op works item by item along it (reshapes of whole
 * items are rewritten to (-1, rest)) and the model runs at another batch size.
 * *data receives a new buffer of *nbytes bytes (free it with ty_free). */
TY_API ty_status ty_trace_dump_tym(const ty_trace *tr, const ty_tym_dump_options *opt,
                                   void **data, size_t *nbytes) TY_NODISCARD;

/* ---- rewriting a recording for inference (trace.dump's optimize_for_inference) ---- */
enum {
    TY_TYM_FOLD = 1,            /* constants and parameter-only ops computed now (same bits) */
    TY_TYM_CSE = 2,             /* duplicate nodes merged (same bits) */
    TY_TYM_FUSE_CONV_BIAS = 4,  /* conv2d + per-channel affine (BatchNorm) + act -> conv_bias */
    TY_TYM_FUSE_Z = 8,          /* and a residual add as its z (needs TY_TYM_FUSE_CONV_BIAS) */
    TY_TYM_IO16XC32 = 16,       /* float32 inputs and outputs become float16 */
};
/* What ty_tym_rewrite did: nodes folded into weights, merged, conv_bias ops made (with
 * BatchNorm or other scales folded into the weights, with a z), float16 edges. */
typedef struct ty_tym_rewrite_stats {
    int folded, cse, conv_bias, bn_folded, z_fused, io16;
} ty_tym_rewrite_stats;
/* A new recording (release it with ty_trace_release) holding tr's forward graph rewritten by
 * the TY_TYM_* flags, for ty_trace_dump_tym (docs/tym-format.md, "Rewrites"). */
TY_API ty_status ty_tym_rewrite(const ty_trace *tr, unsigned flags, ty_trace **out,
                                ty_tym_rewrite_stats *stats) TY_NODISCARD;

#ifdef __cplusplus
}
#endif

#endif
