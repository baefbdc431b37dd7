"""The actor-critic network: a torso plus policy-logit and value (baseline) heads.

Run by: the actor processes (CPU inference through :meth:`ActorCritic.act` on ``[B, ...]``
observation batches) and the learner (training through :meth:`ActorCritic.forward` on
time-major ``[T+1, B, ...]`` unroll batches). Weights travel between them as ``state_dict``s, so
both must build the model the same way, via :func:`models.build_model`.
Owns: the head architecture and initialisation, the :class:`PolicyOutput` contract (shapes and
dtypes the V-trace loss consumes), leading-dim handling, and action sampling.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

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
    """What :meth:`ActorCritic.forward` returns for observations ``[..., *obs_shape]``.

    Attributes:
        logits: float32 ``[..., num_actions]`` unnormalised log-probabilities of the policy.
        value: float32 ``[...]`` state-value estimate V(s) (the V-trace baseline).
    """

    logits: Tensor
    value: Tensor


class ActorCritic(nn.Module):
    """Shared-torso actor-critic for discrete actions, as in IMPALA (Espeholt et al. 2018).

    ``torso`` maps ``[N, *obs_shape]`` to ``[N, hidden]`` features; ``policy`` is
    Linear(hidden, num_actions) and ``baseline`` is Linear(hidden, 1). (IMPALA's optional LSTM
    and last-action/reward inputs are not used: the Mario observations are 4 stacked frames.)

    Head initialisation: orthogonal weights, zero biases (Baselines/CleanRL convention); the
    policy head has gain 0.01 so the initial logits are ~0 and the initial policy is close to
    uniform (maximum entropy, so early exploration is not biased by a random init); the
    baseline head has gain 1.0 so initial values are O(1) rather than large.

    CPU inference speed: image torsos keep their conv weights in ``channels_last`` (see
    :class:`models.torsos.ImageTorso`). Opt-in, :meth:`set_cpu_bf16_inference` additionally runs
    the torso under bfloat16 autocast when gradients are disabled on CPU (~1.3-1.4x faster on
    CPUs with native bf16; logits then differ from the learner's float32 ones by ~1e-3-1e-2 nats).

    Attributes:
        obs_shape: per-sample observation shape, e.g. ``(4, 84, 84)`` or ``(4,)``.
        num_actions: size A of the discrete action space.
        cpu_bf16_inference: whether grad-free CPU forwards run the torso in bfloat16.
        torso, policy, baseline: the sub-modules (their names fix the state_dict keys).
    """

    def __init__(self, torso: Torso, num_actions: int) -> None:
        super().__init__()
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        self.obs_shape: tuple[int, ...] = tuple(torso.obs_shape)
        self.num_actions: int = int(num_actions)
        self.cpu_bf16_inference: bool = False
        self.torso = torso
        self.policy = nn.Linear(torso.hidden_size, self.num_actions)
        self.baseline = nn.Linear(torso.hidden_size, 1)
        nn.init.orthogonal_(self.policy.weight, gain=0.01)
        nn.init.zeros_(self.policy.bias)
        nn.init.orthogonal_(self.baseline.weight, gain=1.0)
        nn.init.zeros_(self.baseline.bias)

    def set_cpu_bf16_inference(self, enabled: bool) -> bool:
        """Run the torso under bfloat16 autocast in grad-free CPU forwards (actor inference).

        Only forwards with gradients disabled (``torch.inference_mode()`` / ``no_grad``) on CPU
        tensors are affected, so training is always float32; the heads stay float32 and the
        outputs are float32 either way. Requests are ignored (returns False) on CPUs without
        native bf16 support (AVX512-BF16 / AMX), where emulated bf16 is slower than float32.

        Returns:
            Whether bf16 inference is now enabled.
        """
        self.cpu_bf16_inference = bool(enabled) and cpu_has_native_bf16()
        return self.cpu_bf16_inference

    def _leading_shape(self, obs: Tensor) -> torch.Size:
        nd = len(self.obs_shape)
        if obs.dim() < nd or tuple(obs.shape[obs.dim() - nd :]) != self.obs_shape:
            raise ValueError(
                f"expected observations of shape [..., {', '.join(map(str, self.obs_shape))}], "
                f"got {tuple(obs.shape)}"
            )
        return obs.shape[: obs.dim() - nd]

    def forward(self, obs: Tensor) -> PolicyOutput:
        """Policy logits and value for a batch with any number of leading dims.

        Args:
            obs: ``[..., *obs_shape]``; uint8 pixels (0-255) for the image torsos, float
                vectors for the mlp torso. The learner passes time-major ``[T+1, B, ...]``,
                the actor ``[B, ...]``; zero leading dims (a single observation) also works.

        Returns:
            :class:`PolicyOutput` with float32 ``logits [..., A]`` and ``value [...]``.
        """
        lead = self._leading_shape(obs)
        flat = obs.reshape(math.prod(lead), *self.obs_shape)
        if self.cpu_bf16_inference and flat.device.type == "cpu" and not torch.is_grad_enabled():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                features = self.torso(flat)
            features = features.float()
        else:
            features = self.torso(flat)
        logits = self.policy(features).float()
        value = self.baseline(features).float()
        return PolicyOutput(
            logits=logits.reshape(*lead, self.num_actions), value=value.reshape(lead)
        )

    def act(
        self, obs: Tensor, greedy: bool = False, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Choose actions for ``obs [..., *obs_shape]``.

        Actors should call this under ``torch.inference_mode()``.

        Args:
            obs: observations as for :meth:`forward`.
            greedy: take ``argmax`` of the logits instead of sampling.
            generator: optional RNG for the sampling (for reproducible actors).

        Returns:
            ``(action, logits)``: int64 ``[...]`` actions drawn from Categorical(logits)
            (or its mode when ``greedy``) and the float32 ``[..., A]`` logits they came from
            (the behaviour policy ``mu`` that V-trace needs).
        """
        logits = self.forward(obs).logits
        flat = logits.reshape(-1, self.num_actions)
        if greedy:
            action = flat.argmax(dim=-1)
        else:
            # multinomial on softmax: same distribution as Categorical(logits=...).sample()
            # without the distribution object's Python-side argument validation overhead.
            probs = torch.softmax(flat, dim=-1)
            action = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return action.reshape(logits.shape[:-1]), logits
