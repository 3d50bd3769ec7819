/* Arrange family: ops that join, cut and rearrange tensors along axes: concat (F.stack is a
 * concat of expanded inputs), split (views), repeat, tile, pad (+ pad_grad), roll, flip (a view).
 *
 * Copies go by rows with memcpy where the source is contiguous; strided sources take
 * ty_strided_copy into a view of the output. */
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

static void
set_list(ty_i64list *l, int n, const int64_t *v)
{
    l->n = n;
    memcpy(l->v, v, sizeof(int64_t) * (size_t)n);
}

/* ---- row copies: n blocks of `bytes`, block k from src + k*sstep to dst + k*dstep ---- */
typedef struct rows_ctx {
    char *dst;
    const char *src;
    int64_t dstep, sstep, bytes;
} rows_ctx;

static void
rows_range(void *vctx, int64_t begin, int64_t end)
{
    const rows_ctx *r = vctx;
    for (int64_t k = begin; k < end; k++) {
        memcpy(r->dst + k * r->dstep, r->src + k * r->sstep, (size_t)r->bytes);
    }
}

static void
copy_rows(char *dst, int64_t dstep, const char *src, int64_t sstep, int64_t n, int64_t bytes)
{
    if (n <= 0 || bytes <= 0) {
        return;
    }
    rows_ctx r = {dst, src, dstep, sstep, bytes};
    ty_parallel_for(n, (1 << 16) / bytes + 1, rows_range, &r);
}

/* Writes src into the block of out starting at element offset `off` along `axis`
 * (src has out's shape except along axis). */
static ty_status
write_block(ty_tensor *out, int axis, int64_t off, const ty_tensor *src)
{
    size_t es = ty_dtype_size(out->dtype);
    if (ty_tensor_numel(src) == 0) {
        return TY_OK;
    }
    if (src->dtype == out->dtype && ty_tensor_is_contiguous(src)) {
        int64_t inner = ty_shape_prod(out->shape, axis + 1, out->ndim);
        int64_t outer = ty_shape_prod(out->shape, 0, axis);
        int64_t bytes = src->shape[axis] * inner * (int64_t)es;
        copy_rows(ty_tensor_ptr(out) + off * inner * (int64_t)es,
                  out->shape[axis] * inner * (int64_t)es, ty_tensor_ptr(src), bytes, outer, bytes);
        return TY_OK;
    }
    ty_tensor *view;
    TY_TRY(ty_tensor_view(out, out->ndim, src->shape, out->strides,
                          out->offset + off * out->strides[axis], &view));
    ty_status st = ty_strided_copy(view, src);
    ty_tensor_release(view);
    return st;
}

/* A slice param selecting [lo, hi) along axis of a tensor of the given shape. */
static void
axis_slice(int nd, const int64_t *shape, int axis, int64_t lo, int64_t hi, ty_p_slice *p)
{
    memset(p, 0, sizeof *p);
    p->starts.n = p->stops.n = p->steps.n = nd;
    for (int d = 0; d < nd; d++) {
        p->starts.v[d] = d == axis ? lo : 0;
        p->stops.v[d] = d == axis ? hi : shape[d];
        p->steps.v[d] = 1;
    }
}

/* ---- concat(x0, x1, ...; axis) ---- */
ty_status
ty_concat_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *x0 = c->in[0];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(x0->ndim >= 1, TY_ERR_SHAPE, "cannot concatenate 0-d tensors");
    int axis;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, x0->ndim, &axis));
    ty_meta_of(x0, out);
    for (int i = 1; i < c->nin; i++) {
        const ty_tensor *x = c->in[i];
        int ok = x->ndim == x0->ndim;
        for (int d = 0; ok && d < x->ndim; d++) {
            ok = d == axis || x->shape[d] == x0->shape[d];
        }
        TY_CHECK(ok, TY_ERR_SHAPE, "input %d of shape %s does not match input 0 of shape %s "
                 "outside axis %d", i, ty_shape_str(x->ndim, x->shape, b1, sizeof b1),
                 ty_shape_str(x0->ndim, x0->shape, b2, sizeof b2), axis);
        TY_CHECK(!__builtin_add_overflow(out->shape[axis], x->shape[axis], &out->shape[axis]),
                 TY_ERR_SHAPE, "concatenated size overflows");
        out->dtype = ty_promote(out->dtype, x->dtype);
    }
    return TY_OK;
}

/* Contiguous inputs of the output's dtype: the output is cut into pieces of CAT_PIECE bytes,
 * split among threads in one region whatever the number of inputs or rows (at batch 1 a
 * concat along the channels is one row per input). An output row is every input's block in
 * turn: input i's block starts at byte at[i] of the row, at[nin] is the row's length. */
