"""Model parameters <-> one flat float32 vector, for publishing weights over the wire.

Run by: the learner (flatten before publishing) and actors (load what they receive).
Owns: the weight layout check, so an actor never loads weights that do not fit its model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn


class WeightsMismatch(ValueError):
    """Weights that do not fit the model: ``field`` (``layout`` or ``flat``) and ``reason``
    (``bad_layout`` or ``bad_shape``), the tokens PROTOCOL.md gives for an actor's check.

    The roles that receive weights turn it into their wire error (``ProtocolError``); this
    module knows nothing of the wire.
    """

    def __init__(self, field: str, reason: str, detail: str) -> None:
        self.field, self.reason, self.detail = field, reason, detail
        super().__init__(f"{field}: {reason} ({detail})")


def flatten_state(model: nn.Module) -> tuple[list[list[Any]], np.ndarray]:
    """Return ``(layout, flat)``: ``[[name, shape], ...]`` in state-dict order and a float32
    vector [sum of sizes] holding every tensor of ``model.state_dict()`` on the CPU."""
    state = model.state_dict()
    layout = [[name, list(t.shape)] for name, t in state.items()]
    if not state:
        return layout, np.zeros(0, dtype=np.float32)
    flat = torch.cat([t.detach().reshape(-1).float().cpu() for t in state.values()])
    return layout, flat.numpy()


@torch.no_grad()
def load_flat_state(model: nn.Module, layout: list[list[Any]], flat: np.ndarray) -> None:
    """Copy a flat vector produced by :func:`flatten_state` into ``model`` in place.

    Args:
        layout: ``[[name, shape], ...]`` as sent.
        flat: float32 [sum of sizes].

    Raises:
        WeightsMismatch: ``layout`` does not match the model's state dict (names, order, shapes)
            or ``flat`` has the wrong length; the model is left unchanged.
    """
    state = model.state_dict()
    expected = [[name, list(t.shape)] for name, t in state.items()]
    if layout != expected:
        raise WeightsMismatch("layout", "bad_layout", "weights do not match this model")
    total = sum(math.prod(shape) for _, shape in layout)
    if flat.dtype != np.float32 or flat.shape != (total,):
        raise WeightsMismatch("flat", "bad_shape", f"expected float32 ({total},), got {flat.shape}")
    source = torch.from_numpy(np.asarray(flat))
    offset = 0
    for (_, shape), tensor in zip(layout, state.values()):
        n = math.prod(shape)
        tensor.copy_(source[offset : offset + n].view(shape))
        offset += n
