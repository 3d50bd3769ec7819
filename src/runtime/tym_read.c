/* The .tym reader: checks every byte of a hostile file before use (docs/tym-format.md) and
 * builds the model: weights as tensors over the file's memory, ops with their params. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tym.h"

/* A bounded cursor over the graph section; every read checks the bytes left. */
typedef struct cursor {
    const unsigned char *p;
    size_t n, pos;
} cursor;

static ty_status
bad(const cursor *c, const char *what)
{
    return ty_set_error(TY_ERR_FORMAT, "model: %s (graph byte %zu)", what, c->pos);
}

static ty_status
take(cursor *c, size_t n, const unsigned char **out)
{
    if (n > c->n - c->pos) {
        return bad(c, "the graph section ends early (truncated or corrupt file)");
    }
    *out = c->p + c->pos;
    c->pos += n;
    return TY_OK;
}

static uint64_t
le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) {
        v = (v << 8) | b[i];
    }
    return v;
}

static ty_status
get_uint(cursor *c, int n, uint64_t *out)
{
    const unsigned char *b = NULL;
    TY_TRY(take(c, (size_t)n, &b));
    *out = le(b, n);
    return TY_OK;
}

static ty_status
get_u32(cursor *c, uint32_t *out)
{
    uint64_t v = 0;
    TY_TRY(get_uint(c, 4, &v));
    *out = (uint32_t)v;
    return TY_OK;
}

static ty_status
get_i64(cursor *c, int64_t *out)
{
    uint64_t v = 0;
    TY_TRY(get_uint(c, 8, &v));
    memcpy(out, &v, sizeof v);
    return TY_OK;
}

/* A count of records of at least min_bytes each: bounded by the bytes left, so a huge count
 * fails here instead of in an allocation. */
static ty_status
get_count(cursor *c, size_t min_bytes, const char *what, uint32_t *out)
{
    TY_TRY(get_u32(c, out));
    if (*out > (c->n - c->pos) / min_bytes || *out > INT_MAX / 4) {
        return ty_set_error(TY_ERR_FORMAT, "model: %u %s cannot fit in the %zu bytes left "
                                           "(graph byte %zu)",
                            *out, what, c->n - c->pos, c->pos);
    }
    return TY_OK;
}

static int
valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (len == 0 || b == 0 || len > n - i) {
            return 0;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return 0;
            }
        }
        i += len;
    }
    return 1;
}

/* A new NUL-terminated copy of a string field of at most max bytes. */
static ty_status
get_str(cursor *c, size_t max, const char *what, char **out)
{
    uint32_t n = 0;
    const unsigned char *b = NULL;
    TY_TRY(get_u32(c, &n));
    if (n > max) {
        return ty_set_error(TY_ERR_FORMAT, "model: %s is %u bytes long, more than %zu "
                                           "(graph byte %zu)",
                            what, n, max, c->pos);
    }
    TY_TRY(take(c, n, &b));
    if (!valid_utf8(b, n)) {
        return bad(c, "a name is not valid UTF-8");
    }
    *out = malloc((size_t)n + 1);
    TY_CHECK(*out, TY_ERR_OOM, "model: out of memory");
    memcpy(*out, b, n);
    (*out)[n] = 0;
    return TY_OK;
}

static ty_status
get_dtype(cursor *c, ty_dtype *out)
{
    char *name = NULL;
    TY_TRY(get_str(c, 32, "a dtype name", &name));
    ty_status st = ty_dtype_from_name(name, out);
    if (st != TY_OK) {
        st = ty_set_error(TY_ERR_FORMAT, "model: unknown dtype '%s' (graph byte %zu)", name,
                          c->pos);
    }
    free(name);
    return st;
}

/* A shape: dims >= min_dim (-1 marks a dimension that may vary). The product of its dims
 * (0 and -1 taken as 1) stays within a tensor's element limit, since strides are computed from
 * it even when a dimension is 0. */
