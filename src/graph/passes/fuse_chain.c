/* Chains of elementwise members after a head convolution (fuse_chain.h). */
#include <math.h>
#include <string.h>

#include "base/isa.h"
#include "graph/passes/fuse_chain.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CHAIN_X86 1
#include <immintrin.h>
#endif

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
    *s = (ty_chain_step){.op = n->op, .loop = n->ew_loop, .pv = n->ew_pv, .kind = TY_CHAIN_UNARY,
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

/* ---- batch norm in registers ----
 * The expressions of scalar.def's add, sub, mul, div, relu and relu6 rows for float (the
 * build compiles without contraction, so no fused multiply-add forms). */
static inline float
relu_f(float x)
{
    return !(x <= 0) ? x : 0.0f;
}

static inline float
relu6_f(float x)
{
    return !(x <= 0) ? (!(x >= 6) ? x : 6.0f) : 0.0f;
}

/* The batch norm steps before the residual add and activation: 4 with the division, 1 for a
 * bias, else 3. */
static inline int
bn_steps(const ty_fchain *c)
{
    return c->bn_div ? 4 : c->bn_bias ? 1 : 3;
}

/* The bias form's mean and scale for the kernels that take arrays (ty_chain_bn_desc), up to
 * this many channels. */
enum { BIAS_MAX_C = 4096 };
static const float bias_zeros[BIAS_MAX_C];
static const float bias_ones[BIAS_MAX_C] = {[0 ... BIAS_MAX_C - 1] = 1.0f};

/* Channel ch's constants for bn_run and the vector loops: the steps' own, or for a bias
 * (+0, 1, bias). */
static inline void
bn_consts(const ty_fchain *c, int64_t ch, float k[4])
{
    if (c->bn_bias) {
        k[0] = 0.0f;
        k[1] = 1.0f;
        k[2] = c->s[0].p[ch];
        k[3] = 0.0f;
        return;
    }
    k[3] = 0.0f;
    for (int i = 0; i < bn_steps(c); i++) {
        k[i] = c->s[i].p[ch];
    }
}

#define BN_LOOP(RES, ACT)                                                                          \
    if (div) {                                                                                     \
        for (int64_t i = 0; i < m; i++) {                                                          \
            float v = (y[i] - k[0]) / k[1] * k[2] + k[3];                                          \
            v = RES;                                                                               \
            out[i] = ACT;                                                                          \
        }                                                                                          \
    } else {                                                                                       \
        for (int64_t i = 0; i < m; i++) {                                                          \
            float v = (y[i] - k[0]) * k[1] + k[2];                                                 \
            v = RES;                                                                               \
            out[i] = ACT;                                                                          \
        }                                                                                          \
    }

#define BN_ACTS(RES)                                                                               \
    if (act == 0) {                                                                                \
        BN_LOOP(RES, v)                                                                            \
    } else if (act == 1) {                                                                         \
        BN_LOOP(RES, relu_f(v))                                                                    \
    } else {                                                                                       \
        BN_LOOP(RES, relu6_f(v))                                                                   \
    }

/* div: the dumped form (y - mean) / std * gamma + beta, k holding those four; else
 * (y - mean) * scale + beta, the form eager batch norm computes now, k holding three. */
TY_CLONES static void
bn_loop(const float *y, const float *k, const float *r, int div, int res, int act, float *out,
        int64_t m)
{
    if (res == 0) {
        BN_ACTS(v)
    } else if (res == 1) {
        BN_ACTS(v + r[i])
    } else {
        BN_ACTS(r[i] + v)
    }
}

#ifdef CHAIN_X86
/* The loop of the (y - mean) * scale + beta form in AVX-512, with relu and relu6 as
 * vmaxps(+0, v) + 0 and vminps(6, v): vmaxps(a, b) is a > b ? a : b, so a NaN v comes out
 * as is and a -0 as -0, which the + 0 turns into +0 (and leaves any other value, a NaN from
 * arithmetic included); vminps(6, v) is 6 < v ? 6 : v. The same values as relu_f and
 * relu6_f, in three instructions instead of compares and blends (bn_matches checks them on
 * the special values). */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
bn3_loop_avx512(const float *y, const float *k, const float *r, int res, int act, float *out,
                int64_t m)
{
    const __m512 k0 = _mm512_set1_ps(k[0]), k1 = _mm512_set1_ps(k[1]), k2 = _mm512_set1_ps(k[2]);
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    for (int64_t i = 0; i < m; i += 16) {
        __mmask16 mk = m - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (m - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, y + i);
        v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, k0), k1), k2);
        if (res == 1) {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, r + i));
        } else if (res == 2) {
            v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, r + i), v);
        }
        if (act) {
            v = _mm512_add_ps(_mm512_max_ps(zero, v), zero);
        }
        if (act == 2) {
            v = _mm512_min_ps(six, v);
        }
        _mm512_mask_storeu_ps(out + i, mk, v);
    }
}

