"""The learner's algorithm: collate unrolls, V-trace, losses, one optimiser step. No I/O.

Run by: the learner process (hosted by :mod:`learner.server`), benchmarks and tests, which can
drive :meth:`Learner.train_step` in one process without any socket.
Owns: the model being trained, its optimiser and the update counter (``policy_version``).

Truncation (a time limit, not a real end) is bootstrapped rather than zeroed: at a truncated
step t the recursion is cut (discount 0) and the reward becomes
``r_t + gamma * V(final observation)`` with V from the current network, which gives exactly
the one-step target the episode would have had. Only termination zeroes the bootstrap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from configs.schema import Config
from learner import losses
from learner.vtrace import vtrace
from models import build_model
from protocol.messages import Trajectory

log = logging.getLogger(__name__)


class Batch(NamedTuple):
    """B unrolls of T steps, time-major, on the learner's device.

    Attributes:
        obs: [T+1, B, *obs_shape] uint8 or float32.
        action: [T, B] int64.
        reward: [T, B] float32, raw env rewards.
        terminated: [T, B] bool.
        truncated: [T, B] bool.
        behaviour_logits: [T, B, A] float32.
        policy_version: [T, B] int64.
        truncated_obs: [N, *obs_shape] final observations of truncated steps.
        truncated_index: [N] int64 flat index ``t * B + b`` of each truncated step, row for
            row with ``truncated_obs``.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    behaviour_logits: Tensor
    policy_version: Tensor
    truncated_obs: Tensor
    truncated_index: Tensor

    @property
    def unroll_length(self) -> int:
        return int(self.action.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.action.shape[1])


def collate(trajectories: Sequence[Trajectory], device: torch.device | str = "cpu") -> Batch:
    """Stack B validated trajectories into a time-major :class:`Batch` on ``device``.

    Raises:
        ValueError: ``trajectories`` is empty.
    """
    if not trajectories:
        raise ValueError("trajectories: need at least one unroll to collate")
    batch_size = len(trajectories)

    def stack(name: str) -> Tensor:
        arr = np.stack([getattr(t, name) for t in trajectories], axis=1)
        return torch.from_numpy(arr).to(device, non_blocking=True)

    # rows of truncated_obs follow the same (b, then t) order as these flat indices
    trunc_obs = [t.truncated_obs for t in trajectories if len(t.truncated_obs)]
    index = [
        int(step) * batch_size + b
        for b, t in enumerate(trajectories)
        for step in np.flatnonzero(t.truncated)
    ]
    obs_rows = np.concatenate(trunc_obs) if trunc_obs else trajectories[0].truncated_obs
    return Batch(
        obs=stack("obs"),
        action=stack("action"),
        reward=stack("reward"),
        terminated=stack("terminated"),
        truncated=stack("truncated"),
        behaviour_logits=stack("behaviour_logits"),
        policy_version=stack("policy_version"),
        truncated_obs=torch.from_numpy(np.ascontiguousarray(obs_rows)).to(device),
        truncated_index=torch.as_tensor(index, dtype=torch.int64, device=device),
    )


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


class Learner:
    """Owns the trained model and its AdamW optimiser; :meth:`train_step` is one update.

    Args:
        config: the run's config (learner hyperparameters and model shape).
        obs_shape: one observation's shape.
        num_actions: size of the discrete action set.
        device: torch device for the model and batches.
    """

    def __init__(
        self, config: Config, obs_shape: tuple[int, ...], num_actions: int, device: str
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.model = build_model(config.model, obs_shape, num_actions).to(self.device)
        lc = config.learner
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=lc.learning_rate,
            eps=lc.adam_eps,
            weight_decay=lc.weight_decay,
        )
        self.updates = 0

    @property
    def policy_version(self) -> int:
        """Version of the current weights: the number of updates applied so far."""
        return self.updates

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One V-trace actor-critic update on ``batch``.

        Returns:
            Scalar metrics: ``loss/total``, ``loss/policy``, ``loss/baseline``,
            ``loss/entropy``, ``policy/entropy``, ``policy/mean_rho``, ``optim/grad_norm``,
            ``optim/lr``, ``vtrace/mean_vs``.
        """
        lc = self.config.learner
        self.model.train()
        out = self.model(batch.obs)
        logits, values = out.logits[:-1], out.value[:-1]
        bootstrap_value = out.value[-1]

        final_values = None
        if batch.truncated_index.numel():
            with torch.no_grad():
                final_values = self.model(batch.truncated_obs).value
        rewards, discounts = bootstrap_inputs(
            batch, final_values, lc.discount, lc.reward_scale, lc.reward_clip
        )

        target_log_probs = losses.action_log_probs(logits, batch.action)
        behaviour_log_probs = losses.action_log_probs(batch.behaviour_logits, batch.action)
        log_rhos = target_log_probs.detach() - behaviour_log_probs
        vt = vtrace(
            log_rhos,
            discounts,
            rewards,
            values.detach(),
            bootstrap_value.detach(),
            clip_rho_threshold=lc.clip_rho_threshold,
            clip_pg_rho_threshold=lc.clip_pg_rho_threshold,
        )
        pg_loss = losses.policy_gradient_loss(logits, batch.action, vt.pg_advantages)
        v_loss = losses.baseline_loss(values, vt.vs)
        ent_loss = losses.entropy_loss(logits)
        total = pg_loss + lc.baseline_cost * v_loss + lc.entropy_cost * ent_loss

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), lc.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        return {
            "loss/total": float(total.detach()),
            "loss/policy": float(pg_loss.detach()),
            "loss/baseline": float(v_loss.detach()),
            "loss/entropy": float(ent_loss.detach()),
            "policy/entropy": -float(ent_loss.detach()),
            "policy/mean_rho": float(log_rhos.exp().mean()),
            "optim/grad_norm": float(grad_norm),
            "optim/lr": float(self.optimizer.param_groups[0]["lr"]),
            "vtrace/mean_vs": float(vt.vs.mean()),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimiser, update count, RNG."""
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            KeyError / RuntimeError: the state does not fit this model (wrong architecture).
        """
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
