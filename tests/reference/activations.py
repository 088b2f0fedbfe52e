"""Writes activations.safetensors: PyTorch's values for the activations of tests/activations.rs.

Run from this folder: python3 activations.py (PyTorch 2.x and the safetensors package).
Each case is computed in float64 from float32 inputs and stored as float32; see README.md.
"""

import json

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

# (case, PyTorch's function name, its arguments, the points where it has a kink or switches
# form, which the inputs hit exactly).
CASES = [
    ("leaky_relu_default", "leaky_relu", {"negative_slope": 0.01}, [0.0]),
    ("leaky_relu_0.2", "leaky_relu", {"negative_slope": 0.2}, [0.0]),
    ("elu_default", "elu", {"alpha": 1.0}, [0.0]),
    ("elu_2", "elu", {"alpha": 2.0}, [0.0]),
    ("gelu_none", "gelu", {"approximate": "none"}, []),
    ("gelu_tanh", "gelu", {"approximate": "tanh"}, []),
    ("silu", "silu", {}, []),
    ("softplus_default", "softplus", {"beta": 1.0, "threshold": 20.0}, [20.0]),
    ("softplus_beta2_threshold5", "softplus", {"beta": 2.0, "threshold": 5.0}, [2.5]),
    ("softplus_beta-1", "softplus", {"beta": -1.0, "threshold": 20.0}, [-20.0]),
    ("hardtanh_default", "hardtanh", {"min_val": -1.0, "max_val": 1.0}, [-1.0, 1.0]),
    ("hardtanh_relu6", "hardtanh", {"min_val": 0.0, "max_val": 6.0}, [0.0, 6.0]),
    ("clamp_-0.5_2", "clamp", {"min": -0.5, "max": 2.0}, [-0.5, 2.0]),
    # min > max: every output is max, every gradient 0.
    ("clamp_min_above_max", "clamp", {"min": 1.0, "max": -1.0}, [-1.0, 1.0]),
]

# Large |x| (softplus's and gelu's tails, exp's overflow) and values near 0.
SPECIAL = [-100.0, -30.0, -20.5, -12.0, -5.0, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 5.0, 12.0, 20.5, 30.0, 100.0]


def apply(op, x, args):
    if op == "clamp":
        return torch.clamp(x, args["min"], args["max"])
    return getattr(F, op)(x, **args)


def main():
    gen = torch.Generator().manual_seed(14)
    tensors, meta = {}, {}
    for case, op, args, kinks in CASES:
        values = SPECIAL + kinks + (torch.randn(64 - len(SPECIAL) - len(kinks), generator=gen) * 3).tolist()
        x32 = torch.tensor(values, dtype=torch.float32).reshape(4, 16)
        g32 = torch.randn(4, 16, generator=gen, dtype=torch.float32)
        x = x32.double().requires_grad_()
        y = apply(op, x, args)
        y.backward(g32.double())
        tensors[f"{case}.input"] = x32
        tensors[f"{case}.output"] = y.detach().float()
        tensors[f"{case}.grad_output"] = g32
        tensors[f"{case}.grad_input"] = x.grad.float()
        meta[case] = json.dumps({"op": op, **args})
    meta["torch_version"] = json.dumps(torch.__version__)
    save_file(tensors, "activations.safetensors", metadata=meta)


if __name__ == "__main__":
    main()