/* The same loop in AVX2, 8 lanes; the tail of fewer than 8 through masked loads and stores. */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
bn3_loop_avx2(const float *y, const float *k, const float *r, int res, int act, float *out,
              int64_t m)
{
    const __m256 k0 = _mm256_set1_ps(k[0]), k1 = _mm256_set1_ps(k[1]), k2 = _mm256_set1_ps(k[2]);
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t i = 0; i < m; i += 8) {
        int64_t left = m - i < 8 ? m - i : 8;
        __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), lane);
        __m256 v = left == 8 ? _mm256_loadu_ps(y + i) : _mm256_maskload_ps(y + i, mk);
        v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, k0), k1), k2);
        if (res) {
            __m256 rv = left == 8 ? _mm256_loadu_ps(r + i) : _mm256_maskload_ps(r + i, mk);
            v = res == 1 ? _mm256_add_ps(v, rv) : _mm256_add_ps(rv, v);
        }
        if (act) {
            v = _mm256_add_ps(_mm256_max_ps(zero, v), zero);
        }
        if (act == 2) {
            v = _mm256_min_ps(six, v);
        }
        if (left == 8) {
            _mm256_storeu_ps(out + i, v);
        } else {
            _mm256_maskstore_ps(out + i, mk, v);
        }
    }
}
#endif

/* The vector loop over rows of cols elements at y + off, ld apart, row i of channel
 * (ch0 + i) % C: one call for a GEMM tile or a 1x1 panel (rows of 16 to 32 columns), whose
 * rows cost a call each through run_segment (more than their arithmetic: bn_loop's clone was
 * 13% of MobileNetV2's samples on a Zen 3), with the loop inlined in each row. */
#define BN3_ROWS(NAME, LOOP, TARGET)                                                               \
    TARGET static void NAME(const ty_fchain *c, const float *y, int64_t off, int64_t rows,       \
                            int64_t cols, int64_t ld, int64_t ch0)                                \
    {                                                                                              \
        const float *res = c->bn_res ? c->s[bn_steps(c)].p : NULL;                                 \
        int64_t ch = ch0 % c->C;                                                                   \
        for (int64_t i = 0; i < rows; i++, off += ld, ch = ch + 1 == c->C ? 0 : ch + 1) {          \
            float k[4];                                                                            \
            bn_consts(c, ch, k);                                                                   \
            LOOP(y + off, k, res ? res + off : NULL, c->bn_res, c->bn_act, c->out + off, cols);    \
        }                                                                                          \
    }

#ifdef CHAIN_X86
BN3_ROWS(bn3_rows_avx512, bn3_loop_avx512, __attribute__((target("avx512f"))))
BN3_ROWS(bn3_rows_avx2, bn3_loop_avx2, __attribute__((target("avx2"))))
#endif

/* The scale form's vector loops (one range, rows of a tile) for the CPU (and TY_ISA); NULL:
 * bn_loop's clones. */
static void
bn3_vector_loops(ty_fchain *c)
{
    c->bn_vec = NULL;
    c->bn_rows = NULL;
    if (!c->bn || c->bn_div) {
        return;
    }
#ifdef CHAIN_X86
    ty_isa isa = ty_cpu_isa();
    if (isa == TY_ISA_AVX512) {
        c->bn_vec = bn3_loop_avx512;
        c->bn_rows = bn3_rows_avx512;
    } else if (isa == TY_ISA_AVX2) {
        c->bn_vec = bn3_loop_avx2;
        c->bn_rows = bn3_rows_avx2;
    }
#endif
}