enum { CAT_PIECE = 4096, CAT_SMALL = 16 };

typedef struct cat_ctx {
    char *dst;
    const char *const *src;
    const int64_t *at;
    int nin;
    int64_t total;
} cat_ctx;

/* The input whose block holds byte off of a row: the last i with at[i] <= off (empty blocks
 * share their start with the next one). */
static int
block_of(const int64_t *at, int nin, int64_t off)
{
    int lo = 0, hi = nin - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (at[mid] <= off) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

static void
cat_range(void *vctx, int64_t begin, int64_t end)
{
    const cat_ctx *c = vctx;
    const int64_t row = c->at[c->nin];
    int64_t p = begin * CAT_PIECE, stop = end * CAT_PIECE < c->total ? end * CAT_PIECE : c->total;
    while (p < stop) {
        int64_t r = p / row, off = p % row;
        int i = block_of(c->at, c->nin, off);
        int64_t blk = c->at[i + 1] - c->at[i];
        int64_t take = c->at[i + 1] - off < stop - p ? c->at[i + 1] - off : stop - p;
        memcpy(c->dst + p, c->src[i] + r * blk + (off - c->at[i]), (size_t)take);
        p += take;
    }
}

static int
concat_is_flat(const ty_call *c, const ty_tensor *out)
{
    if (!ty_tensor_is_contiguous(out)) {
        return 0;
    }
    for (int i = 0; i < c->nin; i++) {
        if (c->in[i]->dtype != out->dtype || !ty_tensor_is_contiguous(c->in[i])) {
            return 0;
        }
    }
    return 1;
}

static ty_status
concat_flat(const ty_call *c, ty_tensor *out, int axis)
{
    int64_t at_small[CAT_SMALL + 1];
    const char *src_small[CAT_SMALL];
    int64_t *at = at_small;
    const char **src = src_small;
    if (c->nin > CAT_SMALL) {
        at = malloc(sizeof(int64_t) * ((size_t)c->nin + 1));
        src = malloc(sizeof(char *) * (size_t)c->nin);
        if (!at || !src) {
            free(at);
            free(src);
            return ty_set_error(TY_ERR_OOM, "out of memory for %d inputs", c->nin);
        }
    }
    int64_t inner = ty_shape_prod(out->shape, axis + 1, out->ndim) *
                    (int64_t)ty_dtype_size(out->dtype);
    at[0] = 0;
    for (int i = 0; i < c->nin; i++) {
        src[i] = ty_tensor_ptr(c->in[i]);
        at[i + 1] = at[i] + c->in[i]->shape[axis] * inner;
    }
    cat_ctx cc = {ty_tensor_ptr(out), src, at, c->nin,
                  ty_shape_prod(out->shape, 0, axis) * at[c->nin]};
    if (cc.total > 0) {
        /* chunks of 256 KB or more: smaller concats (ShuffleNetV2's, at batch 1) copy in the
         * caller, without a region of a few microseconds */
        ty_parallel_for((cc.total + CAT_PIECE - 1) / CAT_PIECE, (1 << 18) / CAT_PIECE, cat_range,
                        &cc);
    }
    if (at != at_small) {
        free(at);
        free(src);
    }
    return TY_OK;
}

ty_status
ty_concat_forward(const ty_call *c, ty_tensor **out)
{
    int axis;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, c->in[0]->ndim, &axis));
    if (concat_is_flat(c, out[0])) {
        return concat_flat(c, out[0], axis);
    }
    int64_t off = 0;
    for (int i = 0; i < c->nin; i++) {
        TY_TRY(write_block(out[0], axis, off, c->in[i]));
        off += c->in[i]->shape[axis];
    }
    return TY_OK;
}

/* A new reference to t cast to dt (through the dispatcher: differentiable). */
static ty_status
cast_to(ty_tensor *t, ty_dtype dt, ty_tensor **out)
{
    if (t->dtype == dt) {
        ty_tensor_retain(t);
        *out = t;
        return TY_OK;
    }
    ty_p_astype p = {.dtype = dt};
    return ty_op1(TY_OP_ASTYPE, &p, t, out);
}

ty_status
ty_grad_concat(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    int axis;
    TY_TRY(ty_norm_axis(((const ty_p_axis *)c->params)->axis, c->in[0]->ndim, &axis));
    const ty_tensor *g = gout[0];
    int64_t off = 0;
    for (int i = 0; i < c->nin; i++) {
        ty_p_slice p;
        ty_tensor *s = NULL;
        int64_t n = c->in[i]->shape[axis];
        axis_slice(g->ndim, g->shape, axis, off, off + n, &p);
        off += n;
        if (!ty_dtype_is_float(c->in[i]->dtype)) {
            continue;
        }
        ty_status st = ty_op1(TY_OP_SLICE, &p, gout[0], &s);
        if (st == TY_OK) {
            st = cast_to(s, c->in[i]->dtype, &gin[i]);
        }
        ty_tensor_release(s);
        TY_TRY(st);
    }
    return TY_OK;
}

