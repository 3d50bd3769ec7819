/* Vision ops (MegEngine's functional.vision): RoI align and RoI pooling with their backward
 * and "select" ops, remap and warp_perspective with their backward ops, and nms.
 *
 * Ops (x is (N, C, H, W), rois (K, 5) rows of (batch, x0, y0, x1, y1)):
 *   roi_align(x, rois) -> (K, C, OH, OW)         roi_pooling(x, rois) -> same   (params roi)
 *   roi_*_backward(x, rois, dy) -> dx            roi_*_select(x, rois, g) -> y-shaped
 *   remap(x, map) -> (N, C, OH, OW), map (N, OH, OW, 2) of (x, y) source coordinates
 *   warp_perspective(x, mat, mat_idx) -> (M, C, out_h, out_w), mat (M, 3, 3) mapping output
 *     (col, row, 1) to input coordinates, mat_idx (M,) the input image of each matrix
 *   remap_backward(x, map, dy), warp_perspective_backward(x, mat, mat_idx, dy) -> dx
 *   remap_backward_mat(x, map, dy) -> dmap, warp_perspective_backward_mat(..., dy) -> dmat
 *   nms(boxes, scores) -> int32 indices of the kept boxes by descending score (params nms)
 *
 * Every sampling op is linear in the values it reads, with weights that depend on x only
 * through max mode's argmax: roi_*(x) = select(x, rois, x), whose gradient is the backward op;
 * the backward op is linear in dy with the select op as its adjoint, and vice versa, so every
 * rule is itself differentiable. The boxes get no gradient. The maps and matrices get theirs
 * (MegEngine's RemapBackwardMat, WarpPerspectiveBackwardMat) from remap_backward_mat and
 * warp_perspective_backward_mat(x, coords[, mat_idx], dy): first order only, since those ops
 * have no gradient of their own (a recorded backward that needs them raises).
 * Computation runs in float32 (float64 for float64 tensors) through src/kernels/cpu/vision.h;
 * data-dependent indices (a RoI's batch, mat_idx) are checked before any kernel runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/vision.h"
#include "ops/gradkit.h"
#include "ops/strided.h"

/* Coordinates beyond this (after scaling) are refused: the kernels cast them to integers. */
#define COORD_LIMIT 1e12
/* Samples per bin allowed for dense sampling (sample points 0): a huge box must not hang. */
#define MAX_GRID (1 << 20)

/* ---- shared checks ---- */
static ty_status
check_image(const ty_tensor *x, const char *what)
{
    char b[TY_SHAPE_BUF];
    TY_CHECK(x->ndim == 4, TY_ERR_SHAPE, "%s must be 4-d (N, C, H, W), got shape %s", what,
             ty_shape_str(x->ndim, x->shape, b, sizeof b));
    TY_CHECK(ty_dtype_is_float(x->dtype), TY_ERR_DTYPE, "%s must be floating point, got %s",
             what, ty_dtype_name(x->dtype));
    return TY_OK;
}

static ty_status
check_float(const ty_tensor *t, const char *what)
{
    TY_CHECK(ty_dtype_is_float(t->dtype), TY_ERR_DTYPE, "%s must be floating point, got %s",
             what, ty_dtype_name(t->dtype));
    return TY_OK;
}

static ty_status
check_shape(const ty_tensor *t, int nd, const int64_t *shape, const char *what)
{
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(t->ndim == nd && memcmp(t->shape, shape, sizeof(int64_t) * (size_t)nd) == 0,
             TY_ERR_SHAPE, "%s has shape %s, expected %s", what,
             ty_shape_str(t->ndim, t->shape, b1, sizeof b1), ty_shape_str(nd, shape, b2, sizeof b2));
    return TY_OK;
}

static void
zero_fill(ty_tensor *t)
{
    memset(ty_tensor_ptr(t), 0, (size_t)ty_tensor_numel(t) * ty_dtype_size(t->dtype));
}

/* A contiguous float64 copy of t (validated by the caller's checks afterwards). */
static ty_status
as_f64(ty_tensor *t, ty_tensor **out)
{
    return ty_contiguous_as(t, TY_FLOAT64, out);
}

/* ===================== RoI align / RoI pooling ===================== */
typedef enum roi_kind { ROI_FWD, ROI_BWD, ROI_SEL } roi_kind;

typedef struct roi_row {
    int pooling;
    roi_kind kind;
    ty_op grad_op; /* fwd: the backward op; bwd: the select op; sel: the backward op */
} roi_row;

static const roi_row roi_rows[TY_OP_COUNT] = {
    [TY_OP_ROI_ALIGN] = {0, ROI_FWD, TY_OP_ROI_ALIGN_BACKWARD},
    [TY_OP_ROI_ALIGN_BACKWARD] = {0, ROI_BWD, TY_OP_ROI_ALIGN_SELECT},
    [TY_OP_ROI_ALIGN_SELECT] = {0, ROI_SEL, TY_OP_ROI_ALIGN_BACKWARD},
    [TY_OP_ROI_POOLING] = {1, ROI_FWD, TY_OP_ROI_POOLING_BACKWARD},
    [TY_OP_ROI_POOLING_BACKWARD] = {1, ROI_BWD, TY_OP_ROI_POOLING_SELECT},
    [TY_OP_ROI_POOLING_SELECT] = {1, ROI_SEL, TY_OP_ROI_POOLING_BACKWARD},
};

static ty_status
roi_row_of(const ty_call *c, const roi_row **row)
{
    TY_CHECK((unsigned)c->op < TY_OP_COUNT && roi_rows[c->op].grad_op, TY_ERR_INTERNAL,
             "%s is not a RoI op", ty_op_name(c->op));
    *row = &roi_rows[c->op];
    return TY_OK;
}

static void
roi_geom_of(const roi_row *row, const ty_call *c, ty_roi_geom *g)
{
    const ty_p_roi *p = c->params;
    const ty_tensor *x = c->in[0];
    *g = (ty_roi_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                       .K = c->in[1]->shape[0], .OH = p->out_h, .OW = p->out_w,
                       .scale = p->spatial_scale, .offset = row->pooling ? 0.0 : p->offset,
                       .sample_h = p->sample_h, .sample_w = p->sample_w,
                       .is_max = p->mode == 0, .pooling = row->pooling};
}