static ty_status
get_shape(cursor *c, int64_t min_dim, int *ndim, int64_t *shape)
{
    uint64_t nd = 0;
    int64_t span = 1;
    TY_TRY(get_uint(c, 1, &nd));
    if (nd > TY_MAX_DIMS) {
        return bad(c, "a shape has more than 8 dimensions");
    }
    *ndim = (int)nd;
    for (int i = 0; i < *ndim; i++) {
        TY_TRY(get_i64(c, &shape[i]));
        if (shape[i] < min_dim || shape[i] > ((int64_t)1 << 48)) {
            return bad(c, "a dimension is out of range");
        }
        if (__builtin_mul_overflow(span, shape[i] > 0 ? shape[i] : 1, &span) ||
            span > ((int64_t)1 << 56)) {
            return bad(c, "a shape has too many elements");
        }
    }
    return TY_OK;
}

/* An input or output: name, (outputs, nvalues >= 0: the value id, below nvalues), dtype,
 * shape. */
static ty_status
get_io(cursor *c, int64_t min_dim, tym_io *io, const tym_io *earlier, int nearlier,
       const char *what, int nvalues)
{
    TY_TRY(get_str(c, TYM_NAME_MAX, "a name", &io->name));
    if (!io->name[0]) {
        return ty_set_error(TY_ERR_FORMAT, "model: %s %d has an empty name", what, nearlier);
    }
    for (int i = 0; i < nearlier; i++) {
        if (strcmp(earlier[i].name, io->name) == 0) {
            return ty_set_error(TY_ERR_FORMAT, "model: two %ss are named '%s'", what, io->name);
        }
    }
    if (nvalues >= 0) {
        uint32_t vid = 0;
        TY_TRY(get_u32(c, &vid));
        if (vid >= (uint32_t)nvalues) {
            return ty_set_error(TY_ERR_FORMAT, "model: output '%s' is value %u, which the "
                                               "model does not define", io->name, vid);
        }
        io->vid = (int)vid;
    }
    TY_TRY(get_dtype(c, &io->dtype));
    return get_shape(c, min_dim, &io->ndim, io->shape);
}

static ty_status
read_inputs(cursor *c, ty_model *m)
{
    uint32_t n = 0;
    TY_TRY(get_count(c, 9, "inputs", &n));
    m->inputs = calloc(n ? n : 1, sizeof(tym_io));
    TY_CHECK(m->inputs, TY_ERR_OOM, "model: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        m->ninputs++; /* counted first: a name read before a later error is freed too */
        m->inputs[i].vid = (int)i;
        TY_TRY(get_io(c, -1, &m->inputs[i], m->inputs, (int)i, "input", -1));
    }
    m->nvalues = m->ninputs;
    return TY_OK;
}

/* Checked element count x dtype size of a shape. */
static ty_status
shape_bytes(int ndim, const int64_t *shape, ty_dtype dt, uint64_t *out)
{
    uint64_t n = ty_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) {
            return ty_set_error(TY_ERR_FORMAT, "model: a weight's size overflows");
        }
    }
    *out = n;
    return TY_OK;
}

typedef struct data_section {
    unsigned char *base;
    uint64_t size;
    uint64_t end; /* where the last weight ended */
} data_section;

/* A weight storage's deleter: drops its reference to the file's memory. */
static void
release_region(void *region)
{
    ty_tym_region_unref(region);
}

static ty_status
wrap_weight(ty_model *m, const tym_io *w, unsigned char *ptr, uint64_t nbytes, ty_tensor **out)
{
    int64_t strides[TY_MAX_DIMS];
    int64_t s = 1;
    for (int d = w->ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= w->shape[d] > 0 ? w->shape[d] : 1;
    }
    atomic_fetch_add(&m->region->refs, 1);
    ty_status st = ty_tensor_wrap(w->dtype, w->ndim, w->shape, strides, ptr, (size_t)nbytes,
                                  release_region, m->region, out);
    if (st != TY_OK) {
        atomic_fetch_sub(&m->region->refs, 1);
        return st;
    }
    (*out)->storage->constant = true; /* kernels may keep what they derive from it */
    return TY_OK;
}

