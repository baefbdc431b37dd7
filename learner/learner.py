"""The learner's algorithm: one update (forward pass, losses, optimiser step) per batch.

Run by: the learner process (hosted by :mod:`learner.server`), benchmarks and tests, which can
drive :meth:`Learner.step` / :meth:`Learner.train_step` in one process without any socket.
Owns: the model being trained (and its optional ``torch.compile`` wrapper), its AdamW
optimiser, learning-rate scheduler and fp16 gradient scaler, the update counter
(``policy_version``), the entropy-cost schedule, and, when ``replay.enabled``, the prioritized
replay of unrolls (:class:`learner.replay.PrioritizedReplay`) that is mixed into each batch. No I/O.
Batches are built by :mod:`learner.collate` and split by :mod:`learner.batching`; the return
targets come from :mod:`learner.targets`.

Truncation (a time limit, not a real end) is bootstrapped rather than zeroed: at a truncated
step t the recursion is cut (discount 0) and the reward becomes
``r_t + gamma * V(final observation)`` with V from the current network, which gives exactly
the one-step target the episode would have had (:func:`learner.targets.bootstrap_inputs`).
Only termination zeroes the bootstrap.

Replay (Schaul et al. 2016 over whole unrolls; replayed unrolls are off-policy data, which
V-trace corrects): each :meth:`Learner.step` trains on :attr:`Learner.fresh_per_step` fresh
unrolls plus ``batch_size - fresh_per_step`` sampled ones (once the replay holds
``replay.min_size``), the replayed part of the loss scaled by the importance-sampling weights;
afterwards the sampled unrolls get new priorities (mean ``|v_s - V(x_s)|`` over the unroll, from
this update's forward pass) and every fresh unroll is pushed with its own such priority.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from configs.schema import Config
from learner import batching, losses, schedules
from learner.collate import Batch, collate, last_actions
from learner.replay import PrioritizedReplay, ReplaySample
from learner.targets import bootstrap_inputs, return_targets
from models import build_model
from protocol.messages import Trajectory, TrajectorySpec

log = logging.getLogger(__name__)

AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""``learner.amp`` -> autocast dtype (``off`` runs float32 without autocast)."""

_COMPILED_PREFIX = "_orig_mod."  # what torch.compile's wrapper adds to state-dict keys

# per-micro-batch scalars, accumulated weighted by micro-batch size (order = stacked tensor)
_STAT_KEYS = (
    "loss/total",
    "loss/policy",
    "loss/baseline",
    "loss/entropy",
    "policy/mean_rho",
    "vtrace/mean_vs",
)


class PreparedBatch(NamedTuple):
    """An update's batch, collated and (for CUDA, asynchronously) on its way to the device:
    :meth:`Learner.prepare`'s result, :meth:`Learner.apply`'s input.

    Attributes:
        fresh: the update's fresh unrolls, in batch order (the first ``len(fresh)`` columns).
        batch: fresh then replayed unrolls, time-major on the learner's device.
        weights: [B] float32 per-unroll loss weights (1 for fresh, IS weights for replayed),
            or None without replay.
        sample: the replayed part (slots and push ids for the priority update), or None.
        beta: the IS exponent the sample was drawn with (0.0 without replay).
    """

    fresh: list[Trajectory]
    batch: Batch
    weights: np.ndarray | None
    sample: ReplaySample | None
    beta: float