/* The register loop the chain runs (bn set): the vector one for the scale form where the
 * CPU (and TY_ISA) has one. */
static void
bn_run(const ty_fchain *c, const float *y, const float *k, const float *r, float *out,
       int64_t m)
{
    if (c->bn_vec) {
        c->bn_vec(y, k, r, c->bn_res, c->bn_act, out, m);
        return;
    }
    bn_loop(y, k, r, c->bn_div, c->bn_res, c->bn_act, out, m);
}

/* Whether the chain starts with the steps ops[0..n), each of a per-channel constant with the
 * running value first. */
static int
starts_with(const ty_fchain *c, const ty_op *ops, int n)
{
    if (c->n < n) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const ty_chain_step *s = &c->s[i];
        if (s->op != ops[i] || s->kind != TY_CHAIN_CHANNEL || s->chain_second) {
            return 0;
        }
    }
    return 1;
}

/* The pattern: sub, div, mul, add (a model dumped before batch norm precomputed its scale)
 * or sub, mul, add, or add alone (a bias), each of a per-channel constant with the running
 * value first, then maybe an add of a full-size operand, then maybe relu or relu6. */
static void
bn_shape(ty_fchain *c)
{
    static const ty_op div_ops[4] = {TY_OP_SUB, TY_OP_DIV, TY_OP_MUL, TY_OP_ADD};
    static const ty_op scale_ops[3] = {TY_OP_SUB, TY_OP_MUL, TY_OP_ADD};
    static const ty_op bias_ops[1] = {TY_OP_ADD};
    c->bn = 0;
    c->bn_div = starts_with(c, div_ops, 4);
    int scale = !c->bn_div && starts_with(c, scale_ops, 3);
    c->bn_bias = !c->bn_div && !scale && starts_with(c, bias_ops, 1);
    if (!c->bn_div && !scale && !c->bn_bias) {
        return;
    }
    int k = bn_steps(c);
    c->bn_res = 0;
    if (k < c->n && c->s[k].op == TY_OP_ADD && c->s[k].kind == TY_CHAIN_FULL) {
        c->bn_res = 1 + c->s[k++].chain_second;
    }
    c->bn_act = 0;
    if (k < c->n && (c->s[k].op == TY_OP_RELU || c->s[k].op == TY_OP_RELU6)) {
        c->bn_act = c->s[k++].op == TY_OP_RELU ? 1 : 2;
    }
    c->bn = k == c->n;
    bn3_vector_loops(c);
}

/* Runs the chain's steps (their own loops) on probe values; out has m elements. */
static void run_steps_on(const ty_fchain *c, const float *y, const float *res, float *out,
                         int64_t m);

enum { PROBES = 48 };

/* Whether bn_loop gives the bits of the steps' own loops on probe values (signed zeros,
 * infinities, NaN, subnormals, the clamp bounds, ordinary values) with the first channel's
 * constants: a guard that the expressions above are still scalar.def's. */
static int
bn_matches(const ty_fchain *c)
{
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f,
                                    6.0f, -6.0f, 5.999999f, 6.000001f, 1.0f, -1.0f, 3e38f,
                                    -3e38f, 0.5f};
    float y[PROBES], r[PROBES], want[PROBES], got[PROBES], k[4] = {0};
    for (int i = 0; i < PROBES; i++) {
        y[i] = i < 16 ? special[i] : (float)(i * 37 % 23) * 0.73f - 7.0f;
        r[i] = i >= 16 && i < 32 ? special[i - 16] : (float)(i * 11 % 13) * 0.61f - 3.0f;
    }
    bn_consts(c, 0, k);
    run_steps_on(c, y, r, want, PROBES);
    bn_run(c, y, k, r, got, PROBES);
    return memcmp(want, got, sizeof want) == 0;
}

static void
bn_check(ty_fchain *c)
{
    bn_shape(c);
    c->bn = c->bn && bn_matches(c);
    if (!c->bn) { /* the steps' own loops, tiles included */
        c->bn_vec = NULL;
        c->bn_rows = NULL;
    }
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
    bn_check(&c);
    *ch = c;
    return TY_OK;
}

