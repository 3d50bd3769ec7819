"""Detection and segmentation data: the COCO / Objects365 / PascalVOC / Cityscapes / ImageNet
datasets on tiny fixture trees written here, the PNG decoder, and transforms that move boxes,
keypoints, polygons and masks together with the image."""
import json
import os
import struct
import zlib

import numpy as np
import pytest

import tianyuan.data as D
import tianyuan.data.transform as T
from tianyuan.data.dataset import (COCO, Cityscapes, ImageNet, Objects365, PascalVOC,
                                   UnsupportedFieldError, VisionDataset, read_image)
from tianyuan.data.dataset import _png

RED = (0, 0, 255)  # BGR
GREEN = (0, 255, 0)


# ------------------------------------------------------------------------------ PNG writer
def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_row(kind, row, prior, bpp):
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
        out[i] = (x - pred) & 0xFF
    return bytes([kind]) + bytes(out)


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + \
        struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bytes(pixels, ctype, depth=8, palette=None, interlace=0):
    """A PNG of ``pixels`` (HxWxC samples as stored: grey, grey+alpha, RGB, RGBA or palette
    indices), each row using the next of the five filter types."""
    pixels = np.asarray(pixels)
    h, w = pixels.shape[:2]
    if depth == 16:
        rows = [pixels[y].astype(">u2").tobytes() for y in range(h)]
    elif depth < 8:
        bits = ((pixels[:, :, 0, None] >> np.arange(depth - 1, -1, -1)) & 1).astype(np.uint8)
        rows = [np.packbits(bits[y].reshape(-1)).tobytes() for y in range(h)]
    else:
        rows = [pixels[y].astype(np.uint8).tobytes() for y in range(h)]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    bpp = max(1, channels * depth // 8)
    raw, prior = b"", bytes(len(rows[0]))
    for y, row in enumerate(rows):
        raw += _filter_row(y % 5, row, prior, bpp)
        prior = row
    out = _png.SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0,
                                                       interlace))
    if palette is not None:
        out += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    return out + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def write_png(path, img_bgr_or_grey):
    """Writes an HxWx3 BGR or HxW(x1) grey uint8 image as PNG."""
    a = np.asarray(img_bgr_or_grey, np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if a.ndim == 3 and a.shape[2] == 3:
        data = png_bytes(a[:, :, ::-1], 2)
    else:
        data = png_bytes(a.reshape(a.shape[0], a.shape[1], 1), 0)
    with open(path, "wb") as f:
        f.write(data)


def scene(h, w, box, color=RED):
    """A black HxW BGR image with a filled rectangle box = (x0, y0, x1, y1), half-open."""
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = color
    return img


# ------------------------------------------------------------------------------ PNG decoder
def test_png_decoder_reads_every_colour_type_and_filter():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_png.decode_png(png_bytes(rgb, 2)), rgb)
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(_png.decode_png(png_bytes(rgba, 6)), rgba)
    ga = rng.integers(0, 256, (5, 4, 2), dtype=np.uint8)
    np.testing.assert_array_equal(_png.decode_png(png_bytes(ga, 4)), ga)
    g16 = rng.integers(0, 65536, (5, 6, 1), dtype=np.uint16)
    out = _png.decode_png(png_bytes(g16, 0, depth=16))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, g16)
    idx = rng.integers(0, 4, (5, 11, 1), dtype=np.uint8)
    pal = [(10, 20, 30), (40, 50, 60), (70, 80, 90), (100, 110, 120)]
    data = png_bytes(idx, 3, depth=2, palette=pal)
    np.testing.assert_array_equal(_png.decode_png(data, palette_indices=True), idx)
    np.testing.assert_array_equal(_png.decode_png(data), np.array(pal, np.uint8)[idx[:, :, 0]])
    bits = rng.integers(0, 2, (3, 13, 1), dtype=np.uint8)
    np.testing.assert_array_equal(_png.decode_png(png_bytes(bits, 0, depth=1)), bits * 255)


