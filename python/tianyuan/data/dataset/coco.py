"""COCO and Objects365: images in ``root``, annotations in one COCO-format JSON file."""
import math
import os
from collections import defaultdict

import numpy as np

from .meta_vision import VisionDataset, load_json, read_color, require_dir

__all__ = ["COCO", "Objects365"]

MIN_KEYPOINTS_PER_IMAGE = 10


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class _CocoFormat(VisionDataset):
    """The loader both datasets share: validates the JSON once, then reads lazily."""

    supported_order = ("image", "boxes", "boxes_category", "info")

    def __init__(self, root, ann_file, remove_images_without_annotations=False, *, order=None):
        super().__init__(root, order=order, supported_order=self.supported_order)
        name = type(self).__name__
        require_dir(self.root, name)
        self.ann_file = ann_file
        dataset = load_json(ann_file, name)
        if not isinstance(dataset, dict):
            raise ValueError(f"{ann_file}: the top level must be a JSON object")
        self.imgs = {}
        for i, img in enumerate(self._entries(dataset, "images")):
            self._check_image(img, i)
            self.imgs[img["id"]] = img
        self.cats = {}
        for i, cat in enumerate(self._entries(dataset, "categories")):
            if not isinstance(cat.get("id"), int):
                raise ValueError(f"{ann_file}: categories[{i}] has no integer 'id'")
            self.cats[cat["id"]] = cat
        self.img_to_anns = defaultdict(list)
        for i, ann in enumerate(self._entries(dataset, "annotations")):
            self._check_annotation(ann, i)
            self.img_to_anns[ann["image_id"]].append(ann)
        self.ids = sorted(self.imgs)
        if remove_images_without_annotations:
            self._remove_images_without_annotations()
        self.json_category_id_to_contiguous_id = {c: i + 1 for i, c in enumerate(sorted(self.cats))}
        self.contiguous_category_id_to_json_id = {
            v: k for k, v in self.json_category_id_to_contiguous_id.items()}

    # ------------------------------------------------------------------ validation
    def _entries(self, dataset, key):
        entries = dataset.get(key)
        if not isinstance(entries, list):
            raise ValueError(f"{self.ann_file}: missing or non-list {key!r} section")
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise ValueError(f"{self.ann_file}: {key}[{i}] is not an object")
        return entries

    def _check_image(self, img, i):
        where = f"{self.ann_file}: images[{i}]"
        if not isinstance(img.get("id"), int):
            raise ValueError(f"{where} has no integer 'id'")
        if not isinstance(img.get("file_name"), str):
            raise ValueError(f"{where} (id {img['id']}) has no string 'file_name'")
        for k in ("height", "width"):
            if not isinstance(img.get(k), int) or img[k] <= 0:
                raise ValueError(f"{where} (id {img['id']}) has no positive integer {k!r}")

    def _check_annotation(self, ann, i):
        where = f"{self.ann_file}: annotations[{i}] (id {ann.get('id')})"
        if ann.get("image_id") not in self.imgs:
            raise ValueError(f"{where} refers to image id {ann.get('image_id')!r}, which is not "
                             "in 'images'")
        if ann.get("category_id") not in self.cats:
            raise ValueError(f"{where} refers to category id {ann.get('category_id')!r}, which "
                             "is not in 'categories'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise ValueError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got "
                             f"{bbox!r}")
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            raise ValueError(f"{where}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}")
        self._check_extra(ann, where)

    def _check_extra(self, ann, where):
        """Checks of the fields only a subclass reads."""

    def _has_valid_annotation(self, anno):
        return len(anno) > 0

    def _remove_images_without_annotations(self):
        """Drops crowd and empty boxes, then images left with nothing (MegEngine's rule)."""
        ids = []
        for img_id in self.ids:
            anno = [a for a in self.img_to_anns[img_id]
                    if a.get("iscrowd", 0) == 0 and a["bbox"][2] > 0 and a["bbox"][3] > 0]
            if self._has_valid_annotation(anno):
                ids.append(img_id)
                self.img_to_anns[img_id] = anno
            else:
                del self.imgs[img_id]
                self.img_to_anns.pop(img_id, None)
        self.ids = ids

    # ------------------------------------------------------------------ reading
    def _field(self, key, img_id, anno):
        if key == "image":
            return read_color(os.path.join(self.root, self.imgs[img_id]["file_name"]))
        if key == "boxes":
            boxes = np.array([a["bbox"] for a in anno], dtype=np.float32).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
            return boxes
        if key == "boxes_category":
            return np.array([self.json_category_id_to_contiguous_id[a["category_id"]]
                             for a in anno], dtype=np.int32)
        if key == "info":
            info = self.imgs[img_id]
            return [info["height"], info["width"], info["file_name"]]
        raise AssertionError(key)  # check_order admitted only supported fields

    def __getitem__(self, index):
        img_id = self.ids[index]
        anno = self.img_to_anns[img_id]
        return tuple(self._field(k, img_id, anno) for k in self.order)

    def __len__(self):
        return len(self.ids)

    def get_img_info(self, index):
        """The image's entry of the annotation file (id, file_name, height, width, ...)."""
        return self.imgs[self.ids[index]]