static ty_status
read_weight(cursor *c, ty_model *m, data_section *ds, int i)
{
    tym_io w = {0};
    int64_t off = 0, nbytes = 0;
    uint64_t want = 0;
    TY_TRY(get_str(c, TYM_NAME_MAX, "a weight name", &w.name));
    m->weight_names[i] = w.name; /* the model frees it */
    TY_TRY(get_dtype(c, &w.dtype));
    TY_TRY(get_shape(c, 0, &w.ndim, w.shape));
    TY_TRY(get_i64(c, &off));
    TY_TRY(get_i64(c, &nbytes));
    TY_TRY(shape_bytes(w.ndim, w.shape, w.dtype, &want));
    if (nbytes < 0 || (uint64_t)nbytes != want) {
        return ty_set_error(TY_ERR_FORMAT, "model: weight %d declares %lld bytes, its shape "
                                           "needs %llu", i, (long long)nbytes,
                            (unsigned long long)want);
    }
    if (off < 0 || off % TYM_ALIGN || (uint64_t)off < ds->end || (uint64_t)off > ds->size ||
        (uint64_t)nbytes > ds->size - (uint64_t)off) {
        return ty_set_error(TY_ERR_FORMAT, "model: weight %d's data [%lld, +%lld) is not a "
                                           "64-aligned range after the previous weight inside "
                                           "the %llu-byte data section",
                            i, (long long)off, (long long)nbytes, (unsigned long long)ds->size);
    }
    ds->end = (uint64_t)off + (uint64_t)nbytes;
    m->weight_bytes += nbytes;
    return wrap_weight(m, &w, ds->base + off, (uint64_t)nbytes, &m->weights[i]);
}

static ty_status
read_weights(cursor *c, ty_model *m, data_section *ds)
{
    uint32_t n = 0;
    TY_TRY(get_count(c, 29, "weights", &n));
    m->weights = calloc(n ? n : 1, sizeof(ty_tensor *));
    m->weight_names = calloc(n ? n : 1, sizeof(char *));
    TY_CHECK(m->weights && m->weight_names, TY_ERR_OOM, "model: out of memory");
    m->nweights = (int)n;
    for (uint32_t i = 0; i < n; i++) {
        TY_TRY(read_weight(c, m, ds, (int)i));
    }
    m->nvalues += m->nweights;
    return TY_OK;
}

static const ty_field_desc *
find_field(const ty_params_desc *d, const char *name, int *index)
{
    for (int i = 0; i < d->nfields; i++) {
        if (strcmp(d->fields[i].name, name) == 0) {
            *index = i;
            return &d->fields[i];
        }
    }
    return NULL;
}

static ty_status
read_param_value(cursor *c, int kind, char *at)
{
    if (kind == TYM_P_FLOAT) {
        uint64_t bits = 0;
        double v;
        TY_TRY(get_uint(c, 8, &bits));
        memcpy(&v, &bits, sizeof v);
        memcpy(at, &v, sizeof v);
    } else if (kind == TYM_P_LIST) {
        uint32_t n = 0;
        ty_i64list l = {0};
        TY_TRY(get_u32(c, &n));
        if (n > TY_LIST_MAX) {
            return bad(c, "a list param has more than 16 entries");
        }
        l.n = (int32_t)n;
        for (uint32_t j = 0; j < n; j++) {
            TY_TRY(get_i64(c, &l.v[j]));
        }
        memcpy(at, &l, sizeof l);
    } else if (kind == TYM_P_DTYPE) {
        ty_dtype dt = TY_FLOAT32;
        TY_TRY(get_dtype(c, &dt));
        int64_t v = dt;
        memcpy(at, &v, sizeof v);
    } else {
        int64_t v = 0;
        TY_TRY(get_i64(c, &v));
        memcpy(at, &v, sizeof v);
    }
    return TY_OK;
}