/* ---- split(x; axis, sizes) -> nout views; empty sizes = nout near-equal parts ---- */
static ty_status
split_sizes(const ty_call *c, int *axis, int64_t *sizes)
{
    const ty_p_split *p = c->params;
    const ty_tensor *x = c->in[0];
    TY_CHECK(x->ndim >= 1, TY_ERR_SHAPE, "cannot split a 0-d tensor");
    TY_TRY(ty_norm_axis(p->axis, x->ndim, axis));
    int64_t n = x->shape[*axis], total = 0;
    if (p->sizes.n == 0) {
        for (int i = 0; i < c->nout; i++) {
            sizes[i] = n / c->nout + (i < n % c->nout);
        }
        return TY_OK;
    }
    TY_CHECK(p->sizes.n == c->nout, TY_ERR_INVALID_ARG, "%d sizes given for %d outputs",
             (int)p->sizes.n, c->nout);
    for (int i = 0; i < c->nout; i++) {
        sizes[i] = p->sizes.v[i];
        TY_CHECK(sizes[i] >= 0 && sizes[i] <= n, TY_ERR_INVALID_ARG,
                 "split size %lld is out of range for a dim of size %lld", (long long)sizes[i],
                 (long long)n);
        total += sizes[i];
    }
    TY_CHECK(total == n, TY_ERR_SHAPE, "split sizes sum to %lld, but axis %d has size %lld",
             (long long)total, *axis, (long long)n);
    return TY_OK;
}

ty_status
ty_split_infer(const ty_call *c, ty_meta *out)
{
    int axis;
    int64_t sizes[TY_MAX_OUTPUTS];
    TY_CHECK(c->nout <= TY_MAX_OUTPUTS, TY_ERR_INVALID_ARG, "too many outputs (%d)", c->nout);
    TY_TRY(split_sizes(c, &axis, sizes));
    for (int i = 0; i < c->nout; i++) {
        ty_meta_of(c->in[0], &out[i]);
        out[i].shape[axis] = sizes[i];
    }
    return TY_OK;
}

ty_status
ty_split_forward(const ty_call *c, ty_tensor **out)
{
    int axis;
    int64_t sizes[TY_MAX_OUTPUTS];
    const ty_tensor *x = c->in[0];
    TY_CHECK(c->nout <= TY_MAX_OUTPUTS, TY_ERR_INVALID_ARG, "too many outputs (%d)", c->nout);
    TY_TRY(split_sizes(c, &axis, sizes));
    int64_t shape[TY_MAX_DIMS], off = x->offset;
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    for (int i = 0; i < c->nout; i++) {
        shape[axis] = sizes[i];
        TY_TRY(ty_tensor_view(x, x->ndim, shape, x->strides, sizes[i] ? off : x->offset, &out[i]));
        off += sizes[i] * x->strides[axis];
    }
    return TY_OK;
}

ty_status
ty_grad_split(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    ty_tensor *g[TY_MAX_OUTPUTS] = {0};
    ty_status st = TY_OK;
    int axis;
    TY_TRY(ty_norm_axis(((const ty_p_split *)c->params)->axis, c->in[0]->ndim, &axis));
    for (int i = 0; i < c->nout && st == TY_OK; i++) {
        if (gout[i]) {
            ty_tensor_retain(gout[i]);
            g[i] = gout[i];
        } else {
            st = ty_zeros_shaped(out[i]->dtype, out[i]->ndim, out[i]->shape, &g[i]);
        }
    }
    if (st == TY_OK) {
        ty_p_axis p = {.axis = axis};
        st = ty_apply(TY_OP_CONCAT, &p, c->nout, g, 1, &gin[0]);
    }
    for (int i = 0; i < c->nout; i++) {
        ty_tensor_release(g[i]);
    }
    return st;
}

/* ---- repeat(x; repeats, axis): each slice along axis repeated `repeats` times ---- */
ty_status
ty_repeat_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_repeat *p = c->params;
    const ty_tensor *x = c->in[0];
    int axis;
    TY_CHECK(x->ndim >= 1, TY_ERR_SHAPE, "repeat needs a tensor with at least 1 dim");
    TY_TRY(ty_norm_axis(p->axis, x->ndim, &axis));
    ty_meta_of(x, out);
    TY_CHECK(!__builtin_mul_overflow(x->shape[axis], p->repeats, &out->shape[axis]),
             TY_ERR_SHAPE, "repeated size overflows");
    int64_t n;
    return ty_shape_numel(out->ndim, out->shape, &n);
}

