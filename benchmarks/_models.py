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


# The models of the inference benchmark: name -> (builder, input shape at batch 1). Their
# parameter names and shapes are torchvision's (tianyuan.models), so the peer copies them.
INFER_MODELS = {
    "resnet18": ("resnet18", (1, 3, 224, 224)),
    "mobilenet_v2": ("mobilenet_v2", (1, 3, 224, 224)),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", (1, 3, 224, 224)),
    "fmnist_cnn": (None, (1, 1, 28, 28)),
    "resnet50": ("resnet50", (1, 3, 224, 224)),
}


def infer_model(name):
    """A model of INFER_MODELS in eval mode, its weights seeded (the same on every run)."""
    import tianyuan as ty
    import tianyuan.models as models
    ty.random.seed(1)
    zoo_name, _ = INFER_MODELS[name]
    net = reference_cnn() if zoo_name is None else getattr(models, zoo_name)()
    net.eval()
    return net


def cifar_resnet18(num_classes=10):
    """ResNet-18 for 32x32 inputs (the common CIFAR form: a 3x3 stride-1 stem, no max pool,
    four stages of two basic blocks, 4x4 average pool, one linear layer)."""
    import tianyuan.functional as F
    import tianyuan.module as M

    class Block(M.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = M.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = M.BatchNorm2d(cout)
            self.conv2 = M.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = M.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = M.Sequential(M.Conv2d(cin, cout, 1, stride, bias=False),
                                          M.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(y + (x if self.short is None else self.short(x)))

    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = M.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = M.BatchNorm2d(64)
            blocks, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [Block(cin, cout, stride), Block(cout, cout, 1)]
                cin = cout
            self.layers = M.Sequential(*blocks)
            self.fc = M.Linear(512, num_classes)

        def forward(self, x):
            x = self.layers(F.relu(self.bn1(self.conv1(x))))
            return self.fc(F.flatten(F.avg_pool2d(x, 4), 1))

    return Net()
