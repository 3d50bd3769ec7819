/* The .tym writer: a finished recording as a model file (docs/tym-format.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/trace_impl.h"
#include "runtime/tym.h"
#include "tianyuan/dist.h"

/* A growable byte buffer; the first failure sticks and is reported once at the end. */
typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} wbuf;

/* Room for n more bytes; 0 (and b->oom) when out of memory. */
static int
reserve(wbuf *b, size_t n)
{
    if (!b->oom && b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) {
            cap *= 2;
        }
        unsigned char *q = realloc(b->p, cap);
        if (q) {
            b->p = q;
            b->cap = cap;
        }
        b->oom = !q;
    }
    return !b->oom;
}

static void
put(wbuf *b, const void *src, size_t n)
{
    if (n && reserve(b, n)) {
        memcpy(b->p + b->n, src, n);
        b->n += n;
    }
}

/* Little-endian integers, byte by byte (the host's order does not matter). */
static void
put_uint(wbuf *b, uint64_t v, int nbytes)
{
    unsigned char tmp[8];
    for (int i = 0; i < nbytes; i++) {
        tmp[i] = (unsigned char)(v >> (8 * i));
    }
    put(b, tmp, (size_t)nbytes);
}

static void
put_u32(wbuf *b, uint32_t v)
{
    put_uint(b, v, 4);
}

static void
put_i64(wbuf *b, int64_t v)
{
    put_uint(b, (uint64_t)v, 8);
}

static void
put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

static void
put_shape(wbuf *b, int ndim, const int64_t *shape, int vary_first)
{
    put_uint(b, (uint64_t)ndim, 1);
    for (int i = 0; i < ndim; i++) {
        put_i64(b, i == 0 && vary_first ? -1 : shape[i]);
    }
}

static void
put_params(wbuf *b, ty_op op, const void *params, int algo1)
{
    const ty_params_desc *d = ty_op_params(op);
    put_u32(b, (uint32_t)d->nfields + (algo1 > 0));
    if (algo1 > 0) { /* the algorithm the trace ran it with */
        put_str(b, TYM_ALGO_FIELD);
        put_uint(b, TYM_P_INT, 1);
        put_i64(b, algo1 - 1);
    }
    for (int i = 0; i < d->nfields; i++) {
        const ty_field_desc *f = &d->fields[i];
        const char *at = (const char *)params + f->offset;
        put_str(b, f->name);
        if (f->kind == TY_FK_F64) {
            double v;
            uint64_t bits;
            memcpy(&v, at, sizeof v);
            memcpy(&bits, &v, sizeof bits);
            put_uint(b, TYM_P_FLOAT, 1);
            put_uint(b, bits, 8);
        } else if (f->kind == TY_FK_LIST) {
            const ty_i64list *l = (const ty_i64list *)(const void *)at;
            put_uint(b, TYM_P_LIST, 1);
            put_u32(b, (uint32_t)l->n);
            for (int j = 0; j < l->n; j++) {
                put_i64(b, l->v[j]);
            }
        } else {
            int64_t v;
            memcpy(&v, at, sizeof v);
            int is_dtype = ty_tym_field_is_dtype(f);
            put_uint(b, is_dtype ? TYM_P_DTYPE : TYM_P_INT, 1);
            if (is_dtype) {
                put_str(b, ty_dtype_name((ty_dtype)v));
            } else {
                put_i64(b, v);
            }
        }
    }
}

/* What the dump keeps: the nodes the outputs need, the weights they read, file value ids. */
typedef struct plan {
    char *need_v, *need_n;
    int *fid; /* trace value -> file value id, or -1 */
    int nweights, nops;
    size_t *in_pos, *out_pos; /* where each input's and output's dims are in the file */
    int64_t *lead;            /* per value: how it scales with the batch (tym_batch.c) */
    int polymorphic;          /* the graph takes other batch sizes */
} plan;

/* Whether value vid's dimension 0 is written as variable. */
static int
varies(const plan *p, int vid)
{
    return p->polymorphic && p->lead[vid] > 0;
}

