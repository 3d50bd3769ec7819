"""ImageNet (ILSVRC2012) in the extracted folder layout."""
import os

from .vision import ImageFolder

__all__ = ["ImageNet"]


class ImageNet(ImageFolder):
    """ImageNet from its extracted folders: ``root/train/<wnid>/*.JPEG`` and
    ``root/val/<wnid>/*.JPEG`` (the validation images sorted into class folders, as
    MegEngine's own extraction leaves them). Labels are the indices of the sorted wnids.

    ``ImageNet(root=None, train=True, **kwargs)``; ``kwargs`` go to :class:`ImageFolder`
    (``check_valid_func``, ``class_name``). ``root=None`` means ``<TY_HOME>/dataset/ImageNet``.
    Tianyuan does not unpack the raw ``ILSVRC2012_img_*.tar`` files (MegEngine does, and needs
    scipy for the devkit's ``meta.mat``): extract them into the layout above first.
    ``valid_ground_truth`` reads the devkit's validation labels when present.
    """

    raw_files = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 "ILSVRC2012_devkit_t12.tar.gz")
    default_train_dir = "train"
    default_val_dir = "val"
    default_devkit_dir = "ILSVRC2012_devkit_t12"

    def __init__(self, root=None, train=True, **kwargs):
        self.root = self._default_root if root is None else os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageNet: root directory {self.root!r} does not exist")
        self.train = train
        self.devkit_dir = os.path.join(self.root, self.default_devkit_dir)
        sub = self.default_train_dir if train else self.default_val_dir
        self.target_folder = os.path.join(self.root, sub)
        if not os.path.isdir(self.target_folder):
            hint = (" The raw tar files are there; extract them into that layout first "
                    "(tianyuan does not unpack them)." if self.check_raw_file() else "")
            raise FileNotFoundError(f"ImageNet: image folder {self.target_folder!r} does not "
                                    f"exist (expected {sub}/<wnid>/<image> under root).{hint}")
        super().__init__(self.target_folder, **kwargs)
        if not self.classes:
            raise FileNotFoundError(f"ImageNet: {self.target_folder!r} has no class folders")

    @property
    def _default_root(self):
        from ...hub._cache import get_home
        return os.path.join(get_home(), "dataset", type(self).__name__)

    def check_raw_file(self):
        """Whether all three raw ILSVRC2012 archives are in ``root``."""
        return all(os.path.exists(os.path.join(self.root, name)) for name in self.raw_files)

    @property
    def valid_ground_truth(self):
        """The validation labels (1-based ILSVRC ids) from the devkit, one per image."""
        path = os.path.join(self.devkit_dir, "data", "ILSVRC2012_validation_ground_truth.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ImageNet: ground truth file {path!r} does not exist")
        with open(path, "r", encoding="ascii") as f:
            lines = [x.strip() for x in f if x.strip()]
        try:
            return [int(x) for x in lines]
        except ValueError:
            raise ValueError(f"{path}: expected one integer label per line") from None
