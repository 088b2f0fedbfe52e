"""PyTorch reference values for the pooling options: max_pool2d with dilation, ceil_mode and
return_indices, avg_pool2d with ceil_mode, and adaptive_avg_pool2d.

Writes tests/reference/pools.safetensors (read by tests/pool.rs; the layout is in README.md
here). Run from the repository root:

    python3 tests/reference/pools.py

Inputs are drawn in float32 from a fixed seed; every output and gradient is computed in
float64 from them and stored as float32, max pooling's indices as int64.
"""

import json

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(14)

tensors = {}
metadata = {"torch_version": torch.__version__}


def add_case(name, op, args, shape, fn):
    """Runs fn(input) in float64 on a random float32 input of `shape` and stores the case's
    roles: `input`, `output` (and `indices` where fn returns a pair), `grad_output` and
    `grad_input`, the gradient of sum(output * grad_output)."""
    x = torch.randn(*shape).float()
    run = x.double().requires_grad_()
    out = fn(run)
    indices = None
    if isinstance(out, tuple):
        out, indices = out
    grad_output = torch.randn(out.shape).float()
    (out * grad_output.double()).sum().backward()
    tensors[f"{name}.input"] = x.contiguous()
    tensors[f"{name}.output"] = out.detach().float().contiguous()
    tensors[f"{name}.grad_output"] = grad_output.contiguous()
    tensors[f"{name}.grad_input"] = run.grad.float().contiguous()
    if indices is not None:
        tensors[f"{name}.indices"] = indices.contiguous()
    metadata[name] = json.dumps({"op": op, **args})


def max_pool(name, shape, **args):
    add_case(
        name,
        "max_pool2d",
        args,
        shape,
        lambda x: F.max_pool2d(x, return_indices=True, **args),
    )


def avg_pool(name, shape, **args):
    add_case(name, "avg_pool2d", args, shape, lambda x: F.avg_pool2d(x, **args))


def adaptive(name, shape, output_size):
    add_case(
        name,
        "adaptive_avg_pool2d",
        {"output_size": output_size},
        shape,
        lambda x: F.adaptive_avg_pool2d(x, output_size),
    )


# Every max case has all arguments spelled out, as lists (height, width).
max_pool("max_plain", (2, 3, 8, 8), kernel_size=[2, 2], stride=[2, 2], padding=[0, 0],
         dilation=[1, 1], ceil_mode=False)
max_pool("max_dilated", (2, 2, 9, 9), kernel_size=[3, 3], stride=[1, 1], padding=[1, 1],
         dilation=[2, 2], ceil_mode=False)
max_pool("max_dilated_rect", (1, 3, 8, 11), kernel_size=[2, 3], stride=[2, 1],
         padding=[1, 1], dilation=[3, 2], ceil_mode=False)
max_pool("max_ceil", (2, 2, 7, 6), kernel_size=[3, 3], stride=[2, 2], padding=[1, 1],
         dilation=[1, 1], ceil_mode=True)
max_pool("max_ceil_no_pad", (1, 3, 5, 7), kernel_size=[2, 2], stride=[2, 2],
         padding=[0, 0], dilation=[1, 1], ceil_mode=True)
max_pool("max_ceil_dilated", (2, 1, 10, 9), kernel_size=[3, 2], stride=[3, 2],
         padding=[1, 1], dilation=[2, 3], ceil_mode=True)

avg_pool("avg_ceil", (2, 2, 6, 6), kernel_size=[3, 3], stride=[2, 2], padding=[1, 1],
         ceil_mode=True, count_include_pad=True)
avg_pool("avg_ceil_exclude_pad", (2, 2, 6, 7), kernel_size=[3, 3], stride=[2, 2],
         padding=[1, 1], ceil_mode=True, count_include_pad=False)
avg_pool("avg_ceil_no_pad", (1, 3, 5, 7), kernel_size=[2, 3], stride=[2, 2],
         padding=[0, 0], ceil_mode=True, count_include_pad=True)

adaptive("adaptive_global", (4, 8, 8, 8), [1, 1])
adaptive("adaptive_divisible", (2, 3, 6, 8), [3, 2])
adaptive("adaptive_uneven", (2, 3, 7, 9), [3, 4])
adaptive("adaptive_larger", (1, 2, 5, 3), [7, 8])
adaptive("adaptive_mixed", (2, 1, 10, 4), [4, 6])

save_file(tensors, "tests/reference/pools.safetensors", metadata=metadata)
