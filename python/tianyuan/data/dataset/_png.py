"""A small, strict PNG decoder (zlib from the standard library, numpy for the pixels).

Datasets use it when Pillow is not installed: segmentation masks (Cityscapes label maps, VOC
class maps) and many images are PNG files. It reads every non-interlaced PNG: grey, grey+alpha,
RGB, RGBA (8 and 16 bits) and palette / low-bit grey (1, 2, 4, 8 bits). Every chunk's CRC,
the header fields and the decompressed size are checked, so a corrupt or hostile file gives a
``ValueError`` naming the file, never a crash or an unbounded allocation.
"""
import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_PIXELS = 1 << 28
# colour type -> (channels, allowed bit depths)
_COLOR_TYPES = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (1, (1, 2, 4, 8)),
                4: (2, (8, 16)), 6: (4, (8, 16))}


def _chunks(data, path):
    """Yields (type, payload) of each chunk after the signature, checking lengths and CRCs."""
    pos = len(SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"{path}: truncated PNG chunk header at byte {pos}")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError(f"{path}: truncated PNG chunk {kind!r} at byte {pos}")
        payload = data[pos + 8:end]
        (crc,) = struct.unpack(">I", data[end:end + 4])
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: PNG chunk {kind!r} at byte {pos} fails its CRC check")
        yield kind, payload
        if kind == b"IEND":
            return
        pos = end + 4
    raise ValueError(f"{path}: PNG file ends without an IEND chunk")


def _header(payload, path):
    if len(payload) != 13:
        raise ValueError(f"{path}: PNG IHDR chunk has {len(payload)} bytes, expected 13")
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", payload)
    if ctype not in _COLOR_TYPES or depth not in _COLOR_TYPES[ctype][1]:
        raise ValueError(f"{path}: PNG colour type {ctype} with bit depth {depth} is invalid")
    if comp != 0 or filt != 0:
        raise ValueError(f"{path}: unknown PNG compression/filter method {comp}/{filt}")
    if not (0 < w and 0 < h and w * h <= _MAX_PIXELS):
        raise ValueError(f"{path}: bad PNG size {w}x{h}")
    if interlace != 0:
        raise ValueError(f"{path}: interlaced (Adam7) PNG files need Pillow; re-save the file "
                         "without interlacing or install Pillow")
    return w, h, depth, ctype


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter_row(kind, row, prior, bpp, path, y):
    """Reverses the PNG filter of one row (uint8 arrays); returns the reconstructed row."""
    if kind == 0:
        return row
    if kind == 2:
        return row + prior  # uint8 wraps modulo 256, as the format wants
    if kind == 1:
        if len(row) % bpp == 0:
            s = np.cumsum(row.reshape(-1, bpp).astype(np.uint64), axis=0) & 0xFF
            return s.astype(np.uint8).reshape(-1)
    if kind not in (1, 3, 4):
        raise ValueError(f"{path}: unknown PNG filter type {kind} in row {y}")
    out = bytearray(row.tobytes())  # the sequential filters: one byte at a time
    up = prior.tobytes()
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 1:
            pred = a
        elif kind == 3:
            pred = (a + b) >> 1
        else:
            pred = _paeth(a, b, up[i - bpp] if i >= bpp else 0)
        out[i] = (out[i] + pred) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)


def _unpack_low_bits(rows, depth, width):
    """Expands 1/2/4-bit samples packed in bytes (most significant first) to uint8."""
    bits = np.unpackbits(rows, axis=1)
    bits = bits[:, :width * depth].reshape(rows.shape[0], width, depth)
    weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
    return (bits * weights).sum(axis=2).astype(np.uint8)


def decode_png(data, path="<png>", palette_indices=False):
    """Decodes PNG bytes into an HxWxC array (uint8, or uint16 for 16-bit files).

    Channels come out as stored: grey (1), grey+alpha (2), RGB (3), RGBA (4). A palette image
    gives its RGB colours, or with ``palette_indices=True`` the HxWx1 palette indices (what a
    VOC class map stores)."""
    if data[:8] != SIGNATURE:
        raise ValueError(f"{path}: not a PNG file")
    hdr, palette, idat = None, None, []
    for kind, payload in _chunks(data, path):
        if kind == b"IHDR":
            hdr = _header(payload, path)
        elif hdr is None:
            raise ValueError(f"{path}: PNG chunk {kind!r} before IHDR")
        elif kind == b"PLTE":
            if len(payload) % 3 or not 3 <= len(payload) <= 768:
                raise ValueError(f"{path}: bad PNG palette of {len(payload)} bytes")
            palette = np.frombuffer(payload, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(payload)
    if hdr is None or not idat:
        raise ValueError(f"{path}: PNG file has no IHDR or no IDAT chunk")
    w, h, depth, ctype = hdr
    channels = _COLOR_TYPES[ctype][0]
    stride = (w * channels * depth + 7) // 8
    bpp = max(1, channels * depth // 8)
    need = h * (stride + 1)
    try:
        d = zlib.decompressobj()
        raw = d.decompress(b"".join(idat), need + 1)
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt PNG image data ({e})") from None
    if len(raw) != need:
        raise ValueError(f"{path}: PNG image data has {len(raw)} bytes, a {w}x{h} image "
                         f"needs {need}")
    rows = np.frombuffer(raw, np.uint8).reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(h):
        prior = out[y] = _unfilter_row(int(rows[y, 0]), rows[y, 1:], prior, bpp, path, y)
    if depth == 16:
        img = out.view(">u2").astype(np.uint16).reshape(h, w, channels)
    elif depth == 8:
        img = out.reshape(h, w, channels)
    else:
        img = _unpack_low_bits(out, depth, w)[:, :, None]
        if ctype == 0:  # scale low-bit grey to 0..255 as decoders do
            img = (img.astype(np.uint16) * (255 // ((1 << depth) - 1))).astype(np.uint8)
    if ctype != 3:
        return img
    if palette is None:
        raise ValueError(f"{path}: palette PNG without a PLTE chunk")
    if palette_indices:
        return img
    if int(img.max()) >= len(palette):
        raise ValueError(f"{path}: PNG pixel refers to palette entry {int(img.max())}, the "
                         f"palette has {len(palette)}")
    return palette[img[:, :, 0]]