static int
kind_of(const ty_field_desc *f)
{
    if (f->kind == TY_FK_F64) {
        return TYM_P_FLOAT;
    }
    if (f->kind == TY_FK_LIST) {
        return TYM_P_LIST;
    }
    return ty_tym_field_is_dtype(f) ? TYM_P_DTYPE : TYM_P_INT;
}

/* The "@algo" pseudo-param: an algorithm of the op's chooser, once. */
static ty_status
read_algo(cursor *c, tym_op *o, int index)
{
    const char *opname = ty_op_name(o->op);
    uint64_t kind = 0;
    int64_t a = 0;
    int n = ty_fastrun_algo_count(o->op);
    TY_CHECK(o->algo1 == 0, TY_ERR_FORMAT, "model: op %d (%s) has a second param '%s'", index,
             opname, TYM_ALGO_FIELD);
    TY_TRY(get_uint(c, 1, &kind));
    TY_CHECK(kind == TYM_P_INT, TY_ERR_FORMAT, "model: op %d (%s): param '%s' has kind %d, "
             "expected %d", index, opname, TYM_ALGO_FIELD, (int)kind, TYM_P_INT);
    TY_TRY(read_param_value(c, TYM_P_INT, (char *)&a));
    TY_CHECK(a >= 0 && a < n, TY_ERR_FORMAT, "model: op %d (%s): recorded algorithm %lld is "
             "out of range (the op has %d)", index, opname, (long long)a, n);
    o->algo1 = (int)a + 1;
    return TY_OK;
}

static ty_status
read_params(cursor *c, tym_op *o, int index)
{
    const ty_params_desc *d = ty_op_params(o->op);
    const char *opname = ty_op_name(o->op);
    uint32_t n = 0;
    uint64_t seen = 0; /* fields read (params.def structs have far fewer than 64) */
    o->params = malloc(d->size ? d->size : 1);
    TY_CHECK(o->params, TY_ERR_OOM, "model: out of memory");
    memcpy(o->params, d->defaults, d->size);
    TY_TRY(get_count(c, 5, "params", &n));
    for (uint32_t i = 0; i < n; i++) {
        char *field = NULL;
        uint64_t kind = 0;
        int fi = -1;
        TY_TRY(get_str(c, 64, "a param name", &field));
        if (strcmp(field, TYM_ALGO_FIELD) == 0) {
            free(field);
            TY_TRY(read_algo(c, o, index));
            continue;
        }
        const ty_field_desc *f = find_field(d, field, &fi);
        ty_status st = TY_OK;
        if (!f || fi >= 64 || (seen >> fi) & 1) {
            st = ty_set_error(TY_ERR_FORMAT, "model: op %d (%s) has %s param '%s'", index,
                              opname, f ? "a second" : "no", field);
        } else if ((st = get_uint(c, 1, &kind)) == TY_OK && (int)kind != kind_of(f)) {
            st = ty_set_error(TY_ERR_FORMAT, "model: op %d (%s): param '%s' has kind %d, "
                                             "expected %d", index, opname, field, (int)kind,
                              kind_of(f));
        }
        free(field);
        TY_TRY(st);
        seen |= (uint64_t)1 << fi;
        TY_TRY(read_param_value(c, (int)kind, (char *)o->params + f->offset));
    }
    ty_status st = ty_params_check(d, o->params);
    if (st != TY_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ty_last_error());
        return ty_set_error(TY_ERR_FORMAT, "model: op %d (%s): %s", index, opname, msg);
    }
    return TY_OK;
}