static ty_status
check_writes(const ty_trace *tr, const plan *p)
{
    for (int ni = 0; ni < tr->nn; ni++) {
        if (p->need_n[ni] && (ty_op_flags(tr->n[ni].op) & TY_F_WRITES)) {
            return ty_set_error(TY_ERR_UNSUPPORTED,
                                "trace.dump: the outputs depend on %s, an in-place update, "
                                "which an inference model cannot hold",
                                ty_op_name(tr->n[ni].op));
        }
        if (p->need_n[ni] && ty_op_is_collective(tr->n[ni].op)) {
            return ty_set_error(TY_ERR_UNSUPPORTED,
                                "trace.dump: the outputs depend on %s, a collective of a "
                                "distributed job, which an inference model cannot hold",
                                ty_op_name(tr->n[ni].op));
        }
    }
    return TY_OK;
}

static int
root_of(const ty_trace *tr, int vid)
{
    return tr->root ? tr->root[vid] : vid;
}

/* need_v / need_n: the values and nodes the outputs need. Nodes are in order (users come
 * later), so one backward sweep sees every later reader first. An in-place write is needed
 * when a later reader or an output uses the memory it writes (through any view of it): such
 * a graph is then refused by check_writes instead of being dumped without the write. */
static ty_status
mark_needed(const ty_trace *tr, plan *p)
{
    char *need_root = calloc((size_t)tr->nv + 1, 1); /* per root: memory read by a needed op */
    TY_CHECK(need_root, TY_ERR_OOM, "trace.dump: out of memory");
    for (int i = 0; i < tr->nout; i++) {
        p->need_v[tr->out_vid[i]] = 1;
        need_root[root_of(tr, tr->out_vid[i])] = 1;
    }
    for (int ni = tr->nn - 1; ni >= 0; ni--) {
        const gnode *n = &tr->n[ni];
        if ((ty_op_flags(n->op) & TY_F_WRITES) && n->nin > 0) {
            p->need_n[ni] = need_root[root_of(tr, n->in[0])];
        }
        for (int k = 0; k < n->nout && !p->need_n[ni]; k++) {
            p->need_n[ni] = p->need_v[n->out[k]];
        }
        for (int k = 0; k < n->nin && p->need_n[ni]; k++) {
            p->need_v[n->in[k]] = 1;
            need_root[root_of(tr, n->in[k])] = 1;
        }
    }
    free(need_root);
    return TY_OK;
}

static ty_status
make_plan(const ty_trace *tr, plan *p)
{
    p->need_v = calloc((size_t)tr->nv + 1, 1);
    p->need_n = calloc((size_t)tr->nn + 1, 1);
    p->fid = malloc(sizeof(int) * ((size_t)tr->nv + 1));
    p->in_pos = calloc((size_t)tr->nargs + 1, sizeof(size_t));
    p->out_pos = calloc((size_t)tr->nout + 1, sizeof(size_t));
    p->lead = calloc((size_t)tr->nv + 1, sizeof(int64_t));
    TY_CHECK(p->need_v && p->need_n && p->fid && p->in_pos && p->out_pos && p->lead,
             TY_ERR_OOM, "trace.dump: out of memory");
    TY_TRY(mark_needed(tr, p));
    TY_TRY(check_writes(tr, p));
    p->polymorphic = ty_tym_batch_lead(tr, p->need_n, p->lead);
    for (int i = 0; i < tr->nv; i++) {
        p->fid[i] = -1;
    }
    for (int i = 0; i < tr->nargs; i++) {
        p->fid[tr->arg_vid[i]] = i;
    }
    int next = tr->nargs;
    for (int i = 0; i < tr->nv; i++) {
        const gvalue *v = &tr->v[i];
        if (p->need_v[i] && (v->kind == V_EXTERNAL || v->kind == V_CONST)) {
            p->fid[i] = next++;
            p->nweights++;
        }
    }
    for (int ni = 0; ni < tr->nn; ni++) {
        for (int k = 0; k < tr->n[ni].nout && p->need_n[ni]; k++) {
            p->fid[tr->n[ni].out[k]] = next++;
        }
        p->nops += p->need_n[ni];
    }
    return TY_OK;
}