typedef struct repeat_ctx {
    char *dst;
    const char *src;
    int64_t reps, bytes;
} repeat_ctx;

static void
repeat_range(void *vctx, int64_t begin, int64_t end)
{
    const repeat_ctx *r = vctx;
    for (int64_t k = begin; k < end; k++) {
        char *d = r->dst + k * r->reps * r->bytes;
        for (int64_t j = 0; j < r->reps; j++) {
            memcpy(d + j * r->bytes, r->src + k * r->bytes, (size_t)r->bytes);
        }
    }
}

ty_status
ty_repeat_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_repeat *p = c->params;
    int axis;
    TY_TRY(ty_norm_axis(p->axis, c->in[0]->ndim, &axis));
    if (ty_tensor_numel(out[0]) == 0) {
        return TY_OK;
    }
    ty_tensor *x;
    TY_TRY(ty_contiguous(c->in[0], &x));
    int64_t rows = ty_shape_prod(x->shape, 0, axis + 1);
    repeat_ctx r = {ty_tensor_ptr(out[0]), ty_tensor_ptr(x), p->repeats,
                    ty_shape_prod(x->shape, axis + 1, x->ndim) * (int64_t)ty_dtype_size(x->dtype)};
    ty_parallel_for(rows, (1 << 16) / (r.bytes * r.reps) + 1, repeat_range, &r);
    ty_tensor_release(x);
    return TY_OK;
}

/* Sums g (shape = x's with dim d of size s*r, s-major) over the r copies: reshape to
 * (outer, s, r, inner) or (outer, r, s, inner) and sum the r axis. */
static ty_tensor *
sum_copies(ty_gk *k, ty_tensor *g, int d, int64_t s, int64_t r, int r_major)
{
    if (!g) {
        return NULL;
    }
    ty_p_shape sp = {0};
    int64_t outer = ty_shape_prod(g->shape, 0, d), inner = ty_shape_prod(g->shape, d + 1, g->ndim);
    int64_t v[4] = {outer, r_major ? r : s, r_major ? s : r, inner};
    set_list(&sp.shape, 4, v);
    ty_p_reduce rp = {0};
    rp.axes.n = 1;
    rp.axes.v[0] = r_major ? 1 : 2;
    ty_tensor *t = gk_apply(k, TY_OP_RESHAPE, &sp, 1, g, NULL, NULL);
    t = t ? gk_apply(k, TY_OP_SUM, &rp, 1, t, NULL, NULL) : NULL;
    if (!t) {
        return NULL;
    }
    set_list(&sp.shape, g->ndim, g->shape);
    sp.shape.v[d] = s;
    return gk_apply(k, TY_OP_RESHAPE, &sp, 1, t, NULL, NULL);
}

ty_status
ty_grad_repeat(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const ty_p_repeat *p = c->params;
    int axis;
    TY_TRY(ty_norm_axis(p->axis, c->in[0]->ndim, &axis));
    ty_gk k = {0};
    ty_tensor *r = sum_copies(&k, gout[0], axis, c->in[0]->shape[axis], p->repeats, 0);
    return gk_finish(&k, r, &gin[0]);
}

/* ---- tile(x; reps): numpy semantics (shorter reps / shape are padded with leading 1s) ---- */
static ty_status
tile_plan(const ty_call *c, int *nd, int64_t *xs, int64_t *rs)
{
    const ty_i64list *reps = &((const ty_p_tile *)c->params)->reps;
    const ty_tensor *x = c->in[0];
    *nd = x->ndim > reps->n ? x->ndim : reps->n;
    TY_CHECK(*nd <= TY_MAX_DIMS, TY_ERR_SHAPE, "tile result has %d dims (max %d)", *nd,
             TY_MAX_DIMS);
    for (int d = 0; d < *nd; d++) {
        int dx = d - (*nd - x->ndim), dr = d - (*nd - reps->n);
        xs[d] = dx >= 0 ? x->shape[dx] : 1;
        rs[d] = dr >= 0 ? reps->v[dr] : 1;
    }
    return TY_OK;
}

ty_status
ty_tile_infer(const ty_call *c, ty_meta *out)
{
    int64_t xs[TY_MAX_DIMS], rs[TY_MAX_DIMS], n;
    TY_TRY(tile_plan(c, &out->ndim, xs, rs));
    out->dtype = c->in[0]->dtype;
    for (int d = 0; d < out->ndim; d++) {
        TY_CHECK(!__builtin_mul_overflow(xs[d], rs[d], &out->shape[d]), TY_ERR_SHAPE,
                 "tiled size overflows");
    }
    return ty_shape_numel(out->ndim, out->shape, &n);
}

