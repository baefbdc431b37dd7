"""Return targets of a collated batch: episode ends, then V-trace or GAE targets.

Run by: the learner process (:class:`learner.learner.Learner` computes them in every loss),
benchmarks and tests. Pure functions: no I/O, no state, no model.
Owns: how episode ends enter the returns (:func:`bootstrap_inputs`: termination zeroes the
bootstrap, truncation bootstraps from the value of the final observation, which the caller
computes) and the choice of value targets and policy-gradient advantages per
``learner.returns`` (:func:`return_targets`). The estimators themselves are
:mod:`learner.vtrace`.
"""

from __future__ import annotations

from torch import Tensor

from configs.schema import LearnerConfig
from learner.collate import Batch
from learner.vtrace import gae, vtrace


def bootstrap_inputs(
    batch: Batch,
    final_values: Tensor | None,
    discount: float,
    reward_scale: float = 1.0,
    reward_clip: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """V-trace's ``rewards`` and ``discounts`` [T, B] from a batch, honouring episode ends.

    - terminated at t: ``discount_t = 0`` (no bootstrap: the episode really ended);
    - truncated at t: ``discount_t = 0`` and ``reward_t += discount * V(final obs)``, so the
      one-step target is ``r_t + gamma V(x_final)`` instead of bootstrapping from the next
      episode's first observation (Pardo et al. 2018, "Time Limits in RL", partial-episode
      bootstrapping);
    - otherwise ``discount_t = discount``.

    Args:
        batch: the collated unrolls.
        final_values: [N] values of ``batch.truncated_obs`` (no grad), or None when N = 0.
        discount: gamma per agent step.
        reward_scale, reward_clip: reward transform applied before the bootstrap is added
            (clip 0 = none).

    Raises:
        ValueError: ``final_values`` is missing or the wrong length for the truncated steps.
    """
    rewards = batch.reward * reward_scale
    if reward_clip > 0:
        rewards = rewards.clamp(-reward_clip, reward_clip)
    n = batch.truncated_index.numel()
    if n:
        if final_values is None or final_values.shape != (n,):
            raise ValueError(f"final_values: expected shape ({n},) for {n} truncated steps")
        rewards = (
            rewards.flatten()
            .index_add(0, batch.truncated_index, discount * final_values.to(rewards.dtype))
            .view_as(rewards)
        )
    not_done = ~(batch.terminated | batch.truncated)
    return rewards, not_done.to(rewards.dtype) * discount


def return_targets(
    lc: LearnerConfig,
    log_rhos: Tensor,
    discounts: Tensor,
    rewards: Tensor,
    values: Tensor,
    bootstrap_value: Tensor,
) -> tuple[Tensor, Tensor]:
    """Value targets and policy-gradient advantages, both [T, B] float32, per ``lc.returns``.

    - ``vtrace``: ``(v_s, rho_s (r_s + gamma_s v_{s+1} - V(x_s)))``, Espeholt et al. 2018,
      Eq. 1 and Sec. 4.2, with ``lc.clip_rho_threshold`` / ``lc.clip_pg_rho_threshold``.
    - ``gae``: ``(A_s + V(x_s), A_s)`` with ``A`` the generalized advantage estimate of
      Schulman et al. 2016, Eq. 16, ``lambda = lc.gae_lambda``; ``log_rhos`` are ignored (the
      estimator assumes the data is on-policy).

    Args:
        lc: the learner config (``returns``, clip thresholds, ``gae_lambda``).
        log_rhos, discounts, rewards, values: [T, B] float32 (``values`` without grad).
        bootstrap_value: [B] float32, ``V(x_T)``.

    Raises:
        ValueError: wrong shapes or dtypes (from :func:`vtrace` / :func:`gae`), or an unknown
            ``lc.returns``.
    """
    if lc.returns == "vtrace":
        vt = vtrace(
            log_rhos,
            discounts,
            rewards,
            values,
            bootstrap_value,
            clip_rho_threshold=lc.clip_rho_threshold,
            clip_pg_rho_threshold=lc.clip_pg_rho_threshold,
        )
        return vt.vs, vt.pg_advantages
    if lc.returns == "gae":
        advantages = gae(discounts, rewards, values, bootstrap_value, lc.gae_lambda)
        return advantages + values, advantages
    raise ValueError(f"learner.returns: expected vtrace or gae, got {lc.returns!r}")
