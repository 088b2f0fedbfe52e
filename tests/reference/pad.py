"""PyTorch reference values for padding: F.pad in every mode, and nn.Conv2d with every
padding_mode.

Writes tests/reference/pad.safetensors (read by tests/pad.rs; the layout is in README.md here).
Run from the repository root:

    python3 tests/reference/pad.py

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
metadata = {"torch_version": torch.__version__}


def randn(*shape):
    return torch.randn(*shape).float()


def add_case(name, op, args, inputs, fn):
    """Runs fn(**inputs) in float64 with every input requiring grad, and stores the inputs,
    `output`, a random `grad_output` and `grad_X` for every input X: the gradient of
    sum(output * grad_output)."""
    run = {role: value.double().requires_grad_() for role, value in inputs.items()}
    out = fn(**run)
    grad_output = torch.randn(out.shape).float()
    (out * grad_output.double()).sum().backward()
    for role, value in inputs.items():
        tensors[f"{name}.{role}"] = value.contiguous()
        tensors[f"{name}.grad_{role}"] = run[role].grad.float().contiguous()
    tensors[f"{name}.output"] = out.detach().float().contiguous()
    tensors[f"{name}.grad_output"] = grad_output.contiguous()
    metadata[name] = json.dumps({"op": op, **args})


def pad_case(name, shape, pad, mode, value=0.0):
    add_case(name, "pad", {"pad": list(pad), "mode": mode, "value": value},
             {"input": randn(*shape)},
             lambda input: F.pad(input, pad, mode=mode, value=value))


pad_case("constant_1d", (2, 3, 5), (2, 1), "constant", 0.5)
pad_case("constant_2d", (2, 2, 3, 4), (1, 2, 2, 0), "constant", -1.0)
pad_case("constant_3d", (1, 2, 3, 2, 4), (0, 1, 2, 1, 1, 3), "constant")
pad_case("constant_4_dims", (2, 3, 2, 3, 2), (1, 0, 0, 2, 1, 1, 2, 1), "constant", 0.25)
pad_case("constant_5_dims", (2, 1, 2, 3, 2), (1, 1, 0, 1, 2, 0, 1, 0, 1, 2), "constant", 2.0)
for mode in ["reflect", "replicate", "circular"]:
    big = {"reflect": 4, "replicate": 7, "circular": 5}[mode]
    pad_case(f"{mode}_1d", (2, 3, 5), (3, 2), mode)
    pad_case(f"{mode}_1d_unbatched", (3, 5), (2, 4 if mode != "reflect" else 1), mode)
    pad_case(f"{mode}_1d_largest", (2, 2, 5), (big, big), mode)
    pad_case(f"{mode}_2d", (1, 2, 4, 5), (2, 1, 3, 1), mode)
    pad_case(f"{mode}_2d_unbatched", (2, 3, 4), (1, 2, 2, 1), mode)
    pad_case(f"{mode}_3d", (1, 2, 3, 4, 5), (1, 2, 2, 1, 1, 0), mode)

# nn.Conv2d with each padding_mode: non-zero modes pad explicitly, then convolve with no
# padding.
for mode in ["zeros", "reflect", "replicate", "circular"]:
    for (label, args) in [
        ("p1", {"kernel_size": 3, "padding": 1, "stride": 1}),
        ("p2_s2", {"kernel_size": 3, "padding": 2, "stride": 2}),
        ("p21", {"kernel_size": (3, 2), "padding": (2, 1), "stride": 1}),
    ]:
        conv = torch.nn.Conv2d(3, 4, padding_mode=mode, **args).double()
        weight = conv.weight.detach().float()
        bias = conv.bias.detach().float()

        def run(input, weight, bias, conv=conv):
            params = {"weight": weight, "bias": bias}
            return torch.func.functional_call(conv, params, (input,))

        meta = {"padding_mode": mode, "in_channels": 3, "out_channels": 4}
        for k, v in args.items():
            meta[k] = list(v) if isinstance(v, tuple) else [v, v]
        add_case(f"conv2d_{mode}_{label}", "conv2d", meta,
                 {"input": randn(2, 3, 6, 7), "weight": weight, "bias": bias},
                 lambda input, weight, bias, run=run: run(input, weight, bias))

here = os.path.dirname(os.path.abspath(__file__))
save_file(tensors, os.path.join(here, "pad.safetensors"), metadata=metadata)
print(f"wrote {len(tensors)} tensors, {len(metadata) - 1} cases")
