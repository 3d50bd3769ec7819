"""MegEngine's MNIST quick-start (LeNet-5), run on Tianyuan with only the import changed.

    PYTHONPATH=python .venv/bin/python examples/mnist_quickstart/train.py [--data DIR] [--epochs N]

The body below is the canonical MegEngine tutorial (MEGENGINE_API.md §5) with
``import megengine as mge`` written ``import tianyuan as mge`` (and so on for the submodules).

Data: MNIST is read from ``--data`` or, without it, from the first of ``/usr/share/datasets/mnist``
and ``~/.cache/megengine/mnist`` that holds the four IDX files (nothing is downloaded). When no
MNIST is found, the script falls back to **Fashion-MNIST** at ``/usr/share/datasets/fashion-mnist``
(Debian package ``dataset-fashion-mnist``): its files have the same names and the same IDX
format, so ``MNIST(path)`` reads them unchanged. The normalisation constants stay MNIST's, as in
the tutorial. Expected test accuracy: about 99% on MNIST; about 90% on Fashion-MNIST (a
harder data set; 90.1% measured) after the tutorial's 10 epochs, about 2 minutes on 2 cores.
"""
import argparse
import os
import sys

_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "python")
if os.path.isdir(os.path.join(_PY, "tianyuan")) and _PY not in sys.path:
    sys.path.append(_PY)

# ---- the tutorial: only these imports differ from MegEngine's ("megengine" -> "tianyuan") ----
import tianyuan as mge  # noqa: E402
import tianyuan.data as data  # noqa: E402
import tianyuan.data.transform as T  # noqa: E402
import tianyuan.functional as F  # noqa: E402
import tianyuan.module as M  # noqa: E402
import tianyuan.optimizer as optim  # noqa: E402
from tianyuan.autodiff import GradManager  # noqa: E402
from tianyuan.data.dataset import MNIST  # noqa: E402

_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte")
_CANDIDATES = ("/usr/share/datasets/mnist", os.path.expanduser("~/.cache/megengine/mnist"))
_FASHION = "/usr/share/datasets/fashion-mnist"


def _has_idx(d):
    return all(os.path.exists(os.path.join(d, n)) or os.path.exists(os.path.join(d, n + ".gz"))
               for n in _NAMES)


def find_data(explicit):
    if explicit:
        return explicit
    for d in _CANDIDATES:
        if _has_idx(d):
            return d
    if _has_idx(_FASHION):
        print(f"MNIST not found in {', '.join(_CANDIDATES)}; using Fashion-MNIST from "
              f"{_FASHION} (same IDX format)", flush=True)
        return _FASHION
    sys.exit("error: no MNIST or Fashion-MNIST IDX files found. Pass --data DIR with "
             f"{', '.join(_NAMES)} (optionally .gz), or install Fashion-MNIST with "
             "`apt-get install dataset-fashion-mnist` (as root).")


class LeNet5(M.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = M.Conv2d(1, 6, 5)
        self.relu1 = M.ReLU()
        self.pool1 = M.MaxPool2d(2, 2)
        self.conv2 = M.Conv2d(6, 16, 5)
        self.relu2 = M.ReLU()
        self.pool2 = M.MaxPool2d(2, 2)
        self.fc1 = M.Linear(16 * 5 * 5, 120)
        self.relu3 = M.ReLU()
        self.fc2 = M.Linear(120, 84)
        self.relu4 = M.ReLU()
        self.fc3 = M.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = F.flatten(x, 1)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        x = self.fc3(x)
        return x


def main(mnist_path, epochs=10):
    train_dataset = MNIST(mnist_path, train=True, download=False)
    test_dataset = MNIST(mnist_path, train=False, download=False)

    batch_size = 64
    normalize = T.Normalize(mean=0.1307 * 255, std=0.3081 * 255)
    pad = T.Pad(2)
    to_chw = T.ToMode("CHW")
    transform = T.Compose([normalize, pad, to_chw])

    train_sampler = data.RandomSampler(train_dataset, batch_size=batch_size)
    train_dataloader = data.DataLoader(train_dataset, train_sampler, transform)
    test_sampler = data.SequentialSampler(test_dataset, batch_size=4)
    test_dataloader = data.DataLoader(test_dataset, test_sampler, transform)

    model = LeNet5()
    gm = GradManager().attach(model.parameters())
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    for epoch in range(epochs):
        total_loss = 0
        for batch_data, batch_label in train_dataloader:
            batch_data = mge.Tensor(batch_data)
            batch_label = mge.Tensor(batch_label)
            with gm:
                logits = model(batch_data)
                loss = F.nn.cross_entropy(logits, batch_label)
                gm.backward(loss)
                optimizer.step().clear_grad()
            total_loss += loss.item()
        print(f"Epoch: {epoch}, loss: {total_loss / len(train_dataloader)}", flush=True)

    model.eval()
    correct = 0
    total = 0
    for batch_data, batch_label in test_dataloader:
        batch_data = mge.Tensor(batch_data)
        batch_label = mge.Tensor(batch_label)
        logits = model(batch_data)
        pred = F.argmax(logits, axis=1)
        correct += (pred == batch_label).sum().item()
        total += batch_label.shape[0]
    print(f"Correct: {correct}, total: {total}, accuracy: {float(correct) / total}", flush=True)
    return float(correct) / total


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="MegEngine's MNIST quick-start on Tianyuan")
    ap.add_argument("--data", default=None, help="directory with the four MNIST IDX files")
    ap.add_argument("--epochs", type=int, default=10, help="the tutorial's 10 by default")
    a = ap.parse_args()
    main(find_data(a.data), a.epochs)
