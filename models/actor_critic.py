"""The actor-critic network: a torso, an optional recurrent/memory core, and policy-logit and
value (baseline) heads.

Run by: the actor processes (CPU inference through :meth:`ActorCritic.act` on ``[B, ...]``
observation batches, carrying each env's core state) and the learner (training through
:meth:`ActorCritic.forward` on time-major ``[T+1, B, ...]`` unroll batches, starting from the
core state recorded at the unroll's start). Weights travel between them as ``state_dict``s, so
both must build the model the same way, via :func:`models.build_model`.
Owns: the head architecture and initialisation, the :class:`PolicyOutput` contract (shapes and
dtypes the V-trace loss consumes), the core-state / reset contract, leading-dim handling, noise
control and action sampling.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from models.cores import Core
from models.noisy import NoisyLinear
from models.torsos import Torso

__all__ = ["ActorCritic", "PolicyOutput", "cpu_has_native_bf16"]


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU has bf16 matrix instructions (AVX512-BF16 or AMX).

    Without them oneDNN emulates bf16 and is no faster than float32. Conservatively False on
    other architectures or if the (private) torch probes are missing.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


class PolicyOutput(NamedTuple):
    """What :meth:`ActorCritic.forward` returns.

    Attributes:
        logits: float32 ``[..., num_actions]`` unnormalised log-probabilities of the policy.
        value: float32 ``[...]`` state-value estimate V(s) (the V-trace baseline).
        core_state: float32 ``[B, *state_shape]``, the core state after the last step. For a
            feed-forward model (``state_shape == (0,)``) an empty ``[lead[-1], 0]`` tensor
            (``[0]`` for a single unbatched observation), so callers can treat every model
            alike. Defaults to None only for hand-built instances.
    """

    logits: Tensor
    value: Tensor
    core_state: Tensor | None = None


class ActorCritic(nn.Module):
    """Shared-torso actor-critic for discrete actions, as in IMPALA (Espeholt et al. 2018).

    ``torso`` maps ``[N, *obs_shape]`` to ``[N, hidden]`` features; an optional ``core``
    (:mod:`models.cores`: LSTM, GRU or gated transformer-XL) turns the time-major feature
    sequence into ``[T, B, core_size]`` features with memory; ``policy`` maps the result to
    ``num_actions`` logits and ``baseline`` to one value.

    Last-action input (``last_action=True``; IMPALA's, Espeholt et al. 2018, Fig. 3, without the
    reward): the torso features are concatenated with a one-hot of the previous action (A + 1
    slots; slot A = "none", an episode's first step) and mixed by one ReLU layer
    (``last_action_layer``, ``hidden -> hidden``) before the core and heads. It makes the policy
    see what it is still pressing where the screen cannot show it: in Super Mario Bros a held
    A does not jump again, so "right+A" jumps or runs depending on the previous action.

    Head initialisation: orthogonal weights, zero biases (Baselines/CleanRL convention); the
    policy head has gain 0.01 so the initial logits are ~0 and the initial policy is close to
    uniform (maximum entropy, so early exploration is not biased by a random init); the
    baseline head has gain 1.0 so initial values are O(1) rather than large. With ``noisy``
    both heads are :class:`models.noisy.NoisyLinear` (Fortunato et al. 2018) with the paper's
    initialisation instead (so the initial policy is *not* near uniform: the noise is the
    exploration).

    Recurrent state: each env's core state is ONE float32 tensor of shape :attr:`state_shape`
    (``(0,)`` without a core); :meth:`initial_state` is the episode-start state (zeros). The
    actor carries it between steps through :meth:`act` and records the state at the start of
    every unroll; the learner replays the unroll through :meth:`forward` from that state.

    CPU inference speed: image torsos keep their conv weights in ``channels_last`` (see
    :class:`models.torsos.ImageTorso`). Opt-in, :meth:`set_cpu_bf16_inference` additionally runs
    the torso under bfloat16 autocast when gradients are disabled on CPU (~1.3-1.4x faster on
    CPUs with native bf16; logits then differ from the learner's float32 ones by ~1e-3-1e-2 nats).
    The core and heads always run in float32.

    Attributes:
        obs_shape: per-sample observation shape, e.g. ``(4, 84, 84)`` or ``(4,)``.
        num_actions: size A of the discrete action space.
        cpu_bf16_inference: whether grad-free CPU forwards run the torso in bfloat16.
        noisy: whether the heads are NoisyLinear layers.
        last_action: whether :meth:`forward` and :meth:`act` take the previous actions.
        torso, core, policy, baseline: the sub-modules (their names fix the state_dict keys;
            ``core`` is None for a feed-forward model).
    """

    def __init__(
        self,
        torso: Torso,
        num_actions: int,
        core: Core | None = None,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
        last_action: bool = False,
    ) -> None:
        """Raises ValueError if ``num_actions < 1`` or ``core.input_size`` is not the torso's
        ``hidden_size``."""
        super().__init__()
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        if core is not None and core.input_size != torso.hidden_size:
            raise ValueError(
                f"core input size {core.input_size} != torso hidden size {torso.hidden_size}"
            )
        self.obs_shape: tuple[int, ...] = tuple(torso.obs_shape)
        self.num_actions: int = int(num_actions)
        self.cpu_bf16_inference: bool = False
        self.noisy: bool = bool(noisy)
        self.last_action: bool = bool(last_action)
        self.torso = torso
        self.core = core
        self.last_action_layer: nn.Module | None = None
        if self.last_action:
            hidden = torso.hidden_size
            self.last_action_layer = nn.Sequential(
                nn.Linear(hidden + self.num_actions + 1, hidden), nn.ReLU()
            )
        features = torso.hidden_size if core is None else core.output_size
        self.policy: nn.Module
        self.baseline: nn.Module
        if self.noisy:
            self.policy = NoisyLinear(features, self.num_actions, noisy_sigma0)
            self.baseline = NoisyLinear(features, 1, noisy_sigma0)
        else:
            self.policy = nn.Linear(features, self.num_actions)
            self.baseline = nn.Linear(features, 1)
            nn.init.orthogonal_(self.policy.weight, gain=0.01)
            nn.init.zeros_(self.policy.bias)
            nn.init.orthogonal_(self.baseline.weight, gain=1.0)
            nn.init.zeros_(self.baseline.bias)

    # -- core state -------------------------------------------------------------------------

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Per-env core state shape: ``(2, core_size)`` lstm (h, c), ``(1, core_size)`` gru,
        ``(window, layers * core_size + 1)`` transformer, ``(0,)`` without a core."""
        return (0,) if self.core is None else tuple(self.core.state_shape)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        """float32 zeros ``[batch_size, *state_shape]``: every env's state at an episode start."""
        return torch.zeros((int(batch_size), *self.state_shape), dtype=torch.float32, device=device)

    # -- noise ------------------------------------------------------------------------------

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Resample the noise of every :class:`NoisyLinear` layer (no-op without ``noisy``).

        The actor calls this once per unroll, the learner once per update.
        """
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.reset_noise(generator)

    def set_noise(self, enabled: bool) -> None:
        """Turn the NoisyLinear noise on (default) or off (greedy evaluation uses ``mu``)."""
        for module in self.modules():
            if isinstance(module, NoisyLinear):
                module.set_noise(enabled)

    # -- inference options ------------------------------------------------------------------

    def set_cpu_bf16_inference(self, enabled: bool) -> bool:
        """Run the torso under bfloat16 autocast in grad-free CPU forwards (actor inference).

        Only forwards with gradients disabled (``torch.inference_mode()`` / ``no_grad``) on CPU
        tensors are affected, so training is always float32; the core and heads stay float32
        and the outputs are float32 either way. Requests are ignored (returns False) on CPUs
        without native bf16 support (AVX512-BF16 / AMX), where emulated bf16 is slower.

        Returns:
            Whether bf16 inference is now enabled.
        """
        self.cpu_bf16_inference = bool(enabled) and cpu_has_native_bf16()
        return self.cpu_bf16_inference

    # -- forward ----------------------------------------------------------------------------

    def _leading_shape(self, obs: Tensor) -> torch.Size:
        nd = len(self.obs_shape)
        if obs.dim() < nd or tuple(obs.shape[obs.dim() - nd :]) != self.obs_shape:
            raise ValueError(
                f"expected observations of shape [..., {', '.join(map(str, self.obs_shape))}], "
                f"got {tuple(obs.shape)}"
            )
        return obs.shape[: obs.dim() - nd]

    def _torso(self, flat: Tensor) -> Tensor:
        if self.cpu_bf16_inference and flat.device.type == "cpu" and not torch.is_grad_enabled():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                features = self.torso(flat)
            return features.float()
        return self.torso(flat)

    def _mix_last_action(self, features: Tensor, last_action: Tensor | None, lead: tuple) -> Tensor:
        """``[N, hidden]`` torso features -> ``[N, hidden]`` with the previous action mixed in."""
        if self.last_action_layer is None:
            return features
        if last_action is None or tuple(last_action.shape) != tuple(lead):
            got = None if last_action is None else tuple(last_action.shape)
            raise ValueError(
                f"last_action: this model takes the previous actions (model.last_action), "
                f"expected an int64 tensor of shape {list(lead)}, got {got}"
            )
        one_hot = nn.functional.one_hot(last_action.reshape(-1).long(), self.num_actions + 1)
        return self.last_action_layer(torch.cat([features.float(), one_hot.float()], dim=-1))

    def forward(
        self,
        obs: Tensor,
        core_state: Tensor | None = None,
        reset: Tensor | None = None,
        last_action: Tensor | None = None,
    ) -> PolicyOutput:
        """Policy logits, values and the final core state.

        Args:
            obs: uint8 pixels (0-255) for the image torsos, float vectors for the mlp torso.
                Without a core: ``[..., *obs_shape]`` with any leading dims (the learner passes
                time-major ``[T+1, B, ...]``, the actor ``[B, ...]``, a single observation has
                none). With a core: exactly time-major ``[T, B, *obs_shape]``.
            core_state: float32 ``[B, *state_shape]``, the state before step 0; None = the
                initial (zero) state. Ignored without a core.
            reset: bool ``[T, B]``; ``reset[t, b]`` = env ``b``'s episode starts at step ``t``:
                its state is zeroed before step ``t`` is processed. None = no resets. Ignored
                without a core.
            last_action: int64 with ``obs``'s leading dims: the action before each observation,
                A (:attr:`num_actions`) at an episode's first step. Required with
                :attr:`last_action`, ignored otherwise.

        Returns:
            :class:`PolicyOutput`: float32 ``logits [..., A]``, ``value [...]`` and
            ``core_state`` ``[B, *state_shape]`` after the last step (an empty ``[lead[-1], 0]``
            tensor without a core).

        Raises:
            ValueError: wrongly shaped ``obs``, ``core_state`` or ``reset`` (with a core,
                ``obs`` must have exactly two leading dims), or a missing or wrongly shaped
                ``last_action`` for a model with the last-action input.
            TypeError: ``core_state`` or ``reset`` is not a tensor (e.g. a bool passed
                positionally by a caller of the old ``act(obs, greedy, generator)``).
        """
        _check_tensor("core_state", core_state)
        _check_tensor("reset", reset)
        lead = self._leading_shape(obs)
        if self.core is None:
            features = self._torso(obs.reshape(math.prod(lead), *self.obs_shape))
            features = self._mix_last_action(features, last_action, tuple(lead))
            state_out = torch.zeros((*lead[-1:], 0), dtype=torch.float32, device=obs.device)
        else:
            if len(lead) != 2:
                raise ValueError(
                    "a model with a core expects time-major observations [T, B, "
                    f"{', '.join(map(str, self.obs_shape))}], got {tuple(obs.shape)}"
                )
            steps, batch = lead
            if core_state is None:
                core_state = self.initial_state(batch, obs.device)
            flat = self._torso(obs.reshape(steps * batch, *self.obs_shape))
            flat = self._mix_last_action(flat, last_action, tuple(lead))
            out, state_out = self.core(
                flat.float().view(steps, batch, -1),
                core_state,
                None if reset is None else reset.bool(),
            )
            features = out.reshape(steps * batch, -1)
        logits = self.policy(features).float()
        value = self.baseline(features).float()
        return PolicyOutput(
            logits=logits.reshape(*lead, self.num_actions),
            value=value.reshape(lead),
            core_state=state_out,
        )

    def act(
        self,
        obs: Tensor,
        core_state: Tensor | None = None,
        reset: Tensor | None = None,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        last_action: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Choose actions for one agent step of a batch of envs.

        Actors should call this under ``torch.inference_mode()``.

        Args:
            obs: ``[B, *obs_shape]`` (without a core any leading dims work, as in
                :meth:`forward`).
            core_state: float32 ``[B, *state_shape]`` before this step; None = initial state.
            reset: bool ``[B]``: env ``b`` starts a new episode at this observation (its state
                is zeroed first). None = no resets.
            greedy: take ``argmax`` of the logits instead of sampling.
            generator: optional RNG for the sampling (for reproducible actors).
            last_action: int64 ``[B]`` (``obs``'s leading dims): each env's previous action,
                A at an episode start. Required with :attr:`last_action`, ignored otherwise.

        Returns:
            ``(action, logits, core_state)``: int64 ``[B]`` actions drawn from
            Categorical(logits) (or its mode when ``greedy``), the float32 ``[B, A]`` logits
            they came from (the behaviour policy ``mu`` that V-trace needs), and the float32
            ``[B, *state_shape]`` state after this step (``[B, 0]`` without a core).

        Raises:
            ValueError / TypeError: as for :meth:`forward`; with a core ``obs`` must be
            ``[B, *obs_shape]`` and ``reset`` ``[B]``.
        """
        _check_tensor("core_state", core_state)
        _check_tensor("reset", reset)
        if self.core is None:
            out = self.forward(obs, last_action=last_action)
            logits = out.logits
        else:
            if obs.dim() != len(self.obs_shape) + 1:
                raise ValueError(
                    "act with a core expects one step of observations [B, "
                    f"{', '.join(map(str, self.obs_shape))}], got {tuple(obs.shape)}"
                )
            if reset is not None and tuple(reset.shape) != (obs.shape[0],):
                raise ValueError(f"reset must be [B] = [{obs.shape[0]}], got {tuple(reset.shape)}")
            out = self.forward(
                obs.unsqueeze(0),
                core_state,
                None if reset is None else reset.view(1, -1),
                None if last_action is None else last_action.unsqueeze(0),
            )
            logits = out.logits[0]
        assert out.core_state is not None
        flat = logits.reshape(-1, self.num_actions)
        if greedy:
            action = flat.argmax(dim=-1)
        else:
            # multinomial on softmax: same distribution as Categorical(logits=...).sample()
            # without the distribution object's Python-side argument validation overhead.
            probs = torch.softmax(flat, dim=-1)
            action = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return action.reshape(logits.shape[:-1]), logits, out.core_state


def _check_tensor(name: str, value: object) -> None:
    if value is not None and not isinstance(value, Tensor):
        raise TypeError(
            f"{name} must be a Tensor or None, got {type(value).__name__}; note act's signature "
            "is act(obs, core_state=None, reset=None, greedy=False, generator=None, "
            "last_action=None)"
        )