def test_png_read_image_is_bgr_and_corrupt_files_fail_clearly(tmp_path):
    img = scene(6, 8, (1, 2, 5, 4))
    p = str(tmp_path / "a.png")
    write_png(p, img)
    np.testing.assert_array_equal(read_image(p), img)  # BGR out, like cv2
    good = png_bytes(img[:, :, ::-1], 2)
    bad_crc = bytearray(good)
    bad_crc[40] ^= 0xFF
    cases = {"CRC": bytes(bad_crc), "truncated": good[:-20],
             "interlaced": png_bytes(img, 2, interlace=1), "not a PNG": b"GIF89a" + good[6:]}
    for msg, data in cases.items():
        with pytest.raises(ValueError, match=msg if msg != "truncated" else "truncated|IEND"):
            _png.decode_png(data, "x.png")
    huge = _png.SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1 << 20, 1 << 20, 8, 2,
                                                        0, 0, 0))
    with pytest.raises(ValueError, match="bad PNG size"):
        _png.decode_png(huge + _chunk(b"IEND", b""), "x.png")
    short = _png.SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)) + \
        _chunk(b"IDAT", zlib.compress(b"\0" * 7)) + _chunk(b"IEND", b"")
    with pytest.raises(ValueError, match="needs 20"):
        _png.decode_png(short, "x.png")


# ------------------------------------------------------------------------------ COCO
BOX_A = (8, 5, 20, 12)   # x0, y0, x1, y1 of the red rectangle in image 1
BOX_B = (2, 3, 6, 9)     # the green one in image 3


def _kps(x0, y0, n_visible):
    """17 keypoints, the first n_visible visible (v=2) at distinct points, the rest 0."""
    out = []
    for i in range(17):
        out += [x0 + i, y0 + 1, 2] if i < n_visible else [0, 0, 0]
    return out