/* After x is written at the origin block, replicate along dims from the innermost out:
 * once dims > d are complete, the block [0:xs[d], full...] is one contiguous chunk. */
static void
tile_replicate(ty_tensor *y, const int64_t *xs, const int64_t *rs)
{
    size_t es = ty_dtype_size(y->dtype);
    char *base = ty_tensor_ptr(y);
    for (int d = y->ndim - 1; d >= 0; d--) {
        int64_t chunk = xs[d] * ty_shape_prod(y->shape, d + 1, y->ndim) * (int64_t)es;
        int64_t np = ty_shape_prod(xs, 0, d);
        for (int64_t i = 0; i < np && rs[d] > 1; i++) {
            int64_t off = 0, r = i;
            for (int k = d - 1; k >= 0; k--) {
                off += (r % xs[k]) * y->strides[k];
                r /= xs[k];
            }
            char *src = base + off * (int64_t)es;
            copy_rows(src + chunk, chunk, src, 0, rs[d] - 1, chunk);
        }
    }
}

ty_status
ty_tile_forward(const ty_call *c, ty_tensor **out)
{
    int nd;
    int64_t xs[TY_MAX_DIMS], rs[TY_MAX_DIMS];
    TY_TRY(tile_plan(c, &nd, xs, rs));
    ty_tensor *y = out[0], *view;
    if (ty_tensor_numel(y) == 0) {
        return TY_OK;
    }
    TY_TRY(ty_tensor_view(y, nd, xs, y->strides, y->offset, &view));
    ty_status st = ty_strided_copy(view, c->in[0]);
    ty_tensor_release(view);
    TY_TRY(st);
    tile_replicate(y, xs, rs);
    return TY_OK;
}

ty_status
ty_grad_tile(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    int nd;
    int64_t xs[TY_MAX_DIMS], rs[TY_MAX_DIMS];
    TY_TRY(tile_plan(c, &nd, xs, rs));
    ty_gk k = {0};
    ty_tensor *g = gout[0];
    for (int d = 0; d < nd && g; d++) {
        if (rs[d] != 1) {
            g = sum_copies(&k, g, d, xs[d], rs[d], 1);
        }
    }
    ty_p_shape sp = {0};
    set_list(&sp.shape, c->in[0]->ndim, c->in[0]->shape);
    g = g ? gk_apply(&k, TY_OP_RESHAPE, &sp, 1, g, NULL, NULL) : NULL;
    return gk_finish(&k, g, &gin[0]);
}

/* ---- pad(x; pads = [before0, after0, ...], mode 0 constant / 1 reflect / 2 edge, value) ---- */
enum { PAD_CONSTANT = 0, PAD_REFLECT = 1, PAD_EDGE = 2 };

/* Checks pads against the unpadded shape xs. */
static ty_status
pad_check(const ty_p_pad *p, int nd, const int64_t *xs)
{
    TY_CHECK(p->pads.n == 2 * nd, TY_ERR_INVALID_ARG,
             "pads has %d entries, a %d-d tensor needs %d", (int)p->pads.n, nd, 2 * nd);
    for (int d = 0; d < nd; d++) {
        int64_t b = p->pads.v[2 * d], a = p->pads.v[2 * d + 1], n = xs[d];
        TY_CHECK(b >= 0 && a >= 0, TY_ERR_INVALID_ARG, "negative padding (%lld, %lld) at dim %d",
                 (long long)b, (long long)a, d);
        TY_CHECK(p->mode != PAD_REFLECT || (b < n && a < n) || (a == 0 && b == 0),
                 TY_ERR_INVALID_ARG, "reflect padding (%lld, %lld) must be smaller than the "
                 "size %lld of dim %d", (long long)b, (long long)a, (long long)n, d);
        TY_CHECK(p->mode != PAD_EDGE || n > 0 || (a == 0 && b == 0), TY_ERR_INVALID_ARG,
                 "edge padding of the empty dim %d", d);
    }
    return TY_OK;
}

ty_status
ty_pad_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_pad *p = c->params;
    const ty_tensor *x = c->in[0];
    TY_TRY(pad_check(p, x->ndim, x->shape));
    ty_meta_of(x, out);
    for (int d = 0; d < x->ndim; d++) {
        int64_t t;
        TY_CHECK(!__builtin_add_overflow(x->shape[d], p->pads.v[2 * d], &t) &&
                     !__builtin_add_overflow(t, p->pads.v[2 * d + 1], &out->shape[d]),
                 TY_ERR_SHAPE, "padded size overflows");
    }
    int64_t n;
    return ty_shape_numel(out->ndim, out->shape, &n);
}

