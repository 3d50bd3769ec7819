/* tianyuan-run: loads a .tym model, feeds it inputs (.npy files or seeded random data), runs it
 * and prints its latency; writes the outputs as .npy. MegEngine users know it as load_and_run.
 * Exit status: 0 ok, 2 a usage error (with the usage), 1 a runtime error (with its message).
 * Everything read from files or the command line is checked; nothing here aborts or exits. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"
#include "runtime/npy.h"
#include "tianyuan/runtime.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, HELP = -1, MAX_INPUTS = 64 };
enum { DEFAULT_ITER = 10, DEFAULT_WARMUP = 1, MAX_ITER = 10000000, MAX_THREADS = 4096 };
/* Random inputs are reproducible: every run of the same command feeds the same data. */
static const uint64_t RANDOM_SEED = 42;

static const char USAGE[] =
    "usage: tianyuan-run MODEL.tym [options]\n"
    "  --input NAME=FILE.npy     feed input NAME from a .npy file (C order, the input's dtype)\n"
    "  --input NAME:{D0,D1,...}  feed input NAME random data of that shape: seeded (42), so\n"
    "                            every run feeds the same data; floats uniform in [-1, 1),\n"
    "                            integers uniform in [0, 10), bools 0 or 1. An input not given\n"
    "                            gets random data of its dumped shape when that shape is fixed\n"
    "  --output FILE.npy         write the (single) output\n"
    "  --output-dir DIR          write every output as DIR/<output name>.npy\n"
    "  --iter N                  timed runs (default 10)\n"
    "  --warmup-iter N           untimed runs before them (default 1)\n"
    "  --thread N                threads of the session (default: the library's)\n"
    "  --fast-run                algorithm policy PROFILE (MegEngine's fast-run): ops with\n"
    "                            several algorithms time them on the first call of each shape\n"
    "                            and keep the fastest, in the fastrun cache file\n"
    "                            (TY_FASTRUN_CACHE, else ~/.cache/tianyuan/fastrun.cache) that\n"
    "                            later runs read; an op the model recorded an algorithm for\n"
    "                            keeps it\n"
    "  --profile FILE.json       every timed run's per-op wall times as a Chrome trace (open\n"
    "                            it in Perfetto or chrome://tracing), the runs going through\n"
    "                            the plan as unprofiled ones do: a fused group (a conv with its\n"
    "                            batch norm and activation, say) is one event, named by its\n"
    "                            first op, its other ops listed in the event's args. Ops are\n"
    "                            named by their dumped names (trace.dump(keep_opr_name=True))\n"
    "                            or their types\n"
    "  --profile-ops             with --profile: the runs go op by op, unfused, each op\n"
    "                            timed alone\n"
    "  --model-info              print inputs, outputs, op counts by type, weight bytes and\n"
    "                            planned arena bytes (for the --input shapes; variable\n"
    "                            dimensions not given count as 1), then exit; with --verbose\n"
    "                            also every weight and op with its dumped name\n"
    "  --verbose                 print load time, where each input came from, the plan's\n"
    "                            arena, every run's time\n"
    "  --help                    print this message\n"
    "Prints min / median / p90 / max latency in milliseconds. Exit status: 0 ok, 1 runtime\n"
    "error, 2 usage error.\n";

typedef struct input_spec {
    const char *name; /* points into argv (the '=' or ':' is overwritten) */
    const char *path; /* NULL: random data of shape */
    int ndim;
    int64_t shape[TY_MAX_DIMS];
} input_spec;

typedef struct options {
    const char *model, *output, *output_dir, *profile;
    input_spec inputs[MAX_INPUTS];
    int ninputs, threads, fast_run, model_info, verbose, profile_ops;
    long iter, warmup;
} options;

static int
usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tianyuan-run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
    fputs(USAGE, stderr);
    return EXIT_USAGE;
}

static int
runtime_error(const char *what)
{
    if (what != NULL) {
        fprintf(stderr, "tianyuan-run: %s: %s\n", what, ty_last_error());
    } else {
        fprintf(stderr, "tianyuan-run: %s\n", ty_last_error());
    }
    return EXIT_RUNTIME;
}