/* m elements of channel ch: y -> steps -> out, through buf; full-size operands at res. */
static void
run_piece(const ty_fchain *c, const float *y, const float *const *res, int64_t ch, float *out,
          int64_t m, float *buf)
{
    for (int k = 0; k < c->n; k++) {
        const ty_chain_step *s = &c->s[k];
        char *p[3];
        int64_t st[3] = {1, 1, 1};
        p[0] = k == c->n - 1 ? (char *)out : (char *)buf;
        p[1 + s->chain_second] = k == 0 ? (char *)y : (char *)buf;
        if (s->kind != TY_CHAIN_UNARY) {
            int o = 2 - s->chain_second;
            st[o] = s->kind == TY_CHAIN_FULL ? 1 : 0;
            p[o] = (char *)(s->kind == TY_CHAIN_FULL      ? res[k]
                            : s->kind == TY_CHAIN_CHANNEL ? s->p + ch
                                                          : s->p);
        }
        s->loop(m, p, st, s->pv);
    }
}

static void
run_steps_on(const ty_fchain *c, const float *y, const float *res, float *out, int64_t m)
{
    const float *rs[TY_CHAIN_MAX];
    float buf[PROBES];
    for (int k = 0; k < c->n; k++) {
        rs[k] = res;
    }
    run_piece(c, y, rs, 0, out, m, buf);
}

/* Elements [pos, pos + m) of channel ch, in pieces of a local buffer. */
static void
run_segment(const ty_fchain *c, const float *y, int64_t ch, int64_t pos, int64_t m)
{
    if (c->bn) {
        float k[4];
        bn_consts(c, ch, k);
        const float *r = c->bn_res ? c->s[bn_steps(c)].p + pos : NULL;
        bn_run(c, y + pos, k, r, c->out + pos, m);
        return;
    }
    _Alignas(64) float buf[CHUNK];
    for (int64_t j = 0; j < m; j += CHUNK) {
        const float *res[TY_CHAIN_MAX];
        for (int k = 0; k < c->n; k++) {
            res[k] = c->s[k].kind == TY_CHAIN_FULL ? c->s[k].p + pos + j : NULL;
        }
        run_piece(c, y + pos + j, res, ch, c->out + pos + j, m - j < CHUNK ? m - j : CHUNK, buf);
    }
}

static void
run_range(const ty_fchain *c, const float *y, int64_t off, int64_t len)
{
    for (int64_t pos = off, end = off + len; pos < end;) {
        int64_t ch = pos / c->HW % c->C, seg = c->HW - pos % c->HW;
        seg = seg < end - pos ? seg : end - pos;
        run_segment(c, y, ch, pos, seg);
        pos += seg;
    }
}

int
ty_chain_bn_desc(const ty_fchain *c, ty_epi_bn_f32 *bn)
{
    if (!c->n || !c->bn || c->bn_div || (c->bn_bias && c->C > BIAS_MAX_C)) {
        return 0;
    }
    const float *res = c->bn_res ? c->s[bn_steps(c)].p : NULL;
    if (c->bn_bias) {
        *bn = (ty_epi_bn_f32){.mean = bias_zeros, .scale = bias_ones, .beta = c->s[0].p,
                              .res = res, .out = c->out, .res_order = c->bn_res,
                              .act = c->bn_act};
        return 1;
    }
    *bn = (ty_epi_bn_f32){.mean = c->s[0].p, .scale = c->s[1].p, .beta = c->s[2].p,
                          .res = res, .out = c->out, .res_order = c->bn_res, .act = c->bn_act};
    return 1;
}

void
ty_chain_run(const ty_fchain *c, const float *y, int64_t off, int64_t rows, int64_t cols,
             int64_t ld)
{
    if (ld == cols || rows == 1) {
        run_range(c, y, off, rows * cols);
        return;
    }
    if (ld != c->HW || off % c->HW + cols > c->HW) {
        for (int64_t i = 0; i < rows; i++) {
            run_range(c, y, off + i * ld, cols);
        }
        return;
    }
    /* a GEMM tile: row i is a segment of the plane after row i - 1's */
    int64_t plane = off / c->HW;
    if (c->bn_rows) {
        c->bn_rows(c, y, off, rows, cols, ld, plane);
        return;
    }
    for (int64_t i = 0; i < rows; i++) {
        run_segment(c, y, (plane + i) % c->C, off + i * ld, cols);
    }
}
