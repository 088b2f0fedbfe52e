"""PyTorch reference values for layer_norm, group_norm and batch_norm on [N, C] / [N, C, L].

Writes tests/reference/norms.safetensors (read by tests/norm.rs; the layout is in README.md
here). Run from the repository root:

    python3 tests/reference/norms.py

Inputs are drawn in float32 from a fixed seed; every output and gradient is computed in
float64 from them and stored as float32.
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(14)

tensors = {}
metadata = {}


def add_case(name, op, inputs, args, fn):
    """Runs fn(**inputs in float64) and stores inputs, output and the gradients of
    sum(output * grad_output) for every floating-point input."""
    x64 = {k: v.double().requires_grad_() for k, v in inputs.items()}
    extra = {}
    if op == "batch_norm":
        c = inputs["input"].shape[1]
        extra = {"running_mean": torch.zeros(c, dtype=torch.float64),
                 "running_var": torch.ones(c, dtype=torch.float64)}
    out = fn(**x64, **extra)
    grad_output = torch.randn(out.shape).float()
    (out * grad_output.double()).sum().backward()
    for role, value in inputs.items():
        tensors[f"{name}.{role}"] = value.contiguous()
        tensors[f"{name}.grad_{role}"] = x64[role].grad.float().contiguous()
    tensors[f"{name}.output"] = out.detach().float().contiguous()
    tensors[f"{name}.grad_output"] = grad_output.contiguous()
    for role, value in extra.items():
        tensors[f"{name}.{role}_after"] = value.float().contiguous()
    metadata[name] = json.dumps({"op": op, **args})


def affine(shape, affine):
    if not affine:
        return {}
    return {"weight": (1.0 + 0.5 * torch.randn(shape)).float(),
            "bias": (0.3 * torch.randn(shape)).float()}


def layer_norm_case(name, shape, normalized_shape, with_affine, offset=0.0, eps=1e-5):
    inputs = {"input": (offset + torch.randn(shape)).float(),
              **affine(normalized_shape, with_affine)}

    def fn(input, weight=None, bias=None):
        return F.layer_norm(input, normalized_shape, weight, bias, eps)

    add_case(name, "layer_norm", inputs,
             {"normalized_shape": list(normalized_shape), "eps": eps}, fn)


def group_norm_case(name, shape, num_groups, with_affine, offset=0.0, eps=1e-5):
    inputs = {"input": (offset + torch.randn(shape)).float(),
              **affine([shape[1]], with_affine)}

    def fn(input, weight=None, bias=None):
        return F.group_norm(input, num_groups, weight, bias, eps)

    add_case(name, "group_norm", inputs, {"num_groups": num_groups, "eps": eps}, fn)


def batch_norm_case(name, shape, momentum=0.1, eps=1e-5):
    inputs = {"input": torch.randn(shape).float(), **affine([shape[1]], True)}

    def fn(input, weight, bias, running_mean, running_var):
        return F.batch_norm(input, running_mean, running_var, weight, bias, training=True,
                            momentum=momentum, eps=eps)

    add_case(name, "batch_norm", inputs, {"momentum": momentum, "eps": eps}, fn)


layer_norm_case("layer_norm_last", [2, 3, 5], [5], True)
layer_norm_case("layer_norm_two_dims_no_affine", [2, 3, 4], [3, 4], False)
layer_norm_case("layer_norm_offset_1000", [3, 16], [16], True, offset=1000.0)
layer_norm_case("layer_norm_eps", [4, 6], [6], True, eps=0.1)
group_norm_case("group_norm_nchw", [2, 6, 3, 2], 3, True)
group_norm_case("group_norm_ncl_no_affine", [3, 4, 5], 2, False)
group_norm_case("group_norm_one_group", [2, 4, 3], 1, True)
group_norm_case("group_norm_instance", [2, 3, 4], 3, True, eps=1e-3)
group_norm_case("group_norm_nc_offset_1000", [2, 8], 4, True, offset=1000.0)
batch_norm_case("batch_norm1d_nc", [6, 4])
batch_norm_case("batch_norm1d_ncl", [3, 4, 5], momentum=0.3, eps=1e-3)

metadata["torch_version"] = json.dumps(torch.__version__)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "norms.safetensors")
save_file(tensors, out, metadata=metadata)
print(f"wrote {len(tensors)} tensors to {out}")