/* A decimal integer in [lo, hi], the whole string. */
static int
parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return 0;
    }
    *out = v;
    return 1;
}

/* "{1,3,224,224}" (spaces allowed, "{}" is a scalar) into spec's shape. */
static int
parse_shape(const char *text, input_spec *spec)
{
    const char *p = text + 1; /* after '{' */
    spec->ndim = 0;
    while (*p == ' ') {
        p++;
    }
    if (strcmp(p, "}") == 0) {
        return 1;
    }
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno != 0 || end == p || v < 0 || spec->ndim == TY_MAX_DIMS || *p == '-' ||
            *p == '+') {
            return 0;
        }
        spec->shape[spec->ndim++] = v;
        for (p = end; *p == ' '; p++) {
        }
        if (*p == '}') {
            return p[1] == '\0';
        }
        if (*p++ != ',') {
            return 0;
        }
    }
}

static int
parse_input(char *text, options *o)
{
    if (o->ninputs == MAX_INPUTS) {
        return usage_error("more than %d --input options", MAX_INPUTS);
    }
    input_spec *spec = &o->inputs[o->ninputs];
    char *brace = strstr(text, ":{");
    char *eq = strchr(text, '=');
    spec->name = text;
    if (brace != NULL && (eq == NULL || brace < eq)) {
        *brace = '\0';
        spec->path = NULL;
        if (!parse_shape(brace + 1, spec)) {
            return usage_error("--input %s: '%s' is not a shape like {1,3,224,224} (at most %d "
                               "non-negative dimensions)",
                               text, brace + 1, TY_MAX_DIMS);
        }
    } else if (eq != NULL) {
        *eq = '\0';
        spec->path = eq + 1;
    } else {
        return usage_error("--input takes NAME=FILE.npy or NAME:{D0,D1,...}, not '%s'", text);
    }
    if (spec->name[0] == '\0' || (spec->path != NULL && spec->path[0] == '\0')) {
        return usage_error("--input needs a name and a file or a shape");
    }
    for (int i = 0; i < o->ninputs; i++) {
        if (strcmp(o->inputs[i].name, spec->name) == 0) {
            return usage_error("--input %s is given twice", spec->name);
        }
    }
    o->ninputs++;
    return EXIT_OK;
}

/* Options that take a value: "--opt value" or "--opt=value". */
static int
parse_valued(const char *opt, char *value, options *o)
{
    long v;
    if (strcmp(opt, "--input") == 0) {
        return parse_input(value, o);
    }
    if (strcmp(opt, "--output") == 0 || strcmp(opt, "--output-dir") == 0 ||
        strcmp(opt, "--profile") == 0) {
        const char **slot = strcmp(opt, "--profile") == 0  ? &o->profile
                            : strcmp(opt, "--output") == 0 ? &o->output
                                                           : &o->output_dir;
        if (value[0] == '\0') {
            return usage_error("%s needs a path", opt);
        }
        *slot = value;
        return EXIT_OK;
    }
    int is_iter = strcmp(opt, "--iter") == 0, is_warmup = strcmp(opt, "--warmup-iter") == 0;
    if (is_iter || is_warmup) {
        if (!parse_long(value, is_iter, MAX_ITER, &v)) {
            return usage_error("%s takes an integer from %d to %d, not '%s'", opt, is_iter,
                               MAX_ITER, value);
        }
        *(is_iter ? &o->iter : &o->warmup) = v;
        return EXIT_OK;
    }
    if (!parse_long(value, 1, MAX_THREADS, &v)) {
        return usage_error("--thread takes an integer from 1 to %d, not '%s'", MAX_THREADS, value);
    }
    o->threads = (int)v;
    return EXIT_OK;
}

