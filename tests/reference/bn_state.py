#!/usr/bin/env python3
"""A PyTorch state dict with BatchNorm's int64 `num_batches_tracked`, for tests/weights.rs.

Model: Sequential(conv=Conv2d(1, 2, 3), bn=BatchNorm2d(2)), seed 0, three training-mode
forwards of a random [4, 1, 6, 6] batch (so num_batches_tracked = 3 and the running
statistics have moved). Written with safetensors.torch.save_file, as PyTorch users save.

Run: python3 tests/reference/bn_state.py   (writes tests/reference/bn_state.safetensors)
"""
import os
from collections import OrderedDict

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
model = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(1, 2, 3), bn=torch.nn.BatchNorm2d(2)))
x = torch.rand(4, 1, 6, 6)
model.train()
for _ in range(3):
    model(x)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
assert state["bn.num_batches_tracked"].dtype == torch.int64
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bn_state.safetensors")
save_file(state, out)
print({k: (tuple(v.shape), str(v.dtype)) for k, v in state.items()})