class Learner:
    """Owns the trained model, its optimiser, schedules and (optionally) the replay.

    :meth:`step` is one update from fresh unrolls (mixing in replay when enabled);
    :meth:`train_step` is one update on an already collated batch.

    Args:
        config: the run's config (learner and replay hyperparameters, model shape, frame
            budget for the schedules).
        obs_shape: one observation's shape.
        num_actions: size of the discrete action set.
        device: torch device for the model and batches.
        obs_dtype: observation dtype of the trajectories, as :func:`envs.spec.observation_spec`.

    Raises:
        ValueError: as :func:`models.build_model` for a model that does not fit.
    """

    def __init__(
        self,
        config: Config,
        obs_shape: tuple[int, ...],
        num_actions: int,
        device: str,
        obs_dtype: np.dtype | type | str,
    ) -> None:
        lc, rc = config.learner, config.replay
        self.config = config
        self.device = torch.device(device)
        self.model = build_model(config.model, obs_shape, num_actions).to(self.device)
        # The compiled wrapper shares the parameters of self.model, which stays the plain module:
        # state dicts, weight publishing and checkpoints never see the "_orig_mod." prefix.
        self.train_model: torch.nn.Module = torch.compile(self.model) if lc.compile else self.model
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=lc.learning_rate,
            eps=lc.adam_eps,
            weight_decay=lc.weight_decay,
        )
        self._fresh_per_step = (
            batching.fresh_per_step(lc.batch_size, rc.ratio) if rc.enabled else lc.batch_size
        )
        # only fresh unrolls spend the frame budget (replayed ones were counted on arrival)
        self.frames_per_update = (
            self._fresh_per_step * config.actor.unroll_length * config.env.frames_per_step
        )
        self.total_updates = schedules.total_updates(
            config.run.total_env_frames, self.frames_per_update
        )
        # a closure (not a bound method) so LambdaLR.state_dict() stores no function state
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda update: self.lr_factor(update)
        )
        self.amp_dtype = AMP_DTYPES.get(lc.amp)
        # fp16 needs loss scaling (its 5-bit exponent underflows small gradients); bf16 has
        # float32's exponent range and does not
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=lc.amp == "fp16")
        self.spec = TrajectorySpec.for_run(config, self.model, obs_dtype)
        """The run's unroll layout and value limits: the server validates arrivals with it."""
        self.replay: PrioritizedReplay | None = None
        self.replay_lock = threading.Lock()
        """Held around every replay read or write, so :meth:`prepare` may run on a thread of
        its own (the sum tree and storage are not thread-safe)."""
        if rc.enabled:
            self.replay = PrioritizedReplay(
                self.spec, rc.capacity, rc.alpha, rc.beta, rc.eps, seed=config.run.seed
            )
        self.updates = 0

    # -- properties and schedules -----------------------------------------------------------

    @property
    def policy_version(self) -> int:
        """Version of the current weights: the number of updates applied so far."""
        return self.updates

    @property
    def fresh_per_step(self) -> int:
        """Fresh unrolls one :meth:`step` consumes: ``batch_size`` without replay, else
        ``max(1, round(batch_size * (1 - replay.ratio)))`` (see
        :func:`learner.batching.fresh_per_step`)."""
        return self._fresh_per_step

    def lr_factor(self, update: int) -> float:
        """Multiplier of ``learner.learning_rate`` for 0-based update ``update``
        (:func:`learner.schedules.lr_factor` over :attr:`total_updates`)."""
        lc = self.config.learner
        return schedules.lr_factor(
            update, self.total_updates, lc.lr_schedule, lc.warmup_updates, lc.min_lr_ratio
        )

    def entropy_cost_at(self, update: int) -> float:
        """Entropy-bonus weight for 0-based update ``update``: linear from
        ``learner.entropy_cost`` to ``learner.entropy_cost_final`` over :attr:`total_updates`."""
        lc = self.config.learner
        return schedules.entropy_cost(
            update, self.total_updates, lc.entropy_cost, lc.entropy_cost_final
        )

    # -- updates ----------------------------------------------------------------------------

    def step(self, fresh: Sequence[Trajectory], progress: float) -> dict[str, float]:
        """One update from ``fresh`` unrolls, mixed with replayed ones when replay is enabled:
        ``apply(prepare(fresh, progress))``.

        Without replay: ``train_step(collate(fresh))``. With replay (Schaul et al. 2016,
        Algorithm 1, per unroll): sample ``batch_size - len(fresh)`` unrolls with
        ``beta = beta_at(progress)`` (once the replay holds ``replay.min_size``), train on
        fresh + replayed with per-unroll loss weights (1 for fresh, the IS weights for
        replayed), write the replayed unrolls' new priorities (mean ``|v_s - V(x_s)|``), then
        push every fresh unroll with its own priority. Fresh unrolls are pushed after sampling,
        so an update never draws the unrolls it was just given.

        Args:
            fresh: exactly :attr:`fresh_per_step` validated trajectories.
            progress: fraction of the frame budget spent (env frames / total), for beta;
                clipped to [0, 1].

        Returns:
            :meth:`train_step`'s metrics, plus with replay the ``replay/*`` figures of
            :meth:`PrioritizedReplay.metrics` and ``replay/beta``, ``replay/replayed_fraction``
            (replayed / batch), ``replay/is_weight_mean`` (over the batch, fresh = 1) and
            ``replay/nonfinite_priorities`` (unrolls whose new priority was not finite and was
            left unchanged, or pushed at the maximum).

        Raises:
            ValueError: ``len(fresh) != fresh_per_step``, ``progress`` not finite, or a
                trajectory that does not match the replay's spec.
        """
        return self.apply(self.prepare(fresh, progress))

    def prepare(
        self, fresh: Sequence[Trajectory], progress: float, pin_memory: bool = False
    ) -> PreparedBatch:
        """The first half of :meth:`step`: sample the replayed part and collate the batch.

        Safe on another thread than :meth:`apply` (:class:`learner.pipeline.BatchPrefetcher`
        runs it beside the previous update): it touches the model not at all and the replay
        only under :attr:`replay_lock`. A batch prepared before the previous update was
        applied misses that update's priorities and pushes: its sample is one update older,
        which the replay's ``push_ids`` keep harmless (a slot evicted meanwhile keeps its new
        unroll's priority).

        Args:
            fresh: exactly :attr:`fresh_per_step` validated trajectories.
            progress: fraction of the frame budget spent, for beta.
            pin_memory: collate into page-locked memory (CUDA devices; see
                :func:`learner.collate.collate`).

        Raises:
            ValueError: as :meth:`step`.
        """
        if len(fresh) != self._fresh_per_step:
            raise ValueError(
                f"fresh: expected {self._fresh_per_step} unrolls (Learner.fresh_per_step), "
                f"got {len(fresh)}"
            )
        if not np.isfinite(progress):
            raise ValueError(f"progress: must be finite, got {progress}")
        fresh = list(fresh)
        if self.replay is None:
            return PreparedBatch(fresh, collate(fresh, self.device, pin_memory), None, None, 0.0)
        replay = self.replay
        with self.replay_lock:
            beta = replay.beta_at(progress)
            n_replay = self.config.learner.batch_size - len(fresh)
            sample = None
            if n_replay > 0 and len(replay) >= max(1, self.config.replay.min_size):
                sample = replay.sample(n_replay, beta)
        trajectories = fresh if sample is None else [*fresh, *sample.trajectories]
        weights = np.ones(len(trajectories), dtype=np.float32)
        if sample is not None:
            weights[len(fresh) :] = sample.weights
        batch = collate(trajectories, self.device, pin_memory)
        return PreparedBatch(fresh, batch, weights, sample, beta)

    def apply(self, prepared: PreparedBatch) -> dict[str, float]:
        """The second half of :meth:`step`: train on a prepared batch, then (with replay)
        write the replayed unrolls' priorities and push the fresh ones.

        Returns:
            As :meth:`step`.
        """
        if self.replay is None:
            return self.train_step(prepared.batch)
        replay, fresh, sample = self.replay, prepared.fresh, prepared.sample
        n_fresh, weights = len(fresh), prepared.weights
        assert weights is not None  # prepare() builds them whenever there is a replay
        metrics, priorities = self._update(prepared.batch, None if sample is None else weights)
        with self.replay_lock:
            if metrics["optim/skipped_nonfinite"]:
                # The batch overflowed: keep its fresh unrolls out of the replay (one of them is
                # likely the cause, and at the maximum priority it would be drawn again and
                # again) and leave the replayed unrolls' priorities as they were.
                metrics.update(replay.metrics())
                metrics["replay/dropped_nonfinite"] = float(n_fresh)
                return metrics
            pri = priorities.double().cpu().numpy()
            finite = np.isfinite(pri)  # e.g. an fp16 overflow: keep the old priority
            if sample is not None:
                ok = finite[n_fresh:]
                replay.update_priorities(sample.indices[ok], pri[n_fresh:][ok], sample.push_ids[ok])
            for traj, p, ok in zip(fresh, pri[:n_fresh].tolist(), finite[:n_fresh].tolist()):
                replay.push(traj, p if ok else None)  # None = the maximum stored priority
            metrics.update(replay.metrics())
        batch_size = prepared.batch.batch_size
        metrics["replay/beta"] = prepared.beta
        metrics["replay/replayed_fraction"] = (batch_size - n_fresh) / batch_size
        metrics["replay/is_weight_mean"] = float(weights.mean())
        metrics["replay/nonfinite_priorities"] = float((~finite).sum())
        return metrics

    def train_step(
        self, batch: Batch, weights: Tensor | np.ndarray | None = None
    ) -> dict[str, float]:
        """One actor-critic update on ``batch`` (V-trace or GAE targets per ``learner.returns``).

        The batch is split into ``learner.grad_accumulation`` micro-batches along B, each
        forward/backward under the configured autocast, with gradients accumulated
        (micro-batch losses weighted by their share of B, so the update equals the full-batch
        one), then clipped and applied in one optimiser step; the learning-rate scheduler then
        advances.

        Args:
            batch: collated unrolls.
            weights: optional [B] per-unroll loss weights (finite, >= 0), e.g. importance
                sampling weights; None = all 1.

        Returns:
            Scalar metrics: ``loss/total``, ``loss/policy``, ``loss/baseline``,
            ``loss/entropy``, ``policy/entropy``, ``policy/mean_rho``, ``optim/grad_norm``,
            ``optim/lr`` (the rate this update used), ``optim/entropy_cost``,
            ``optim/skipped_nonfinite`` (1.0 when the gradient norm was not finite and the
            optimiser step was skipped, leaving the weights unchanged, else 0.0),
            ``vtrace/mean_vs`` (mean value target, V-trace or GAE), and
            ``optim/grad_scale`` with fp16.

        Raises:
            ValueError: ``weights`` is not [B], or has a negative or non-finite entry.
        """
        metrics, _ = self._update(batch, weights)
        return metrics

    def _check_weights(self, weights: Tensor | np.ndarray | None, b: int) -> Tensor | None:
        if weights is None:
            return None
        w = torch.as_tensor(weights, dtype=torch.float32)
        if tuple(w.shape) != (b,):
            raise ValueError(f"weights: expected shape [B] = ({b},), got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError("weights: must be finite and >= 0")
        return w.to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _forward(
        self,
        obs: Tensor,
        core_state: Tensor | None = None,
        reset: Tensor | None = None,
        last_action: Tensor | None = None,
    ) -> Any:
        """The training model's :class:`models.PolicyOutput` under the autocast.

        ``obs`` [T+1, B, ...]; for a recurrent core also ``core_state`` [B, *state_shape] and
        ``reset`` [T+1, B] bool (zero the state before that step); for a model with the
        last-action input ``last_action`` int64 with ``obs``'s leading dims (other models
        ignore it).
        """
        with self._autocast():
            if self.model.state_shape == (0,):
                return self.train_model(obs, last_action=last_action)
            return self.train_model(obs, core_state, reset, last_action)

    def _final_values(self, batch: Batch, final_last: Tensor | None) -> Tensor:
        """V(final observation) [N] of truncated steps, no grad; ``final_last`` [N] int64 is
        each one's previous action (None without the last-action input).

        With a recurrent core the exact value would need the core state at that step, which
        the batch does not carry; the core runs one step from its initial (zero) state there,
        an approximation that only touches the rare time-limit truncations.
        """
        with torch.no_grad():
            if self.model.state_shape == (0,):
                return self._forward(batch.truncated_obs, last_action=final_last).value.float()
            n = batch.truncated_obs.shape[0]
            zeros = self.model.initial_state(n, device=self.device)
            last = None if final_last is None else final_last[None]
            out = self._forward(batch.truncated_obs[None], zeros, None, last)
            return out.value[0].float()

    def _losses(
        self, batch: Batch, weights: Tensor | None, entropy_cost: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(total loss, [len(_STAT_KEYS)] stats, [B] priorities) of one (micro-)batch."""
        lc = self.config.learner
        reset = None
        if self.model.state_shape != (0,):
            # the state is re-run over the unroll and zeroed after every episode end; the
            # actor zeroed it already before row 0 if the previous step ended an episode
            done = batch.terminated | batch.truncated
            reset = torch.cat([torch.zeros_like(done[:1]), done], dim=0)
        last_action = final_last = None
        if self.model.last_action:
            last_action, final_last = last_actions(batch, self.model.num_actions)
        out = self._forward(batch.obs, batch.initial_core_state, reset, last_action)
        # the model returns float32 logits and values even under autocast
        logits, values = out.logits[:-1], out.value[:-1]
        bootstrap_value = out.value[-1]
        final_values = None
        if batch.truncated_index.numel():
            final_values = self._final_values(batch, final_last)
        rewards, discounts = bootstrap_inputs(
            batch, final_values, lc.discount, lc.reward_scale, lc.reward_clip
        )
        target_log_probs = losses.action_log_probs(logits, batch.action)
        behaviour_log_probs = losses.action_log_probs(batch.behaviour_logits, batch.action)
        log_rhos = target_log_probs.detach() - behaviour_log_probs
        detached_values = values.detach()
        targets, pg_advantages = return_targets(
            lc, log_rhos, discounts, rewards, detached_values, bootstrap_value.detach()
        )
        pg_loss = losses.policy_gradient_loss(logits, batch.action, pg_advantages, weights)
        v_loss = losses.baseline_loss(values, targets, weights)
        ent_loss = losses.entropy_loss(logits, weights)
        total = pg_loss + lc.baseline_cost * v_loss + entropy_cost * ent_loss
        stats = torch.stack(
            [
                total.detach(),
                pg_loss.detach(),
                v_loss.detach(),
                ent_loss.detach(),
                log_rhos.exp().mean(),
                targets.mean(),
            ]
        )
        priorities = (targets - detached_values).abs().mean(0)
        return total, stats, priorities

    def _update(
        self, batch: Batch, weights: Tensor | np.ndarray | None
    ) -> tuple[dict[str, float], Tensor]:
        """One optimiser step; returns (metrics, [B] float32 priorities mean |target - V|)."""
        lc = self.config.learner
        b = batch.batch_size
        w = self._check_weights(weights, b)
        entropy_cost = self.entropy_cost_at(self.updates)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.model.train()
        reset_noise = getattr(self.model, "reset_noise", None)
        if callable(reset_noise):
            reset_noise()  # NoisyNet heads: one noise sample per update, shared by micro-batches
        self.optimizer.zero_grad(set_to_none=True)
        stats_sum: Tensor | None = None
        priorities = []
        for lo, hi in batching.micro_bounds(b, lc.grad_accumulation):
            micro = batching.slice_batch(batch, lo, hi)
            total, stats, micro_priorities = self._losses(
                micro, None if w is None else w[lo:hi], entropy_cost
            )
            share = (hi - lo) / b  # each micro loss is a mean over its columns
            self.scaler.scale(total * share).backward()
            stats_sum = stats * share if stats_sum is None else stats_sum + stats * share
            priorities.append(micro_priorities)
        self.scaler.unscale_(self.optimizer)  # no-op without fp16
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), lc.max_grad_norm)
        # A non-finite gradient (e.g. a finite but huge reward such as 3e38 overflowing the
        # loss) would make every weight NaN for good, and they would be published and
        # checkpointed: skip the step instead. fp16's scaler does the same for its overflows.
        skipped = not bool(torch.isfinite(grad_norm))
        if skipped and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.scaler.step(self.optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()
        self.scheduler.step()
        self.updates += 1
        assert stats_sum is not None  # micro_bounds returns at least one range
        metrics = dict(zip(_STAT_KEYS, stats_sum.tolist()))
        metrics["policy/entropy"] = -metrics["loss/entropy"]
        metrics["optim/grad_norm"] = float(grad_norm)
        metrics["optim/skipped_nonfinite"] = float(skipped)
        metrics["optim/lr"] = lr
        metrics["optim/entropy_cost"] = entropy_cost
        if self.scaler.is_enabled():
            metrics["optim/grad_scale"] = float(self.scaler.get_scale())
        return metrics, torch.cat(priorities)

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimiser, lr scheduler, fp16 grad
        scaler, update count and torch RNG. Model keys are plain (no ``_orig_mod.``) whether or
        not the model is compiled. The replay is separate: :meth:`replay_state_dict`."""
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),  # {} unless fp16
            "updates": self.updates,
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (also older checkpoints without scheduler/scaler,
        and model keys carrying torch.compile's ``_orig_mod.`` prefix).

        Raises:
            KeyError / RuntimeError: the state does not fit this model (wrong architecture).
        """
        model_state = {
            key.removeprefix(_COMPILED_PREFIX): value for key, value in state["model"].items()
        }
        self.model.load_state_dict(model_state)
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        else:
            # a checkpoint from before the schedules: put the schedule at the restored update
            self.scheduler.last_epoch = self.updates
            for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base * self.lr_factor(self.updates)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def replay_state_dict(self) -> dict[str, Any] | None:
        """The replay's state (:meth:`PrioritizedReplay.state_dict`) with every numpy array
        turned into a CPU tensor, so ``torch.save`` writes it and ``torch.load(weights_only=
        True)`` reads it back (no pickled objects); None without replay.

        The tensors share memory with the live buffers (GBs for a full Mario replay): save
        them before the next :meth:`step`.
        """
        if self.replay is None:
            return None
        return {
            key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            for key, value in self.replay.state_dict().items()
        }

    def load_replay_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the replay from :meth:`replay_state_dict` (tensors or numpy arrays).

        Raises:
            ValueError: replay is disabled in this config, or the state does not fit it
                (version, spec, capacity; see :meth:`PrioritizedReplay.load_state_dict`).
        """
        if self.replay is None:
            raise ValueError("replay: replay.enabled is false; there is no replay to restore")
        self.replay.load_state_dict(
            {
                key: value.cpu().numpy() if isinstance(value, Tensor) else value
                for key, value in state.items()
            }
        )