static ty_status
check_arity(const tym_op *o, int index, uint32_t nin, uint32_t nout)
{
    int want_in = ty_op_nin(o->op), want_out = ty_op_nout(o->op);
    if ((want_in >= 0 && nin != (uint32_t)want_in) ||
        (want_out >= 0 && nout != (uint32_t)want_out) || nout < 1 || nout > TYM_MAX_OUT) {
        return ty_set_error(TY_ERR_FORMAT, "model: op %d (%s) has %u inputs and %u outputs, "
                                           "ops.def says %d and %d (-1: any)",
                            index, ty_op_name(o->op), nin, nout, want_in, want_out);
    }
    return TY_OK;
}

static ty_status
read_op(cursor *c, ty_model *m, tym_op *o, int index)
{
    char *type = NULL;
    uint32_t nin = 0, nout = 0;
    TY_TRY(get_str(c, 64, "an op type", &type));
    ty_status st = ty_op_from_name(type, &o->op);
    if (st != TY_OK) {
        st = ty_set_error(TY_ERR_FORMAT, "model: op %d has unknown type '%s' (a newer "
                                         "Tianyuan, or a corrupt file)", index, type);
    } else if (ty_op_flags(o->op) & TY_F_WRITES) {
        st = ty_set_error(TY_ERR_FORMAT, "model: op %d (%s) writes in place, which a model "
                                         "cannot hold", index, type);
    }
    free(type);
    TY_TRY(st);
    TY_TRY(get_str(c, TYM_NAME_MAX, "an op name", &o->name));
    TY_TRY(get_count(c, 4, "op inputs", &nin));
    o->in = malloc(sizeof(int) * (nin ? nin : 1));
    TY_CHECK(o->in, TY_ERR_OOM, "model: out of memory");
    for (uint32_t k = 0; k < nin; k++) {
        uint32_t vid = 0;
        TY_TRY(get_u32(c, &vid));
        if (vid >= (uint32_t)m->nvalues) {
            return ty_set_error(TY_ERR_FORMAT, "model: op %d (%s) reads value %u, which is not "
                                               "defined before it", index,
                                ty_op_name(o->op), vid);
        }
        o->in[k] = (int)vid;
    }
    o->nin = (int)nin;
    TY_TRY(get_u32(c, &nout));
    TY_TRY(check_arity(o, index, nin, nout));
    o->nout = (int)nout;
    o->first_out = m->nvalues;
    m->nvalues += o->nout;
    return read_params(c, o, index);
}

static ty_status
read_ops(cursor *c, ty_model *m)
{
    uint32_t n = 0;
    TY_TRY(get_count(c, 20, "ops", &n));
    m->ops = calloc(n ? n : 1, sizeof(tym_op));
    TY_CHECK(m->ops, TY_ERR_OOM, "model: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        m->nops++;
        TY_TRY(read_op(c, m, &m->ops[i], (int)i));
    }
    return TY_OK;
}

static ty_status
read_outputs(cursor *c, ty_model *m)
{
    uint32_t n = 0;
    TY_TRY(get_count(c, 14, "outputs", &n));
    TY_CHECK(n > 0, TY_ERR_FORMAT, "model: the model has no outputs");
    m->outputs = calloc(n, sizeof(tym_io));
    TY_CHECK(m->outputs, TY_ERR_OOM, "model: out of memory");
    for (uint32_t i = 0; i < n; i++) {
        m->noutputs++;
        TY_TRY(get_io(c, -1, &m->outputs[i], m->outputs, (int)i, "output", m->nvalues));
    }
    return TY_OK;
}

/* Per value: the last op reading it (values the model returns live to the end). */
static ty_status
compute_last_use(ty_model *m)
{
    m->last_use = malloc(sizeof(int) * (size_t)(m->nvalues ? m->nvalues : 1));
    TY_CHECK(m->last_use, TY_ERR_OOM, "model: out of memory");
    for (int v = 0; v < m->nvalues; v++) {
        m->last_use[v] = -1;
    }
    for (int i = 0; i < m->nops; i++) {
        for (int k = 0; k < m->ops[i].nin; k++) {
            m->last_use[m->ops[i].in[k]] = i;
        }
    }
    for (int i = 0; i < m->noutputs; i++) {
        m->last_use[m->outputs[i].vid] = m->nops;
    }
    return TY_OK;
}

