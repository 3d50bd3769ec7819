"""The models the benchmarks share (Tianyuan side)."""


def reference_cnn():
    """The reference CNN of the training-stack issue (Fashion-MNIST, 28x28 inputs)."""
    import tianyuan.functional as F
    import tianyuan.module as M

    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = M.Conv2d(1, 32, 3, padding=1)
            self.conv2 = M.Conv2d(32, 64, 3, padding=1)
            self.fc1 = M.Linear(3136, 128)
            self.fc2 = M.Linear(128, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc2(F.relu(self.fc1(F.flatten(x, 1))))

    return Net()


def mlp(layers=16, width=64):
    """An MLP of `layers` Linear layers of `width` with ReLUs between them."""
    import tianyuan.module as M
    mods = []
    for _ in range(layers):
        mods += [M.Linear(width, width), M.ReLU()]
    return M.Sequential(*mods[:-1])