/* Source index of padded position i in a dim of size n with `before` padding; -1 = constant. */
static int64_t
pad_source(int mode, int64_t i, int64_t before, int64_t n)
{
    int64_t j = i - before;
    if (j >= 0 && j < n) {
        return j;
    }
    if (mode == PAD_CONSTANT) {
        return -1;
    }
    if (mode == PAD_EDGE) {
        return j < 0 ? 0 : n - 1;
    }
    return j < 0 ? -j : 2 * (n - 1) - j; /* reflect without repeating the edge */
}

typedef struct pad_ctx {
    const ty_p_pad *p;
    int nd;
    const int64_t *xs, *ys; /* unpadded / padded shapes */
    int64_t *map[TY_MAX_DIMS]; /* per dim: padded index -> source index or -1 */
    char *x, *y;             /* contiguous, x unpadded */
    size_t es;
    char fill[16];
} pad_ctx;

static ty_status
pad_maps(pad_ctx *pc, int64_t **buf)
{
    int64_t total = 0;
    for (int d = 0; d < pc->nd; d++) {
        total += pc->ys[d];
    }
    *buf = malloc(sizeof(int64_t) * (size_t)(total ? total : 1));
    TY_CHECK(*buf, TY_ERR_OOM, "out of memory for pad index maps");
    int64_t *m = *buf;
    for (int d = 0; d < pc->nd; d++) {
        pc->map[d] = m;
        for (int64_t i = 0; i < pc->ys[d]; i++) {
            m[i] = pad_source((int)pc->p->mode, i, pc->p->pads.v[2 * d], pc->xs[d]);
        }
        m += pc->ys[d];
    }
    return TY_OK;
}

/* Offset (elements) in x of the row for padded row index r (all dims but the last), or -1. */
static int64_t
pad_row_source(const pad_ctx *pc, int64_t r)
{
    int64_t off = 0, stride = pc->xs[pc->nd - 1];
    for (int d = pc->nd - 2; d >= 0; d--) {
        int64_t s = pc->map[d][r % pc->ys[d]];
        r /= pc->ys[d];
        if (s < 0) {
            return -1;
        }
        off += s * stride;
        stride *= pc->xs[d];
    }
    return off;
}

static void
pad_range(void *vctx, int64_t begin, int64_t end)
{
    const pad_ctx *pc = vctx;
    int last = pc->nd - 1;
    int64_t yn = pc->ys[last], xn = pc->xs[last], before = pc->p->pads.v[2 * last];
    const int64_t *m = pc->map[last];
    size_t es = pc->es;
    for (int64_t r = begin; r < end; r++) {
        char *dst = pc->y + r * yn * (int64_t)es;
        int64_t src = pad_row_source(pc, r);
        if (src < 0) {
            for (int64_t i = 0; i < yn; i++) {
                ty_copy_elem(dst + i * (int64_t)es, pc->fill, es);
            }
            continue;
        }
        const char *s = pc->x + src * (int64_t)es;
        for (int64_t i = 0; i < yn; i++) {
            if (i == before && xn > 0) { /* the unpadded middle in one copy */
                memcpy(dst + i * (int64_t)es, s, (size_t)xn * es);
                i += xn - 1;
                continue;
            }
            ty_copy_elem(dst + i * (int64_t)es, m[i] < 0 ? pc->fill : s + m[i] * (int64_t)es, es);
        }
    }
}

ty_status
ty_pad_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_pad *p = c->params;
    ty_tensor *y = out[0], *x = NULL;
    int64_t *buf = NULL;
    ty_status status = TY_OK;
    if (ty_tensor_numel(y) == 0) {
        return TY_OK;
    }
    if (y->ndim == 0) {
        return ty_strided_copy(y, c->in[0]);
    }
    pad_ctx pc = {.p = p, .nd = y->ndim, .xs = c->in[0]->shape, .ys = y->shape,
                  .es = ty_dtype_size(y->dtype)};
    ty_store_f64(pc.fill, y->dtype, p->value);
    TY_TRY_GOTO(ty_contiguous(c->in[0], &x));
    TY_TRY_GOTO(pad_maps(&pc, &buf));
    pc.x = ty_tensor_ptr(x);
    pc.y = ty_tensor_ptr(y);
    int64_t rows = ty_shape_prod(y->shape, 0, y->ndim - 1);
    ty_parallel_for(rows, (1 << 15) / (y->shape[y->ndim - 1] + 1) + 1, pad_range, &pc);
