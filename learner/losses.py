"""IMPALA's loss terms: policy gradient, baseline and entropy (Espeholt et al. 2018, Sec. 4.2).

Run by: the learner process. Pure functions of tensors; no I/O, no optimiser.
All inputs are time-major ``[T, B, ...]``; each returns a scalar float tensor (mean over T*B,
so the learning rate does not depend on the batch shape).

Optional per-unroll ``weights [B]`` scale each unroll's terms before the mean (the
importance-sampling correction of prioritized replay, Schaul et al. 2016, Sec. 3.4: fresh
unrolls weigh 1, replayed ones ``w_i <= 1``). The mean still divides by T*B, not by the sum of
the weights, as in Schaul et al.'s Algorithm 1 (``w_i * delta_i`` summed into the update).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _weighted_mean(x: Tensor, weights: Tensor | None) -> Tensor:
    """mean over [T, B] of ``x``, column b scaled by ``weights[b]`` when given.

    Raises:
        ValueError: ``weights`` is not ``[B]``.
    """
    if weights is None:
        return x.mean()
    if weights.shape != (x.shape[1],):
        raise ValueError(
            f"weights: expected shape [B] = ({x.shape[1]},), got {tuple(weights.shape)}"
        )
    return (x * weights.to(x.dtype)).mean()


def action_log_probs(logits: Tensor, actions: Tensor) -> Tensor:
    """log pi(a_t | x_t). logits [T, B, A] float; actions [T, B] int64 -> [T, B] float."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, actions.unsqueeze(-1)).squeeze(-1)


def policy_gradient_loss(
    logits: Tensor, actions: Tensor, advantages: Tensor, weights: Tensor | None = None
) -> Tensor:
    """-mean(w_b * log pi(a_t|x_t) * A_t); ``advantages`` [T, B] are treated as constants.

    Raises:
        ValueError: ``weights`` is not ``[B]``.
    """
    return -_weighted_mean(action_log_probs(logits, actions) * advantages.detach(), weights)


def baseline_loss(values: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """0.5 * mean(w_b * (v_s - V(x_s))^2): values [T, B] regress on targets [T, B].

    Raises:
        ValueError: ``weights`` is not ``[B]``.
    """
    return 0.5 * _weighted_mean((targets.detach() - values).pow(2), weights)


def entropy(logits: Tensor) -> Tensor:
    """Per-step policy entropy H(pi(.|x_t)) in nats: logits [T, B, A] -> [T, B]."""
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def entropy_loss(logits: Tensor, weights: Tensor | None = None) -> Tensor:
    """-mean(w_b * entropy): minimising it raises entropy (the exploration bonus).

    Raises:
        ValueError: ``weights`` is not ``[B]``.
    """
    return -_weighted_mean(entropy(logits), weights)
