/* Printing a trace: its values and nodes, and with after_passes what the passes did. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "graph/trace_impl.h"
#include "ops/op.h"

/* ---- printing ---- */
static const char *kind_names[] = {"arg", "external", "const", "node"};

static void
append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            return;
        }
        if (*buf && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        size_t cap2 = (*cap ? *cap * 2 : 4096) + (size_t)n;
        char *b = realloc(*buf, cap2);
        if (!b) {
            return;
        }
        *buf = b;
        *cap = cap2;
    }
}

typedef struct sbuf {
    char *buf;
    size_t len, cap;
} sbuf;

#define OUT(sb, ...) append(&(sb)->buf, &(sb)->len, &(sb)->cap, __VA_ARGS__)

static void
dump_inputs(const ty_trace *tr, sbuf *sb)
{
    char sh[TY_SHAPE_BUF];
    for (int i = 0; i < tr->nv; i++) {
        const gvalue *v = &tr->v[i];
        if (v->kind != V_NODE) {
            OUT(sb, "  %%%d = %s %s %s\n", i, kind_names[v->kind], ty_dtype_name(v->meta.dtype),
                ty_shape_str(v->meta.ndim, v->meta.shape, sh, sizeof sh));
        }
    }
}

/* What the passes did to node ni (the dead mark is from the last call, or, before any
 * call, from the outputs alone). */
static void
dump_marks(const ty_trace *tr, const gnode *n, int ni, sbuf *sb)
{
    if (n->state == NS_CSE) {
        OUT(sb, "  # cse of %%%d", tr->n[n->canon].out[0]);
    } else if (n->state == NS_FOLDED) {
        OUT(sb, "  # folded");
    } else if (tr->live && !tr->live[ni]) {
        OUT(sb, "  # dead");
    }
    if (n->group >= 0) {
        OUT(sb, "  # fused g%d", n->group);
    }
    if (tr->fwd_on && tr->fwd_on[ni]) {
        OUT(sb, "  # forwarded: %%%d computed in place", n->in[1]);
    }
}

static void
dump_node(const ty_trace *tr, int ni, int after, sbuf *sb)
{
    const gnode *n = &tr->n[ni];
    char sh[TY_SHAPE_BUF];
    OUT(sb, "  ");
    for (int i = 0; i < n->nout; i++) {
        const gvalue *v = &tr->v[n->out[i]];
        OUT(sb, "%s%%%d:%s%s", i ? ", " : "", n->out[i], ty_dtype_name(v->meta.dtype),
            ty_shape_str(v->meta.ndim, v->meta.shape, sh, sizeof sh));
    }
    OUT(sb, " = %s(", ty_op_name(n->op));
    for (int i = 0; i < n->nin; i++) {
        OUT(sb, "%s%%%d", i ? ", " : "", n->in[i]);
    }
    OUT(sb, ")%s", n->alias ? "  # view" : "");
    if (after) {
        dump_marks(tr, n, ni, sb);
    }
    OUT(sb, "\n");
}

static void
dump_summary(const ty_trace *tr, sbuf *sb)
{
    ty_trace_stats s;
    if (ty_trace_get_stats(tr, &s) == TY_OK) {
        OUT(sb, "after passes: %d cse, %d folded, %d dead, %d fused groups (%d nodes)\n",
            s.cse, s.folded, s.dead, s.fused_groups, s.fused_nodes);
    }
}

ty_status
ty_trace_dump_ex(const ty_trace *tr, int after, char **out)
{
    TY_CHECK(tr && out, TY_ERR_INVALID_ARG, "trace: NULL argument");
    sbuf sb = {NULL, 0, 0};
    OUT(&sb, "trace: %d values, %d nodes, %d backward blocks\n", tr->nv, tr->nn, tr->nbw);
    if (after) {
        dump_summary(tr, &sb);
    }
    dump_inputs(tr, &sb);
    for (int b = 0, ni = 0; ni < tr->nn; ni++) {
        while (b < tr->nbw && tr->bw[b].start == ni && tr->bw[b].end > ni) {
            OUT(&sb, "  backward {\n");
            b++;
        }
        dump_node(tr, ni, after, &sb);
        for (int k = 0; k < tr->nbw; k++) {
            if (tr->bw[k].end == ni + 1) {
                OUT(&sb, "  }\n");
            }
        }
    }
    for (int i = 0; i < tr->nout; i++) {
        OUT(&sb, "  return %%%d\n", tr->out_vid[i]);
    }
    TY_CHECK(sb.buf, TY_ERR_OOM, "trace: out of memory");
    *out = sb.buf;
    return TY_OK;
}

ty_status
ty_trace_dump(const ty_trace *tr, char **out)
{
    return ty_trace_dump_ex(tr, 0, out);
}

const char *
ty_trace_pass_log(const ty_trace *tr)
{
    return tr && tr->pass_log ? tr->pass_log : "";
}