typedef struct header {
    uint64_t file_size, graph_offset, graph_size, data_offset, data_size;
} header;

static ty_status
read_header(const unsigned char *p, size_t size, header *h)
{
    TY_CHECK(size >= TYM_HEADER, TY_ERR_FORMAT,
             "model: the file has %zu bytes, fewer than the %d-byte header", size, TYM_HEADER);
    TY_CHECK(memcmp(p, TYM_MAGIC, 8) == 0, TY_ERR_FORMAT,
             "model: not a .tym model (bad magic bytes)");
    unsigned major = (unsigned)le(p + 8, 2), minor = (unsigned)le(p + 10, 2);
    /* a newer minor may add what this reader would silently ignore: refused as well */
    TY_CHECK(major < TYM_MAJOR || (major == TYM_MAJOR && minor <= TYM_MINOR), TY_ERR_FORMAT,
             "model: format version %u.%u is newer than this runtime's %d.%d (upgrade Tianyuan "
             "to load it)", major, minor, TYM_MAJOR, TYM_MINOR);
    TY_CHECK(major == TYM_MAJOR, TY_ERR_FORMAT, "model: unknown format version %u.%u",
             major, minor);
    h->file_size = le(p + 16, 8);
    h->graph_offset = le(p + 24, 8);
    h->graph_size = le(p + 32, 8);
    h->data_offset = le(p + 40, 8);
    h->data_size = le(p + 48, 8);
    int ok = h->file_size == size && h->graph_offset == TYM_HEADER &&
             h->graph_size <= size - TYM_HEADER && h->data_offset % TYM_ALIGN == 0 &&
             h->data_offset >= TYM_HEADER + h->graph_size && h->data_offset <= size &&
             h->data_size == size - h->data_offset;
    TY_CHECK(ok, TY_ERR_FORMAT, "model: the header's sizes and offsets do not match the "
                                "%zu-byte file (truncated or corrupt)", size);
    uint32_t want = (uint32_t)le(p + 12, 4), got = ty_tym_crc32(0, p + 16, size - 16);
    TY_CHECK(want == got, TY_ERR_FORMAT,
             "model: checksum mismatch (stored %08x, computed %08x): the file is corrupt",
             want, got);
    return TY_OK;
}

static ty_status
parse(ty_model *m)
{
    const unsigned char *p = m->region->base;
    header h = {0};
    TY_TRY(read_header(p, m->region->size, &h));
    cursor c = {p + h.graph_offset, (size_t)h.graph_size, 0};
    data_section ds = {(unsigned char *)m->region->base + h.data_offset, h.data_size, 0};
    TY_TRY(get_str(&c, TYM_META_MAX, "the metadata", &m->metadata));
    TY_TRY(read_inputs(&c, m));
    TY_TRY(read_weights(&c, m, &ds));
    TY_TRY(read_ops(&c, m));
    TY_TRY(read_outputs(&c, m));
    if (c.pos != c.n) {
        return bad(&c, "the graph section has bytes after the outputs");
    }
    return compute_last_use(m);
}

ty_status
ty_tym_parse(tym_region *region, ty_model **out)
{
    ty_model *m = calloc(1, sizeof *m);
    if (!m) {
        ty_tym_region_unref(region);
        return ty_set_error(TY_ERR_OOM, "model: out of memory");
    }
    atomic_init(&m->refs, 1);
    m->region = region;
    ty_status st = parse(m);
    if (st != TY_OK) {
        ty_model_unref(m);
        return st;
    }
    *out = m;
    return TY_OK;
}
