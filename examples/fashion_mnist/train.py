"""Trains the reference CNN on Fashion-MNIST with Tianyuan's MegEngine-style API.

    PYTHONPATH=python .venv/bin/python examples/fashion_mnist/train.py            # 3 epochs
    ... train.py --epochs 1 --limit-train 8192 --limit-test 2000                  # quick run
    ... train.py --resume                    # continue from the latest checkpoint in --ckpt

Data: ``tianyuan.data.dataset.FashionMNIST`` reads the four IDX files (gzipped or not) from
``--data`` (default ``/usr/share/datasets/fashion-mnist``, where the Debian package
``dataset-fashion-mnist`` installs them). Nothing is downloaded.

Exact resume: checkpoints (``tianyuan.save``, atomic) are written at the end of every epoch and,
with ``--ckpt-every-steps K``, every K training steps. Each holds the model and optimizer state,
the epoch, the number of batches consumed in that epoch and the running statistics. The order
of an epoch is a pure function of (seed, epoch) (a fresh ``RandomSampler`` seeded from both), and
no transform is random, so ``--resume`` skips the consumed batches and continues: the final
parameters are bitwise equal to those of an uninterrupted run with the same seed (same machine,
same thread count).
"""
import argparse
import glob
import itertools
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
_PY = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")
if os.path.isdir(os.path.join(_PY, "tianyuan")) and _PY not in sys.path:
    sys.path.append(_PY)        # the source tree, unless PYTHONPATH gives another tianyuan

import tianyuan as mge  # noqa: E402
import tianyuan.data.transform as T  # noqa: E402
import tianyuan.functional as F  # noqa: E402
import tianyuan.module as M  # noqa: E402
import tianyuan.optimizer as optim  # noqa: E402
from tianyuan.autodiff import GradManager  # noqa: E402
from tianyuan.jit import trace  # noqa: E402
from tianyuan.data import DataLoader  # noqa: E402
from tianyuan.data.dataset import FashionMNIST  # noqa: E402
from tianyuan.data.sampler import RandomSampler, Sampler, SequentialSampler  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860 * 255, 0.3530 * 255          # Fashion-MNIST training-set pixel statistics
CKPT_VERSION = 1
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")


