"""Off-policy return targets for the learner process.

This module is run by the learner process. It is pure: it does no I/O, holds no state and records
no autograd graph, so its outputs are constants with respect to the network parameters (the
targets are regressed towards, never differentiated through).

It owns:

* the V-trace off-policy correction of Espeholt et al. 2018, "IMPALA: Scalable Distributed
  Deep-RL with Importance Weighted Actor-Learner Architectures": the n-step V-trace target of
  Section 4.1, Eq. 1, and the policy-gradient advantage of Section 4.2;
* Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous Control
  Using Generalized Advantage Estimation", Eq. 16) as an on-policy alternative.

Conventions shared by every function here:

* all sequences are time-major, ``[T, B]``, and ``bootstrap_value`` is ``[B]``, the value
  estimate of the state reached after the last step of the unroll (``x_T``);
* ``discounts[t]`` already folds in gamma and the episode boundary,
  ``discounts[t] = gamma * (1 - terminated[t])``, so a zero cuts every sum and product at ``t``;
* outputs have the inputs' floating dtype (float32 in the learner) and device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["VTraceReturns", "gae", "vtrace"]


class VTraceReturns(NamedTuple):
    """Targets produced by :func:`vtrace`.

    Attributes:
        vs: ``[T, B]`` float32. V-trace value targets ``v_s`` (Espeholt et al. 2018, Eq. 1).
        pg_advantages: ``[T, B]`` float32. Policy-gradient advantages
            ``rho_s * (r_s + gamma_s * v_{s+1} - V(x_s))`` (Espeholt et al. 2018, Section 4.2).
    """

    vs: Tensor
    pg_advantages: Tensor


def _check_sequences(named: dict[str, Tensor], bootstrap_value: Tensor) -> tuple[int, int]:
    """Validate ``[T, B]`` sequences plus a ``[B]`` bootstrap; return ``(T, B)``.

    The reference shape comes from ``values`` because every estimator here needs it; mismatches
    are reported against that shape so the message names the argument that is off.

    Raises:
        ValueError: on a wrong rank, shape, dtype or device, naming the offending argument.
    """
    values = named["values"]
    if values.dim() != 2:
        raise ValueError(
            f"values: expected rank 2 [T, B], got rank {values.dim()} {tuple(values.shape)}"
        )
    t_len, batch = values.shape
    if t_len < 1:
        raise ValueError(f"values: expected T >= 1, got shape {tuple(values.shape)}")
    if not values.is_floating_point():
        raise ValueError(f"values: expected a floating dtype, got {values.dtype}")

    for name, tensor in named.items():
        if tensor.dim() != 2:
            raise ValueError(
                f"{name}: expected rank 2 [T, B] = {(t_len, batch)}, "
                f"got rank {tensor.dim()} {tuple(tensor.shape)}"
            )
        if tuple(tensor.shape) != (t_len, batch):
            raise ValueError(
                f"{name}: expected shape [T, B] = {(t_len, batch)}, got {tuple(tensor.shape)}"
            )
        _check_like(name, tensor, values)

    if bootstrap_value.dim() != 1:
        raise ValueError(
            f"bootstrap_value: expected rank 1 [B] = ({batch},), "
            f"got rank {bootstrap_value.dim()} {tuple(bootstrap_value.shape)}"
        )
    if bootstrap_value.shape[0] != batch:
        raise ValueError(
            f"bootstrap_value: expected shape [B] = ({batch},), got {tuple(bootstrap_value.shape)}"
        )
    _check_like("bootstrap_value", bootstrap_value, values)
    return t_len, batch


def _check_like(name: str, tensor: Tensor, values: Tensor) -> None:
    # Silent type promotion (e.g. float64 rewards with float32 values) would change the output
    # dtype behind the caller's back, and cross-device arithmetic fails deep inside torch with an
    # error that does not say which argument is at fault.
    if tensor.dtype != values.dtype:
        raise ValueError(f"{name}: expected dtype {values.dtype} (as values), got {tensor.dtype}")
    if tensor.device != values.device:
        raise ValueError(
            f"{name}: expected device {values.device} (as values), got {tensor.device}"
        )


def _check_threshold(name: str, threshold: float | None) -> None:
    # `not x > 0` also rejects NaN, which would otherwise propagate into every target.
    if threshold is not None and not threshold > 0:
        raise ValueError(f"{name}: expected a threshold > 0 or None, got {threshold!r}")


@torch.no_grad()
def vtrace(
    log_rhos: Tensor,
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """Compute V-trace value targets and policy-gradient advantages.

    Implements Espeholt et al. 2018, Section 4.1, Eq. 1::

        v_s = V(x_s) + sum_{t=s}^{s+n-1} gamma^{t-s} (prod_{i=s}^{t-1} c_i) delta_t V
        delta_t V = rho_t (r_t + gamma V(x_{t+1}) - V(x_t))
        rho_t = min(rho_bar, pi/mu),  c_i = min(1, pi/mu)

    with per-step discounts in place of gamma, evaluated by the equivalent backward recursion
    ``v_s - V(x_s) = delta_s V + gamma_s c_s (v_{s+1} - V(x_{s+1}))`` (Remark 1), and the
    policy-gradient advantage of Section 4.2::

        A_s = min(rho_bar_pg, pi/mu) (r_s + gamma_s v_{s+1} - V(x_s)),  v_T = V(x_T).

    Args:
        log_rhos: ``[T, B]`` float. ``log pi(a_t|x_t) - log mu(a_t|x_t)``, learner policy over
            behaviour policy, for the actions actually taken.
        discounts: ``[T, B]`` float. ``gamma * (1 - terminated_t)``.
        rewards: ``[T, B]`` float. ``r_t``.
        values: ``[T, B]`` float. ``V(x_t)`` under the learner's value function.
        bootstrap_value: ``[B]`` float. ``V(x_T)``.
        clip_rho_threshold: ``rho_bar`` for the value target; ``None`` disables the clip.
        clip_pg_rho_threshold: ``rho_bar`` for the policy-gradient advantage; ``None``
            disables the clip.

    Returns:
        :class:`VTraceReturns` with ``vs`` and ``pg_advantages``, both ``[T, B]`` in the inputs'
        dtype (float32 in the learner) and on their device, with ``requires_grad=False``.

    Raises:
        ValueError: if a tensor has the wrong rank, shape, dtype or device (the message names
            the argument), or if a clip threshold is ``<= 0`` or NaN.
    """
    _check_sequences(
        {"log_rhos": log_rhos, "discounts": discounts, "rewards": rewards, "values": values},
        bootstrap_value,
    )
    _check_threshold("clip_rho_threshold", clip_rho_threshold)
    _check_threshold("clip_pg_rho_threshold", clip_pg_rho_threshold)

    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
    # The trace coefficients c_i are always capped at 1 (c_bar = 1 in the paper): this is what
    # keeps the product of traces from exploding, independently of rho_bar.
    cs = rhos.clamp(max=1.0)

    values_t_plus_1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_t_plus_1 - values)
    decays = discounts * cs

    # T is short (tens of steps) and B is the vectorised axis, so a Python loop over time costs
    # little and keeps the recursion readable on any device.
    vs_minus_v = torch.empty_like(values)
    acc = torch.zeros_like(bootstrap_value)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + decays[t] * acc
        vs_minus_v[t] = acc
    vs = values + vs_minus_v

    vs_t_plus_1 = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    clipped_pg_rhos = (
        rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    )
    pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_t_plus_1 - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)


@torch.no_grad()
def gae(
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
    lam: float,
) -> Tensor:
    """Compute Generalized Advantage Estimates.

    Implements Schulman et al. 2016, Eq. 16, with per-step discounts::

        A_s = sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i lam) delta_t
        delta_t = r_t + gamma_t V(x_{t+1}) - V(x_t),  V(x_T) = bootstrap_value

    ``lam = 0`` gives one-step TD errors, ``lam = 1`` gives bootstrapped n-step returns minus
    ``V(x_s)``. Value targets are ``advantages + values``. The estimator is only unbiased for
    on-policy data; use :func:`vtrace` when actor and learner policies differ.

    Args:
        discounts: ``[T, B]`` float. ``gamma * (1 - terminated_t)``.
        rewards: ``[T, B]`` float. ``r_t``.
        values: ``[T, B]`` float. ``V(x_t)``.
        bootstrap_value: ``[B]`` float. ``V(x_T)``.
        lam: the GAE lambda, in ``[0, 1]``.

    Returns:
        ``[T, B]`` advantages in the inputs' dtype (float32 in the learner) and on their
        device, with ``requires_grad=False``.

    Raises:
        ValueError: if a tensor has the wrong rank, shape, dtype or device (the message names
            the argument), or if ``lam`` is outside ``[0, 1]`` or NaN.
    """
    _check_sequences(
        {"discounts": discounts, "rewards": rewards, "values": values}, bootstrap_value
    )
    # Written as a chained comparison so that NaN fails it too.
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected a value in [0, 1], got {lam!r}")

    values_t_plus_1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = rewards + discounts * values_t_plus_1 - values
    decays = discounts * lam

    advantages = torch.empty_like(values)
    acc = torch.zeros_like(bootstrap_value)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + decays[t] * acc
        advantages[t] = acc
    return advantages
