/* Vision kernels on NCHW-contiguous data: RoI align / RoI pooling and the sampling of remap and
 * warp_perspective, forward and backward. Values are float or double; coordinates are computed
 * in double. float64 sums in double; float32 remap / warp_perspective and average roi_align
 * sum in float from tables of cells and float weights, through AVX-512 or AVX2 gathers or a
 * portable loop that make the same operations in the same order (the same bits on every
 * instruction set; see vision.c). Work is split in units fixed by the shape: output planes,
 * rows or boxes (forward), input planes (backward: each input plane gathers its
 * contributions in a fixed order), so results never depend on the thread count. Geometry and
 * indices are trusted: the ops layer validates them first.
 * Backward functions ADD into dx (the caller zeroes it). */
#ifndef TY_KERNELS_CPU_VISION_H
#define TY_KERNELS_CPU_VISION_H

#include <stdint.h>

/* ---- RoI align / RoI pooling ----
 * rois: K rows of (batch, x0, y0, x1, y1) as doubles, batch already checked to lie in [0, N).
 * Align (Mask R-CNN, MegEngine's sampling): the box scaled by `scale` and shifted by
 * -offset (a reversed box has size 0) is split into OH x OW bins; each bin averages (or takes
 * the max of) bilinear samples on a sample_h x sample_w grid (0: ceil(box size / bins)); a
 * sample's cells outside the image read 0. Pooling (Fast R-CNN): the box rounded to whole cells, bins of whole cells, the max
 * (or mean) of each bin's cells; an empty bin gives 0.
 * The forward takes the argmax (max mode) from x and the values from v, so that v = x is the
 * forward and v = g the "select" op that max mode's second derivative needs. */
typedef struct ty_roi_geom {
    int64_t N, C, H, W, K, OH, OW;
    double scale, offset;
    int64_t sample_h, sample_w;
    int is_max;
    int pooling; /* 0: align, 1: RoI pooling */
} ty_roi_geom;

void ty_roi_fwd_f32(const ty_roi_geom *g, const double *rois, const float *x, const float *v,
                    float *y);
void ty_roi_fwd_f64(const ty_roi_geom *g, const double *rois, const double *x, const double *v,
                    double *y);
void ty_roi_bwd_f32(const ty_roi_geom *g, const double *rois, const float *x, const float *dy,
                    float *dx);
void ty_roi_bwd_f64(const ty_roi_geom *g, const double *rois, const double *x, const double *dy,
                    double *dx);

/* ---- remap / warp_perspective sampling ----
 * Output pixel (n, oh, ow) samples input image src_batch[n] at (sx, sy): map[n, oh, ow] =
 * (sx, sy) (remap), or the perspective transform of (ow, oh) by the 3x3 matrix mat[n]
 * (warp_perspective). Nearest rounds (halves away from zero); linear weighs the 4 cells around
 * the point, cubic the 4 x 4 cells with Keys' weights (a = -0.75). A cell outside the image is mapped by the border mode, or takes border_val
 * (constant; it gets no gradient). A NaN coordinate gives NaN and no gradient. */
enum {
    TY_BORDER_REPLICATE = 0,
    TY_BORDER_REFLECT = 1,
    TY_BORDER_REFLECT_101 = 2,
    TY_BORDER_WRAP = 3,
    TY_BORDER_CONSTANT = 4
};
enum { TY_INTERP_NEAREST = 0, TY_INTERP_LINEAR = 1, TY_INTERP_CUBIC = 2 };

typedef struct ty_warp_geom {
    int64_t N, C, H, W; /* the input */
    int64_t ON, OH, OW; /* the output (ON images, C channels) */
    int border, interp;
    double border_val;
    const double *map;        /* ON x OH x OW x 2, or NULL */
    const double *mat;        /* ON x 9 when map is NULL */
    const int64_t *src_batch; /* ON entries in [0, N) */
} ty_warp_geom;

void ty_warp_fwd_f32(const ty_warp_geom *g, const float *x, float *y);
void ty_warp_fwd_f64(const ty_warp_geom *g, const double *x, double *y);
void ty_warp_bwd_f32(const ty_warp_geom *g, const float *dy, float *dx);
void ty_warp_bwd_f64(const ty_warp_geom *g, const double *dy, double *dx);
/* Gradient w.r.t. the sampling coordinates: gc[n, oh, ow] = (d/dsx, d/dsy) of
 * sum over c of dy[n, c, oh, ow] y[n, c, oh, ow], with the cells each tap reads held fixed
 * (the border mode's cell choice is piecewise constant). Nearest sampling and NaN
 * coordinates give 0. Overwrites gc (ON x OH x OW x 2); rows run in parallel. */
