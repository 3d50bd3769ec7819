"""Pascal VOC: detection (XML annotations) or semantic segmentation (class-map PNGs)."""
import os

import numpy as np

from .meta_vision import (VisionDataset, find_image, read_color, read_label_map, require_dir)
from .vision import _MAX_FILE_BYTES

__all__ = ["PascalVOC"]


def voc_colormap(n=256):
    """VOC's class colours (RGB): the bits of the class index are spread over the channels,
    most significant first (class 1 is dark red, 2 dark green, 3 dark yellow ...)."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


class PascalVOC(VisionDataset):
    """`Pascal VOC <http://host.robots.ox.ac.uk/pascal/VOC/>`_ (a ``VOCdevkit/VOC20xx`` folder).

    ``PascalVOC(root, image_set, *, order=None)``. With ``boxes``/``boxes_category`` in
    ``order`` the split is ``root/ImageSets/Main/<image_set>.txt`` and the boxes come from
    ``root/Annotations/<id>.xml`` (x0 y0 x1 y1 as written there; categories are 1-based
    indices into ``class_names``). With ``mask`` the split is ``ImageSets/Segmentation`` and
    the class map ``SegmentationClass/<id>.png`` (``SegmentationClass_aug`` when
    ``image_set`` contains ``"aug"``): palette indices or colours are turned into class indices,
    255 marks borders and unknown colours. Boxes and mask cannot be asked for together (VOC
    has no split with both). Images are ``JPEGImages/<id>.jpg`` (another image extension is
    used when the ``.jpg`` is absent). ``info`` is [height, width, id].
    """

    supported_order = ("image", "boxes", "boxes_category", "mask", "info")

    def __init__(self, root, image_set, *, order=None):
        super().__init__(root, order=order, supported_order=self.supported_order)
        detection = "boxes" in self.order or "boxes_category" in self.order
        if detection and "mask" in self.order:
            raise ValueError("PascalVOC gives boxes & boxes_category or mask, not both (no VOC "
                             "split has both)")
        require_dir(self.root, "PascalVOC")
        if not isinstance(image_set, str) or not image_set.strip():
            raise ValueError(f"PascalVOC: image_set must be a split name, got {image_set!r}")
        self.image_set = image_set.strip()
        segmentation = "mask" in self.order or (
            not detection and not os.path.isdir(os.path.join(self.root, "ImageSets", "Main")))
        sub = "Segmentation" if segmentation else "Main"
        split = os.path.join(self.root, "ImageSets", sub, self.image_set + ".txt")
        if not os.path.isfile(split):
            raise FileNotFoundError(f"PascalVOC: split file {split!r} does not exist")
        with open(split, "r", encoding="utf-8") as f:
            self.file_names = [x.strip() for x in f.read(_MAX_FILE_BYTES).splitlines()
                               if x.strip()]
        image_dir = os.path.join(self.root, "JPEGImages")
        self.images = [find_image(image_dir, x) for x in self.file_names]
        if segmentation:
            mask_dir = os.path.join(self.root, "SegmentationClass_aug" if "aug" in
                                    self.image_set else "SegmentationClass")
            self.masks = [os.path.join(mask_dir, x + ".png") for x in self.file_names]
        else:
            ann_dir = os.path.join(self.root, "Annotations")
            self.annotations = [os.path.join(ann_dir, x + ".xml") for x in self.file_names]
        self.img_infos = {}

    def __getitem__(self, index):
        image, objects, out = None, None, []
        for k in self.order:
            if k == "image":
                image = read_color(self.images[index])
                out.append(image)
            elif k in ("boxes", "boxes_category"):
                if objects is None:
                    objects = self.parse_annotation(index)
                if k == "boxes":
                    out.append(np.array([o[1] for o in objects], np.float32).reshape(-1, 4))
                else:
                    out.append(np.array([o[0] for o in objects], np.int32))
            elif k == "mask":
                out.append(self._read_mask(index))
            else:  # info
                info = self.get_img_info(index, image)
                out.append([info["height"], info["width"], info["file_name"]])
        return tuple(out)

    def __len__(self):
        return len(self.images)

    def get_img_info(self, index, image=None):
        """{height, width, file_name} of sample ``index`` (decodes the image once if needed)."""
        if index not in self.img_infos:
            if image is None:
                image = read_color(self.images[index])
            self.img_infos[index] = dict(height=image.shape[0], width=image.shape[1],
                                         file_name=self.file_names[index])
        return self.img_infos[index]

    def parse_annotation(self, index):
        """[(category, (x0, y0, x1, y1)), ...] of the objects in the sample's XML file."""
        path = self.annotations[index]
        if not os.path.isfile(path):
            raise FileNotFoundError(f"PascalVOC: annotation file {path!r} does not exist")
        if os.path.getsize(path) > _MAX_FILE_BYTES:
            raise ValueError(f"{path}: annotation file too large")
        import xml.etree.ElementTree as ET  # loaded on first use: import tianyuan stays fast
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise ValueError(f"{path}: malformed XML annotation ({e})") from None
        objects = []
        for i, obj in enumerate(root.iter("object")):
            name = (obj.findtext("name") or "").strip()
            if name not in self.class_names:
                raise ValueError(f"{path}: object {i} has unknown class {name!r} (VOC classes: "
                                 f"{', '.join(self.class_names)})")
            box = obj.find("bndbox")
            try:
                coords = tuple(float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"{path}: object {i} ({name}) needs a <bndbox> with numeric "
                                 "xmin, ymin, xmax, ymax") from None
            objects.append((self.class_names.index(name) + 1, coords))
        return objects

    def _read_mask(self, index):
        path = self.masks[index]
        m = read_label_map(path)
        if m.shape[2] == 1:
            return np.ascontiguousarray(m.astype(np.uint8))
        return self._trans_mask(m)

    def _trans_mask(self, mask):
        """Colour class map (BGR) -> class indices; unknown colours (and the border) -> 255."""
        label = np.full(mask.shape[:2], 255, np.uint8)
        for i, (r, g, b) in enumerate(self.class_colors):
            label[(mask[:, :, 0] == b) & (mask[:, :, 1] == g) & (mask[:, :, 2] == r)] = i
        return label[:, :, None]

    class_names = (
        "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
        "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
        "train", "tvmonitor")
    # RGB colour of background (0) and each class in SegmentationClass PNGs
    class_colors = tuple(tuple(int(v) for v in c) for c in voc_colormap(len(class_names) + 1))