def make_coco(root, keypoints=True):
    os.makedirs(root, exist_ok=True)
    write_png(os.path.join(root, "img1.png"), scene(24, 32, BOX_A))
    write_png(os.path.join(root, "img2.png"), scene(16, 16, (0, 0, 0, 0)))
    write_png(os.path.join(root, "sub", "img3.png"), scene(20, 10, BOX_B, GREEN))
    images = [{"id": 1, "file_name": "img1.png", "height": 24, "width": 32, "license": 3},
              {"id": 7, "file_name": "img2.png", "height": 16, "width": 16},
              {"id": 3, "file_name": "sub/img3.png", "height": 20, "width": 10}]
    x0, y0, x1, y1 = BOX_A
    anns = [{"id": 10, "image_id": 1, "category_id": 18, "iscrowd": 0,
             "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1]]},
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 4, 4],
             "segmentation": {"counts": [0, 16], "size": [24, 32]}},
            {"id": 12, "image_id": 3, "category_id": 1, "iscrowd": 0,
             "bbox": [BOX_B[0], BOX_B[1], 4, 6], "segmentation": []}]
    if keypoints:
        anns[0]["keypoints"] = _kps(x0, y0, 12)
        anns[1]["keypoints"] = _kps(0, 0, 0)
        anns[2]["keypoints"] = _kps(0, 0, 3)
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    path = os.path.join(root, "ann.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return path


def test_coco_reads_every_order_field(tmp_path):
    root = str(tmp_path / "coco")
    ann = make_coco(root)
    order = ("image", "boxes", "boxes_category", "keypoints", "polygons", "info")
    ds = COCO(root, ann, order=order)
    assert isinstance(ds, VisionDataset) and len(ds) == 3
    assert ds.ids == [1, 3, 7]  # sorted image ids
    img, boxes, cats, kps, polys, info = ds[0]
    np.testing.assert_array_equal(img, scene(24, 32, BOX_A))
    assert boxes.dtype == np.float32 and boxes.tolist() == [list(BOX_A), [0, 0, 4, 4]]
    # json ids 1 and 18 become contiguous 1 and 2
    assert cats.dtype == np.int32 and cats.tolist() == [2, 1]
    assert ds.json_category_id_to_contiguous_id == {1: 1, 18: 2}
    assert ds.contiguous_category_id_to_json_id == {1: 1, 2: 18}
    assert kps.shape == (2, 17, 3) and kps.dtype == np.float32
    assert kps[0, 0].tolist() == [BOX_A[0], BOX_A[1] + 1, 2] and kps[0, 16, 2] == 0
    assert len(polys) == 2 and polys[1] == []  # the crowd (RLE) instance has no polygon
    np.testing.assert_array_equal(polys[0][0], [[8, 5], [20, 5], [20, 12]])
    assert info == [24, 32, "img1.png"]
    img3, boxes3 = COCO(root, ann, order=("image", "boxes"))[1]
    assert img3.shape == (20, 10, 3) and tuple(img3[BOX_B[1], BOX_B[0]]) == GREEN
    assert boxes3.tolist() == [list(BOX_B)]
    empty = ds[2]
    assert empty[1].shape == (0, 4) and empty[2].shape == (0,) and empty[3].shape == (0, 17, 3)
    assert ds.get_img_info(1)["file_name"] == "sub/img3.png"
    assert COCO(root, ann)[0][0].shape == (24, 32, 3)  # default order: ("image",)
    assert len(COCO.class_names) == 80 and COCO.classes_originID["toothbrush"] == 90
    assert len(COCO.keypoint_names) == 17


def test_coco_remove_images_without_annotations(tmp_path):
    root = str(tmp_path / "coco")
    ann = make_coco(root)
    ds = COCO(root, ann, remove_images_without_annotations=True,
              order=("image", "boxes", "boxes_category"))
    assert ds.ids == [1, 3]  # image 7 had no annotation
    assert ds[0][1].tolist() == [list(BOX_A)]  # the crowd box is dropped
    # with keypoints asked for, an image needs 10 visible keypoints: image 3 has 3
    ds = COCO(root, ann, remove_images_without_annotations=True, order=("image", "keypoints"))
    assert ds.ids == [1] and ds[0][1].shape == (1, 17, 3)


def test_coco_errors(tmp_path):
    root = str(tmp_path / "coco")
    ann = make_coco(root, keypoints=False)
    with pytest.raises(UnsupportedFieldError, match="'mask'") as ei:
        COCO(root, ann, order=("image", "mask"))
    assert isinstance(ei.value, NotImplementedError) and isinstance(ei.value, ValueError)
    with pytest.raises(ValueError, match="sequence"):
        COCO(root, ann, order="image")
    with pytest.raises(FileNotFoundError, match="root directory"):
        COCO(str(tmp_path / "nowhere"), ann)
    with pytest.raises(FileNotFoundError, match="annotation file"):
        COCO(root, str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="keypoints"):  # this file has no keypoints
        COCO(root, ann, order=("image", "keypoints"))

    def broken(edit, text=None):
        p = str(tmp_path / "bad.json")
        with open(p, "w") as f:
            if text is not None:
                f.write(text)
            else:
                d = json.load(open(ann))
                edit(d)
                json.dump(d, f)
        return p

    with pytest.raises(ValueError, match="bad.json: not a valid JSON"):
        COCO(root, broken(None, '{"images": ['))
    with pytest.raises(ValueError, match="'annotations'"):
        COCO(root, broken(lambda d: d.pop("annotations")))
    with pytest.raises(ValueError, match=r"annotations\[0\] \(id 10\) refers to image id 99"):
        COCO(root, broken(lambda d: d["annotations"][0].update(image_id=99)))
    with pytest.raises(ValueError, match="category id 5"):
        COCO(root, broken(lambda d: d["annotations"][2].update(category_id=5)))
    with pytest.raises(ValueError, match="'bbox' must be 4 finite numbers"):
        COCO(root, broken(lambda d: d["annotations"][1].update(bbox=[1, 2, "3", 4])))
    with pytest.raises(ValueError, match="images\\[1\\].*'height'"):
        COCO(root, broken(lambda d: d["images"][1].pop("height")))
    ds = COCO(root, broken(lambda d: d["images"][0].update(file_name="gone.png")))
    with pytest.raises(FileNotFoundError):
        ds[0]


def test_objects365(tmp_path):
    root = str(tmp_path / "o365")
    os.makedirs(root)
    write_png(os.path.join(root, "a.png"), scene(12, 14, (3, 4, 9, 10)))
    write_png(os.path.join(root, "b.png"), scene(12, 14, (0, 0, 0, 0)))
    d = {"images": [{"id": 5, "file_name": "a.png", "height": 12, "width": 14},
                    {"id": 6, "file_name": "b.png", "height": 12, "width": 14}],
         "annotations": [{"id": 1, "image_id": 5, "category_id": 30, "iscrowd": 0,
                          "bbox": [3, 4, 6, 6]},
                         {"id": 2, "image_id": 6, "category_id": 2, "iscrowd": 0,
                          "bbox": [1, 1, 0, 5]}],
         "categories": [{"id": 30, "name": "cup"}, {"id": 2, "name": "sneakers"}]}
    ann = str(tmp_path / "o365.json")
    with open(ann, "w") as f:
        json.dump(d, f)
    ds = Objects365(root, ann, order=("image", "boxes", "boxes_category", "info"))
    assert len(ds) == 2 and ds.class_names == ("sneakers", "cup")
    img, boxes, cats, info = ds[0]
    assert boxes.tolist() == [[3, 4, 9, 10]] and cats.tolist() == [2] and info == [12, 14, "a.png"]
    assert tuple(img[4, 3]) == RED and tuple(img[10, 9]) == (0, 0, 0)
    # the zero-width box does not count: image 6 is dropped
    assert len(Objects365(root, ann, remove_images_without_annotations=True)) == 1
    with pytest.raises(UnsupportedFieldError):
        Objects365(root, ann, order=("image", "keypoints"))


# ------------------------------------------------------------------------------ PascalVOC
def _voc_xml(objects):
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects)
    return f"<annotation><filename>x.jpg</filename><size><width>9</width></size>{objs}" \
           "</annotation>"