void ty_warp_coord_grad_f32(const ty_warp_geom *g, const float *x, const float *dy, double *gc);
void ty_warp_coord_grad_f64(const ty_warp_geom *g, const double *x, const double *dy,
                            double *gc);
/* The gradient of each 3 x 3 matrix of g->mat (dmat: ON x 9, overwritten) from the
 * coordinate gradient gc, through (sx, sy) = (M0 u + M1 v + M2, M3 u + M4 v + M5) / d; each
 * matrix sums its pixels in row-major order. */
void ty_warp_mat_grad(const ty_warp_geom *g, const double *gc, double *dmat);



/* ---- correlation (FlowNet) ----
 * Both inputs (N, C, H, W), zero-padded by pad; output (N, D*D, OH, OW), D = 2 R + 1 with
 * R = max_disp / stride2: out[n, d, oh, ow] = sum over c and a k x k patch of
 * f(a[c, y1 + j, x1 + i], b[c, y1 + j + dy, x1 + i + dx]) / (k * k * C), where
 * (y1, x1) = (oh, ow) * stride1 + max_disp in padded coordinates, d = (dy / stride2 + R) * D
 * + dx / stride2 + R, f = a * b (multiply) or |a - b|. The backward writes da and db (the
 * gradients of both inputs for the output gradient g), overwriting them. */
typedef struct ty_corr_geom {
    int64_t N, C, H, W, OH, OW;
    int64_t k, max_disp, stride1, stride2, pad, radius;
    int multiply;
} ty_corr_geom;

void ty_corr_fwd_f32(const ty_corr_geom *g, const float *a, const float *b, float *y);
void ty_corr_fwd_f64(const ty_corr_geom *g, const double *a, const double *b, double *y);
void ty_corr_bwd_f32(const ty_corr_geom *g, const float *a, const float *b, const float *dy,
                     float *da, float *db);
void ty_corr_bwd_f64(const ty_corr_geom *g, const double *a, const double *b, const double *dy,
                     double *da, double *db);
/* The signed form, out[n, d, oh, ow] = sum of (u[p] - v[q]) sign(a[p] - b[q]) / (k * k * C)
 * over the same patches (p in a's padded image, q in b's): the derivative of the |a - b|
 * backward w.r.t. its output gradient. */
void ty_corr_signed_f32(const ty_corr_geom *g, const float *a, const float *b, const float *u,
                        const float *v, float *y);
void ty_corr_signed_f64(const ty_corr_geom *g, const double *a, const double *b,
                        const double *u, const double *v, double *y);
/* ---- deformable PS RoI pooling (MegEngine's DeformablePSROIPooling) ----
 * RoI k (rounded, scaled, shifted by -0.5, at least 0.1 wide) is split into OH x OW bins;
 * bin (oh, ow) of channel c, moved by trans[k, 2 cls, part] * trans_std * box size in x (and
 * 2 cls + 1 in y; cls = c / (C / ncls), part = the bin's cell of a part x part grid, no move
 * when no_trans), averages the bilinear samples of an spp x spp grid that lie within half a
 * cell of the image (clamped onto it); a bin without samples gives 0. trans: K x 2 ncls x
 * part x part doubles, or NULL when no_trans. */
typedef struct ty_dpsroi_geom {
    int64_t N, C, H, W, K, OH, OW, part, spp, ncls;
    double scale, trans_std;
    int no_trans;
} ty_dpsroi_geom;

void ty_dpsroi_fwd_f32(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                       const float *x, float *y);
void ty_dpsroi_fwd_f64(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                       const double *x, double *y);
void ty_dpsroi_bwd_f32(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                       const float *dy, float *dx);
void ty_dpsroi_bwd_f64(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                       const double *dy, double *dx);
/* The gradient w.r.t. trans (K x 2 ncls x part x part doubles, overwritten): each bin's
 * output moves with its offset times trans_std times the box size; a sample clamped onto
 * the image along an axis does not move along it. Zeros when no_trans. Boxes in parallel,
 * each summing its channels and bins in order. */
void ty_dpsroi_trans_grad_f32(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                              const float *x, const float *dy, double *dtrans);
void ty_dpsroi_trans_grad_f64(const ty_dpsroi_geom *g, const double *rois, const double *trans,
                              const double *x, const double *dy, double *dtrans);

#endif