static int
takes_value(const char *opt)
{
    static const char *const names[] = {"--input", "--output", "--output-dir", "--profile",
                                        "--iter",  "--warmup-iter", "--thread"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(opt, names[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
parse_flag(const char *arg, options *o)
{
    int *flag = strcmp(arg, "--fast-run") == 0     ? &o->fast_run
                : strcmp(arg, "--model-info") == 0 ? &o->model_info
                : strcmp(arg, "--verbose") == 0    ? &o->verbose
                : strcmp(arg, "--profile-ops") == 0 ? &o->profile_ops
                                                   : NULL;
    if (flag == NULL) {
        return usage_error("unknown option '%s'", arg);
    }
    *flag = 1;
    return EXIT_OK;
}

static int
parse_option(int argc, char **argv, int *i, options *o)
{
    char *arg = argv[*i];
    char *eq = strchr(arg, '=');
    if (eq != NULL) {
        *eq = '\0'; /* --opt=value */
        if (!takes_value(arg)) {
            return usage_error("option '%s' takes no value", arg);
        }
        return parse_valued(arg, eq + 1, o);
    }
    if (!takes_value(arg)) {
        return parse_flag(arg, o);
    }
    if (*i + 1 >= argc) {
        return usage_error("%s needs a value", arg);
    }
    return parse_valued(arg, argv[++*i], o);
}

static int
parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->iter = DEFAULT_ITER;
    o->warmup = DEFAULT_WARMUP;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return HELP;
        }
        int rc = EXIT_OK;
        if (strncmp(argv[i], "--", 2) == 0) {
            rc = parse_option(argc, argv, &i, o);
        } else if (o->model == NULL) {
            o->model = argv[i];
        } else {
            rc = usage_error("unexpected argument '%s' (one model only)", argv[i]);
        }
        if (rc != EXIT_OK) {
            return rc;
        }
    }
    if (o->model == NULL) {
        return usage_error("no model given");
    }
    if (o->output != NULL && o->output_dir != NULL) {
        return usage_error("--output and --output-dir exclude each other");
    }
    if (o->profile_ops && o->profile == NULL) {
        return usage_error("--profile-ops needs --profile FILE.json");
    }
    return EXIT_OK;
}

/* ---- model info ---- */

static void
print_io(const char *title, int n, const ty_model *model, int is_input)
{
    printf("%s (%d):\n", title, n);
    for (int i = 0; i < n; i++) {
        ty_io_info io;
        ty_status st = is_input ? ty_model_input(model, i, &io) : ty_model_output(model, i, &io);
        if (st != TY_OK) {
            printf("  #%d: %s\n", i, ty_last_error());
            continue;
        }
        char shape[TY_SHAPE_BUF];
        printf("  %s: %s %s\n", io.name, ty_dtype_name(io.dtype),
               ty_shape_str(io.ndim, io.shape, shape, sizeof shape));
    }
}

/* "ops: N" and one line per op type with its count, in order of first appearance. */
static void
print_op_counts(const ty_model *model)
{
    int n = ty_model_num_ops(model), ntypes = 0;
    printf("ops: %d\n", n);
    struct type_count {
        const char *type;
        int count;
    } *counts = calloc(n > 0 ? (size_t)n : 1, sizeof *counts);
    if (counts == NULL) {
        printf("  (out of memory counting op types)\n");
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *type = ty_model_op_type(model, i);
        type = type != NULL ? type : "?";
        int k = 0;
        while (k < ntypes && strcmp(counts[k].type, type) != 0) {
            k++;
        }
        counts[k].type = type;
        ntypes += k == ntypes;
        counts[k].count++;
    }
    for (int k = 0; k < ntypes; k++) {
        printf("  %s: %d\n", counts[k].type, counts[k].count);
    }
    free(counts);
}

static ty_status set_inputs(const options *o, const ty_model *model, ty_session *s,
                            int vary_as_one);

/* --verbose: every weight and op with its dumped name ("" unless trace.dump kept them). */
static void
print_names(const ty_model *model)
{
    printf("weights (%d):\n", ty_model_num_weights(model));
    for (int i = 0; i < ty_model_num_weights(model); i++) {
        ty_io_info w;
        char shape[TY_SHAPE_BUF];
        if (ty_model_weight(model, i, &w) == TY_OK) {
            printf("  #%d %s: %s %s\n", i, w.name[0] ? w.name : "(unnamed)",
                   ty_dtype_name(w.dtype), ty_shape_str(w.ndim, w.shape, shape, sizeof shape));
        }
    }
    printf("op list:\n");
    for (int i = 0; i < ty_model_num_ops(model); i++) {
        const char *name = ty_model_op_name(model, i);
        printf("  #%d %s%s%s\n", i, ty_model_op_type(model, i), name[0] ? " " : "", name);
    }
}

/* The arena the plan of the --input shapes (variable dimensions not given: 1) takes: one
 * run of a session plans it. */
static ty_status
planned_arena(const options *o, ty_model *model, int64_t *bytes)
{
    ty_session *s = NULL;
    TY_TRY(ty_session_new(model, &s));
    ty_status st = o->threads > 0 ? ty_session_set_threads(s, o->threads) : TY_OK;
    st = st == TY_OK ? set_inputs(o, model, s, 1) : st;
    st = st == TY_OK ? ty_session_run(s) : st;
    *bytes = ty_session_arena_bytes(s);
    ty_session_free(s);
    return st;
}

static int
print_model_info(const options *o, ty_model *model)
{
    printf("model: %s\n", o->model);
    print_io("inputs", ty_model_num_inputs(model), model, 1);
    print_io("outputs", ty_model_num_outputs(model), model, 0);
    printf("(-1 marks a dimension that may vary)\n");
    print_op_counts(model);
    printf("weight bytes: %lld\n", (long long)ty_model_weight_bytes(model));
    const char *meta = ty_model_metadata(model);
    printf("metadata: %s\n", meta != NULL && meta[0] ? meta : "(none)");
    if (o->verbose) {
        print_names(model);
    }
    int64_t arena = 0;
    if (planned_arena(o, model, &arena) != TY_OK) {
        printf("planned arena bytes: unknown (the model does not run)\n");
        return runtime_error("planning");
    }
    printf("planned arena bytes: %lld\n", (long long)arena);
    return EXIT_OK;
}

/* ---- inputs ---- */

static uint64_t
next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Element i of random data: floats uniform in [-1, 1), integers in [0, 10), bools 0/1. */
static void
store_random(void *data, int64_t i, ty_dtype dt, uint64_t *state)
{
    uint64_t bits = next_random(state);
    double u = (double)(bits >> 11) / 9007199254740992.0; /* [0, 1), 53 bits */
    char *p = (char *)data + i * (int64_t)ty_dtype_size(dt);
    if (dt == TY_BOOL) {
        *(unsigned char *)p = (unsigned char)(bits >> 63);
    } else if (ty_dtype_is_float(dt)) {
        ty_store_f64(p, dt, 2.0 * u - 1.0);
    } else {
        ty_store_f64(p, dt, (double)(int)(u * 10.0));
    }
}

/* Random data of spec's shape and dtype dt into a new buffer. */
static ty_status
random_input(const input_spec *spec, ty_dtype dt, int index, void **data, size_t *nbytes)
{
    uint64_t n = 1, size = ty_dtype_size(dt);
    for (int i = 0; i < spec->ndim; i++) {
        uint64_t d = (uint64_t)spec->shape[i];
        TY_CHECK(d == 0 || n <= (SIZE_MAX / size) / d, TY_ERR_SHAPE,
                 "the shape of input '%s' is too large", spec->name);
        n *= d;
    }
    *nbytes = (size_t)(n * size);
    *data = malloc(*nbytes ? *nbytes : 1);
    TY_CHECK(*data != NULL, TY_ERR_OOM, "out of memory for %zu bytes of input '%s'", *nbytes,
             spec->name);
    uint64_t state = RANDOM_SEED * 0x9E3779B97F4A7C15ull + (uint64_t)index + 1;
    for (uint64_t i = 0; i < n; i++) {
        store_random(*data, (int64_t)i, dt, &state);
    }
    return TY_OK;
}

/* The spec named like the model's input, or NULL. */
static const input_spec *
find_spec(const options *o, const char *name)
{
    for (int i = 0; i < o->ninputs; i++) {
        if (strcmp(o->inputs[i].name, name) == 0) {
            return &o->inputs[i];
        }
    }
    return NULL;
}

static ty_status
file_input(const input_spec *spec, const ty_io_info *io, ty_session *s, int verbose)
{
    ty_npy arr;
    TY_TRY(ty_npy_read_file(spec->path, &arr));
    ty_status st = TY_OK;
    if (arr.dtype != io->dtype) {
        st = ty_set_error(TY_ERR_DTYPE, "input '%s' is %s, '%s' holds %s", io->name,
                          ty_dtype_name(io->dtype), spec->path, ty_dtype_name(arr.dtype));
    } else {
        st = ty_session_set_input(s, io->name, arr.dtype, arr.ndim, arr.shape, arr.data,
                                  arr.nbytes);
    }
    if (st == TY_OK && verbose) {
        char shape[TY_SHAPE_BUF];
        printf("input %s: %s %s from %s\n", io->name, ty_dtype_name(arr.dtype),
               ty_shape_str(arr.ndim, arr.shape, shape, sizeof shape), spec->path);
    }
    ty_npy_free(&arr);
    return st;
}

/* The spec an input without --input gets: its dumped shape, which must be fixed unless
 * vary_as_one (--model-info) takes variable dimensions as 1. */
static ty_status
default_spec(const ty_io_info *io, int vary_as_one, input_spec *spec)
{
    TY_CHECK(io->ndim >= 0 && io->ndim <= TY_MAX_DIMS, TY_ERR_SHAPE,
             "input '%s' has %d dimensions", io->name, io->ndim);
    spec->name = io->name;
    spec->path = NULL;
    spec->ndim = io->ndim;
    for (int i = 0; i < io->ndim; i++) {
        spec->shape[i] = io->shape[i] < 0 && vary_as_one ? 1 : io->shape[i];
        TY_CHECK(spec->shape[i] >= 0, TY_ERR_SHAPE,
                 "input '%s' has a dimension that may vary: give it with --input %s=FILE.npy or "
                 "--input %s:{...}",
                 io->name, io->name, io->name);
    }
    return TY_OK;
}

static ty_status
random_input_set(const input_spec *spec, const ty_io_info *io, int index, ty_session *s,
                 int verbose)
{
    void *data = NULL;
    size_t nbytes = 0;
    TY_TRY(random_input(spec, io->dtype, index, &data, &nbytes));
    ty_status st = ty_session_set_input(s, io->name, io->dtype, spec->ndim, spec->shape, data,
                                        nbytes);
    free(data);
    if (st == TY_OK && verbose) {
        char shape[TY_SHAPE_BUF];
        printf("input %s: %s %s random (seed %llu)\n", io->name, ty_dtype_name(io->dtype),
               ty_shape_str(spec->ndim, spec->shape, shape, sizeof shape),
               (unsigned long long)RANDOM_SEED);
    }
    return st;
}

/* Every --input names an input of the model. */
static ty_status
check_input_names(const options *o, const ty_model *model)
{
    for (int i = 0; i < o->ninputs; i++) {
        int found = 0;
        for (int k = 0; k < ty_model_num_inputs(model) && !found; k++) {
            ty_io_info io;
            TY_TRY(ty_model_input(model, k, &io));
            found = strcmp(io.name, o->inputs[i].name) == 0;
        }
        TY_CHECK(found, TY_ERR_INVALID_ARG,
                 "the model has no input '%s' (tianyuan-run --model-info lists them)",
                 o->inputs[i].name);
    }
    return TY_OK;
}

static ty_status
set_inputs(const options *o, const ty_model *model, ty_session *s, int vary_as_one)
{
    TY_TRY(check_input_names(o, model));
    for (int k = 0; k < ty_model_num_inputs(model); k++) {
        ty_io_info io;
        TY_TRY(ty_model_input(model, k, &io));
        const input_spec *spec = find_spec(o, io.name);
        if (spec != NULL && spec->path != NULL) {
            TY_TRY(file_input(spec, &io, s, o->verbose));
            continue;
        }
        input_spec dflt;
        if (spec == NULL) {
            TY_TRY(default_spec(&io, vary_as_one, &dflt));
            spec = &dflt;
        }
        TY_TRY(random_input_set(spec, &io, k, s, o->verbose));
    }
    return TY_OK;
}

/* ---- runs and latency ---- */

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int
compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
print_latency(double *ms, long n, long warmup)
{
    qsort(ms, (size_t)n, sizeof *ms, compare_double);
    double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    long p90 = (9 * n + 9) / 10 - 1; /* nearest rank: ceil(0.9 n) - 1 */
    printf("latency over %ld runs (after %ld warm-up): min %.3f ms  median %.3f ms  "
           "p90 %.3f ms  max %.3f ms\n",
           n, warmup, ms[0], median, ms[p90], ms[n - 1]);
}

/* ---- --profile: a Chrome trace (JSON), one "X" event per run and per op ---- */

static void
json_string(FILE *f, const char *text)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* An event; its args, when given, are written as they are (a JSON object's members). */
static void
json_event(FILE *f, const char *name, const char *cat, double ts_us, double dur_us,
           const char *args, int *first)
{
    fputs(*first ? "\n" : ",\n", f);
    *first = 0;
    fputs("{\"name\": ", f);
    json_string(f, name);
    fprintf(f, ", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, \"pid\": 1, "
               "\"tid\": 1",
            cat, ts_us, dur_us);
    if (args != NULL) {
        fprintf(f, ", \"args\": {%s}", args);
    }
    fputc('}', f);
}

static const char *
op_label(const ty_model *model, int i)
{
    const char *type = ty_model_op_type(model, i), *name = ty_model_op_name(model, i);
    return name != NULL && name[0] ? name : type != NULL ? type : "?";
}

/* Appends text to buf[*n..cap) as the inside of a JSON string; stops where it would not fit. */
static void
json_append(char *buf, size_t cap, size_t *n, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p && *n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = (char)*p;
        } else if (*p < 0x20) {
            *n += (size_t)snprintf(buf + *n, cap - *n, "\\u%04x", *p);
        } else {
            buf[(*n)++] = (char)*p;
        }
    }
    buf[*n] = '\0';
}

