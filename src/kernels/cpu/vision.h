/* Vision kernels on NCHW-contiguous data: RoI align / RoI pooling and the sampling of remap and
 * warp_perspective, forward and backward. Values are float or double; coordinates are computed
 * in double. Work is split over output planes (forward) or input planes (backward: each input
 * plane gathers its contributions in a fixed order), so results never depend on the thread
 * count. Geometry and indices are trusted: the ops layer validates them first.
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
 * the point. A cell outside the image is mapped by the border mode, or takes border_val
 * (constant; it gets no gradient). A NaN coordinate gives NaN and no gradient. */
enum {
    TY_BORDER_REPLICATE = 0,
    TY_BORDER_REFLECT = 1,
    TY_BORDER_REFLECT_101 = 2,
    TY_BORDER_WRAP = 3,
    TY_BORDER_CONSTANT = 4
};
enum { TY_INTERP_NEAREST = 0, TY_INTERP_LINEAR = 1 };

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

#endif