def make_voc(root):
    files = {
        "JPEGImages/2007_000001.png": scene(10, 12, (2, 3, 7, 8)),
        "JPEGImages/2007_000002.png": scene(8, 8, (1, 1, 4, 4), GREEN),
    }
    for name, img in files.items():
        write_png(os.path.join(root, name), img)
    os.makedirs(os.path.join(root, "Annotations"))
    os.makedirs(os.path.join(root, "ImageSets", "Main"))
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    with open(os.path.join(root, "Annotations", "2007_000001.xml"), "w") as f:
        f.write(_voc_xml([("person", (2, 3, 7, 8)), ("dog", (0, 0, 1, 1))]))
    with open(os.path.join(root, "Annotations", "2007_000002.xml"), "w") as f:
        f.write(_voc_xml([("tvmonitor", (1, 1, 4, 4))]))
    for sub in ("Main", "Segmentation"):
        with open(os.path.join(root, "ImageSets", sub, "train.txt"), "w") as f:
            f.write("2007_000001\n2007_000002\n\n")
    with open(os.path.join(root, "ImageSets", "Segmentation", "train_aug.txt"), "w") as f:
        f.write("2007_000002\n")
    # class map 1: a palette PNG (VOC's own format): person (15) with a 255 border
    idx = np.zeros((10, 12, 1), np.uint8)
    idx[2:9, 1:8] = 255
    idx[3:8, 2:7] = 15
    palette = [tuple(c) for c in PascalVOC.class_colors] + [(0, 0, 0)] * 234 + [(224, 224, 192)]
    os.makedirs(os.path.join(root, "SegmentationClass"))
    with open(os.path.join(root, "SegmentationClass", "2007_000001.png"), "wb") as f:
        f.write(png_bytes(idx, 3, palette=palette))
    # class map 2: an RGB PNG with VOC's colours: tvmonitor (20)
    col = np.zeros((8, 8, 3), np.uint8)
    col[1:4, 1:4] = PascalVOC.class_colors[20]
    col[0, 7] = (1, 2, 3)  # not a VOC colour -> 255
    with open(os.path.join(root, "SegmentationClass", "2007_000002.png"), "wb") as f:
        f.write(png_bytes(col, 2))
    aug = np.zeros((8, 8), np.uint8)
    aug[1:4, 1:4] = 20
    write_png(os.path.join(root, "SegmentationClass_aug", "2007_000002.png"), aug)
    return root


def test_pascal_voc_detection_and_segmentation(tmp_path):
    root = make_voc(str(tmp_path / "VOC2012"))
    ds = PascalVOC(root, "train", order=("image", "boxes", "boxes_category", "info"))
    assert len(ds) == 2
    img, boxes, cats, info = ds[0]
    np.testing.assert_array_equal(img, scene(10, 12, (2, 3, 7, 8)))
    assert boxes.dtype == np.float32 and boxes.tolist() == [[2, 3, 7, 8], [0, 0, 1, 1]]
    assert cats.dtype == np.int32 and cats.tolist() == [15, 12]  # person, dog (1-based)
    assert info == [10, 12, "2007_000001"]
    assert ds.get_img_info(1) == {"height": 8, "width": 8, "file_name": "2007_000002"}
    seg = PascalVOC(root, "train", order=("image", "mask", "info"))
    img, mask, info = seg[0]
    assert mask.shape == (10, 12, 1) and mask.dtype == np.uint8
    assert (mask[3:8, 2:7] == 15).all() and mask[2, 1] == 255 and mask[0, 0] == 0
    # the class map covers exactly the drawn rectangle
    np.testing.assert_array_equal(mask[:, :, 0] == 15, (img == RED).all(axis=2))
    mask2 = seg[1][1][:, :, 0]
    assert (mask2[1:4, 1:4] == 20).all() and mask2[0, 7] == 255 and mask2[5, 5] == 0
    aug = PascalVOC(root, "train_aug", order=("mask",))
    assert len(aug) == 1 and (aug[0][0][1:4, 1:4] == 20).all()
    assert len(PascalVOC.class_names) == 20


