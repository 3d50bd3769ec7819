/* Chains of elementwise members after a head convolution (fuse_chain.h). */
#include <string.h>

#include "graph/passes/fuse_chain.h"

/* Elements per local buffer: a few KiB, in L1 with the constants. */
enum { CHUNK = 512 };

static int
member_of(const ty_trace *tr, int vid, int gi)
{
    int r = tr->root[vid];
    return tr->v[r].kind == V_NODE && tr->n[tr->v[r].index].group == gi;
}

/* The kind of outside operand vid for output meta gm (N, C, H, W); -1: none of them. */
static int
operand_kind(const ty_meta *gm, const ty_tensor *t)
{
    int64_t n = ty_tensor_numel(t);
    if (t->dtype != TY_FLOAT32) {
        return -1;
    }
    if (n == 1) {
        return TY_CHAIN_SCALAR;
    }
    if (!ty_tensor_is_contiguous(t)) {
        return -1;
    }
    if (t->ndim == 4 && memcmp(t->shape, gm->shape, sizeof(int64_t) * 4) == 0) {
        return TY_CHAIN_FULL;
    }
    /* (C, 1, 1) or (1, C, 1, 1), maybe with more leading ones */
    int lead = 4 - t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        int64_t want = d + lead == 1 ? gm->shape[1] : 1;
        if (lead < 0 || t->shape[d] != want) {
            return -1;
        }
    }
    return TY_CHAIN_CHANNEL;
}

/* Step k for member n, whose running input is cur; 0 when n does not continue the chain. */
static ty_status
chain_step(ty_trace *tr, int gi, const gnode *n, int cur, ty_chain_step *s, int *ok)
{
    *ok = 0;
    if (!n->ew_loop || tr->v[n->out[0]].meta.dtype != TY_FLOAT32 || n->nin < 1 || n->nin > 2) {
        return TY_OK;
    }
    int at = n->in[0] == cur ? 0 : (n->nin == 2 && n->in[1] == cur ? 1 : -1);
    if (at < 0 || (n->nin == 2 && n->in[1 - at] == cur)) {
        return TY_OK;
    }
    *s = (ty_chain_step){.loop = n->ew_loop, .pv = n->ew_pv, .kind = TY_CHAIN_UNARY,
                         .chain_second = at == 1};
    if (n->nin == 1) {
        *ok = 1;
        return TY_OK;
    }
    int other = n->in[1 - at];
    if (member_of(tr, other, gi)) {
        return TY_OK;
    }
    ty_tensor *t = ty_trace_value(tr, other);
    int kind = t ? operand_kind(&tr->v[cur].meta, t) : -1;
    if (kind < 0) {
        return TY_OK;
    }
    TY_TRY(ty_trace_provide(t));
    s->kind = (ty_chain_kind)kind;
    s->p = (const float *)ty_tensor_ptr(t);
    *ok = 1;
    return TY_OK;
}

ty_status
ty_chain_build(ty_trace *tr, int gi, ty_fchain *ch)
{
    const gfuse *g = &tr->groups[gi];
    const ty_meta *ym = &tr->v[tr->n[g->head].out[0]].meta;
    int cur = tr->n[g->head].out[0], last = -1;
    ch->n = 0;
    if (ym->ndim != 4) {
        return TY_OK;
    }
    ty_fchain c = {.C = ym->shape[1], .HW = ym->shape[2] * ym->shape[3]};
    for (int ni = g->first; ni <= g->last; ni++) {
        const gnode *n = &tr->n[ni];
        if (n->group != gi || n->state != NS_EXEC || !tr->live[ni] || ni == g->head) {
            continue;
        }
        int ok = c.n < TY_CHAIN_MAX && (last < 0 || tr->scratch[last]);
        if (ok) {
            TY_TRY(chain_step(tr, gi, n, cur, &c.s[c.n], &ok));
        }
        if (!ok) {
            return TY_OK; /* not a chain: the generic steps */
        }
        c.n++;
        cur = last = n->out[0];
    }
    ty_tensor *out = last >= 0 && !tr->scratch[last] ? ty_trace_value(tr, last) : NULL;
    if (!out || !ty_tensor_is_contiguous(out)) {
        return TY_OK;
    }
    TY_TRY(ty_trace_provide(out));
    c.out = (float *)ty_tensor_ptr(out);
    *ch = c;
    return TY_OK;
}

/* Elements [pos, pos + m) of channel ch: in -> steps -> the output, through buf. */
static void
run_piece(const ty_fchain *c, const float *y, int64_t ch, int64_t pos, int64_t m, float *buf)
{
    for (int k = 0; k < c->n; k++) {
        const ty_chain_step *s = &c->s[k];
        char *p[3];
        int64_t st[3] = {1, 1, 1};
        char *in = k == 0 ? (char *)(y + pos) : (char *)buf;
        p[0] = k == c->n - 1 ? (char *)(c->out + pos) : (char *)buf;
        p[1 + s->chain_second] = in;
        if (s->kind != TY_CHAIN_UNARY) {
            int o = 2 - s->chain_second;
            st[o] = s->kind == TY_CHAIN_FULL ? 1 : 0;
            p[o] = (char *)(s->kind == TY_CHAIN_FULL      ? s->p + pos
                            : s->kind == TY_CHAIN_CHANNEL ? s->p + ch
                                                          : s->p);
        }
        s->loop(m, p, st, s->pv);
    }
}

void
ty_chain_run(const ty_fchain *c, const float *y, int64_t off, int64_t len)
{
    _Alignas(64) float buf[CHUNK];
    for (int64_t pos = off, end = off + len; pos < end;) {
        int64_t ch = pos / c->HW % c->C, seg = c->HW - pos % c->HW;
        seg = seg < end - pos ? seg : end - pos;
        for (int64_t j = 0; j < seg; j += CHUNK) {
            run_piece(c, y, ch, pos + j, seg - j < CHUNK ? seg - j : CHUNK, buf);
        }
        pos += seg;
    }
}
