"""Reference values for webgrad's RMSprop, Adagrad and Adadelta: writes optimizers.safetensors.

Two parameters (`weight` [13, 79]: 1,027 elements, not a multiple of 4;
`bias` [13]) start from saved random values; each optimizer configuration takes STEPS steps
with the saved random gradients (set by hand as `.grad`, no model), and the parameters after
every step are saved. PyTorch runs in float64 from the float32 inputs; values are stored as
float32. Run from anywhere: python3 tests/reference/optimizers.py (see README.md).
"""

import json
import os

import torch
from safetensors.torch import save_file

STEPS = 4
SHAPES = {"weight": (13, 79), "bias": (13,)}

# name -> (optimizer, keyword arguments); every option of each optimizer alone and together
# (a large eps in the _all cases, where adding it inside or outside a root makes a difference).
CASES = {
    "rmsprop": ("RMSprop", {}),
    "rmsprop_momentum": ("RMSprop", {"momentum": 0.9}),
    "rmsprop_centered": ("RMSprop", {"centered": True}),
    "rmsprop_weight_decay": ("RMSprop", {"weight_decay": 0.1}),
    "rmsprop_all": (
        "RMSprop",
        {
            "lr": 0.005,
            "alpha": 0.9,
            "eps": 0.1,
            "weight_decay": 0.05,
            "momentum": 0.5,
            "centered": True,
        },
    ),
    "adagrad": ("Adagrad", {}),
    "adagrad_lr_decay": ("Adagrad", {"lr": 0.1, "lr_decay": 0.5}),
    "adagrad_weight_decay": ("Adagrad", {"weight_decay": 0.1}),
    "adagrad_initial_accumulator": ("Adagrad", {"initial_accumulator_value": 0.5}),
    "adagrad_all": (
        "Adagrad",
        {
            "lr": 0.05,
            "lr_decay": 0.1,
            "weight_decay": 0.05,
            "initial_accumulator_value": 0.2,
            "eps": 0.1,
        },
    ),
    "adadelta": ("Adadelta", {}),
    "adadelta_all": ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1}),
}


def main():
    gen = torch.Generator().manual_seed(14)
    init = {n: torch.randn(s, generator=gen) for n, s in SHAPES.items()}
    grads = [{n: torch.randn(s, generator=gen) for n, s in SHAPES.items()} for _ in range(STEPS)]
    out = {f"init.{n}": t for n, t in init.items()}
    for k, g in enumerate(grads, 1):
        out.update({f"grad{k}.{n}": t for n, t in g.items()})
    meta = {}
    for case, (name, kwargs) in CASES.items():
        params = {n: t.double().clone().requires_grad_() for n, t in init.items()}
        opt = getattr(torch.optim, name)(list(params.values()), **kwargs)
        for k, g in enumerate(grads, 1):
            for n, p in params.items():
                p.grad = g[n].double().clone()
            opt.step()
            out.update({f"{case}.step{k}.{n}": p.detach().float() for n, p in params.items()})
        meta[case] = json.dumps({"op": name, **kwargs})
    here = os.path.dirname(os.path.abspath(__file__))
    out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, os.path.join(here, "optimizers.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