class Net(M.Module):
    """conv 1->32 3x3 pad 1, ReLU, maxpool 2; conv 32->64 3x3 pad 1, ReLU, maxpool 2;
    linear 3136->128, ReLU; linear 128->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = M.Conv2d(1, 32, 3, padding=1)
        self.conv2 = M.Conv2d(32, 64, 3, padding=1)
        self.pool = M.MaxPool2d(2)
        self.relu = M.ReLU()
        self.fc1 = M.Linear(64 * 7 * 7, 128)
        self.fc2 = M.Linear(128, 10)

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = F.flatten(x, 1)
        x = self.relu(self.fc1(x))
        return self.fc2(x)


# ------------------------------------------------------------------------------ data order
def epoch_seed(seed, epoch):
    """The sampler seed of an epoch: a pure function of (seed, epoch)."""
    return int(np.random.SeedSequence([int(seed) & (2 ** 63 - 1), epoch, 0x66]).generate_state(
        1, np.uint64)[0] >> 1)


class SkipSampler(Sampler):
    """The batches of ``sampler`` after the first ``skip`` ones (resuming mid-epoch)."""

    def __init__(self, sampler, skip=0):
        self.sampler, self.skip = sampler, int(skip)
        self.batch_size = sampler.batch_size
        self.dataset = sampler.dataset
        self.seed = getattr(sampler, "seed", None)

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self):
        return max(0, len(self.sampler) - self.skip)


# -------------------------------------------------------------------------------- progress
class Progress:
    """tqdm when it is importable and stdout is a terminal; else a one-line '\\r' bar on a
    terminal, or a plain line every ``every`` steps when stdout is not a terminal."""

    def __init__(self, total, initial, desc, every):
        self.total, self.n, self.desc, self.every = total, initial, desc, max(1, every)
        self.tty = sys.stdout.isatty()
        self.bar = None
        self.text = ""
        if self.tty:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, **stats):
        self.n += 1
        self.text = "  ".join(f"{k} {v}" for k, v in stats.items())
        if self.bar is not None:
            self.bar.set_postfix_str(self.text, refresh=False)
            self.bar.update(1)
        elif self.tty:
            w = 24
            k = w * self.n // max(1, self.total)
            sys.stdout.write(f"\r{self.desc} [{'#' * k}{'.' * (w - k)}] {self.n}/{self.total}  "
                             f"{self.text}\033[K")
            sys.stdout.flush()
        elif self.n % self.every == 0 or self.n == self.total:
            print(f"{self.desc} step {self.n}/{self.total}  {self.text}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            sys.stdout.write("\n")
            sys.stdout.flush()


# ----------------------------------------------------------------------------- checkpoints
def latest_checkpoint(ckpt_dir):
    p = os.path.join(ckpt_dir, "latest.tyck")
    return p if os.path.exists(p) else None


def save_checkpoint(ckpt_dir, state, end_of_epoch):
    os.makedirs(ckpt_dir, exist_ok=True)
    mge.save(state, os.path.join(ckpt_dir, "latest.tyck"))     # atomic (write + rename)
    if end_of_epoch:
        mge.save(state, os.path.join(ckpt_dir, f"epoch-{state['epoch']:03d}.tyck"))


def config_of(args):
    """What must match between a run and the checkpoint it resumes from."""
    return {"seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
            "momentum": args.momentum, "limit_train": args.limit_train or 0}


# -------------------------------------------------------------------------------- training
def evaluate(model, test_ds, n, batch_size, workers):
    model.eval()
    loader = DataLoader(test_ds, SequentialSampler(test_ds, batch_size, indices=range(n)),
                        transform=T.Compose([T.Normalize(MEAN, STD), T.ToMode("CHW")]),
                        num_workers=workers)
    correct = total = 0
    for data, label in loader:
        pred = F.argmax(model(mge.tensor(data)), axis=1)
        correct += int((pred == mge.tensor(label)).sum().item())
        total += len(label)
    model.train()
    return correct / max(1, total)


def dump_model(model, path, batch_size=256):
    """Writes the eval-mode forward as a ``.tym`` model for the C runtime (input ``data``,
    (N, 1, 28, 28) float32 normalized as in training, any N; output ``logits``): what
    examples/c/classify.c runs. Returns the ``DumpResult``."""
    was_training = model.training
    model.eval()

    @trace(capture_as_const=True)
    def infer(data):
        return {"logits": model(data)}

    infer(mge.tensor(np.zeros((batch_size, 1, 28, 28), np.float32)))
    result = infer.dump(path, arg_names=["data"],
                        user_info={"model": "Fashion-MNIST CNN", "mean": MEAN, "std": STD})
    model.train(was_training)
    return result


def load_datasets(root):
    try:
        return FashionMNIST(root, train=True), FashionMNIST(root, train=False)
    except FileNotFoundError as e:
        sys.stderr.write(
            f"error: Fashion-MNIST not found in {root!r} ({e}).\n"
            "Install it with `apt-get install dataset-fashion-mnist` (as root; the files go to "
            f"{DEFAULT_DATA}),\nor pass --data DIR with the four IDX files "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte (optionally .gz).\n")
        sys.exit(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="directory with the IDX files")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=None,
                   help="compute threads (default: TY_NUM_THREADS or the core count)")
    p.add_argument("--limit-train", type=int, default=None, help="use the first N train images")
    p.add_argument("--limit-test", type=int, default=None, help="use the first N test images")
    p.add_argument("--ckpt", default="./checkpoints", help="checkpoint directory")
    p.add_argument("--ckpt-every-steps", type=int, default=0,
                   help="also checkpoint every K training steps (0: end of epoch only)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--eager", action="store_true",
                   help="run the training step eagerly instead of as a traced graph "
                        "(both give bitwise the same parameters)")
    p.add_argument("--log-every", type=int, default=100,
                   help="steps between progress lines when stdout is not a terminal")
    p.add_argument("--dump", metavar="FILE.tym", default=None,
                   help="after training, dump the model for the C runtime "
                        "(examples/c/classify.c runs it)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        mge.set_num_threads(args.threads)
    train_ds, test_ds = load_datasets(args.data)
    n_train = len(train_ds) if not args.limit_train else min(args.limit_train, len(train_ds))
    n_test = len(test_ds) if not args.limit_test else min(args.limit_test, len(test_ds))

    mge.random.seed(args.seed)                      # parameter initialisation
    model = Net()
    gm = GradManager().attach(model.parameters())
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)

    start_epoch, start_step, global_step, history = 0, 0, 0, []
    running = {"loss_sum": 0.0, "correct": 0, "seen": 0}
    if args.resume:
        path = latest_checkpoint(args.ckpt)
        if path is None:
            print(f"no checkpoint in {args.ckpt!r}: starting from scratch", flush=True)
        else:
            ck = mge.load(path)
            if ck.get("version") != CKPT_VERSION or ck.get("config") != config_of(args):
                sys.exit(f"error: {path} was made with {ck.get('config')}, this run has "
                         f"{config_of(args)}: cannot resume exactly")
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            start_epoch, start_step = ck["epoch"], ck["step_in_epoch"]
            global_step, history, running = ck["global_step"], list(ck["history"]), \
                dict(ck["running"])
            print(f"resumed from {path}: epoch {start_epoch + 1}, step {start_step}, "
                  f"global step {global_step}", flush=True)

    transform = T.Compose([T.Normalize(MEAN, STD), T.ToMode("CHW")])
    print(f"Fashion-MNIST: {n_train} train / {n_test} test images, batch {args.batch_size}, "
          f"{args.epochs} epochs, {mge.get_num_threads()} threads, {args.workers} workers",
          flush=True)

    def checkpoint(epoch, step_in_epoch, end_of_epoch):
        save_checkpoint(args.ckpt, {
            "version": CKPT_VERSION, "config": config_of(args),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "running": running, "history": history}, end_of_epoch)

    def train_step(x, y):
        with gm:
            logits = model(x)
            loss = F.nn.cross_entropy(logits, y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss, logits

    if not args.eager:
        train_step = trace(train_step)  # recorded on the first call, replayed as a graph after

    t_job = time.perf_counter()
    for epoch in range(start_epoch, args.epochs):
        sampler = RandomSampler(train_ds, batch_size=args.batch_size, indices=range(n_train),
                                seed=epoch_seed(args.seed, epoch))
        steps = len(sampler)
        skip = start_step if epoch == start_epoch else 0
        if skip == 0:
            running = {"loss_sum": 0.0, "correct": 0, "seen": 0}
        loader = DataLoader(train_ds, SkipSampler(sampler, skip), transform=transform,
                            num_workers=args.workers)
        bar = Progress(steps, skip, f"epoch {epoch + 1}/{args.epochs}", args.log_every)
        model.train()
        t0, imgs = time.perf_counter(), 0
        step = skip
        for data, label in loader:
            x, y = mge.tensor(data), mge.tensor(label)
            loss, logits = train_step(x, y)
            step += 1
            global_step += 1
            n = len(label)
            imgs += n
            running["loss_sum"] += loss.item() * n
            running["correct"] += int((F.argmax(logits, axis=1) == y).sum().item())
            running["seen"] += n
            rate = imgs / max(1e-9, time.perf_counter() - t0)
            bar.update(loss=f"{running['loss_sum'] / running['seen']:.4f}",
                       acc=f"{running['correct'] / running['seen']:.4f}",
                       **{"img/s": f"{rate:.0f}"})
            if args.ckpt_every_steps and step % args.ckpt_every_steps == 0 and step < steps:
                checkpoint(epoch, step, False)
        bar.close()
        train_s = time.perf_counter() - t0
        acc = evaluate(model, test_ds, n_test, 256, args.workers)
        seen = max(1, running["seen"])
        history.append({"epoch": epoch + 1, "train_loss": running["loss_sum"] / seen,
                        "train_acc": running["correct"] / seen, "test_acc": acc,
                        "images_per_s": imgs / max(1e-9, train_s)})
        print(f"epoch {epoch + 1}: train loss {running['loss_sum'] / seen:.4f}  "
              f"train acc {running['correct'] / seen:.4f}  test acc {acc:.4f}  "
              f"{imgs / max(1e-9, train_s):.0f} img/s  ({train_s:.1f} s)", flush=True)
        checkpoint(epoch + 1, 0, True)

    final = history[-1]["test_acc"] if history else evaluate(model, test_ds, n_test, 256,
                                                             args.workers)
    print(f"final test accuracy: {final:.4f}  (wall {time.perf_counter() - t_job:.1f} s)",
          flush=True)
    if args.dump:
        res = dump_model(model, args.dump)
        print(f"dumped {args.dump}: {res.nr_opr} ops, {res.weight_bytes} weight bytes, "
              f"input {res.inputs[0]!r}, output {res.outputs[0]!r}", flush=True)
    return final


if __name__ == "__main__":
    main()