/* The op's event args: its type and the ops fused into it ("fused": "bn1, relu1"), in buf
 * (the list cut short where buf is too small; still valid JSON). cap >= 64. */
static void
op_args(const ty_model *model, const ty_session *s, int head, char *buf, size_t cap)
{
    const char *type = ty_model_op_type(model, head);
    size_t n = (size_t)snprintf(buf, cap, "\"type\": \"");
    json_append(buf, cap - 2, &n, type != NULL ? type : "?");
    buf[n++] = '"';
    int fused = 0;
    for (int j = head + 1; j < ty_model_num_ops(model) && n + 16 < cap; j++) {
        if (ty_session_op_fused_into(s, j) == head) {
            n += (size_t)snprintf(buf + n, cap - n, "%s", fused++ ? ", " : ", \"fused\": \"");
            json_append(buf, cap - 2, &n, op_label(model, j));
        }
    }
    if (fused) {
        buf[n++] = '"';
    }
    buf[n] = '\0';
}

/* The run's event and its ops' events laid end to end from the run's start (ops run in order;
 * the runtime reports their durations). An op fused into another has no event of its own. */
static void
profile_run(FILE *f, const ty_model *model, const ty_session *s, long run, double start_ms,
            double run_ms, int *first)
{
    char title[32], args[1024];
    snprintf(title, sizeof title, "run %ld", run);
    json_event(f, title, "run", start_ms * 1e3, run_ms * 1e3, NULL, first);
    double ts_us = start_ms * 1e3;
    for (int i = 0; i < ty_model_num_ops(model); i++) {
        int64_t ns = ty_session_op_time_ns(s, i);
        if (ns < 0 || ty_session_op_fused_into(s, i) != i) {
            continue;
        }
        op_args(model, s, i, args, sizeof args);
        json_event(f, op_label(model, i), "op", ts_us, (double)ns * 1e-3, args, first);
        ts_us += (double)ns * 1e-3;
    }
}