static void
plan_free(plan *p)
{
    free(p->need_v);
    free(p->need_n);
    free(p->fid);
    free(p->in_pos);
    free(p->out_pos);
    free(p->lead);
}

static size_t
align_up(size_t n)
{
    return (n + TYM_ALIGN - 1) / TYM_ALIGN * TYM_ALIGN;
}

static size_t
value_bytes(const gvalue *v)
{
    size_t n = ty_dtype_size(v->meta.dtype);
    for (int d = 0; d < v->meta.ndim; d++) {
        n *= (size_t)v->meta.shape[d];
    }
    return n;
}

static ty_status
name_ok(const char *name, const char *what, int i)
{
    TY_CHECK(name && name[0] && strlen(name) <= TYM_NAME_MAX, TY_ERR_INVALID_ARG,
             "trace.dump: %s name %d is empty or longer than %d bytes", what, i, TYM_NAME_MAX);
    return TY_OK;
}

/* keep_param_name: the name the caller gave the tensor of value vid, or "". */
static const char *
param_name(const ty_trace *tr, int vid, const ty_tym_dump_options *opt)
{
    const gvalue *v = &tr->v[vid];
    for (int j = 0; opt && opt->named && v->kind != V_NODE && j < opt->nnamed; j++) {
        if (opt->named[j] == v->ref && opt->named_as[j]) {
            return opt->named_as[j];
        }
    }
    return "";
}

/* keep_opr_name: "<scope>/<type>" where the op reads a named weight "<scope>.<leaf>"
 * ("layer1.0.conv1/conv2d"), else "<type>_<position in the model>" ("relu_5"). */
static void
op_name(const ty_trace *tr, const gnode *n, int index, const ty_tym_dump_options *opt,
        char *buf, size_t cap)
{
    for (int k = 0; k < n->nin; k++) {
        const char *w = param_name(tr, n->in[k], opt), *dot = strrchr(w, '.');
        int scope = dot ? (int)(dot - w) : (int)strlen(w);
        if (w[0] && scope + 1 + strlen(ty_op_name(n->op)) < cap) {
            snprintf(buf, cap, "%.*s/%s", scope, w, ty_op_name(n->op));
            return;
        }
    }
    snprintf(buf, cap, "%s_%d", ty_op_name(n->op), index);
}

static ty_status
write_io(wbuf *g, const ty_trace *tr, plan *p, const ty_tym_dump_options *opt)
{
    char name[32];
    put_u32(g, (uint32_t)tr->nargs);
    for (int i = 0; i < tr->nargs; i++) {
        const gvalue *v = &tr->v[tr->arg_vid[i]];
        snprintf(name, sizeof name, "arg_%d", i);
        const char *nm = opt && opt->input_names ? opt->input_names[i] : name;
        TY_TRY(name_ok(nm, "input", i));
        put_str(g, nm);
        put_str(g, ty_dtype_name(v->meta.dtype));
        p->in_pos[i] = g->n + 1;
        put_shape(g, v->meta.ndim, v->meta.shape, varies(p, tr->arg_vid[i]));
    }
    size_t off = 0;
    put_u32(g, (uint32_t)p->nweights);
    for (int i = 0; i < tr->nv; i++) {
        const gvalue *v = &tr->v[i];
        if (p->fid[i] < tr->nargs || v->kind == V_NODE) {
            continue;
        }
        const char *nm = opt && opt->keep_param_names ? param_name(tr, i, opt) : "";
        TY_CHECK(strlen(nm) <= TYM_NAME_MAX, TY_ERR_INVALID_ARG,
                 "trace.dump: a parameter name is longer than %d bytes", TYM_NAME_MAX);
        put_str(g, nm);
        put_str(g, ty_dtype_name(v->meta.dtype));
        put_shape(g, v->meta.ndim, v->meta.shape, 0);
        put_i64(g, (int64_t)off);
        put_i64(g, (int64_t)value_bytes(v));
        off = align_up(off + value_bytes(v));
    }
    return TY_OK;
}