ty_status
ty_roi_infer(const ty_call *c, ty_meta *out)
{
    const roi_row *row = NULL;
    TY_TRY(roi_row_of(c, &row));
    const ty_tensor *x = c->in[0], *rois = c->in[1];
    char b[TY_SHAPE_BUF];
    TY_TRY(check_image(x, "input"));
    TY_CHECK(rois->ndim == 2 && rois->shape[1] == 5, TY_ERR_SHAPE,
             "rois must have shape (K, 5) of (batch, x0, y0, x1, y1), got %s",
             ty_shape_str(rois->ndim, rois->shape, b, sizeof b));
    TY_TRY(check_float(rois, "rois"));
    ty_roi_geom g;
    roi_geom_of(row, c, &g);
    int64_t ys[4] = {g.K, g.C, g.OH, g.OW}, n;
    TY_TRY(ty_shape_numel(4, ys, &n));
    out->ndim = 4;
    out->dtype = x->dtype;
    if (row->kind == ROI_FWD) {
        memcpy(out->shape, ys, sizeof ys);
        return TY_OK;
    }
    const ty_tensor *v = c->in[2];
    TY_TRY(check_float(v, row->kind == ROI_BWD ? "output gradient" : "selected values"));
    out->dtype = ty_promote(x->dtype, v->dtype);
    if (row->kind == ROI_BWD) {
        TY_TRY(check_shape(v, 4, ys, "output gradient"));
        memcpy(out->shape, x->shape, sizeof ys);
        return TY_OK;
    }
    TY_TRY(check_shape(v, 4, x->shape, "selected values"));
    memcpy(out->shape, ys, sizeof ys);
    return TY_OK;
}

/* Every RoI: finite, its batch index in [0, N), coordinates small enough for the kernels'
 * integer casts, and (dense sampling) a bounded number of samples per bin. */
static ty_status
check_rois(const ty_roi_geom *g, const double *r)
{
    for (int64_t k = 0; k < g->K; k++, r += 5) {
        for (int i = 0; i < 5; i++) {
            TY_CHECK(isfinite(r[i]) && fabs(r[i] * (i ? g->scale : 1.0)) <= COORD_LIMIT,
                     TY_ERR_INVALID_ARG,
                     "roi %lld has a non-finite or too large value %g in column %d",
                     (long long)k, r[i], i);
        }
        TY_CHECK(r[0] >= 0 && (int64_t)r[0] < g->N, TY_ERR_INDEX,
                 "roi %lld has batch index %g outside [0, %lld)", (long long)k, r[0],
                 (long long)g->N);
        if (g->pooling) {
            continue;
        }
        double gh = g->sample_h > 0 ? (double)g->sample_h
                                    : ceil(fabs(r[4] - r[2]) * g->scale / (double)g->OH) + 1;
        double gw = g->sample_w > 0 ? (double)g->sample_w
                                    : ceil(fabs(r[3] - r[1]) * g->scale / (double)g->OW) + 1;
        TY_CHECK(gh * gw <= MAX_GRID, TY_ERR_INVALID_ARG,
                 "roi %lld needs %.0f samples per bin (at most %d): give sample_points",
                 (long long)k, gh * gw, MAX_GRID);
    }
    return TY_OK;
}

static void
roi_kernel(const ty_roi_geom *g, const double *r, int bwd, int f64, const void *x,
           const void *v, void *y)
{
    if (bwd) {
        if (f64) {
            ty_roi_bwd_f64(g, r, x, v, y);
        } else {
            ty_roi_bwd_f32(g, r, x, v, y);
        }
    } else if (f64) {
        ty_roi_fwd_f64(g, r, x, v, y);
    } else {
        ty_roi_fwd_f32(g, r, x, v, y);
    }
}

ty_status
ty_roi_forward(const ty_call *c, ty_tensor **out)
{
    const roi_row *row = NULL;
    TY_TRY(roi_row_of(c, &row));
    ty_roi_geom g;
    roi_geom_of(row, c, &g);
    ty_dtype cdt = out[0]->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *r = NULL, *x = NULL, *v = NULL, *y = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(as_f64(c->in[1], &r));
    TY_TRY_GOTO(check_rois(&g, (const double *)ty_tensor_ptr(r)));
    if (ty_tensor_numel(out[0]) == 0) {
        goto fail; /* nothing to compute (status is TY_OK) */
    }
    TY_TRY_GOTO(ty_contiguous_as(c->in[0], cdt, &x));
    if (row->kind != ROI_FWD) {
        TY_TRY_GOTO(ty_contiguous_as(c->in[2], cdt, &v));
    }
    TY_TRY_GOTO(ty_compute_target(out[0], cdt, &y));
    if (row->kind == ROI_BWD) {
        zero_fill(y);
    }
    roi_kernel(&g, (const double *)ty_tensor_ptr(r), row->kind == ROI_BWD, cdt == TY_FLOAT64,
               ty_tensor_ptr(x), ty_tensor_ptr(v ? v : x), ty_tensor_ptr(y));
    TY_TRY_GOTO(ty_compute_done(out[0], y));
fail:
    ty_tensor_release(r);
    ty_tensor_release(x);
    ty_tensor_release(v);
    ty_tensor_release(y);
    return status;
}

ty_status
ty_grad_roi(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const roi_row *row = NULL;
    TY_TRY(roi_row_of(c, &row));
    for (int i = 0; i < c->nin; i++) {
        gin[i] = NULL;
    }
    if (!gout[0]) {
        return TY_OK;
    }
    int target = row->kind == ROI_FWD ? 0 : 2;
    ty_gk k = {0};
    ty_tensor *d = gk_apply(&k, row->grad_op, c->params, 3, c->in[0], c->in[1], gout[0]);
    d = gk_fit_dtype(&k, d, c->in[target]);
    return gk_finish(&k, d, &gin[target]);
}

/* ===================== remap / warp_perspective ===================== */
typedef struct warp_row {
    int persp; /* inputs (x, mat, mat_idx[, dy]) instead of (x, map[, dy]) */
    int bwd;   /* takes dy last: the backward op, or the coordinate gradient */
    int coord; /* the gradient w.r.t. map_xy / mat */
    ty_op grad_op;  /* fwd: the backward op; bwd: the forward op; coord: the forward op */
    ty_op coord_op; /* fwd: the coordinate gradient op */
} warp_row;

