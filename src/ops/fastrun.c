/* Fastrun (ops/fastrun.h): the chooser, its process cache and its cache file.
 *
 * The file (TY_FASTRUN_CACHE, else $XDG_CACHE_HOME/tianyuan/fastrun.cache, else
 * ~/.cache/tianyuan/fastrun.cache) is text: the line "tianyuan-fastrun 1", then one line per
 * choice, "op<TAB>key<TAB>algorithm name". Algorithms are stored by name, so a renumbering
 * never misreads a file. A writer takes an fcntl lock on "<file>.lock", merges the file's
 * choices with its own, writes a temporary file and renames it over the old one: readers
 * never see a torn file and concurrent writers keep the union. The file is hostile input:
 * anything but well-formed lines (bounded lengths, printable ASCII) makes it corrupt, which
 * is said once on stderr; it is then ignored and rewritten by the next choice.
 *
 * Tests never time: ty_fastrun_set_test_choice (or TY_FASTRUN_TEST_CHOICE, for tests that
 * run other processes) names the candidate profiling then picks, when it can run the call. */
#include "ops/fastrun.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/threadpool.h"
#include "kernels/cpu/gemm.h"

#define FILE_HEADER "tianyuan-fastrun 1"
enum {
    NAME_MAX_LEN = 32,
    FULL_KEY_MAX = TY_FASTRUN_KEY_MAX + 64,
    LINE_MAX_LEN = NAME_MAX_LEN * 2 + FULL_KEY_MAX + 8,
    FILE_MAX_ENTRIES = 1 << 14,
    FILE_MAX_BYTES = FILE_MAX_ENTRIES * LINE_MAX_LEN,
    PATH_LEN = 4096,
    /* Profiling rounds: each runs every candidate once, the first in turn, so a minute of
     * the machine running slow falls on all of them (on a shared host one layer's speed
     * drifts by 1.5x within seconds; timing one candidate's runs back to back then picked
     * MobileNetV2's 144 -> 32 1x1 GEMM at 1.49x the heuristic's kernel's time). At least
     * PROFILE_MIN_ROUNDS, more while the rounds so far took under PROFILE_MIN_SECONDS (small
     * layers, where one sample says least), at most PROFILE_MAX_ROUNDS. Each keeps its best. */
    PROFILE_MIN_ROUNDS = 3,
    PROFILE_MAX_ROUNDS = 15,
};
static const double PROFILE_MIN_SECONDS = 0.02;

typedef struct entry {
    char op[NAME_MAX_LEN], key[FULL_KEY_MAX], algo[NAME_MAX_LEN];
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry *entries;
static int nentries, cap_entries;
static atomic_int warned_corrupt;
static _Atomic int64_t profiles;
static char test_choice[NAME_MAX_LEN]; /* under lock */
static _Thread_local ty_fastrun_scope scope = {-1, -1};
static _Thread_local int last_chosen = -1;

/* ---- the process cache (callers hold lock) ---- */
static entry *
find_entry(const char *op, const char *key)
{
    for (int i = 0; i < nentries; i++) {
        if (strcmp(entries[i].op, op) == 0 && strcmp(entries[i].key, key) == 0) {
            return &entries[i];
        }
    }
    return NULL;
}

/* Stores a choice; replace: an existing one is overwritten (else kept). */
static void
put_entry(const char *op, const char *key, const char *algo, int replace)
{
    entry *e = find_entry(op, key);
    if (e && !replace) {
        return;
    }
    if (!e) {
        if (nentries == cap_entries) {
            int cap = cap_entries ? cap_entries * 2 : 64;
            entry *grown = realloc(entries, sizeof(entry) * (size_t)cap);
            if (!grown) {
                return; /* a choice not cached is profiled again: no error */
            }
            entries = grown;
            cap_entries = cap;
        }
        e = &entries[nentries++];
        snprintf(e->op, sizeof e->op, "%s", op);
        snprintf(e->key, sizeof e->key, "%s", key);
    }
    snprintf(e->algo, sizeof e->algo, "%s", algo);
}

/* ---- the file ---- */
static int
cache_path(char *buf, size_t n)
{
    const char *p = getenv("TY_FASTRUN_CACHE");
    if (p && p[0]) {
        return snprintf(buf, n, "%s", p) < (int)n;
    }
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0] == '/') {
        return snprintf(buf, n, "%s/tianyuan/fastrun.cache", xdg) < (int)n;
    }
    const char *home = getenv("HOME");
    if (home && home[0] == '/') {
        return snprintf(buf, n, "%s/.cache/tianyuan/fastrun.cache", home) < (int)n;
    }
    return 0;
}