/* Params of batched ops rewritten to hold at any batch size: a reshape whose items map to
 * whole rows is written as (-1, rest), a slice taking every item stops at INT64_MAX ("to the
 * end"). Both give the same result at the traced shape. */
typedef union batch_params {
    ty_p_shape shape;
    ty_p_slice slice;
} batch_params;

static const void *
batch_free_params(const ty_trace *tr, const plan *p, const gnode *n, batch_params *tmp)
{
    const ty_meta *in = n->nin ? &tr->v[n->in[0]].meta : NULL, *out = &tr->v[n->out[0]].meta;
    if (!n->nin || !varies(p, n->in[0])) {
        return n->params;
    }
    if (n->op == TY_OP_SLICE && ty_tym_slice_keeps_items(in, n->params)) {
        memcpy(&tmp->slice, n->params, sizeof tmp->slice);
        tmp->slice.stops.v[0] = INT64_MAX;
        return &tmp->slice;
    }
    if (n->op != TY_OP_RESHAPE || ty_tym_reshape_lead(in, p->lead[n->in[0]], out) <= 0) {
        return n->params;
    }
    memcpy(&tmp->shape, n->params, sizeof tmp->shape);
    tmp->shape.shape.n = out->ndim;
    tmp->shape.shape.v[0] = -1;
    for (int d = 1; d < out->ndim; d++) {
        tmp->shape.shape.v[d] = out->shape[d];
    }
    return &tmp->shape;
}

static void
write_ops(wbuf *g, const ty_trace *tr, const plan *p, const ty_tym_dump_options *opt)
{
    put_u32(g, (uint32_t)p->nops);
    for (int ni = 0, index = 0; ni < tr->nn; ni++) {
        const gnode *n = &tr->n[ni];
        if (!p->need_n[ni]) {
            continue;
        }
        char name[TYM_NAME_MAX + 1] = "";
        if (opt && opt->keep_op_names) {
            op_name(tr, n, index, opt, name, sizeof name);
        }
        index++;
        put_str(g, ty_op_name(n->op));
        put_str(g, name);
        put_u32(g, (uint32_t)n->nin);
        for (int k = 0; k < n->nin; k++) {
            put_u32(g, (uint32_t)p->fid[n->in[k]]);
        }
        put_u32(g, (uint32_t)n->nout);
        batch_params tmp;
        put_params(g, n->op, batch_free_params(tr, p, n, &tmp), n->algo1);
    }
}

static ty_status
write_outputs(wbuf *g, const ty_trace *tr, plan *p, const ty_tym_dump_options *opt)
{
    char name[32];
    put_u32(g, (uint32_t)tr->nout);
    for (int i = 0; i < tr->nout; i++) {
        const gvalue *v = &tr->v[tr->out_vid[i]];
        snprintf(name, sizeof name, "output_%d", i);
        const char *nm = opt && opt->output_names ? opt->output_names[i] : name;
        TY_TRY(name_ok(nm, "output", i));
        put_str(g, nm);
        put_u32(g, (uint32_t)p->fid[tr->out_vid[i]]);
        put_str(g, ty_dtype_name(v->meta.dtype));
        p->out_pos[i] = g->n + 1;
        put_shape(g, v->meta.ndim, v->meta.shape, varies(p, tr->out_vid[i]));
    }
    return TY_OK;
}

/* The weights' current values, each at a 64-byte boundary of the data section. */
static ty_status
write_data(wbuf *f, const ty_trace *tr, const plan *p)
{
    static const unsigned char zeros[TYM_ALIGN];
    size_t start = f->n;
    for (int i = 0; i < tr->nv; i++) {
        const gvalue *v = &tr->v[i];
        if (p->fid[i] < tr->nargs || v->kind == V_NODE) {
            continue;
        }
        TY_CHECK(v->ref && ty_tensor_device(v->ref) == TY_DEVICE_CPU, TY_ERR_UNSUPPORTED,
                 "trace.dump: weight %d is not a CPU tensor", p->fid[i] - tr->nargs);
        TY_CHECK(!ty_trace_is_replaced(v->ref), TY_ERR_TRACE,
                 "trace.dump: a tensor the function read was rebound since it was traced "
                 "(update parameters in place, or trace again)");
        TY_TRY(ty_check_readable(v->ref));
        size_t nb = value_bytes(v);
        TY_CHECK(reserve(f, nb), TY_ERR_OOM, "trace.dump: out of memory");
        TY_TRY(ty_tensor_copy_to(v->ref, f->p + f->n, nb));
        f->n += nb;
        put(f, zeros, align_up(f->n - start) - (f->n - start));
    }
    return TY_OK;
}