class COCO(_CocoFormat):
    """`MS COCO <https://cocodataset.org>`_ detection and keypoints.

    ``COCO(root, ann_file, remove_images_without_annotations=False, *, order=None)``: images are
    ``root/<file_name>``; ``ann_file`` is an ``instances_*.json`` or ``person_keypoints_*.json``.
    Fields: ``image``, ``boxes``, ``boxes_category`` (contiguous 1-based ids; the maps
    ``json_category_id_to_contiguous_id`` and back are attributes), ``keypoints`` (Nx17x3),
    ``polygons`` (the polygon segmentations; an RLE/crowd mask gives an empty list) and
    ``info``. With ``remove_images_without_annotations`` crowd and empty boxes are dropped, and
    so are images left without any box (or, when ``keypoints`` is in ``order``, with fewer than
    10 visible keypoints).
    """

    supported_order = ("image", "boxes", "boxes_category", "keypoints", "polygons", "info")

    def _check_extra(self, ann, where):
        if "keypoints" in self.order:
            kp = ann.get("keypoints")
            n = 3 * len(self.keypoint_names)
            if not (isinstance(kp, list) and len(kp) == n and all(map(_is_number, kp))):
                raise ValueError(f"{where}: 'keypoints' must be {n} numbers "
                                 f"({len(self.keypoint_names)} x [x, y, visibility])")
        if "polygons" in self.order:
            seg = ann.get("segmentation", [])
            if isinstance(seg, list):
                for poly in seg:
                    if not (isinstance(poly, list) and len(poly) % 2 == 0
                            and all(map(_is_number, poly))):
                        raise ValueError(f"{where}: a polygon must be a flat list of x, y "
                                         "numbers")
            elif not isinstance(seg, dict):
                raise ValueError(f"{where}: 'segmentation' must be polygons or an RLE object")

    def _has_valid_annotation(self, anno):
        if not anno:
            return False
        if "keypoints" in self.order:
            visible = sum(sum(1 for v in a.get("keypoints", [])[2::3] if v > 0) for a in anno)
            return visible >= MIN_KEYPOINTS_PER_IMAGE
        return True

    def _field(self, key, img_id, anno):
        if key == "keypoints":
            return np.array([a["keypoints"] for a in anno], dtype=np.float32).reshape(
                -1, len(self.keypoint_names), 3)
        if key == "polygons":
            return [[np.array(p, dtype=np.float32).reshape(-1, 2) for p in a["segmentation"]]
                    if isinstance(a.get("segmentation"), list) else [] for a in anno]
        return super()._field(key, img_id, anno)

    class_names = (
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
        "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
        "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
        "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
        "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
        "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
        "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
        "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
        "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
        "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
        "toothbrush")

    # The annotation files number the 80 categories 1..90, skipping the ten ids of categories
    # that were dropped from the 2014 list; this maps each name to its id in those files.
    classes_originID = dict(zip(class_names, [i for i in range(1, 91) if i not in (
        12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]))

    keypoint_names = (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
        "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


class Objects365(_CocoFormat):
    """`Objects365 <https://www.objects365.org>`_ detection, in COCO's JSON format.

    ``Objects365(root, ann_file, remove_images_without_annotations=False, *, order=None)``;
    fields ``image``, ``boxes``, ``boxes_category`` and ``info``. ``class_names`` lists the
    category names of ``ann_file`` in contiguous-id order (read from the file, so v1's 365 and
    v2's names both come out right).
    """

    def __init__(self, root, ann_file, remove_images_without_annotations=False, *, order=None):
        super().__init__(root, ann_file, remove_images_without_annotations, order=order)
        self.class_names = tuple(str(self.cats[c].get("name", c)) for c in sorted(self.cats))
