"""Policy/value networks shared by the actors (CPU inference) and the learner (training).

Run by: the actor processes and the learner; both call :func:`build_model` with the same
resolved ``model`` config, observation shape and action count so their ``state_dict``s match.
Owns: the mapping from ``ModelConfig`` to a concrete network and its validation.
"""

from __future__ import annotations

from configs.schema import ModelConfig
from models.actor_critic import ActorCritic, PolicyOutput
from models.cores import Core, GatedTransformerCore, GRUCore, LSTMCore
from models.noisy import NoisyLinear
from models.torsos import MLP, ImpalaResNet, NatureCNN, Torso

__all__ = ["ActorCritic", "NoisyLinear", "PolicyOutput", "build_model"]


def build_model(cfg: ModelConfig, obs_shape: tuple[int, ...], num_actions: int) -> ActorCritic:
    """Build the :class:`ActorCritic` described by ``cfg`` for one environment.

    Args:
        cfg: the ``model`` config section: ``torso``, ``hidden_size``, ``mlp_layers``,
            ``layer_norm``, ``core``, ``core_size``, ``transformer_window``,
            ``transformer_layers``, ``transformer_heads``, ``noisy``, ``noisy_sigma0``,
            ``last_action``.
        obs_shape: per-sample observation shape: ``(C, H, W)`` for the image torsos
            (``impala``, ``nature``; uint8 pixels), ``(D,)`` for ``mlp`` (float vectors).
        num_actions: size of the discrete action space (>= 1).

    Returns:
        A freshly initialised model on the CPU, in training mode.

    Raises:
        ValueError: if the torso or core is unknown, the observation shape does not suit the
            torso (the message names ``model.torso`` and the shape), the transformer settings
            are inconsistent (names ``model.transformer_heads``), or ``num_actions < 1``.
    """
    shape = tuple(int(d) for d in obs_shape)
    torso: Torso
    if cfg.torso == "mlp":
        if len(shape) != 1:
            raise ValueError(
                f"model.torso = 'mlp' needs a 1-D (D,) observation shape, got obs shape {shape}; "
                "use model.torso = 'impala' or 'nature' for (C, H, W) images"
            )
        torso = MLP(shape, cfg.hidden_size, cfg.mlp_layers, layer_norm=cfg.layer_norm)
    elif cfg.torso in ("impala", "nature"):
        if len(shape) != 3:
            raise ValueError(
                f"model.torso = {cfg.torso!r} needs a 3-D (C, H, W) observation shape, got obs "
                f"shape {shape}; use model.torso = 'mlp' for flat vector observations"
            )
        cls = ImpalaResNet if cfg.torso == "impala" else NatureCNN
        try:
            torso = cls(shape, cfg.hidden_size, layer_norm=cfg.layer_norm)
        except ValueError as exc:  # e.g. an image too small for the NatureCNN kernels
            raise ValueError(f"model.torso = {cfg.torso!r}, obs shape {shape}: {exc}") from exc
    else:
        raise ValueError(
            f"model.torso: unknown torso {cfg.torso!r} (expected impala, nature or mlp); "
            f"obs shape {shape}"
        )
    if num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    return ActorCritic(
        torso,
        num_actions,
        core=_build_core(cfg, torso.hidden_size),
        noisy=cfg.noisy,
        noisy_sigma0=cfg.noisy_sigma0,
        last_action=cfg.last_action,
    )


def _build_core(cfg: ModelConfig, input_size: int) -> Core | None:
    """The core named by ``cfg.core`` (None for ``none``); errors name the ``model.*`` field."""
    if cfg.core == "none":
        return None
    if cfg.core == "lstm":
        return LSTMCore(input_size, cfg.core_size)
    if cfg.core == "gru":
        return GRUCore(input_size, cfg.core_size)
    if cfg.core == "transformer":
        if cfg.core_size % cfg.transformer_heads:
            raise ValueError(
                f"model.transformer_heads: {cfg.transformer_heads} heads do not divide "
                f"model.core_size = {cfg.core_size}"
            )
        return GatedTransformerCore(
            input_size,
            cfg.core_size,
            window=cfg.transformer_window,
            layers=cfg.transformer_layers,
            heads=cfg.transformer_heads,
        )
    raise ValueError(
        f"model.core: unknown core {cfg.core!r} (expected none, lstm, gru or transformer)"
    )
