"""Policy/value networks shared by the actors (CPU inference) and the learner (training).

Run by: the actor processes and the learner; both call :func:`build_model` with the same
resolved ``model`` config, observation shape and action count so their ``state_dict``s match.
Owns: the mapping from ``ModelConfig`` to a concrete network and its validation.
"""

from __future__ import annotations

from configs.schema import ModelConfig
from models.actor_critic import ActorCritic, PolicyOutput
from models.torsos import MLP, ImpalaResNet, NatureCNN, Torso

__all__ = ["ActorCritic", "PolicyOutput", "build_model"]


def build_model(cfg: ModelConfig, obs_shape: tuple[int, ...], num_actions: int) -> ActorCritic:
    """Build the :class:`ActorCritic` described by ``cfg`` for one environment.

    Args:
        cfg: the ``model`` config section (``torso``, ``hidden_size``, ``mlp_layers``).
        obs_shape: per-sample observation shape: ``(C, H, W)`` for the image torsos
            (``impala``, ``nature``; uint8 pixels), ``(D,)`` for ``mlp`` (float vectors).
        num_actions: size of the discrete action space (>= 1).

    Returns:
        A freshly initialised model on the CPU, in training mode.

    Raises:
        ValueError: if the torso is unknown, the observation shape does not suit it (the
            message names ``model.torso`` and the shape), or ``num_actions < 1``.
    """
    shape = tuple(int(d) for d in obs_shape)
    torso: Torso
    if cfg.torso == "mlp":
        if len(shape) != 1:
            raise ValueError(
                f"model.torso = 'mlp' needs a 1-D (D,) observation shape, got obs shape {shape}; "
                "use model.torso = 'impala' or 'nature' for (C, H, W) images"
            )
        torso = MLP(shape, cfg.hidden_size, cfg.mlp_layers)
    elif cfg.torso in ("impala", "nature"):
        if len(shape) != 3:
            raise ValueError(
                f"model.torso = {cfg.torso!r} needs a 3-D (C, H, W) observation shape, got obs "
                f"shape {shape}; use model.torso = 'mlp' for flat vector observations"
            )
        cls = ImpalaResNet if cfg.torso == "impala" else NatureCNN
        try:
            torso = cls(shape, cfg.hidden_size)
        except ValueError as exc:  # e.g. an image too small for the NatureCNN kernels
            raise ValueError(f"model.torso = {cfg.torso!r}, obs shape {shape}: {exc}") from exc
    else:
        raise ValueError(
            f"model.torso: unknown torso {cfg.torso!r} (expected impala, nature or mlp); "
            f"obs shape {shape}"
        )
    if num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    return ActorCritic(torso, num_actions)
