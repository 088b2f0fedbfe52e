#!/usr/bin/env python3
"""PyTorch CPU companion of webgrad's benchmark zoo (`cargo run --release --example zoo`).

Usage (needs `pip install torch`):
  python3 benches/torch_zoo.py [--models lenet5,mlp,mnistnet,resnet20,vgg] [--steps N]

The same models as `webgrad::models`, with the same optimizers, batch 64 and random inputs,
on 2 CPU threads. Per model it prints one line

  zoo MODEL step_ms=MEDIAN infer_ms=MEDIAN first_ms=FIRST

with the median training step (zero_grad, forward, loss, backward, optimizer step), the
median inference at batch 1000 (eval mode, inference_mode, argmax) and the first training
step of a fresh model and optimizer. `tests/reference/zoo_step.py` imports the models from
here, so the step-match tests and the benchmark use one definition.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BS = 64


# models::LeNet5 (Modern), as the LeNet-5 companion defines it.
from torch_lenet import LeNet5  # noqa: E402


class Mlp(nn.Module):
    """models::Mlp: flatten, 784-256-ReLU-256-ReLU-10."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class MnistNet(nn.Module):
    """models::MnistNet: PyTorch's examples/mnist `Net`, returning log-probabilities."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class BasicBlock(nn.Module):
    """models::BasicBlock: conv-BN-ReLU-conv-BN + the zero-padding shortcut (option A), ReLU."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = (planes - in_planes) // 2

    def shortcut(self, x):
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad, self.pad))
        return x

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """models::ResNet20: He et al. 2016's CIFAR ResNet-20, PyTorch's default init."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        chans = 16
        for i, width in enumerate((16, 32, 64)):
            blocks = []
            for b in range(3):
                blocks.append(BasicBlock(chans, width, 2 if i > 0 and b == 0 else 1))
                chans = width
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(out.mean((2, 3)))


class VggNet(nn.Module):
    """models::VggNet: [conv3x3-BN-ReLU] x 2 (32), pool, [conv3x3-BN-ReLU] x 2 (64), pool, linear."""

    def __init__(self):
        super().__init__()
        layers = []
        chans = 3
        for width in (32, 32, "M", 64, 64, "M"):
            if width == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU()]
            chans = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(64 * 8 * 8, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# name: (constructor, input shape of one sample, log-probabilities out, optimizer,
#        default timed steps, inference repetitions). The same table is in examples/zoo.rs.
ZOO = {
    "lenet5": (LeNet5, (1, 28, 28), False, "sgd", 200, 20),
    "mlp": (Mlp, (1, 28, 28), False, "sgd", 200, 20),
    "mnistnet": (MnistNet, (1, 28, 28), True, "adadelta", 10, 3),
    "resnet20": (ResNet20, (3, 32, 32), False, "sgd_wd", 5, 1),
    "vgg": (VggNet, (3, 32, 32), False, "sgd_wd", 5, 1),
}


def optimizer(kind, params):
    """The zoo's optimizers: SGD momentum 0.9 (lr 0.05; with weight decay 5e-4 for the CIFAR
    nets) or Adadelta lr 1.0 (PyTorch's MNIST example)."""
    if kind == "adadelta":
        return torch.optim.Adadelta(params, lr=1.0)
    wd = 5e-4 if kind == "sgd_wd" else 0.0
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=wd)


def loss_of(out, y, log_probs):
    return F.nll_loss(out, y) if log_probs else F.cross_entropy(out, y)


def bench(name, steps):
    ctor, shape, log_probs, opt_kind, default_steps, infer_reps = ZOO[name]
    steps = steps or default_steps
    torch.manual_seed(0)
    xs = [torch.rand(BS, *shape) for _ in range(4)]
    ys = [torch.randint(0, 10, (BS,)) for _ in range(4)]

    def step(model, opt, i):
        opt.zero_grad(set_to_none=True)
        loss_of(model(xs[i % 4]), ys[i % 4], log_probs).backward()
        opt.step()

    model = ctor()
    opt = optimizer(opt_kind, model.parameters())
    t0 = time.perf_counter()
    step(model, opt, 0)
    first = time.perf_counter() - t0
    for i in range(1, 3):
        step(model, opt, i)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(model, opt, i)
        times.append(time.perf_counter() - t0)
    step_ms = statistics.median(times) * 1e3

    xb = torch.rand(1000, *shape)
    model.eval()
    with torch.inference_mode():
        model(xb).argmax(1)
        times = []
        for _ in range(infer_reps):
            t0 = time.perf_counter()
            model(xb).argmax(1)
            times.append(time.perf_counter() - t0)
    infer_ms = statistics.median(times) * 1e3
    print(f"zoo {name} step_ms={step_ms:.3f} infer_ms={infer_ms:.3f} first_ms={first * 1e3:.3f}",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: per model)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    for name in a.models.split(","):
        if name not in ZOO:
            raise SystemExit(f"unknown model {name}; the zoo has {', '.join(ZOO)}")
        bench(name, a.steps)


if __name__ == "__main__":
    main()