fail:
    free(buf);
    ty_tensor_release(x);
    return status;
}

ty_status
ty_grad_pad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    return ty_op1(TY_OP_PAD_GRAD, c->params, gout[0], &gin[0]);
}

/* pad_grad(g): the adjoint of pad (value ignored): sums g into the unpadded shape. */
ty_status
ty_pad_grad_infer(const ty_call *c, ty_meta *out)
{
    const ty_p_pad *p = c->params;
    const ty_tensor *g = c->in[0];
    TY_CHECK(ty_dtype_is_float(g->dtype), TY_ERR_DTYPE, "pad_grad needs a float gradient, got %s",
             ty_dtype_name(g->dtype));
    TY_CHECK(p->pads.n == 2 * g->ndim, TY_ERR_INVALID_ARG,
             "pads has %d entries, a %d-d tensor needs %d", (int)p->pads.n, g->ndim, 2 * g->ndim);
    ty_meta_of(g, out);
    for (int d = 0; d < g->ndim; d++) {
        out->shape[d] = g->shape[d] - p->pads.v[2 * d] - p->pads.v[2 * d + 1];
        TY_CHECK(out->shape[d] >= 0 && p->pads.v[2 * d] >= 0 && p->pads.v[2 * d + 1] >= 0,
                 TY_ERR_SHAPE, "pads do not fit dim %d of size %lld", d, (long long)g->shape[d]);
    }
    return pad_check(p, out->ndim, out->shape);
}

static void
pad_grad_rows(const pad_ctx *pc, ty_dtype dt)
{
    int last = pc->nd - 1;
    int64_t yn = pc->ys[last], rows = ty_shape_prod(pc->ys, 0, last);
    const int64_t *m = pc->map[last];
    for (int64_t r = 0; r < rows; r++) { /* serial: rows may share sources (determinism) */
        int64_t src = pad_row_source(pc, r);
        if (src < 0) {
            continue;
        }
        if (dt == TY_FLOAT32) {
            const float *g = (const float *)pc->y + r * yn;
            float *x = (float *)pc->x + src;
            for (int64_t i = 0; i < yn; i++) {
                if (m[i] >= 0) {
                    x[m[i]] += g[i];
                }
            }
        } else {
            for (int64_t i = 0; i < yn; i++) {
                if (m[i] >= 0) {
                    char *xp = pc->x + (src + m[i]) * (int64_t)pc->es;
                    double v = ty_load_f64(xp, dt) +
                               ty_load_f64(pc->y + (r * yn + i) * (int64_t)pc->es, dt);
                    ty_store_f64(xp, dt, v);
                }
            }
        }
    }
}

ty_status
ty_pad_grad_forward(const ty_call *c, ty_tensor **out)
{
    ty_tensor *x = out[0], *g = NULL;
    int64_t *buf = NULL;
    ty_status status = TY_OK;
    memset(ty_tensor_ptr(x), 0, (size_t)ty_tensor_numel(x) * ty_dtype_size(x->dtype));
    if (ty_tensor_numel(c->in[0]) == 0 || x->ndim == 0) {
        return x->ndim == 0 ? ty_strided_copy(x, c->in[0]) : TY_OK;
    }
    pad_ctx pc = {.p = c->params, .nd = x->ndim, .xs = x->shape, .ys = c->in[0]->shape,
                  .es = ty_dtype_size(x->dtype)};
    TY_TRY_GOTO(ty_contiguous(c->in[0], &g));
    TY_TRY_GOTO(pad_maps(&pc, &buf));
    pc.x = ty_tensor_ptr(x);
    pc.y = ty_tensor_ptr(g);
    pad_grad_rows(&pc, x->dtype);
fail:
    free(buf);
    ty_tensor_release(g);
    return status;
}

ty_status
ty_grad_pad_grad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout,
                 ty_tensor **gin)
{
    (void)out;
    ty_p_pad p = *(const ty_p_pad *)c->params;
    p.value = 0.0; /* the linear part of pad */
    return ty_op1(TY_OP_PAD, &p, gout[0], &gin[0]);
}

/* ---- roll(x; shifts, axes) ---- */
static ty_status
roll_shifts(const ty_call *c, int64_t *shift)
{
    const ty_p_roll *p = c->params;
    const ty_tensor *x = c->in[0];
    TY_CHECK(p->shifts.n == p->axes.n, TY_ERR_INVALID_ARG, "%d shifts given for %d axes",
             (int)p->shifts.n, (int)p->axes.n);
    for (int d = 0; d < x->ndim; d++) {
        shift[d] = 0;
    }
    for (int i = 0; i < p->axes.n; i++) {
        int a;
        TY_TRY(ty_norm_axis(p->axes.v[i], x->ndim, &a));
        int64_t n = x->ndim ? x->shape[a] : 1;
        if (n > 0) {
            shift[a] = ((shift[a] + p->shifts.v[i] % n) % n + n) % n;
        }
    }
    return TY_OK;
}

