#!/usr/bin/env python3
"""One SGD step of every benchmark-zoo model, for tests/zoo.rs: writes zoo_step.safetensors.

Run from the repository root: `python3 tests/reference/zoo_step.py` (PyTorch 2.x and the
`safetensors` package). The models come from benches/torch_zoo.py (the benchmark's
companion), so the test and the benchmark share one definition. Seeded: a rerun writes the
same tensors.

Per model M (lenet5, mlp, mnistnet, resnet20, vgg), from PyTorch's default initialisation
rounded to bfloat16 (exact in float32; it halves the file) and a small random batch:
- `M.init.NAME` (bfloat16): the state_dict (parameters and BatchNorm running statistics,
  not `num_batches_tracked`);
- `M.input` (float32), `M.target` (int64);
- `M.logits`, `M.loss`: the forward in training mode (BatchNorm on batch statistics), but
  MnistNet in eval mode, which turns its dropouts off (it has no BatchNorm), so the step is
  deterministic; its "logits" are its log-probabilities and its loss `nll_loss`, the others'
  `cross_entropy` (mean);
- `M.grad.NAME`: every parameter's gradient, flattened and, for tensors of more than
  4,096 elements, only every s-th element with s = ceil(numel / 4096) (the test takes the
  same subset);
- `M.after.NAME`: the BatchNorm running statistics after the step (momentum 0.1).
The step is SGD with lr 0.1 (no momentum), so the parameters after it are init - 0.1 * grad.

Every value is computed in float64 from the float32 inputs and stored as float32. The
float32 run's error against it, max |float32 - float64| per stored tensor, is in the
metadata: key M maps to a JSON object {"op": "zoo_step", "batch": N, "lr": 0.1,
"err": {"logits": e, "loss": e, "grad.NAME": e, "after.NAME": e}}. tests/zoo.rs allows a
small multiple of it (with a floor).
"""
import copy
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benches"))
from torch_zoo import ZOO  # noqa: E402

KEEP = 4096
LR = 0.1
BATCH = {"lenet5": 4, "mlp": 4, "mnistnet": 2, "resnet20": 4, "vgg": 4}


def kept(t):
    flat = t.reshape(-1)
    stride = -(-flat.numel() // KEEP)
    return flat[::stride]


def run(model, x, y, log_probs, dtype):
    """One SGD step of a copy of `model` in `dtype`: logits, loss, kept gradients, buffers."""
    m = copy.deepcopy(model).to(dtype)
    out = m(x.to(dtype))
    loss = F.nll_loss(out, y) if log_probs else F.cross_entropy(out, y)
    loss.backward()
    grads = {n: kept(p.grad).detach() for n, p in m.named_parameters()}
    torch.optim.SGD(m.parameters(), lr=LR).step()
    after = {n: b.detach().clone() for n, b in m.named_buffers() if b.is_floating_point()}
    return {"logits": out.detach(), "loss": loss.detach().reshape(1),
            **{f"grad.{n}": g for n, g in grads.items()},
            **{f"after.{n}": b for n, b in after.items()}}


def main():
    tensors, meta = {}, {"torch_version": torch.__version__}
    for seed, (name, (ctor, shape, log_probs, *_)) in enumerate(ZOO.items()):
        torch.manual_seed(seed)
        model = ctor()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
        model.train()
        if name == "mnistnet":
            model.eval()  # dropout off; the network has no BatchNorm
        n = BATCH[name]
        x = torch.rand(n, *shape) if shape[0] == 1 else torch.randn(n, *shape)
        y = torch.randint(0, 10, (n,))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                tensors[f"{name}.init.{k}"] = v.to(torch.bfloat16).contiguous()
        tensors[f"{name}.input"] = x
        tensors[f"{name}.target"] = y
        r32 = run(model, x, y, log_probs, torch.float32)
        r64 = run(model, x, y, log_probs, torch.float64)
        err = {}
        for k, v in r64.items():
            tensors[f"{name}.{k}"] = v.float().contiguous()
            err[k] = float((r32[k].double() - v).abs().max())
        meta[name] = json.dumps({"op": "zoo_step", "batch": n, "lr": LR, "err": err})
    save_file(tensors, os.path.join(HERE, "zoo_step.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