static const warp_row warp_rows[TY_OP_COUNT] = {
    [TY_OP_REMAP] = {0, 0, 0, TY_OP_REMAP_BACKWARD, TY_OP_REMAP_BACKWARD_MAT},
    [TY_OP_REMAP_BACKWARD] = {0, 1, 0, TY_OP_REMAP, 0},
    [TY_OP_REMAP_BACKWARD_MAT] = {0, 1, 1, TY_OP_REMAP, 0},
    [TY_OP_WARP_PERSPECTIVE] = {1, 0, 0, TY_OP_WARP_PERSPECTIVE_BACKWARD,
                                TY_OP_WARP_PERSPECTIVE_BACKWARD_MAT},
    [TY_OP_WARP_PERSPECTIVE_BACKWARD] = {1, 1, 0, TY_OP_WARP_PERSPECTIVE, 0},
    [TY_OP_WARP_PERSPECTIVE_BACKWARD_MAT] = {1, 1, 1, TY_OP_WARP_PERSPECTIVE, 0},
};

static ty_status
warp_row_of(const ty_call *c, const warp_row **row)
{
    TY_CHECK((unsigned)c->op < TY_OP_COUNT && warp_rows[c->op].grad_op, TY_ERR_INTERNAL,
             "%s is not a warp op", ty_op_name(c->op));
    *row = &warp_rows[c->op];
    return TY_OK;
}

