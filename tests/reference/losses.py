"""PyTorch reference values for nll_loss, cross_entropy with its options, and log_softmax.

Writes tests/reference/losses.safetensors (read by tests/class_loss.rs; the layout is in
README.md here). Run from the repository root:

    python3 tests/reference/losses.py

Inputs are drawn in float32 from a fixed seed; every output and gradient is computed in
float64 from them and stored as float32, targets as int64.
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(14)

tensors = {}
metadata = {}


def logits(n, c):
    return (torch.randn(n, c) * 2.0).float()


def class_weights(c):
    return (0.2 + 1.8 * torch.rand(c)).float()


def targets(n, c, ignore_index=None, ignored=()):
    t = torch.randint(0, c, (n,), dtype=torch.int64)
    for i in ignored:
        t[i] = ignore_index
    return t


def add_case(name, op, inputs, args, fn):
    """Runs fn(x64, target, weight64) in float64 and stores the case's roles."""
    x = inputs["input"]
    x64 = x.double().requires_grad_()
    w = inputs.get("weight")
    w64 = None if w is None else w.double()
    out = fn(x64, inputs.get("target"), w64)
    if out.dim() == 0:
        grad_output = torch.ones(())
    else:
        grad_output = torch.randn(out.shape).float()
    (out * grad_output.double()).sum().backward()
    for role, value in inputs.items():
        tensors[f"{name}.{role}"] = value.contiguous()
    tensors[f"{name}.output"] = out.detach().float().contiguous()
    tensors[f"{name}.grad_output"] = grad_output.contiguous()
    tensors[f"{name}.grad_input"] = x64.grad.float().contiguous()
    metadata[name] = json.dumps({"op": op, **args})


def class_loss_case(name, op, n, c, reduction="mean", weighted=False, ignore_index=-100,
                    ignored=(), label_smoothing=0.0):
    x = logits(n, c)
    if op == "nll_loss":
        # nll_loss takes log-probabilities.
        x = F.log_softmax(x.double(), dim=1).float()
    inputs = {"input": x, "target": targets(n, c, ignore_index, ignored)}
    if weighted:
        inputs["weight"] = class_weights(c)
    args = {"reduction": reduction, "ignore_index": ignore_index}
    if op == "cross_entropy":
        args["label_smoothing"] = label_smoothing

        def fn(x64, t, w64):
            return F.cross_entropy(x64, t, weight=w64, ignore_index=ignore_index,
                                   reduction=reduction, label_smoothing=label_smoothing)
    else:

        def fn(x64, t, w64):
            return F.nll_loss(x64, t, weight=w64, ignore_index=ignore_index,
                              reduction=reduction)
    add_case(name, op, inputs, args, fn)


# nll_loss: every reduction, class weights, ignore_index (the default -100 and a class).
for r in ["mean", "sum", "none"]:
    class_loss_case(f"nll_{r}", "nll_loss", 7, 5, reduction=r)
    class_loss_case(f"nll_weight_{r}", "nll_loss", 7, 5, reduction=r, weighted=True)
    class_loss_case(f"nll_weight_ignore_{r}", "nll_loss", 8, 5, reduction=r, weighted=True,
                    ignored=(1, 4, 5))
class_loss_case("nll_ignore_mean", "nll_loss", 8, 5, ignored=(0, 6))
class_loss_case("nll_ignore_class_2_weight_mean", "nll_loss", 9, 4, weighted=True,
                ignore_index=2)
class_loss_case("nll_all_ignored_mean", "nll_loss", 3, 4, ignored=(0, 1, 2))

# cross_entropy: the same, and label smoothing 0.1 with and without weights.
for r in ["mean", "sum", "none"]:
    class_loss_case(f"ce_{r}", "cross_entropy", 7, 5, reduction=r)
    class_loss_case(f"ce_weight_ignore_{r}", "cross_entropy", 8, 5, reduction=r,
                    weighted=True, ignored=(2, 3, 7))
    class_loss_case(f"ce_smooth_{r}", "cross_entropy", 7, 5, reduction=r,
                    label_smoothing=0.1)
    class_loss_case(f"ce_smooth_weight_{r}", "cross_entropy", 7, 5, reduction=r,
                    weighted=True, label_smoothing=0.1)
    class_loss_case(f"ce_smooth_weight_ignore_{r}", "cross_entropy", 10, 6, reduction=r,
                    weighted=True, ignored=(0, 5, 9), label_smoothing=0.1)
class_loss_case("ce_weight_mean", "cross_entropy", 7, 5, weighted=True)
class_loss_case("ce_ignore_mean", "cross_entropy", 8, 5, ignored=(1, 6))
class_loss_case("ce_smooth_ignore_mean", "cross_entropy", 8, 5, ignored=(1, 6),
                label_smoothing=0.1)
class_loss_case("ce_smooth_ignore_class_0_weight_mean", "cross_entropy", 12, 4,
                weighted=True, ignore_index=0, label_smoothing=0.1)
class_loss_case("ce_smooth_weight_all_ignored_mean", "cross_entropy", 3, 4, weighted=True,
                ignored=(0, 1, 2), label_smoothing=0.1)
class_loss_case("ce_wide_smooth_weight_ignore_mean", "cross_entropy", 16, 37, weighted=True,
                ignored=(3, 8), label_smoothing=0.25)

# log_softmax over dim 1 of a rank-3 tensor and over the last dim.
for name, shape, dim in [("log_softmax_dim1", (3, 5, 4), 1),
                         ("log_softmax_last", (4, 7), -1),
                         ("log_softmax_last_rank3", (2, 3, 6), -1)]:
    add_case(name, "log_softmax", {"input": (torch.randn(shape) * 3.0).float()},
             {"dim": dim}, lambda x64, t, w64, dim=dim: F.log_softmax(x64, dim=dim))

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "losses.safetensors")
save_file(tensors, path, metadata=metadata)
print(f"{path}: {len(metadata)} cases, {len(tensors)} tensors")