ty_status
ty_roll_infer(const ty_call *c, ty_meta *out)
{
    int64_t shift[TY_MAX_DIMS];
    TY_TRY(roll_shifts(c, shift));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

/* Block `combo` (bit d: the wrapped-around part of dim d) of the rolled output. */
static ty_status
roll_block(const ty_tensor *x, ty_tensor *y, const int64_t *shift, unsigned combo)
{
    int64_t shape[TY_MAX_DIMS], xoff = x->offset, yoff = y->offset;
    for (int d = 0; d < x->ndim; d++) {
        int64_t n = x->shape[d], s = shift[d];
        int wrap = (combo >> d) & 1;
        if (wrap && s == 0) {
            return TY_OK;
        }
        shape[d] = wrap ? s : n - s;
        xoff += (wrap ? n - s : 0) * x->strides[d];
        yoff += (wrap ? 0 : s) * y->strides[d];
        if (shape[d] == 0) {
            return TY_OK;
        }
    }
    ty_tensor *xv = NULL, *yv = NULL;
    ty_status st = ty_tensor_view(x, x->ndim, shape, x->strides, xoff, &xv);
    if (st == TY_OK) {
        st = ty_tensor_view(y, y->ndim, shape, y->strides, yoff, &yv);
    }
    if (st == TY_OK) {
        st = ty_strided_copy(yv, xv);
    }
    ty_tensor_release(xv);
    ty_tensor_release(yv);
    return st;
}

ty_status
ty_roll_forward(const ty_call *c, ty_tensor **out)
{
    int64_t shift[TY_MAX_DIMS];
    TY_TRY(roll_shifts(c, shift));
    if (ty_tensor_numel(out[0]) == 0) {
        return TY_OK;
    }
    for (unsigned combo = 0; combo < (1u << c->in[0]->ndim); combo++) {
        TY_TRY(roll_block(c->in[0], out[0], shift, combo));
    }
    return TY_OK;
}

ty_status
ty_grad_roll(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    int64_t shift[TY_MAX_DIMS];
    const ty_tensor *x = c->in[0];
    TY_TRY(roll_shifts(c, shift));
    ty_p_roll p = {0};
    for (int d = 0; d < x->ndim; d++) { /* the inverse roll, from normalised shifts */
        p.axes.v[p.axes.n++] = d;
        p.shifts.v[p.shifts.n++] = shift[d] ? x->shape[d] - shift[d] : 0;
    }
    if (x->ndim == 0) {
        p.axes.n = p.shifts.n = 1;
    }
    return ty_op1(TY_OP_ROLL, &p, gout[0], &gin[0]);
}

/* ---- flip(x; axes): a view with negated strides ---- */
static ty_status
flip_mark(const ty_call *c, int *mark)
{
    const ty_i64list *axes = &((const ty_p_axes *)c->params)->axes;
    const ty_tensor *x = c->in[0];
    memset(mark, 0, sizeof(int) * TY_MAX_DIMS);
    for (int i = 0; i < axes->n; i++) {
        int a;
        TY_TRY(ty_norm_axis(axes->v[i], x->ndim, &a));
        TY_CHECK(!mark[a] || x->ndim == 0, TY_ERR_INVALID_ARG, "repeated axis %lld",
                 (long long)axes->v[i]);
        mark[a] = x->ndim > 0;
    }
    return TY_OK;
}

ty_status
ty_flip_infer(const ty_call *c, ty_meta *out)
{
    int mark[TY_MAX_DIMS];
    TY_TRY(flip_mark(c, mark));
    ty_meta_of(c->in[0], out);
    return TY_OK;
}

ty_status
ty_flip_forward(const ty_call *c, ty_tensor **out)
{
    const ty_tensor *x = c->in[0];
    int mark[TY_MAX_DIMS];
    TY_TRY(flip_mark(c, mark));
    int64_t strides[TY_MAX_DIMS], off = x->offset;
    for (int d = 0; d < x->ndim; d++) {
        strides[d] = mark[d] ? -x->strides[d] : x->strides[d];
        if (mark[d] && x->shape[d] > 0) {
            off += (x->shape[d] - 1) * x->strides[d];
        }
    }
    return ty_tensor_view(x, x->ndim, x->shape, strides, off, out);
}

ty_status
ty_grad_flip(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    return ty_op1(TY_OP_FLIP, c->params, gout[0], &gin[0]);
}
