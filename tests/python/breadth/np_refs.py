"""float64 NumPy references (loops) for the window ops."""
import numpy as np


def out_len(size, k, p, s, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def sliding_window(x, k, p, s, d):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    oh, ow = out_len(h, k[0], p[0], s[0], d[0]), out_len(w, k[1], p[1], s[1], d[1])
    out = np.zeros((n, c, oh, ow, k[0], k[1]), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            for a in range(k[0]):
                for b in range(k[1]):
                    out[:, :, i, j, a, b] = xp[:, :, i * s[0] + a * d[0], j * s[1] + b * d[1]]
    return out


def sliding_window_transpose(y, hw, k, p, s, d):
    n, c, oh, ow = y.shape[:4]
    h, w = hw
    xp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]))
    for i in range(oh):
        for j in range(ow):
            for a in range(k[0]):
                for b in range(k[1]):
                    xp[:, :, i * s[0] + a * d[0], j * s[1] + b * d[1]] += y[:, :, i, j, a, b]
    return xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w]


def conv3d(x, wt, s, p, d, g):
    n, ic, D, H, W = x.shape
    oc, icg, kd, kh, kw = wt.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1]), (p[2], p[2])))
    od, oh, ow = (out_len(D, kd, p[0], s[0], d[0]), out_len(H, kh, p[1], s[1], d[1]),
                  out_len(W, kw, p[2], s[2], d[2]))
    out = np.zeros((n, oc, od, oh, ow))
    ocg = oc // g
    for o in range(oc):
        gi = o // ocg
        for z in range(od):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[:, gi * icg:(gi + 1) * icg,
                               z * s[0]:z * s[0] + (kd - 1) * d[0] + 1:d[0],
                               i * s[1]:i * s[1] + (kh - 1) * d[1] + 1:d[1],
                               j * s[2]:j * s[2] + (kw - 1) * d[2] + 1:d[2]]
                    out[:, o, z, i, j] = (patch * wt[o]).sum(axis=(1, 2, 3, 4))
    return out


def conv_transpose3d(x, wt, s, p, op, d, g):
    n, ic, D, H, W = x.shape
    _, ocg, kd, kh, kw = wt.shape
    oc = ocg * g
    icg = ic // g
    full = [(D - 1) * s[0] + d[0] * (kd - 1) + op[0] + 1, (H - 1) * s[1] + d[1] * (kh - 1) + op[1] + 1,
            (W - 1) * s[2] + d[2] * (kw - 1) + op[2] + 1]
    out = np.zeros((n, oc) + tuple(full))
    for c in range(ic):
        gi = c // icg
        for z in range(D):
            for i in range(H):
                for j in range(W):
                    for a in range(kd):
                        for b in range(kh):
                            for e in range(kw):
                                out[:, gi * ocg:(gi + 1) * ocg, z * s[0] + a * d[0], i * s[1] + b * d[1],
                                    j * s[2] + e * d[2]] += x[:, c, z, i, j, None] * wt[c, :, a, b, e]
    return out[:, :, p[0]:full[0] - p[0], p[1]:full[1] - p[1], p[2]:full[2] - p[2]]


def local_conv2d(x, wt, s, p, d):
    g, oh, ow, icg, kh, kw, ocg = wt.shape
    cols = sliding_window(x, (kh, kw), p, s, d)  # n, ic, oh, ow, kh, kw
    n = x.shape[0]
    out = np.zeros((n, g * ocg, oh, ow))
    for gi in range(g):
        c = cols[:, gi * icg:(gi + 1) * icg]
        out[:, gi * ocg:(gi + 1) * ocg] = np.einsum("ncijab,ijcabo->noij", c, wt[gi])
    return out


def region_restricted_conv(x, wt, rin, rout, s, p, d):
    g, ocg, icg, kh, kw = wt.shape
    cols = sliding_window(x, (kh, kw), p, s, d)
    rcols = sliding_window(rin[:, None].astype(np.float64), (kh, kw), p, s, d)
    m = rcols == rout[:, None, :, :, None, None]
    cols = np.where(m, cols, 0.0)  # an input outside the output's region contributes nothing
    n, _, oh, ow = cols.shape[:4]
    out = np.zeros((n, g * ocg, oh, ow))
    for gi in range(g):
        out[:, gi * ocg:(gi + 1) * ocg] = np.einsum("ncijab,ocab->noij", cols[:, gi * icg:(gi + 1) * icg], wt[gi])
    return out


def bilinear(img, y, x):
    h, w = img.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    v = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                v += wy * wx * img[yy, xx]
    return v


def deformable_conv2d(x, wt, off, mask, s, p, d, groups):
    n, ic, h, w = x.shape
    oc, icg, kh, kw = wt.shape
    oh, ow = off.shape[2], off.shape[3]
    kk = kh * kw
    dg = off.shape[1] // (2 * kk)
    cpg = ic // dg
    out = np.zeros((n, oc, oh, ow))
    ocg = oc // groups
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                col = np.zeros((ic, kh, kw))
                for c in range(ic):
                    gi = c // cpg
                    for a in range(kh):
                        for e in range(kw):
                            k = a * kw + e
                            dy = off[b, (gi * kk + k) * 2, i, j]
                            dx = off[b, (gi * kk + k) * 2 + 1, i, j]
                            yy = i * s[0] - p[0] + a * d[0] + dy
                            xx = j * s[1] - p[1] + e * d[1] + dx
                            col[c, a, e] = bilinear(x[b, c], yy, xx) * mask[b, gi * kk + k, i, j]
                for o in range(oc):
                    gi = o // ocg
                    out[b, o, i, j] = (col[gi * icg:(gi + 1) * icg] * wt[o]).sum()
    return out
