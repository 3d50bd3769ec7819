"""Cityscapes semantic segmentation (``leftImg8bit`` images, ``gtFine``/``gtCoarse`` maps)."""
import os

import numpy as np

from .meta_vision import VisionDataset, read_color, read_label_map, require_dir

__all__ = ["Cityscapes"]

# labelIds of the 19 evaluated classes, in train-id order (every other id becomes 255)
_EVAL_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
_LABEL_TO_TRAIN = np.full(256, 255, np.uint8)
_LABEL_TO_TRAIN[list(_EVAL_LABEL_IDS)] = np.arange(len(_EVAL_LABEL_IDS))
_SPLITS = {"gtFine": ("train", "val", "test"), "gtCoarse": ("train", "train_extra", "val")}
_IMAGE_SUFFIX = "_leftImg8bit"


class Cityscapes(VisionDataset):
    """`Cityscapes <https://www.cityscapes-dataset.com>`_.

    ``Cityscapes(root, image_set, mode, *, order=None)``: ``image_set`` is the split (``train``,
    ``val``, ``test``; ``train_extra`` for ``gtCoarse``), ``mode`` is ``"gtFine"`` or
    ``"gtCoarse"``. Images are ``root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``, masks
    ``root/<mode>/<split>/<city>/<name>_<mode>_labelIds.png`` mapped to the 19 train ids
    (others 255). Fields ``image``, ``mask`` (HxWx1 uint8) and ``info`` ([height, width, image
    path]). Samples are sorted by city and file name.
    """

    supported_order = ("image", "mask", "info")

    def __init__(self, root, image_set, mode, *, order=None):
        super().__init__(root, order=order, supported_order=self.supported_order)
        if mode not in _SPLITS:
            raise ValueError(f"Cityscapes: mode must be 'gtFine' or 'gtCoarse', got {mode!r}")
        if image_set not in _SPLITS[mode]:
            raise ValueError(f"Cityscapes: split {image_set!r} does not exist for {mode} "
                             f"(one of {', '.join(_SPLITS[mode])})")
        require_dir(self.root, "Cityscapes")
        self.mode = mode
        self.images_dir = os.path.join(self.root, "leftImg8bit", image_set)
        self.masks_dir = os.path.join(self.root, mode, image_set)
        require_dir(self.images_dir, "Cityscapes", "image")
        if "mask" in self.order:
            require_dir(self.masks_dir, "Cityscapes", "mask")
        self.images, self.masks = [], []
        for city in sorted(os.listdir(self.images_dir)):
            img_dir = os.path.join(self.images_dir, city)
            if not os.path.isdir(img_dir):
                continue
            for file_name in sorted(os.listdir(img_dir)):
                if _IMAGE_SUFFIX not in file_name:
                    continue
                stem = file_name.split(_IMAGE_SUFFIX)[0]
                mask = os.path.join(self.masks_dir, city,
                                    f"{stem}_{self._get_target_suffix(mode, 'semantic')}")
                if "mask" in self.order and not os.path.isfile(mask):
                    raise FileNotFoundError(f"Cityscapes: mask {mask!r} of image {file_name!r} "
                                            "does not exist")
                self.images.append(os.path.join(img_dir, file_name))
                self.masks.append(mask)

    def __getitem__(self, index):
        image, out = None, []
        for k in self.order:
            if k == "image":
                image = read_color(self.images[index])
                out.append(image)
            elif k == "mask":
                out.append(self._trans_mask(read_label_map(self.masks[index])))
            else:  # info
                if image is None:
                    image = read_color(self.images[index])
                out.append([image.shape[0], image.shape[1], self.images[index]])
        return tuple(out)

    def __len__(self):
        return len(self.images)

    def _trans_mask(self, mask):
        if mask.shape[2] != 1 or mask.dtype != np.uint8:
            raise ValueError(f"Cityscapes: a labelIds map must be a single-channel 8-bit "
                             f"image, got {mask.shape[2]} channels of {mask.dtype}")
        return _LABEL_TO_TRAIN[mask]

    @staticmethod
    def _get_target_suffix(mode, target_type):
        suffix = {"instance": "instanceIds.png", "semantic": "labelIds.png",
                  "color": "color.png"}.get(target_type, "polygons.json")
        return f"{mode}_{suffix}"

    class_names = (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
        "bus", "train", "motorcycle", "bicycle")