def test_pascal_voc_errors(tmp_path):
    root = make_voc(str(tmp_path / "VOC"))
    with pytest.raises(ValueError, match="not both"):
        PascalVOC(root, "train", order=("image", "boxes", "mask"))
    with pytest.raises(UnsupportedFieldError, match="keypoints"):
        PascalVOC(root, "train", order=("image", "keypoints"))
    with pytest.raises(FileNotFoundError, match="root directory"):
        PascalVOC(str(tmp_path / "none"), "train", order=("image", "boxes"))
    with pytest.raises(FileNotFoundError, match="val.txt"):
        PascalVOC(root, "val", order=("image", "boxes"))
    ds = PascalVOC(root, "train", order=("boxes", "boxes_category"))
    with open(ds.annotations[1], "w") as f:
        f.write(_voc_xml([("unicorn", (1, 1, 2, 2))]))
    with pytest.raises(ValueError, match="unknown class 'unicorn'"):
        ds[1]
    with open(ds.annotations[1], "w") as f:
        f.write("<annotation><object><name>dog</name>")
    with pytest.raises(ValueError, match="malformed XML"):
        ds[1]
    with open(ds.annotations[1], "w") as f:
        f.write(_voc_xml([("dog", (1, "a", 2, 2))]))
    with pytest.raises(ValueError, match="numeric"):
        ds[1]


