"""`make demo`: trains the reference CNN on Fashion-MNIST with examples/fashion_mnist/train.py:
3 epochs over the full data set (about 2 minutes on 2 cores; test accuracy about 90.5%), loss,
running accuracy and images/s as it goes, the test accuracy after each epoch. Then it deploys:
the trained model is dumped (``trace.dump``) to ``--model`` (build/fashion_mnist.tym), and
examples/c/classify.c, built as ``--classify`` (build/classify), runs it on the test set with
the C runtime alone. Both accuracies must be the same: a mismatch exits with status 1.
Extra arguments go to train.py (e.g. `--epochs 1` for a one-minute run, `--data DIR`).
Checkpoints go to a temporary directory that is removed at the end. If the data set is missing
it says how to install it and exits with status 2."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(os.path.dirname(HERE), "build")
sys.path.insert(0, os.path.join(HERE, "fashion_mnist"))

import train  # noqa: E402  (examples/fashion_mnist/train.py)


def run_classify(classify, model, args):
    """Runs the C program on the test set (the first --limit-test images) and returns its
    (images, correct) counts."""
    cmd = [classify, model, "--data", args.data]
    cmd += ["--limit", str(args.limit_test)] if args.limit_test else []
    print("$ " + " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    m = re.search(r"classify: (\d+) images, (\d+) correct", r.stdout)
    if r.returncode != 0 or m is None:
        sys.exit(f"error: {classify} failed (exit status {r.returncode})")
    return int(m.group(1)), int(m.group(2))


def main(argv):
    p = argparse.ArgumentParser(description="train, dump and run the Fashion-MNIST CNN",
                                allow_abbrev=False)
    p.add_argument("--classify", default=None, help="the built examples/c/classify.c "
                   "(default build/classify; without it, the C run is skipped)")
    p.add_argument("--model", default=os.path.join(BUILD, "fashion_mnist.tym"),
                   help="where the trained model is dumped")
    own, rest = p.parse_known_args(argv)
    classify = own.classify or os.path.join(BUILD, "classify")
    if own.classify and not os.path.exists(classify):
        sys.exit(f"error: {classify} does not exist: build it first (make build)")
    args = train.parse_args(["--epochs", "3", "--log-every", "200"] + rest)
    os.makedirs(os.path.dirname(os.path.abspath(own.model)), exist_ok=True)
    ckpt = tempfile.mkdtemp(prefix="tianyuan-demo-")
    try:
        python_acc = train.main(["--epochs", "3", "--log-every", "200", "--ckpt", ckpt,
                                 "--dump", own.model] + rest)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    if not os.path.exists(classify):
        print(f"{classify} is not built (make build): the C run is skipped")
        return 0
    images, correct = run_classify(classify, own.model, args)
    c_acc = correct / max(1, images)
    if c_acc != python_acc:
        print(f"MISMATCH: the C runtime's accuracy {c_acc:.4f} ({correct}/{images}) differs "
              f"from Python's {python_acc:.4f}", flush=True)
        return 1
    print(f"deployed: the C runtime's test accuracy {c_acc:.4f} ({correct}/{images}) is the "
          f"same as Python's", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