/* The output shape (M, C, OH, OW) of the forward op, after checking the coordinate inputs. */
static ty_status
warp_out_shape(const warp_row *row, const ty_call *c, int64_t *ys)
{
    const ty_tensor *x = c->in[0], *m = c->in[1];
    char b[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(check_float(m, row->persp ? "mat" : "map_xy"));
    if (!row->persp) {
        TY_CHECK(m->ndim == 4 && m->shape[3] == 2 && m->shape[0] == x->shape[0], TY_ERR_SHAPE,
                 "map_xy must have shape (%lld, OH, OW, 2) for input %s, got %s",
                 (long long)x->shape[0], ty_shape_str(4, x->shape, b, sizeof b),
                 ty_shape_str(m->ndim, m->shape, b2, sizeof b2));
        int64_t s[4] = {m->shape[0], x->shape[1], m->shape[1], m->shape[2]};
        memcpy(ys, s, sizeof s);
        return TY_OK;
    }
    const ty_p_warp *p = c->params;
    const ty_tensor *idx = c->in[2];
    TY_CHECK(m->ndim == 3 && m->shape[1] == 3 && m->shape[2] == 3, TY_ERR_SHAPE,
             "mat must have shape (M, 3, 3), got %s", ty_shape_str(m->ndim, m->shape, b, sizeof b));
    TY_CHECK(idx->ndim == 1 && idx->shape[0] == m->shape[0], TY_ERR_SHAPE,
             "mat_idx must have shape (%lld,) (one input image per matrix), got %s",
             (long long)m->shape[0], ty_shape_str(idx->ndim, idx->shape, b, sizeof b));
    TY_CHECK(!ty_dtype_is_float(idx->dtype) && idx->dtype != TY_BOOL, TY_ERR_DTYPE,
             "mat_idx must be an integer tensor, got %s", ty_dtype_name(idx->dtype));
    int64_t s[4] = {m->shape[0], x->shape[1], p->out_h, p->out_w};
    memcpy(ys, s, sizeof s);
    return TY_OK;
}

ty_status
ty_warp_infer(const ty_call *c, ty_meta *out)
{
    const warp_row *row = NULL;
    TY_TRY(warp_row_of(c, &row));
    const ty_tensor *x = c->in[0];
    int64_t ys[4], n;
    TY_TRY(check_image(x, "input"));
    TY_TRY(warp_out_shape(row, c, ys));
    TY_TRY(ty_shape_numel(4, ys, &n));
    char b[TY_SHAPE_BUF];
    TY_CHECK(n == 0 || (x->shape[2] > 0 && x->shape[3] > 0) ||
                 ((const ty_p_warp *)c->params)->border_mode == TY_BORDER_CONSTANT,
             TY_ERR_SHAPE, "input %s has no pixel to extrapolate from: only the constant border "
             "mode samples an empty image", ty_shape_str(4, x->shape, b, sizeof b));
    out->ndim = 4;
    out->dtype = x->dtype;
    memcpy(out->shape, ys, sizeof ys);
    if (row->bwd) {
        const ty_tensor *dy = c->in[c->nin - 1];
        TY_TRY(check_float(dy, "output gradient"));
        TY_TRY(check_shape(dy, 4, ys, "output gradient"));
        out->dtype = ty_promote(x->dtype, dy->dtype);
        memcpy(out->shape, x->shape, sizeof ys);
    }
    if (row->coord) { /* the coordinates' shape, computed in float32 or float64 */
        const ty_tensor *m = c->in[1];
        out->ndim = m->ndim;
        memcpy(out->shape, m->shape, sizeof(int64_t) * (size_t)m->ndim);
    }
    return TY_OK;
}

/* The input image of each output image: mat_idx checked into [0, N), or the identity. */
static ty_status
src_batches(const warp_row *row, const ty_call *c, int64_t M, int64_t N, ty_tensor **out)
{
    if (row->persp) {
        TY_TRY(ty_contiguous_as(c->in[2], TY_INT64, out));
        const int64_t *v = (const int64_t *)ty_tensor_ptr(*out);
        for (int64_t i = 0; i < M; i++) {
            if (v[i] < 0 || v[i] >= N) {
                ty_status st = ty_set_error(TY_ERR_INDEX, "mat_idx[%lld] = %lld is outside [0, %lld)",
                                            (long long)i, (long long)v[i], (long long)N);
                ty_tensor_release(*out);
                *out = NULL;
                return st;
            }
        }
        return TY_OK;
    }
    TY_TRY(ty_tensor_new_like_meta(TY_INT64, 1, &M, out));
    int64_t *v = (int64_t *)ty_tensor_ptr(*out);
    for (int64_t i = 0; i < M; i++) {
        v[i] = i;
    }
    return TY_OK;
}

static void
warp_kernel(const ty_warp_geom *g, int bwd, int f64, const void *src, void *dst)
{
    if (bwd) {
        if (f64) {
            ty_warp_bwd_f64(g, src, dst);
        } else {
            ty_warp_bwd_f32(g, src, dst);
        }
    } else if (f64) {
        ty_warp_fwd_f64(g, src, dst);
    } else {
        ty_warp_fwd_f32(g, src, dst);
    }
}

/* The coordinate gradient op: dy (src, in cdt) against image x, per pixel (remap's map
 * gradient) or summed into each matrix (warp_perspective's). */
static ty_status
warp_coord_grad(const ty_warp_geom *g, int persp, ty_tensor *x_in, ty_dtype cdt,
                const ty_tensor *dy, ty_tensor *out)
{
    ty_tensor *x = NULL, *y = NULL;
    double *gc = NULL;
    ty_status status = TY_OK;
    if (ty_tensor_numel(x_in) == 0 && !persp) {
        zero_fill(out); /* an empty image (constant border): nothing moves with the map */
        return TY_OK;
    }
    TY_TRY_GOTO(ty_contiguous_as(x_in, cdt, &x));
    TY_TRY_GOTO(ty_compute_target(out, TY_FLOAT64, &y));
    gc = persp ? malloc(sizeof(double) * (size_t)(g->ON * g->OH * g->OW * 2 + 1))
               : (double *)ty_tensor_ptr(y);
    TY_CHECK_GOTO(gc, TY_ERR_OOM, "out of memory for the coordinate gradient");
    if (cdt == TY_FLOAT64) {
        ty_warp_coord_grad_f64(g, (const double *)ty_tensor_ptr(x), (const double *)ty_tensor_ptr(dy),
                               gc);
    } else {
        ty_warp_coord_grad_f32(g, (const float *)ty_tensor_ptr(x), (const float *)ty_tensor_ptr(dy),
                               gc);
    }
    if (persp) {
        ty_warp_mat_grad(g, gc, (double *)ty_tensor_ptr(y));
    }
    TY_TRY_GOTO(ty_compute_done(out, y));
fail:
    if (persp) {
        free(gc);
    }
    ty_tensor_release(x);
    ty_tensor_release(y);
    return status;
}

ty_status
ty_warp_forward(const ty_call *c, ty_tensor **out)
{
    const warp_row *row = NULL;
    TY_TRY(warp_row_of(c, &row));
    const ty_p_warp *p = c->params;
    const ty_tensor *x0 = c->in[0];
    int64_t ys[4];
    TY_TRY(warp_out_shape(row, c, ys));
    ty_dtype cdt = out[0]->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *coords = NULL, *sb = NULL, *src = NULL, *y = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(src_batches(row, c, ys[0], x0->shape[0], &sb));
    if (ty_tensor_numel(out[0]) == 0) {
        goto fail;
    }
    TY_TRY_GOTO(as_f64(c->in[1], &coords));
    TY_TRY_GOTO(ty_contiguous_as(row->bwd ? c->in[c->nin - 1] : c->in[0], cdt, &src));
    if (!row->coord) {
        TY_TRY_GOTO(ty_compute_target(out[0], cdt, &y));
    }
    ty_warp_geom g = {.N = x0->shape[0], .C = x0->shape[1], .H = x0->shape[2],
                      .W = x0->shape[3], .ON = ys[0], .OH = ys[2], .OW = ys[3],
                      .border = (int)p->border_mode, .interp = (int)p->interp_mode,
                      .border_val = p->border_val,
                      .map = row->persp ? NULL : (const double *)ty_tensor_ptr(coords),
                      .mat = row->persp ? (const double *)ty_tensor_ptr(coords) : NULL,
                      .src_batch = (const int64_t *)ty_tensor_ptr(sb)};
    if (row->coord) {
        status = warp_coord_grad(&g, row->persp, c->in[0], cdt, src, out[0]);
        goto fail;
    }
    if (row->bwd) {
        zero_fill(y);
    }
    /* an empty input image reaches here only with the constant border: every sample reads
     * border_val (the forward), and the backward's dx is empty */
    warp_kernel(&g, row->bwd, cdt == TY_FLOAT64, ty_tensor_ptr(src), ty_tensor_ptr(y));
    TY_TRY_GOTO(ty_compute_done(out[0], y));
fail:
    ty_tensor_release(coords);
    ty_tensor_release(sb);
    ty_tensor_release(src);
    ty_tensor_release(y);
    return status;
}

/* The coordinate gradient ops have no gradient of their own: a backward that is itself
 * recorded (a higher-order gradient) cannot use them, and says so rather than treat the
 * coordinates' gradient as a constant. */
static ty_status
check_first_order(const char *what)
{
    TY_CHECK(!ty_grad_recorded(), TY_ERR_UNSUPPORTED,
             "the gradient w.r.t. %s is first-order only: it cannot be differentiated again",
             what);
    return TY_OK;
}

/* One input's gradient by a dispatcher call of op on ins (kept in k); NULL after a failure. */
static ty_tensor *
gk_apply_n(ty_gk *k, ty_op op, const void *p, int nin, ty_tensor **ins)
{
    ty_tensor *r = NULL;
    if (k->st != TY_OK) {
        return NULL;
    }
    k->st = ty_apply(op, p, nin, ins, 1, &r);
    if (r) {
        k->tmp[k->n++] = r;
    }
    return r;
}

ty_status
ty_grad_warp(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const warp_row *row = NULL;
    TY_TRY(warp_row_of(c, &row));
    for (int i = 0; i < c->nin; i++) {
        gin[i] = NULL;
    }
    TY_CHECK(!row->coord, TY_ERR_UNSUPPORTED, "%s is not differentiable", ty_op_name(c->op));
    if (!gout[0]) {
        return TY_OK;
    }
    int target = row->bwd ? c->nin - 1 : 0, nxin = row->persp ? 3 : 2;
    ty_gk k = {0};
    ty_tensor *d = NULL, *dm = NULL;
    if (row->bwd) {
        /* the adjoint of the backward op is the forward op on g, whose constant border reads
         * 0: the border value is an offset, not a linear term */
        ty_p_warp lp = *(const ty_p_warp *)c->params;
        lp.border_val = 0.0;
        ty_tensor *ins[3] = {gout[0], c->in[1], c->in[2]};
        d = gk_apply_n(&k, row->grad_op, &lp, nxin, ins);
        d = gk_fit_dtype(&k, d, c->in[target]);
        return gk_finish(&k, d, &gin[target]);
    }
    /* the forward's inputs then dy: the image's gradient and the coordinates' */
    ty_tensor *ins[4] = {c->in[0], c->in[1], row->persp ? c->in[2] : gout[0], gout[0]};
    int coords = ty_grad_wanted(1);
    if (coords) {
        TY_TRY(check_first_order(row->persp ? "mat" : "map_xy"));
    }
    if (ty_grad_wanted(0)) {
        d = gk_fit_dtype(&k, gk_apply_n(&k, row->grad_op, c->params, nxin + 1, ins), c->in[0]);
    }
    if (coords) {
        dm = gk_fit_dtype(&k, gk_apply_n(&k, row->coord_op, c->params, nxin + 1, ins),
                          c->in[1]);
    }
    return gk_finish2(&k, d, &gin[0], dm, &gin[1]);
}

/* ===================== nms ===================== */
ty_status
ty_nms_infer(const ty_call *c, ty_meta *out)
{
    const ty_tensor *boxes = c->in[0], *scores = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_CHECK(boxes->ndim == 2 && boxes->shape[1] == 4, TY_ERR_SHAPE,
             "boxes must have shape (N, 4) of (x0, y0, x1, y1), got %s",
             ty_shape_str(boxes->ndim, boxes->shape, b1, sizeof b1));
    TY_CHECK(scores->ndim == 1 && scores->shape[0] == boxes->shape[0], TY_ERR_SHAPE,
             "scores must have shape (%lld,) (one per box), got %s", (long long)boxes->shape[0],
             ty_shape_str(scores->ndim, scores->shape, b2, sizeof b2));
    TY_TRY(check_float(boxes, "boxes"));
    TY_TRY(check_float(scores, "scores"));
    TY_CHECK(boxes->shape[0] <= INT32_MAX, TY_ERR_SHAPE, "too many boxes for int32 indices");
    out->dtype = TY_INT32;
    out->ndim = 1;
    out->shape[0] = 0; /* known only after the forward */
    return TY_OK;
}

typedef struct scored {
    double s;
    int64_t i;
} scored;

/* Descending score, ties by index; NaN scores last. */
static int
by_score(const void *a, const void *b)
{
    const scored *p = a, *q = b;
    int pn = isnan(p->s), qn = isnan(q->s);
    if (pn != qn) {
        return pn - qn;
    }
    if (!pn && p->s != q->s) {
        return p->s > q->s ? -1 : 1;
    }
    return (p->i > q->i) - (p->i < q->i);
}

static double
iou(const double *a, const double *b)
{
    double w = fmin(a[2], b[2]) - fmax(a[0], b[0]), h = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (!(w > 0 && h > 0)) {
        return 0;
    }
    double inter = w * h;
    double ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return ua > 0 ? inter / ua : 0;
}

/* Greedy NMS: walk the boxes by descending score, keep a box unless it overlaps a kept one by
 * more than the threshold. Writes the kept indices into keep; returns their count. */
static int64_t
nms_keep(const double *bx, const scored *order, int64_t n, double thresh, int64_t max_out,
         int64_t *kept, int32_t *keep)
{
    int64_t nk = 0;
    for (int64_t r = 0; r < n && (max_out < 0 || nk < max_out); r++) {
        int64_t i = order[r].i;
        int ok = 1;
        for (int64_t j = 0; j < nk && ok; j++) {
            ok = !(iou(bx + i * 4, bx + kept[j] * 4) > thresh);
        }
        if (ok) {
            kept[nk] = i;
            keep[nk++] = (int32_t)i;
        }
    }
    return nk;
}

ty_status
ty_nms_forward(const ty_call *c, ty_tensor **out)
{
    const ty_p_nms *p = c->params;
    int64_t n = c->in[0]->shape[0];
    ty_tensor *bx = NULL, *sc = NULL, *res = NULL;
    scored *order = NULL;
    int64_t *kept = NULL;
    int32_t *keep = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(as_f64(c->in[0], &bx));
    TY_TRY_GOTO(as_f64(c->in[1], &sc));
    order = malloc(sizeof(scored) * (size_t)(n ? n : 1));
    kept = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    keep = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    TY_CHECK_GOTO(order && kept && keep, TY_ERR_OOM, "out of memory for %lld boxes",
                  (long long)n);
    const double *s = (const double *)ty_tensor_ptr(sc);
    for (int64_t i = 0; i < n; i++) {
        order[i] = (scored){s[i], i};
    }
    qsort(order, (size_t)n, sizeof(scored), by_score);
    int64_t nk = nms_keep((const double *)ty_tensor_ptr(bx), order, n, p->iou_thresh,
                          p->max_output, kept, keep);
    TY_TRY_GOTO(ty_tensor_new_like_meta(TY_INT32, 1, &nk, &res));
    memcpy(ty_tensor_ptr(res), keep, sizeof(int32_t) * (size_t)nk);
    out[0] = res;
    res = NULL;
fail:
    ty_tensor_release(bx);
    ty_tensor_release(sc);
    ty_tensor_release(res);
    free(order);
    free(kept);
    free(keep);
    return status;
}

/* ===================== correlation ===================== */
typedef enum corr_kind { CORR_FWD, CORR_BWD, CORR_SIGNED } corr_kind;

static corr_kind
corr_kind_of(ty_op op)
{
    return op == TY_OP_CORRELATION ? CORR_FWD
                                   : (op == TY_OP_CORRELATION_BACKWARD ? CORR_BWD : CORR_SIGNED);
}

static ty_status
corr_geom(const ty_call *c, ty_corr_geom *g)
{
    const ty_p_correlation *p = c->params;
    const ty_tensor *a = c->in[0], *b = c->in[1];
    char b1[TY_SHAPE_BUF], b2[TY_SHAPE_BUF];
    TY_TRY(check_image(a, "data1"));
    TY_TRY(check_image(b, "data2"));
    TY_CHECK(memcmp(a->shape, b->shape, sizeof(int64_t) * 4) == 0, TY_ERR_SHAPE,
             "data1 %s and data2 %s must have the same shape",
             ty_shape_str(4, a->shape, b1, sizeof b1), ty_shape_str(4, b->shape, b2, sizeof b2));
    TY_CHECK(p->kernel_size % 2 == 1, TY_ERR_INVALID_ARG, "kernel_size must be odd, got %lld",
             (long long)p->kernel_size);
    int64_t kr = (p->kernel_size - 1) / 2, border = p->max_displacement + kr;
    int64_t ph = a->shape[2] + 2 * p->pad_size - 2 * border;
    int64_t pw = a->shape[3] + 2 * p->pad_size - 2 * border;
    TY_CHECK(ph >= 1 && pw >= 1, TY_ERR_SHAPE,
             "input %s padded by %lld is too small for max_displacement %lld and kernel_size "
             "%lld", ty_shape_str(4, a->shape, b1, sizeof b1), (long long)p->pad_size,
             (long long)p->max_displacement, (long long)p->kernel_size);
    *g = (ty_corr_geom){.N = a->shape[0], .C = a->shape[1], .H = a->shape[2], .W = a->shape[3],
                        .OH = (ph + p->stride1 - 1) / p->stride1,
                        .OW = (pw + p->stride1 - 1) / p->stride1, .k = p->kernel_size,
                        .max_disp = p->max_displacement, .stride1 = p->stride1,
                        .stride2 = p->stride2, .pad = p->pad_size,
                        .radius = p->max_displacement / p->stride2,
                        .multiply = (int)p->is_multiply};
    return TY_OK;
}

static void
corr_yshape(const ty_corr_geom *g, int64_t *ys)
{
    int64_t D = 2 * g->radius + 1;
    ys[0] = g->N;
    ys[1] = D * D;
    ys[2] = g->OH;
    ys[3] = g->OW;
}

ty_status
ty_corr_infer(const ty_call *c, ty_meta *out)
{
    ty_corr_geom g;
    int64_t ys[4], n;
    TY_TRY(corr_geom(c, &g));
    corr_yshape(&g, ys);
    TY_TRY(ty_shape_numel(4, ys, &n));
    ty_dtype dt = ty_promote(c->in[0]->dtype, c->in[1]->dtype);
    for (int i = 2; i < c->nin; i++) {
        TY_TRY(check_float(c->in[i], "gradient"));
        dt = ty_promote(dt, c->in[i]->dtype);
    }
    switch (corr_kind_of(c->op)) {
    case CORR_BWD:
        TY_TRY(check_shape(c->in[2], 4, ys, "output gradient"));
        for (int i = 0; i < 2; i++) {
            out[i].dtype = dt;
            out[i].ndim = 4;
            memcpy(out[i].shape, c->in[i]->shape, sizeof ys);
        }
        return TY_OK;
    case CORR_SIGNED:
        TY_TRY(check_shape(c->in[2], 4, c->in[0]->shape, "u"));
        TY_TRY(check_shape(c->in[3], 4, c->in[1]->shape, "v"));
        break;
    case CORR_FWD: break;
    }
    out->dtype = dt;
    out->ndim = 4;
    memcpy(out->shape, ys, sizeof ys);
    return TY_OK;
}

static void
corr_kernel(corr_kind kind, const ty_corr_geom *g, int f64, void *const *in, void *const *out)
{
    if (kind == CORR_FWD) {
        if (f64) {
            ty_corr_fwd_f64(g, in[0], in[1], out[0]);
        } else {
            ty_corr_fwd_f32(g, in[0], in[1], out[0]);
        }
    } else if (kind == CORR_SIGNED) {
        if (f64) {
            ty_corr_signed_f64(g, in[0], in[1], in[2], in[3], out[0]);
        } else {
            ty_corr_signed_f32(g, in[0], in[1], in[2], in[3], out[0]);
        }
    } else if (f64) {
        ty_corr_bwd_f64(g, in[0], in[1], in[2], out[0], out[1]);
    } else {
        ty_corr_bwd_f32(g, in[0], in[1], in[2], out[0], out[1]);
    }
}

ty_status
ty_corr_forward(const ty_call *c, ty_tensor **out)
{
    ty_corr_geom g;
    TY_TRY(corr_geom(c, &g));
    corr_kind kind = corr_kind_of(c->op);
    int nout = kind == CORR_BWD ? 2 : 1;
    ty_dtype cdt = out[0]->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *in[4] = {0}, *y[2] = {0};
    void *pin[4] = {0}, *pout[2] = {0};
    ty_status status = TY_OK;
    if (ty_tensor_numel(out[0]) == 0 || g.C == 0) {
        for (int i = 0; i < nout; i++) {
            zero_fill(out[i]);
        }
        return TY_OK;
    }
    for (int i = 0; i < c->nin; i++) {
        TY_TRY_GOTO(ty_contiguous_as(c->in[i], cdt, &in[i]));
        pin[i] = ty_tensor_ptr(in[i]);
    }
    for (int i = 0; i < nout; i++) {
        TY_TRY_GOTO(ty_compute_target(out[i], cdt, &y[i]));
        pout[i] = ty_tensor_ptr(y[i]);
    }
    corr_kernel(kind, &g, cdt == TY_FLOAT64, pin, pout);
    for (int i = 0; i < nout; i++) {
        TY_TRY_GOTO(ty_compute_done(out[i], y[i]));
    }
fail:
    for (int i = 0; i < 4; i++) {
        ty_tensor_release(in[i]);
    }
    ty_tensor_release(y[0]);
    ty_tensor_release(y[1]);
    return status;
}

/* One output of correlation_backward(a, b, g) (a new reference kept in k). */
static ty_tensor *
corr_bwd_part(ty_gk *k, const void *p, ty_tensor *a, ty_tensor *b, ty_tensor *g, int which)
{
    if (k->st != TY_OK) {
        return NULL;
    }
    ty_tensor *ins[3] = {a, b, g}, *outs[2] = {NULL, NULL};
    k->st = ty_apply(TY_OP_CORRELATION_BACKWARD, p, 3, ins, 2, outs);
    if (k->st != TY_OK) {
        return NULL;
    }
    ty_tensor_release(outs[1 - which]);
    k->tmp[k->n++] = outs[which];
    return outs[which];
}

static ty_tensor *
zeros_like_kept(ty_gk *k, const ty_tensor *like)
{
    ty_tensor *z = NULL;
    if (k->st == TY_OK) {
        k->st = ty_zeros_shaped(like->dtype, like->ndim, like->shape, &z);
    }
    if (z) {
        k->tmp[k->n++] = z;
    }
    return z;
}

/* correlation: gradients of both inputs by the backward op. The backward op (a, b, g) ->
 * (da, db) is linear in g; for a * b it is bilinear in (a or b, g), for |a - b| piecewise
 * constant in a and b with the signed form as its derivative w.r.t. g. */
ty_status
ty_grad_corr(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    const ty_p_correlation *p = c->params;
    ty_tensor *a = c->in[0], *b = c->in[1];
    for (int i = 0; i < c->nin; i++) {
        gin[i] = NULL;
    }
    ty_gk k = {0};
    corr_kind kind = corr_kind_of(c->op);
    if (kind == CORR_SIGNED) {
        return TY_OK;
    }
    if (kind == CORR_FWD) {
        if (!gout[0]) {
            return TY_OK;
        }
        ty_tensor *da = gk_fit_dtype(&k, corr_bwd_part(&k, p, a, b, gout[0], 0), a);
        ty_tensor *db = gk_fit_dtype(&k, corr_bwd_part(&k, p, a, b, gout[0], 1), b);
        return gk_finish2(&k, da, &gin[0], db, &gin[1]);
    }
    ty_tensor *u = gout[0], *v = gout[1], *g = c->in[2], *dg = NULL, *d0 = NULL, *d1 = NULL;
    if (!u && !v) {
        return TY_OK;
    }
    if (p->is_multiply) {
        ty_tensor *t0 = u ? gk_apply(&k, TY_OP_CORRELATION, p, 2, u, b, NULL) : NULL;
        ty_tensor *t1 = v ? gk_apply(&k, TY_OP_CORRELATION, p, 2, a, v, NULL) : NULL;
        dg = t0 && t1 ? ADD(t0, t1) : (t0 ? t0 : t1);
        d0 = v ? gk_fit_dtype(&k, corr_bwd_part(&k, p, a, v, g, 0), a) : NULL;
        d1 = u ? gk_fit_dtype(&k, corr_bwd_part(&k, p, u, b, g, 1), b) : NULL;
    } else {
        ty_tensor *uu = u ? u : zeros_like_kept(&k, a), *vv = v ? v : zeros_like_kept(&k, b);
        if (k.st == TY_OK) {
            ty_tensor *ins[4] = {a, b, uu, vv};
            k.st = ty_apply(TY_OP_CORRELATION_SIGNED, p, 4, ins, 1, &dg);
            if (dg) {
                k.tmp[k.n++] = dg;
            }
        }
    }
    dg = gk_fit_dtype(&k, dg, g);
    ty_tensor *r[3] = {d0, d1, dg}, *unused = NULL;
    for (int i = 0; i < 3 && k.st == TY_OK; i++) {
        if (r[i]) {
            ty_tensor_retain(r[i]);
            gin[i] = r[i];
        }
    }
    return gk_finish(&k, NULL, &unused);
}

/* ===================== deformable PS RoI pooling ===================== */
static ty_status
dps_geom(const ty_call *c, ty_dpsroi_geom *g)
{
    const ty_p_dpsroi *p = c->params;
    const ty_tensor *x = c->in[0], *rois = c->in[1], *trans = c->in[2];
    char b[TY_SHAPE_BUF];
    TY_TRY(check_image(x, "input"));
    TY_CHECK(rois->ndim == 2 && rois->shape[1] == 5, TY_ERR_SHAPE,
             "rois must have shape (K, 5) of (batch, x0, y0, x1, y1), got %s",
             ty_shape_str(rois->ndim, rois->shape, b, sizeof b));
    TY_TRY(check_float(rois, "rois"));
    TY_TRY(check_float(trans, "trans"));
    *g = (ty_dpsroi_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                          .K = rois->shape[0], .OH = p->pooled_h, .OW = p->pooled_w,
                          .part = p->part_size, .spp = p->sample_per_part, .ncls = 1,
                          .scale = p->spatial_scale, .trans_std = p->trans_std,
                          .no_trans = (int)p->no_trans};
    if (g->no_trans) {
        return TY_OK;
    }
    TY_CHECK(trans->ndim == 4 && trans->shape[0] == g->K && trans->shape[1] >= 2 &&
                 trans->shape[1] % 2 == 0 && trans->shape[2] == g->part &&
                 trans->shape[3] == g->part,
             TY_ERR_SHAPE,
             "trans must have shape (%lld, 2 * classes, %lld, %lld) (K, x and y offsets per "
             "class, part_size^2), got %s", (long long)g->K, (long long)g->part,
             (long long)g->part, ty_shape_str(trans->ndim, trans->shape, b, sizeof b));
    g->ncls = trans->shape[1] / 2;
    TY_CHECK(g->C % g->ncls == 0, TY_ERR_SHAPE,
             "the input's %lld channels do not split into %lld classes of trans",
             (long long)g->C, (long long)g->ncls);
    return TY_OK;
}

ty_status
ty_dpsroi_infer(const ty_call *c, ty_meta *out)
{
    ty_dpsroi_geom g = {0};
    TY_TRY(dps_geom(c, &g));
    int64_t ys[4] = {g.K, g.C, g.OH, g.OW}, n;
    TY_TRY(ty_shape_numel(4, ys, &n));
    out->ndim = 4;
    out->dtype = c->in[0]->dtype;
    if (c->op == TY_OP_DEFORMABLE_PSROI_POOLING) {
        memcpy(out->shape, ys, sizeof ys);
        return TY_OK;
    }
    TY_TRY(check_float(c->in[3], "output gradient"));
    TY_TRY(check_shape(c->in[3], 4, ys, "output gradient"));
    out->dtype = ty_promote(c->in[0]->dtype, c->in[3]->dtype);
    memcpy(out->shape, c->in[0]->shape, sizeof ys);
    if (c->op == TY_OP_DEFORMABLE_PSROI_POOLING_BACKWARD_TRANS) {
        out->ndim = c->in[2]->ndim;
        memcpy(out->shape, c->in[2]->shape, sizeof(int64_t) * (size_t)c->in[2]->ndim);
    }
    return TY_OK;
}

/* The offsets' gradient of dy (src, in cdt) against image x. */
static ty_status
dps_trans_grad(const ty_dpsroi_geom *g, const double *rois, const double *trans,
               ty_tensor *x_in, ty_dtype cdt, const ty_tensor *dy, ty_tensor *out)
{
    ty_tensor *x = NULL, *y = NULL;
    ty_status status = TY_OK;
    TY_TRY_GOTO(ty_contiguous_as(x_in, cdt, &x));
    TY_TRY_GOTO(ty_compute_target(out, TY_FLOAT64, &y));
    if (cdt == TY_FLOAT64) {
        ty_dpsroi_trans_grad_f64(g, rois, trans, (const double *)ty_tensor_ptr(x),
                                 (const double *)ty_tensor_ptr(dy), (double *)ty_tensor_ptr(y));
    } else {
        ty_dpsroi_trans_grad_f32(g, rois, trans, (const float *)ty_tensor_ptr(x),
                                 (const float *)ty_tensor_ptr(dy), (double *)ty_tensor_ptr(y));
    }
    TY_TRY_GOTO(ty_compute_done(out, y));
fail:
    ty_tensor_release(x);
    ty_tensor_release(y);
    return status;
}

ty_status
ty_dpsroi_forward(const ty_call *c, ty_tensor **out)
{
    ty_dpsroi_geom g = {0};
    TY_TRY(dps_geom(c, &g));
    int bwd = c->op != TY_OP_DEFORMABLE_PSROI_POOLING;
    ty_dtype cdt = out[0]->dtype == TY_FLOAT64 ? TY_FLOAT64 : TY_FLOAT32;
    ty_tensor *r = NULL, *t = NULL, *src = NULL, *y = NULL;
    ty_status status = TY_OK;
    ty_roi_geom rg = {.N = g.N, .K = g.K, .scale = g.scale, .pooling = 1};
    TY_TRY_GOTO(as_f64(c->in[1], &r));
    TY_TRY_GOTO(check_rois(&rg, (const double *)ty_tensor_ptr(r)));
    if (ty_tensor_numel(out[0]) == 0) {
        goto fail;
    }
    if (c->op == TY_OP_DEFORMABLE_PSROI_POOLING_BACKWARD_TRANS &&
        (g.no_trans || ty_tensor_numel(c->in[3]) == 0)) {
        zero_fill(out[0]); /* nothing moves, or no output depends on the offsets */
        goto fail;
    }
    if (!g.no_trans) {
        TY_TRY_GOTO(as_f64(c->in[2], &t));
    }
    const double *rp = (const double *)ty_tensor_ptr(r), *tp = t ? (const double *)ty_tensor_ptr(t) : NULL;
    TY_TRY_GOTO(ty_contiguous_as(c->in[bwd ? 3 : 0], cdt, &src));
    if (c->op == TY_OP_DEFORMABLE_PSROI_POOLING_BACKWARD_TRANS) {
        status = dps_trans_grad(&g, rp, tp, c->in[0], cdt, src, out[0]);
        goto fail;
    }
    TY_TRY_GOTO(ty_compute_target(out[0], cdt, &y));
    if (bwd) {
        zero_fill(y);
    }
    if (cdt == TY_FLOAT64) {
        if (bwd) {
            ty_dpsroi_bwd_f64(&g, rp, tp, (const double *)ty_tensor_ptr(src), (double *)ty_tensor_ptr(y));
        } else {
            ty_dpsroi_fwd_f64(&g, rp, tp, (const double *)ty_tensor_ptr(src), (double *)ty_tensor_ptr(y));
        }
    } else if (bwd) {
        ty_dpsroi_bwd_f32(&g, rp, tp, (const float *)ty_tensor_ptr(src), (float *)ty_tensor_ptr(y));
    } else {
        ty_dpsroi_fwd_f32(&g, rp, tp, (const float *)ty_tensor_ptr(src), (float *)ty_tensor_ptr(y));
    }
    TY_TRY_GOTO(ty_compute_done(out[0], y));
fail:
    ty_tensor_release(r);
    ty_tensor_release(t);
    ty_tensor_release(src);
    ty_tensor_release(y);
    return status;
}

/* Linear in the image for fixed boxes and offsets: the backward op is the adjoint, and the
 * forward op on g the backward's adjoint. The offsets' gradient (first order only) comes
 * from the trans op; the boxes get none. */
ty_status
ty_grad_dpsroi(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    for (int i = 0; i < c->nin; i++) {
        gin[i] = NULL;
    }
    TY_CHECK(c->op != TY_OP_DEFORMABLE_PSROI_POOLING_BACKWARD_TRANS, TY_ERR_UNSUPPORTED,
             "%s is not differentiable", ty_op_name(c->op));
    if (!gout[0]) {
        return TY_OK;
    }
    const ty_p_dpsroi *p = c->params;
    ty_gk k = {0};
    ty_tensor *ins[4] = {c->in[0], c->in[1], c->in[2], gout[0]};
    if (c->op != TY_OP_DEFORMABLE_PSROI_POOLING) {
        ty_tensor *fins[3] = {gout[0], c->in[1], c->in[2]};
        ty_tensor *d = gk_apply_n(&k, TY_OP_DEFORMABLE_PSROI_POOLING, p, 3, fins);
        return gk_finish(&k, gk_fit_dtype(&k, d, c->in[3]), &gin[3]);
    }
    ty_tensor *d = NULL, *dt = NULL;
    int offsets = !p->no_trans && ty_grad_wanted(2);
    if (offsets) {
        TY_TRY(check_first_order("trans"));
    }
    if (ty_grad_wanted(0)) {
        d = gk_apply_n(&k, TY_OP_DEFORMABLE_PSROI_POOLING_BACKWARD, p, 4, ins);
        d = gk_fit_dtype(&k, d, c->in[0]);
    }
    if (offsets) {
        dt = gk_apply_n(&k, TY_OP_DEFORMABLE_PSROI_POOLING_BACKWARD_TRANS, p, 4, ins);
        dt = gk_fit_dtype(&k, dt, c->in[2]);
    }
    ty_tensor *unused = NULL;
    TY_TRY(gk_finish2(&k, d, &gin[0], dt, &unused));
    gin[2] = unused;
    return TY_OK;
}