static ty_status
profile_open(const char *path, int ops, ty_session *s, FILE **out)
{
    TY_TRY(ty_session_set_profiling(s, ops ? TY_PROFILE_OPS : TY_PROFILE_PLAN));
    *out = fopen(path, "w");
    TY_CHECK(*out != NULL, TY_ERR_IO, "--profile: cannot create '%s': %s", path, strerror(errno));
    fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [", *out);
    return TY_OK;
}

static ty_status
profile_close(const char *path, FILE *f)
{
    fputs("\n]}\n", f);
    int ok = !ferror(f);
    ok = (fclose(f) == 0) && ok;
    TY_CHECK(ok, TY_ERR_IO, "--profile: cannot write '%s'", path);
    return TY_OK;
}

static ty_status
run_timed(const options *o, const ty_model *model, ty_session *s, FILE *prof)
{
    for (long i = 0; i < o->warmup; i++) {
        TY_TRY(ty_session_run(s));
    }
    double *ms = malloc((size_t)o->iter * sizeof *ms);
    TY_CHECK(ms != NULL, TY_ERR_OOM, "out of memory for %ld timings", o->iter);
    int first_event = 1;
    double start = now_ms();
    for (long i = 0; i < o->iter; i++) {
        double t0 = now_ms();
        ty_status st = ty_session_run(s);
        ms[i] = now_ms() - t0;
        if (st != TY_OK) {
            free(ms);
            return st;
        }
        if (prof != NULL) {
            profile_run(prof, model, s, i, t0 - start, ms[i], &first_event);
        }
        if (o->verbose) {
            printf("run %ld: %.3f ms\n", i, ms[i]);
        }
    }
    print_latency(ms, o->iter, o->warmup);
    free(ms);
    return TY_OK;
}

/* ---- outputs ---- */

static ty_status
write_tensor(const char *path, const ty_tensor *t)
{
    ty_dtype dt = ty_tensor_dtype(t);
    size_t nbytes = (size_t)ty_tensor_numel(t) * ty_dtype_size(dt);
    void *buf = malloc(nbytes ? nbytes : 1);
    TY_CHECK(buf != NULL, TY_ERR_OOM, "out of memory for %zu bytes of output", nbytes);
    ty_status st = ty_tensor_copy_to(t, buf, nbytes);
    if (st == TY_OK) {
        st = ty_npy_write_file(path, dt, ty_tensor_ndim(t), ty_tensor_shape(t), buf, nbytes);
    }
    free(buf);
    return st;
}

/* DIR/<name>.npy; characters other than [A-Za-z0-9_.-] become '_', so a name from the model
 * file can never leave DIR (no '/', no leading '.'). */
static ty_status
output_path(const char *dir, const char *name, int index, char *out, size_t cap)
{
    char safe[128];
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < sizeof safe; p++) {
        int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                 (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || (*p == '.' && n > 0);
        safe[n++] = ok ? *p : '_';
    }
    safe[n] = '\0';
    int len = n ? snprintf(out, cap, "%s/%s.npy", dir, safe)
                : snprintf(out, cap, "%s/output_%d.npy", dir, index);
    TY_CHECK(len > 0 && (size_t)len < cap, TY_ERR_INVALID_ARG, "output path too long in '%s'",
             dir);
    return TY_OK;
}

static ty_status
describe_output(const ty_model *model, int i, const ty_tensor *t, const char *path)
{
    ty_io_info io;
    TY_TRY(ty_model_output(model, i, &io));
    char shape[TY_SHAPE_BUF];
    printf("output %s: %s %s%s%s\n", io.name, ty_dtype_name(ty_tensor_dtype(t)),
           ty_shape_str(ty_tensor_ndim(t), ty_tensor_shape(t), shape, sizeof shape),
           path ? " -> " : "", path ? path : "");
    return TY_OK;
}

static ty_status
write_outputs(const options *o, const ty_model *model, ty_session *s)
{
    int n = ty_model_num_outputs(model);
    TY_CHECK(o->output == NULL || n == 1, TY_ERR_INVALID_ARG,
             "--output writes one output, the model has %d: use --output-dir", n);
    if (o->output_dir != NULL) {
        TY_CHECK(mkdir(o->output_dir, 0777) == 0 || errno == EEXIST, TY_ERR_IO,
                 "cannot create '%s': %s", o->output_dir, strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        const ty_tensor *t;
        ty_io_info io;
        char path[4096];
        const char *dest = o->output;
        TY_TRY(ty_session_output(s, i, &t));
        TY_TRY(ty_model_output(model, i, &io));
        if (o->output_dir != NULL) {
            TY_TRY(output_path(o->output_dir, io.name, i, path, sizeof path));
            dest = path;
        }
        if (dest != NULL) {
            TY_TRY(write_tensor(dest, t));
        }
        TY_TRY(describe_output(model, i, t, dest));
    }
    return TY_OK;
}

/* ---- main ---- */

static ty_status
print_plan(const ty_session *s)
{
    ty_session_stats st;
    TY_TRY(ty_session_get_stats(s, &st));
    if (st.planned) {
        printf("plan: arena %lld bytes, %d fused groups of %d ops\n", (long long)st.arena_bytes,
               st.fused_groups, st.fused_ops);
    } else {
        printf("plan: none, the runs went op by op%s\n",
               ty_session_op_time_ns(s, 0) >= 0 ? " (profiling)" : "");
    }
    return TY_OK;
}

static ty_status
set_fast_run(ty_session *s)
{
    TY_TRY(ty_session_set_algo_policy(s, TY_ALGO_PROFILE));
    printf("--fast-run: algorithm policy PROFILE (choices profiled once per shape, cached)\n");
    return TY_OK;
}

static int
run_model(const options *o, ty_model *model)
{
    ty_session *s = NULL;
    if (ty_session_new(model, &s) != TY_OK) {
        return runtime_error("session");
    }
    int rc = EXIT_OK;
    FILE *prof = NULL;
    if (o->threads > 0 && ty_session_set_threads(s, o->threads) != TY_OK) {
        rc = runtime_error("--thread");
    } else if (o->fast_run && set_fast_run(s) != TY_OK) {
        rc = runtime_error("--fast-run");
    } else if (set_inputs(o, model, s, 0) != TY_OK) {
        rc = runtime_error(NULL);
    } else if (o->profile != NULL && profile_open(o->profile, o->profile_ops, s, &prof) != TY_OK) {
        rc = runtime_error(NULL);
    } else if (run_timed(o, model, s, prof) != TY_OK) {
        rc = runtime_error("run");
    } else if (o->verbose && print_plan(s) != TY_OK) {
        rc = runtime_error(NULL);
    } else if (write_outputs(o, model, s) != TY_OK) {
        rc = runtime_error(NULL);
    }
    if (prof != NULL && profile_close(o->profile, prof) != TY_OK && rc == EXIT_OK) {
        rc = runtime_error(NULL);
    }
    ty_session_free(s);
    return rc;
}

int
main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc == HELP) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (rc != EXIT_OK) {
        return rc;
    }
    ty_model *model = NULL;
    double t0 = now_ms();
    if (ty_model_load_file(o.model, &model) != TY_OK) {
        return runtime_error(o.model);
    }
    if (o.verbose) {
        printf("loaded %s in %.3f ms\n", o.model, now_ms() - t0);
    }
    if (o.model_info) {
        rc = print_model_info(&o, model);
    } else {
        rc = run_model(&o, model);
    }
    ty_model_free(model);
    return rc;
}