# ------------------------------------------------------------------------------ Cityscapes
def make_cityscapes(root):
    for split, city, n in (("train", "aachen", 2), ("train", "bochum", 1), ("val", "lindau", 1)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            img = scene(6, 8, (1, 1, 4 + i, 3))
            write_png(os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png"),
                      img)
            labels = np.zeros((6, 8), np.uint8)   # id 0: unlabeled -> 255
            labels[1:3, 1:4 + i] = 26              # car -> train id 13
            labels[5, :] = 7                       # road -> 0
            write_png(os.path.join(root, "gtFine", split, city,
                                   stem + "_gtFine_labelIds.png"), labels)
    return root


def test_cityscapes(tmp_path):
    root = make_cityscapes(str(tmp_path / "cs"))
    ds = Cityscapes(root, "train", "gtFine", order=("image", "mask", "info"))
    assert len(ds) == 3
    img, mask, info = ds[1]
    assert mask.shape == (6, 8, 1) and mask.dtype == np.uint8
    m = mask[:, :, 0]
    assert (m[5] == 0).all() and m[0, 0] == 255
    np.testing.assert_array_equal(m == 13, (img == RED).all(axis=2))
    assert info[:2] == [6, 8] and info[2].endswith("aachen_000001_000019_leftImg8bit.png")
    assert Cityscapes(root, "val", "gtFine", order=("info",))[0][0][:2] == [6, 8]
    assert len(Cityscapes.class_names) == 19
    with pytest.raises(ValueError, match="gtFine"):
        Cityscapes(root, "train", "gtMedium")
    with pytest.raises(ValueError, match="train_extra"):
        Cityscapes(root, "train_extra", "gtFine")
    with pytest.raises(UnsupportedFieldError):
        Cityscapes(root, "train", "gtFine", order=("image", "boxes"))
    os.makedirs(str(tmp_path / "cs2"))
    with pytest.raises(FileNotFoundError, match="image directory"):
        Cityscapes(str(tmp_path / "cs2"), "train", "gtFine")
    os.remove(os.path.join(root, "gtFine", "train", "bochum",
                           "bochum_000000_000019_gtFine_labelIds.png"))
    with pytest.raises(FileNotFoundError, match="bochum_000000_000019_gtFine_labelIds"):
        Cityscapes(root, "train", "gtFine", order=("image", "mask"))
    assert len(Cityscapes(root, "train", "gtFine", order=("image",))) == 3


# ------------------------------------------------------------------------------ ImageNet
def test_imagenet_folder_layout(tmp_path):
    root = tmp_path / "imagenet"
    for split, wnid, k in (("train", "n01440764", 2), ("train", "n01443537", 1),
                           ("val", "n01440764", 1), ("val", "n01443537", 1)):
        for i in range(k):
            write_png(str(root / split / wnid / f"{wnid}_{i}.png"),
                      np.full((4, 5, 3), 10 * i + len(wnid), np.uint8))
    train = ImageNet(str(root))
    assert len(train) == 3 and train.classes == ["n01440764", "n01443537"]
    assert [lab for _, lab in train.samples] == [0, 0, 1]
    img, label = train[2]
    assert img.shape == (4, 5, 3) and label == 1
    val = ImageNet(str(root), train=False, class_name=True)
    assert len(val) == 2 and val[1][1:] == (1, "n01443537")
    os.makedirs(root / "ILSVRC2012_devkit_t12" / "data")
    (root / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt") \
        .write_text("490\n361\n")
    assert val.valid_ground_truth == [490, 361]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="train/<wnid>"):
        ImageNet(str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageNet(str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------ transforms
H, W = 24, 32
RECT = (8, 5, 20, 12)  # x0, y0, x1, y1
FULL = ("image", "boxes", "keypoints", "polygons", "mask", "coords", "boxes_category", "info")


def sample():
    img = scene(H, W, RECT)
    x0, y0, x1, y1 = RECT
    boxes = np.array([RECT], np.float32)
    # keypoints at the centres of the rectangle's four corner pixels, plus an invisible one
    kps = np.array([[[x0 + .5, y0 + .5, 2], [x1 - .5, y0 + .5, 2], [x0 + .5, y1 - .5, 1],
                     [x1 - .5, y1 - .5, 2], [0, 0, 0]]], np.float32)
    polys = [[np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)]]
    mask = (img[:, :, 2:3] == 255).astype(np.uint8) * 7
    coords = kps[0, :4, :2].copy()
    return img, boxes, kps, polys, mask, coords, np.array([3], np.int32), [H, W, "x"]


def check_consistent(out, exact):
    img, boxes, kps, polys, mask, coords, cats, info = out
    assert cats.tolist() == [3] and info == [H, W, "x"]
    assert mask.shape[:2] == img.shape[:2] and mask.dtype == np.uint8
    drawn = (img[:, :, 2] > 127) & (img[:, :, 0] < 128)
    np.testing.assert_array_equal(mask[:, :, 0] == 7, drawn)  # mask follows the image
    ys, xs = np.nonzero(drawn)
    tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
    assert boxes.shape == (1, 4) and boxes.dtype == np.float32
    if exact:
        np.testing.assert_allclose(boxes[0], tight, atol=1e-4)
    else:  # resampling may move an edge by up to one output pixel
        np.testing.assert_allclose(boxes[0], tight, atol=1.0)
    for x, y, v in kps[0, :4]:
        if exact:  # each corner keypoint stays on its pixel of the rectangle
            assert drawn[int(y), int(x)], (x, y)
        else:
            assert boxes[0, 0] < x < boxes[0, 2] and boxes[0, 1] < y < boxes[0, 3]
    assert kps[0, :4, 2].tolist() == [2, 2, 1, 2] and kps[0, 4, 2] == 0
    np.testing.assert_allclose(coords, kps[0, :4, :2], atol=1e-5)
    p = polys[0][0]
    np.testing.assert_allclose([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()],
                               boxes[0], atol=1e-4)


GEOMETRIC = [
    (lambda o: T.RandomHorizontalFlip(1.0, order=o), True),
    (lambda o: T.RandomVerticalFlip(1.0, order=o), True),
    (lambda o: T.Resize((48, 64), interpolation=0, order=o), True),
    (lambda o: T.Resize((12, 16), interpolation=0, order=o), False),  # odd edges halve
    (lambda o: T.Resize((31, 45), interpolation=0, order=o), False),
    (lambda o: T.Resize(30, interpolation=0, order=o), False),
    (lambda o: T.RandomResize((0.6, 1.7), interpolation=0, order=o), False),
    (lambda o: T.ShortestEdgeResize((18, 40), 50, interpolation=0, order=o), False),
    (lambda o: T.ShortestEdgeResize([20, 36], 40, "choice", interpolation=0, order=o), False),
    (lambda o: T.Pad((1, 2, 3, 4), order=o), True),
    (lambda o: T.Pad((2, 5), order=o), True),
    (lambda o: T.CenterCrop((18, 20), order=o), True),
    (lambda o: T.RandomCrop((22, 28), padding_size=2, order=o), True),
    (lambda o: T.RandomCrop(40, order=o), True),  # larger than the image: padded first
    (lambda o: T.RandomResizedCrop((40, 60), (0.85, 1.0), (1.2, 1.4), interpolation=0,
                                   order=o), False),
]


@pytest.mark.parametrize("k", range(len(GEOMETRIC)))
def test_geometric_transform_moves_everything_together(k):
    make, exact = GEOMETRIC[k]
    T._set_rng(np.random.default_rng(k))
    t = make(FULL)
    for _ in range(4):
        out = t.apply(sample())
        check_consistent(out, exact)
    assert t.apply(sample())[0].dtype == np.uint8


def test_flip_and_pad_move_coordinates_exactly():
    s = sample()
    f = T.RandomHorizontalFlip(1.0, order=FULL).apply(s)
    assert f[1].tolist() == [[W - RECT[2], RECT[1], W - RECT[0], RECT[3]]]
    assert f[2][0, 0, :2].tolist() == [W - RECT[0] - .5, RECT[1] + .5]
    v = T.RandomVerticalFlip(1.0, order=FULL).apply(s)
    assert v[1].tolist() == [[RECT[0], H - RECT[3], RECT[2], H - RECT[1]]]
    p = T.Pad((1, 2, 3, 4), order=FULL).apply(s)  # top, bottom, left, right
    assert p[0].shape == (H + 3, W + 7, 3)
    assert p[1].tolist() == [[RECT[0] + 3, RECT[1] + 1, RECT[2] + 3, RECT[3] + 1]]
    p2 = T.Pad((2, 5), order=FULL).apply(s)  # MegEngine: a pair pads bottom and right
    assert p2[0].shape == (H + 2, W + 5, 3) and p2[1].tolist() == [list(RECT)]
    r = T.Resize((48, 16), order=FULL).apply(s)
    assert r[1].tolist() == [[RECT[0] / 2, RECT[1] * 2, RECT[2] / 2, RECT[3] * 2]]
    # the inputs are not modified in place
    assert s[1].tolist() == [list(RECT)] and s[2][0, 0, 0] == RECT[0] + .5
    # no flip: everything unchanged
    n = T.RandomHorizontalFlip(0.0, order=FULL).apply(s)
    for a, b in zip(n[:3], s[:3]):
        np.testing.assert_array_equal(a, b)


def test_compose_gives_its_order_to_every_transform():
    T._set_rng(np.random.default_rng(5))
    t = T.Compose([T.RandomHorizontalFlip(1.0), T.Pad(2), T.RandomCrop((24, 30)),
                   T.RandomVerticalFlip(), T.Resize((48, 60), interpolation=0),
                   T.ColorJitter(0.3, 0.3, 0.3, 0.05), T.Normalize(0, 1)], order=FULL)
    assert all(x.order == FULL for x in t.transforms)
    for _ in range(3):
        img, *rest = t.apply(sample())
        assert img.dtype == np.float32
        check_consistent((img, *rest), exact=True)
    with pytest.raises(ValueError, match="shuffle_indices"):
        T.Compose([T.Pad(1)], batch_compose=True, shuffle_indices=[(1,)])


def test_photometric_transforms_leave_geometry_alone():
    T._set_rng(np.random.default_rng(2))
    s = sample()
    for t in (T.BrightnessTransform(0.5, order=FULL), T.ContrastTransform(0.5, order=FULL),
              T.SaturationTransform(0.5, order=FULL), T.HueTransform(0.3, order=FULL),
              T.ColorJitter(0.2, 0.2, 0.2, 0.1, order=FULL), T.Lighting(0.1, order=FULL),
              T.GaussianNoise(0, 3, order=FULL), T.Normalize(1, 2, order=FULL),
              T.ToMode("HWC", order=FULL)):
        out = t.apply(s)
        assert out[0].shape == s[0].shape
        for a, b in zip(out[1:3] + out[4:6], s[1:3] + s[4:6]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(out[3][0][0], s[3][0][0])
    chw = T.ToMode("CHW", order=FULL).apply(s)
    assert chw[0].shape == (3, H, W) and chw[4].shape == (1, H, W)
    np.testing.assert_array_equal(chw[1], s[1])


def test_contrast_saturation_hue_names():
    flat = np.full((4, 4, 3), 90, np.uint8)
    np.testing.assert_array_equal(T.SaturationTransform(0.9).apply(flat), flat)  # grey stays
    np.testing.assert_array_equal(T.HueTransform(0.5).apply(flat), flat)
    np.testing.assert_array_equal(T.ContrastTransform(0).apply(flat), flat)
    T._set_rng(np.random.default_rng(3))
    img = np.tile(np.arange(100, 164, dtype=np.uint8).reshape(8, 8, 1), (1, 1, 3))
    out = T.ContrastTransform(0.5).apply(img)
    assert abs(out.astype(float).mean() - img.mean()) < 1.0  # blended towards the mean grey
    assert out.std() != img.std()
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 200
    T._set_rng(np.random.default_rng(4))
    shifted = T.HueTransform(0.5).apply(red)
    assert shifted.max() == 200 and not np.array_equal(shifted, red)  # same value, new hue
    with pytest.raises(ValueError, match="Hue"):
        T.HueTransform(0.6)
    with pytest.raises(ValueError, match="non-negative"):
        T.SaturationTransform(-1)


def test_torch_transform_compose_runs_callables_on_rgb():
    img = scene(6, 8, (1, 2, 4, 5))
    seen = []

    def record(x):
        seen.append(np.asarray(x)[2, 1].tolist())
        return x

    def mirror(x):
        return np.ascontiguousarray(np.asarray(x)[:, ::-1])

    t = T.TorchTransformCompose([record, mirror], order=("image", "image_category"))
    out, cat = t.apply((img, 4))
    assert seen == [[255, 0, 0]]  # the callables see RGB
    np.testing.assert_array_equal(out, img[:, ::-1])  # and the result is BGR again
    assert cat == 4
    with pytest.raises(ValueError, match="must return an image"):
        T.TorchTransformCompose([lambda x: 1.5]).apply(img)


def test_cuda_transform_is_a_transform_that_runs_on_cpu():
    class Twice(T.CudaTransform):
        def apply(self, input):
            x, y = input
            return x * 2, y

    ds = D.ArrayDataset(np.arange(6, dtype=np.float32).reshape(3, 2), np.arange(3))
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=3), transform=Twice())
    x, y = next(iter(dl))
    np.testing.assert_array_equal(x, np.arange(6).reshape(3, 2) * 2)
    assert isinstance(Twice(), T.Transform)


def test_transform_errors():
    with pytest.raises(UnsupportedFieldError, match="'depth'"):
        T.RandomHorizontalFlip(order=("image", "depth"))
    with pytest.raises(ValueError, match="batch"):
        T.Resize(4, order=("image", "batch"))
    with pytest.raises(ValueError, match="needs the sample's image"):
        T.RandomHorizontalFlip(1.0, order=("boxes",)).apply((np.zeros((1, 4), np.float32),))
    with pytest.raises(ValueError, match="Nx4"):
        T.RandomHorizontalFlip(1.0, order=("image", "boxes")).apply(
            (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="2 entries for an image of 3 channels"):
        T.Pad(1, value=(1, 2)).apply(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="larger than the image"):
        T.CenterCrop(5).apply(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="sample_style"):
        T.ShortestEdgeResize(10, 20, "any")


# ------------------------------------------------------------------------------ DataLoader
class PadBoxesCollator(D.Collator):
    """Stacks images and pads the per-image boxes/categories to the batch's largest count."""

    def apply(self, inputs):
        imgs, boxes, cats = zip(*inputs)
        n = max(len(b) for b in boxes)
        pb = np.zeros((len(boxes), n, 4), np.float32)
        pc = np.zeros((len(boxes), n), np.int32)
        for i, (b, c) in enumerate(zip(boxes, cats)):
            pb[i, :len(b)] = b
            pc[i, :len(c)] = c
        return np.stack(imgs), pb, pc


def test_dataloader_batches_detection_samples(tmp_path):
    root = str(tmp_path / "coco")
    ann = make_coco(root, keypoints=False)
    order = ("image", "boxes", "boxes_category")
    ds = COCO(root, ann, order=order)
    t = T.Compose([T.Resize((16, 16), interpolation=0), T.RandomHorizontalFlip(1.0),
                   T.ToMode("CHW")], order=order)
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), transform=t,
                      collator=PadBoxesCollator())
    batches = list(dl)
    assert len(batches) == 2
    imgs, boxes, cats = batches[0]
    assert imgs.shape == (2, 3, 16, 16) and boxes.shape == (2, 2, 4) and cats.shape == (2, 2)
    # image 1 (32x24 -> 16x16, flipped): the red box scales by (0.5, 2/3) then mirrors
    x0, y0, x1, y1 = BOX_A
    np.testing.assert_allclose(boxes[0, 0], [16 - x1 / 2, y0 * 2 / 3, 16 - x0 / 2, y1 * 2 / 3],
                               rtol=1e-6)
    assert cats[0].tolist() == [2, 1] and cats[1].tolist() == [1, 0]  # padded with 0
    assert batches[1][1].shape == (1, 0, 4)  # the image without annotations
    # the default collator cannot stack ragged boxes and says so
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), transform=t)
    with pytest.raises(ValueError, match="shape"):
        next(iter(dl))


def test_one_field_samples_come_back_unwrapped_as_in_megengine(tmp_path):
    img = scene(6, 8, (1, 2, 4, 5))
    out = T.RandomHorizontalFlip(1.0).apply((img,))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, img[:, ::-1])
    root = str(tmp_path / "coco")
    ds = COCO(root, make_coco(root, keypoints=False))  # order ("image",): 1-tuples
    assert isinstance(ds[0], tuple) and len(ds[0]) == 1
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=3),
                      transform=T.Compose([T.Resize((8, 8)), T.ToMode("CHW")]))
    batch = next(iter(dl))
    assert isinstance(batch, np.ndarray) and batch.shape == (3, 3, 8, 8)