static void
put_header(unsigned char *h, size_t graph_size, size_t data_offset, size_t file_size)
{
    wbuf b = {h, 0, TYM_HEADER, 0};
    put(&b, TYM_MAGIC, 8);
    put_uint(&b, TYM_MAJOR, 2);
    put_uint(&b, TYM_MINOR, 2);
    put_u32(&b, 0); /* the CRC, filled in last */
    put_i64(&b, (int64_t)file_size);
    put_i64(&b, TYM_HEADER);
    put_i64(&b, (int64_t)graph_size);
    put_i64(&b, (int64_t)data_offset);
    put_i64(&b, (int64_t)(file_size - data_offset));
    put_i64(&b, 0);
}

static ty_status
write_file(const ty_trace *tr, plan *p, const ty_tym_dump_options *opt, wbuf *f)
{
    static const unsigned char zeros[TYM_HEADER];
    put(f, zeros, TYM_HEADER);
    put_str(f, opt && opt->metadata ? opt->metadata : "");
    TY_TRY(write_io(f, tr, p, opt));
    write_ops(f, tr, p, opt);
    TY_TRY(write_outputs(f, tr, p, opt));
    TY_CHECK(!f->oom, TY_ERR_OOM, "trace.dump: out of memory");
    size_t graph_size = f->n - TYM_HEADER;
    put(f, zeros, align_up(f->n) - f->n);
    size_t data_offset = f->n;
    TY_TRY(write_data(f, tr, p));
    TY_CHECK(!f->oom, TY_ERR_OOM, "trace.dump: out of memory");
    put_header(f->p, graph_size, data_offset, f->n);
    ty_tym_set_crc(f->p, f->n);
    int64_t *batch = calloc((size_t)tr->nargs + (size_t)tr->nout + 1, sizeof(int64_t));
    TY_CHECK(batch, TY_ERR_OOM, "trace.dump: out of memory");
    int64_t *out_dim = batch + tr->nargs;
    for (int i = 0; i < tr->nargs; i++) {
        int vid = tr->arg_vid[i];
        batch[i] = varies(p, vid) ? tr->v[vid].meta.shape[0] : -1;
    }
    for (int i = 0; i < tr->nout; i++) {
        int vid = tr->out_vid[i];
        out_dim[i] = varies(p, vid) ? tr->v[vid].meta.shape[0] : -1;
    }
    tym_probe probe = {f->p, f->n, tr->nargs, p->in_pos, batch, tr->nout, p->out_pos, out_dim};
    ty_status st = ty_tym_probe_batch(&probe);
    free(batch);
    return st;
}

ty_status
ty_trace_dump_tym(const ty_trace *tr, const ty_tym_dump_options *opt, void **data,
                  size_t *nbytes)
{
    TY_CHECK(tr && data && nbytes, TY_ERR_INVALID_ARG, "trace.dump: NULL argument");
    TY_CHECK(tr->mode == MODE_IDLE && tr->out_vid, TY_ERR_TRACE,
             "trace.dump: the function has not been traced to the end yet");
    TY_CHECK(tr->nout > 0, TY_ERR_INVALID_ARG, "trace.dump: the traced function returns nothing");
    plan p = {0};
    wbuf f = {0};
    ty_status st = make_plan(tr, &p);
    if (st == TY_OK) {
        st = write_file(tr, &p, opt, &f);
    }
    plan_free(&p);
    if (st != TY_OK) {
        free(f.p);
        return st;
    }
    *data = f.p;
    *nbytes = f.n;
    return TY_OK;
}
