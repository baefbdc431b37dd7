"""IMPALA's loss terms: policy gradient, baseline and entropy (Espeholt et al. 2018, Sec. 4.2).

Run by: the learner process. Pure functions of tensors; no I/O, no optimiser.
All inputs are time-major ``[T, B, ...]``; each returns a scalar float tensor (mean over T*B,
so the learning rate does not depend on the batch shape).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def action_log_probs(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(a_t | x_t). logits [T, B, A] float; actions [T, B] int64 -> [T, B] float."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, actions.unsqueeze(-1)).squeeze(-1)


def policy_gradient_loss(logits: Tensor, actions: Tensor, advantages: Tensor) -> Tensor:
    """-mean(log pi(a_t|x_t) * A_t); ``advantages`` [T, B] are treated as constants."""
    return -(action_log_probs(logits, actions) * advantages.detach()).mean()


def baseline_loss(values: Tensor, targets: Tensor) -> Tensor:
    """0.5 * mean((v_s - V(x_s))^2): values [T, B] regress on V-trace targets [T, B]."""
    return 0.5 * (targets.detach() - values).pow(2).mean()


def entropy(logits: Tensor) -> Tensor:
    """Per-step policy entropy H(pi(.|x_t)) in nats: logits [T, B, A] -> [T, B]."""
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def entropy_loss(logits: Tensor) -> Tensor:
    """-mean entropy: minimising it raises entropy (the exploration bonus)."""
    return -entropy(logits).mean()