static void
warn_corrupt(const char *path, const char *why)
{
    if (atomic_exchange(&warned_corrupt, 1) == 0) {
        fprintf(stderr, "tianyuan: fastrun cache %s ignored (%s); it will be rewritten\n", path,
                why);
    }
}

/* Whether s[0 .. n) is a non-empty field of printable ASCII without tabs, shorter than max. */
static int
field_ok(const char *s, size_t n, size_t max)
{
    if (n == 0 || n >= max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* Parses one line "op\tkey\talgo" (without its newline) into e; 0 when malformed. */
static int
parse_line(const char *s, size_t n, entry *e)
{
    const char *t1 = memchr(s, '\t', n);
    const char *t2 = t1 ? memchr(t1 + 1, '\t', n - (size_t)(t1 + 1 - s)) : NULL;
    if (!t2) {
        return 0;
    }
    size_t n1 = (size_t)(t1 - s), n2 = (size_t)(t2 - t1 - 1), n3 = n - (size_t)(t2 + 1 - s);
    if (!field_ok(s, n1, sizeof e->op) || !field_ok(t1 + 1, n2, sizeof e->key) ||
        !field_ok(t2 + 1, n3, sizeof e->algo)) {
        return 0;
    }
    memcpy(e->op, s, n1);
    e->op[n1] = 0;
    memcpy(e->key, t1 + 1, n2);
    e->key[n2] = 0;
    memcpy(e->algo, t2 + 1, n3);
    e->algo[n3] = 0;
    return 1;
}

/* Reads the whole file into a new buffer; 0 when it is missing, -1 when unreadable or too
 * big, else 1. */
static int
slurp(const char *path, char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return errno == ENOENT ? 0 : -1;
    }
    struct stat st;
    int big = fstat(fileno(f), &st) != 0 || st.st_size < 0 || st.st_size > FILE_MAX_BYTES;
    size_t cap = big ? 0 : (size_t)st.st_size + 1; /* one more: a file grown since is seen */
    char *buf = big ? NULL : malloc(cap);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    int bad = !buf || ferror(f) || n == cap;
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *data = buf;
    *size = n;
    return 1;
}

/* Parses data into a new array of entries; NULL with *why set when it is corrupt. */
static entry *
parse_file(const char *data, size_t size, int *count, const char **why)
{
    size_t hl = strlen(FILE_HEADER);
    *count = 0;
    if (size < hl + 1 || memcmp(data, FILE_HEADER "\n", hl + 1) != 0) {
        *why = "not a version-1 fastrun cache";
        return NULL;
    }
    size_t lines = 0;
    for (size_t i = hl + 1; i < size; i++) {
        lines += data[i] == '\n';
    }
    if (lines > FILE_MAX_ENTRIES) {
        *why = "too many lines";
        return NULL;
    }
    entry *out = malloc(sizeof(entry) * (lines + 1));
    *why = out ? NULL : "out of memory";
    for (size_t pos = hl + 1; out && pos < size;) {
        const char *nl = memchr(data + pos, '\n', size - pos);
        if (!nl || *count == (int)lines ||
            !parse_line(data + pos, (size_t)(nl - data - pos), &out[*count])) {
            *why = !nl ? "a line without its newline" : "a malformed line";
            free(out);
            return NULL;
        }
        (*count)++;
        pos = (size_t)(nl - data) + 1;
    }
    return out;
}

/* Adds the file's choices to the process cache (keeping the process's own). Returns 0 when
 * the file is corrupt (warned), else 1. Caller holds lock. */
static int
merge_file(const char *path)
{
    char *data = NULL;
    size_t size = 0;
    int got = slurp(path, &data, &size);
    if (got <= 0) {
        if (got < 0) {
            warn_corrupt(path, "unreadable or too large");
        }
        return got == 0;
    }
    int n = 0;
    const char *why = NULL;
    entry *es = parse_file(data, size, &n, &why);
    free(data);
    if (!es) {
        warn_corrupt(path, why);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        put_entry(es[i].op, es[i].key, es[i].algo, 0);
    }
    free(es);
    return 1;
}

/* Creates the folder holding path (and its parent), as mkdir -p would for two levels. */
static void
make_parent_dirs(const char *path)
{
    char dir[PATH_LEN];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            mkdir(dir, 0700); /* exists already: fine; fails otherwise: the open says so */
            *s = '/';
        }
    }
}

