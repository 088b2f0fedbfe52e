"""PyTorch reference values for the indexing and selection ops and the multi-dim reductions:
cat, stack, narrow, index_select, gather, one_hot, where, sum over dims, amax, amin, min.

Writes tests/reference/tensor_ops.safetensors (read by tests/tensor_ops.rs; the layout is in
README.md here). Run from the repository root:

    python3 tests/reference/tensor_ops.py

Float inputs are drawn in float32 from a fixed seed; every output and gradient is computed in
float64 from them and stored as float32, integer indices as int64, conditions as float32 0/1.
"""

import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(14)

tensors = {}
metadata = {"torch_version": torch.__version__}


def add_case(name, op, args, inputs, fn):
    """Runs fn(**inputs) in float64 (float inputs require grad) and stores the case's roles:
    the inputs, `output` (and `indices` where fn returns a pair), `grad_output` and
    `grad_X` for every float input X except `condition`."""
    run = {}
    for role, value in inputs.items():
        if value.is_floating_point() and role != "condition":
            run[role] = value.double().requires_grad_()
        else:
            run[role] = value
    out = fn(**run)
    indices = None
    if isinstance(out, tuple):
        out, indices = out
    if out.dtype == torch.float64 and out.requires_grad:
        grad_output = torch.randn(out.shape).float()
        (out * grad_output.double()).sum().backward()
        tensors[f"{name}.grad_output"] = grad_output.contiguous()
        for role, value in run.items():
            if value.is_floating_point() and value.requires_grad:
                tensors[f"{name}.grad_{role}"] = value.grad.float().contiguous()
    for role, value in inputs.items():
        tensors[f"{name}.{role}"] = value.contiguous()
    tensors[f"{name}.output"] = out.detach().float().contiguous()
    if indices is not None:
        tensors[f"{name}.indices"] = indices.contiguous()
    metadata[name] = json.dumps({"op": op, **args})


def randn(*shape):
    return torch.randn(*shape).float()


def with_ties(*shape):
    # Few distinct values, so that maxima and minima repeat.
    return torch.randint(-2, 3, shape).float()


add_case("cat_dim1", "cat", {"dim": 1},
         {"a": randn(2, 3, 4), "b": randn(2, 1, 4), "c": randn(2, 2, 4)},
         lambda a, b, c: torch.cat([a, b, c], dim=1))
add_case("cat_dim0", "cat", {"dim": 0},
         {"a": randn(2, 3), "b": randn(3, 3)},
         lambda a, b: torch.cat([a, b], dim=0))
add_case("stack_dim1", "stack", {"dim": 1},
         {"a": randn(3, 4), "b": randn(3, 4)},
         lambda a, b: torch.stack([a, b], dim=1))
add_case("stack_dim_last", "stack", {"dim": -1},
         {"a": randn(2, 3), "b": randn(2, 3), "c": randn(2, 3)},
         lambda a, b, c: torch.stack([a, b, c], dim=-1))
add_case("narrow", "narrow", {"dim": 1, "start": 1, "length": 3},
         {"input": randn(3, 5, 2)},
         lambda input: torch.narrow(input, 1, 1, 3))
add_case("index_select_dim0", "index_select", {"dim": 0},
         {"input": randn(4, 3), "index": torch.tensor([2, 0, 2, 3, 2])},
         lambda input, index: torch.index_select(input, 0, index))
add_case("index_select_dim1", "index_select", {"dim": 1},
         {"input": randn(2, 5, 3), "index": torch.tensor([4, 4, 1])},
         lambda input, index: torch.index_select(input, 1, index))
add_case("gather_dim1", "gather", {"dim": 1},
         {"input": randn(3, 4), "index": torch.randint(0, 4, (3, 6))},
         lambda input, index: torch.gather(input, 1, index))
add_case("gather_dim0", "gather", {"dim": 0},
         {"input": randn(3, 2, 2), "index": torch.randint(0, 3, (5, 2, 2))},
         lambda input, index: torch.gather(input, 0, index))
add_case("one_hot", "one_hot", {"num_classes": 4},
         {"input": torch.tensor([[0, 3, 1], [1, 1, 2]])},
         lambda input: F.one_hot(input, 4).double())
add_case("where", "where", {},
         {"condition": (torch.rand(3, 1) > 0.5).float(), "input": randn(3, 4), "other": randn(4)},
         lambda condition, input, other: torch.where(condition != 0, input, other))
add_case("sum_dims", "sum", {"dim": [0, 2], "keepdim": False},
         {"input": randn(2, 3, 4)},
         lambda input: torch.sum(input, dim=[0, 2], keepdim=False))
add_case("sum_dims_keepdim", "sum", {"dim": [-1, 1], "keepdim": True},
         {"input": randn(2, 3, 4)},
         lambda input: torch.sum(input, dim=[-1, 1], keepdim=True))
add_case("amax_dim1", "amax", {"dim": [1], "keepdim": True},
         {"input": with_ties(4, 5)},
         lambda input: torch.amax(input, dim=[1], keepdim=True))
add_case("amax_dims", "amax", {"dim": [0, 2], "keepdim": False},
         {"input": with_ties(3, 2, 4)},
         lambda input: torch.amax(input, dim=[0, 2], keepdim=False))
add_case("amin_all", "amin", {"dim": [], "keepdim": False},
         {"input": with_ties(3, 4)},
         lambda input: torch.amin(input, dim=[], keepdim=False))
add_case("min_dim", "min", {"dim": 1, "keepdim": False},
         {"input": randn(3, 5)},
         lambda input: torch.min(input, dim=1, keepdim=False))
add_case("gather_smaller_index", "gather", {"dim": 1},
         {"input": randn(3, 4, 2), "index": torch.randint(0, 4, (2, 5, 1))},
         lambda input, index: torch.gather(input, 1, index))

here = os.path.dirname(os.path.abspath(__file__))
save_file(tensors, os.path.join(here, "tensor_ops.safetensors"), metadata=metadata)
