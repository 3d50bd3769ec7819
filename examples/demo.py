"""Placeholder main job until the training stack lands: fits a small MLP on synthetic data
with GradManager and prints the loss falling."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.autodiff import GradManager


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    true_w = rng.normal(size=(8, 1)).astype("float32")
    y = np.tanh(x @ true_w) + 0.05 * rng.normal(size=(256, 1)).astype("float32")
    w1 = ty.Parameter(rng.normal(size=(8, 32)) * 0.3)
    w2 = ty.Parameter(rng.normal(size=(32, 1)) * 0.3)
    gm = GradManager().attach([w1, w2])
    xt, yt = ty.tensor(x), ty.tensor(y)
    lr = 0.1
    for step in range(201):
        with gm:
            h = F.relu(F.matmul(xt, w1))
            loss = F.mean((F.matmul(h, w2) - yt) ** 2)
            gm.backward(loss)
        for p in (w1, w2):
            p._assign(p - lr * p.grad)
            p.grad = None
        if step % 20 == 0:
            print(f"step {step:4d}  loss {loss.item():.5f}")


if __name__ == "__main__":
    main()