static int
write_entries(const char *tmp)
{
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        return 0;
    }
    int ok = fprintf(f, "%s\n", FILE_HEADER) > 0;
    for (int i = 0; ok && i < nentries; i++) {
        ok = fprintf(f, "%s\t%s\t%s\n", entries[i].op, entries[i].key, entries[i].algo) > 0;
    }
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    return fclose(f) == 0 && ok;
}

/* Merges the file into the process cache and writes the union back, under the lock file.
 * Failures leave the old file (the choice stays in the process cache). Caller holds lock. */
static void
save_file(void)
{
    char path[PATH_LEN], lockpath[PATH_LEN + 8], tmp[PATH_LEN + 32];
    if (!cache_path(path, sizeof path)) {
        return;
    }
    make_parent_dirs(path);
    snprintf(lockpath, sizeof lockpath, "%s.lock", path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(lockpath, O_RDWR | O_CREAT, 0600);
    if (fd < 0) {
        return;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int locked;
    while ((locked = fcntl(fd, F_SETLKW, &fl)) != 0 && errno == EINTR) {
    }
    if (locked == 0) {
        merge_file(path);
        if (write_entries(tmp) && rename(tmp, path) == 0) {
            tmp[0] = 0;
        }
        if (tmp[0]) {
            unlink(tmp);
        }
    }
    close(fd); /* releases the lock */
}

/* ---- choosing ---- */
static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int
algo_by_name(const ty_fastrun_desc *d, const char *name)
{
    for (int a = 0; a < d->nalgos; a++) {
        if ((d->usable >> a & 1) && strcmp(d->names[a], name) == 0) {
            return a;
        }
    }
    return -1;
}

/* Runs every usable candidate into scratch output and returns the fastest; another must
 * beat the heuristic's pick by 3% (noise keeps it). A test choice replaces the timing's
 * verdict (the heuristic's pick where it names no usable candidate): tests never time. */
static ty_status
profile(const ty_fastrun_desc *d, int *best)
{
    char forced[NAME_MAX_LEN];
    pthread_mutex_lock(&lock);
    memcpy(forced, test_choice, sizeof forced);
    pthread_mutex_unlock(&lock);
    const char *env = getenv("TY_FASTRUN_TEST_CHOICE"); /* the same for child processes */
    if (!forced[0] && env) {
        snprintf(forced, sizeof forced, "%s", env);
    }
    double t[TY_FASTRUN_MAX_ALGOS] = {0}, start = now_seconds();
    for (int r = 0; r < (forced[0] ? 1 : PROFILE_MAX_ROUNDS); r++) {
        if (r >= PROFILE_MIN_ROUNDS && now_seconds() - start >= PROFILE_MIN_SECONDS) {
            break;
        }
        for (int i = 0; i < d->nalgos; i++) {
            int a = (i + r) % d->nalgos;
            if (d->usable >> a & 1) {
                double t0 = now_seconds();
                TY_TRY(d->run(d->ctx, a, 1));
                double dt = now_seconds() - t0;
                t[a] = r == 0 || dt < t[a] ? dt : t[a];
            }
        }
    }
    *best = d->heuristic;
    double bar = t[d->heuristic] * 0.97;
    for (int a = 0; a < d->nalgos; a++) {
        if ((d->usable >> a & 1) && a != d->heuristic && t[a] < bar) {
            bar = t[a];
            *best = a;
        }
    }
    if (forced[0]) { /* the test's verdict; the heuristic's where it names none usable */
        int f = algo_by_name(d, forced);
        *best = f >= 0 ? f : d->heuristic;
    }
    atomic_fetch_add(&profiles, 1);
    return TY_OK;
}

static ty_status
choose_profiled(const ty_fastrun_desc *d, int *algo)
{
    char key[FULL_KEY_MAX], path[PATH_LEN], shapes[TY_FASTRUN_KEY_MAX];
    d->key(d->ctx, shapes, sizeof shapes);
    snprintf(key, sizeof key, "%s isa=%d threads=%d", shapes, (int)ty_gemm_get_isa(),
             ty_get_num_threads());
    pthread_mutex_lock(&lock);
    entry *e = find_entry(d->op, key);
    int a = e ? algo_by_name(d, e->algo) : -1;
    if (a < 0 && cache_path(path, sizeof path)) { /* another process may have chosen it */
        merge_file(path);
        e = find_entry(d->op, key);
        a = e ? algo_by_name(d, e->algo) : -1;
    }
    pthread_mutex_unlock(&lock);
    if (a >= 0) {
        *algo = a;
        return TY_OK;
    }
    TY_TRY(profile(d, algo));
    pthread_mutex_lock(&lock);
    put_entry(d->op, key, d->names[*algo], 1);
    save_file();
    pthread_mutex_unlock(&lock);
    return TY_OK;
}

ty_status
ty_fastrun_choose(const ty_fastrun_desc *d, int *algo)
{
    TY_CHECK(d->nalgos > 0 && d->nalgos <= TY_FASTRUN_MAX_ALGOS && d->heuristic >= 0 &&
                 d->heuristic < d->nalgos && (d->usable >> d->heuristic & 1),
             TY_ERR_INTERNAL, "%s: bad fastrun candidates", d->op);
    ty_algo_policy policy = ty_algo_policy_current();
    ty_fastrun_desc c = *d;
    if (policy & TY_ALGO_REPRODUCIBLE) { /* every algorithm of ours is: none removed today */
        c.usable &= d->reproducible;
        TY_CHECK(c.usable, TY_ERR_UNSUPPORTED, "%s: no reproducible algorithm for this call",
                 d->op);
        c.heuristic = c.usable >> d->heuristic & 1 ? d->heuristic : __builtin_ctz(c.usable);
    }
    int f = scope.forced;
    if (f >= 0 && f < c.nalgos && (c.usable >> f & 1)) {
        *algo = f;
    } else if ((policy & TY_ALGO_PROFILE) && c.run && c.key && c.usable != 1u << c.heuristic) {
        TY_TRY(choose_profiled(&c, algo));
    } else {
        *algo = c.heuristic;
        return TY_OK; /* the heuristic's pick: a rerun finds it again, nothing to record */
    }
    scope.chosen = *algo;
    last_chosen = *algo;
    return TY_OK;
}

int
ty_fastrun_forced(void)
{
    return scope.forced;
}

int
ty_fastrun_take_last(void)
{
    int a = last_chosen;
    last_chosen = -1;
    return a;
}

ty_fastrun_scope
ty_fastrun_scope_begin(int forced)
{
    ty_fastrun_scope saved = scope;
    scope.forced = forced;
    scope.chosen = -1;
    return saved;
}

int
ty_fastrun_scope_end(ty_fastrun_scope saved)
{
    int chosen = scope.chosen;
    scope = saved;
    return chosen;
}

int
ty_fastrun_algo_count(ty_op op)
{
    return op == TY_OP_CONV2D || op == TY_OP_CONV_BIAS ? ty_conv_fwd_algo_count() : 0;
}

/* ---- public (tianyuan.h) ---- */
void
ty_fastrun_set_test_choice(const char *algo)
{
    pthread_mutex_lock(&lock);
    snprintf(test_choice, sizeof test_choice, "%s", algo ? algo : "");
    pthread_mutex_unlock(&lock);
}

int64_t
ty_fastrun_profile_count(void)
{
    return atomic_load(&profiles);
}

void
ty_fastrun_forget(void)
{
    pthread_mutex_lock(&lock);
    nentries = 0;
    atomic_store(&warned_corrupt, 0);
    pthread_mutex_unlock(&lock);
}
