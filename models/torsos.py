"""Feature extractors ("torsos") that map an observation batch to a flat feature vector.

Run by: the actor processes (CPU inference, one batch of ``actor.num_envs`` observations per
agent step) and the learner (training on time-major unroll batches). Both build the same torso
through :func:`models.build_model`, so parameter names and shapes match across processes.
Owns: the network architectures named by ``model.torso`` -- :class:`ImpalaResNet`,
:class:`NatureCNN` and :class:`MLP` -- their input conventions (uint8 images scaled inside
``forward``; float vectors) and the initialisation of their layers.

Every torso takes a batch with exactly one leading dim ``[N, *obs_shape]`` and returns
``[N, hidden_size]`` float32 features; :class:`models.actor_critic.ActorCritic` flattens any
other leading dims before calling it.

``layer_norm`` (``model.layer_norm``): every fully connected layer of a torso is followed by
LayerNorm (Ba et al. 2016) before its nonlinearity -- for the image torsos that is the one
``fc`` layer after the convolutions. Not in the conv stages, deliberately: normalising the
feature maps would add a full pass over the largest activations to every actor inference step
(and oneDNN's norms over ``channels_last`` maps are slow), while the problem LayerNorm is
there for -- the scale of the features fed to the heads/core drifting during training -- lives
in the flat feature vector, where normalising ``hidden_size`` numbers costs next to nothing.
Placed before the ReLU/Tanh so about half the units stay active whatever the input scale.
When off, the norm slot is an ``nn.Identity`` (no parameters, same ``state_dict`` as before).
"""

from __future__ import annotations

import math
import typing

import torch
from torch import Tensor, nn

__all__ = ["MLP", "ImageTorso", "ImpalaResNet", "NatureCNN", "Torso"]


def _conv_out(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Spatial size after a conv / pool layer (floor mode, no dilation)."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_image_shape(obs_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(obs_shape) != 3 or any(int(d) <= 0 for d in obs_shape):
        raise ValueError(f"image torsos need a (C, H, W) observation shape, got {obs_shape}")
    c, h, w = (int(d) for d in obs_shape)
    return c, h, w


class Torso(nn.Module):
    """Base class: ``forward([N, *obs_shape]) -> [N, hidden_size]`` float32 features.

    Attributes:
        obs_shape: the per-sample observation shape the torso was built for.
        hidden_size: width of the output feature vector.
    """

    obs_shape: tuple[int, ...]
    hidden_size: int

    def forward(self, obs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ImageTorso(Torso):
    """Base class of the convolutional torsos: uint8 ``[N, C, H, W]`` pixels in ``[0, 255]``.

    Input may be uint8 (as the env produces) or any float dtype holding the same raw
    ``[0, 255]`` values; it is converted to float32 and multiplied by 1/255 inside ``forward``.

    Memory format: when the conv weights are stored ``torch.channels_last`` (NHWC), ``forward``
    converts its input to that layout too (while still uint8, the cheapest point), so callers
    always pass ordinary contiguous NCHW tensors and get ordinary contiguous features back. The
    layout is read from the weights on every call, so ``model.to(memory_format=...)`` switches it
    at any time (e.g. a learner that prefers NCHW on its GPU); ``load_state_dict`` keeps it.
    Measured on one CPU thread at batch 8-16 (4x84x84), NHWC makes :class:`ImpalaResNet` ~2.8x
    faster (oneDNN's NCHW 3x3 max-pool and small-channel convs are slow) and is neutral for
    :class:`NatureCNN`, hence the per-class defaults.
    """

    def __init__(self, obs_shape: tuple[int, ...], hidden_size: int) -> None:
        super().__init__()
        self.obs_shape = _check_image_shape(obs_shape)
        self.hidden_size = int(hidden_size)

    def _first_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    @property
    def channels_last(self) -> bool:
        """Whether the conv weights (and so the activations) use ``torch.channels_last``."""
        weight = self._first_conv().weight
        return weight.is_contiguous(memory_format=torch.channels_last) and not (
            weight.is_contiguous()
        )

    def _set_layout(self, channels_last: bool) -> None:
        """Store the 4-D conv weights in the chosen memory format (end of ``__init__``)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.to(memory_format=fmt)

    def _prepare(self, obs: Tensor) -> Tensor:
        """uint8/float ``[N, C, H, W]`` in [0, 255] -> float32 in [0, 1], in the conv layout."""
        if obs.dim() != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"{type(self).__name__} expects [N, {', '.join(map(str, self.obs_shape))}] "
                f"observations, got {tuple(obs.shape)}"
            )
        if self.channels_last:
            # Convert while still uint8 (4x fewer bytes to shuffle than after the float cast).
            obs = obs.contiguous(memory_format=torch.channels_last)
        # Out of place: a float32 input must not be modified under the caller's feet.
        return obs.to(torch.float32).mul(1.0 / 255.0)


class _ResidualBlock(nn.Module):
    """``x + Conv3x3(ReLU(Conv3x3(ReLU(x))))`` with constant channel count (Espeholt et al.)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        # Not in-place: ``x`` is needed for the skip connection (and for autograd).
        out = self.conv0(torch.relu(x))
        out = self.conv1(torch.relu(out))
        return x + out


class _ImpalaStage(nn.Module):
    """Conv3x3 (s1, p1) -> MaxPool 3x3 (s2, p1) -> two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.res0 = _ResidualBlock(out_channels)
        self.res1 = _ResidualBlock(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaResNet(ImageTorso):
    """The IMPALA "deep" ResNet torso (Espeholt et al. 2018, *IMPALA*, Fig. 3 right).

    Three stages with (16, 32, 32) channels; each stage is Conv3x3 (stride 1, pad 1) ->
    MaxPool 3x3 (stride 2, pad 1) -> 2 x residual block (ReLU-Conv3x3-ReLU-Conv3x3 + skip).
    Then ReLU -> flatten -> Linear(hidden_size) -> [LayerNorm] -> ReLU. For 4x84x84 input the
    spatial size goes 84 -> 42 -> 21 -> 11, so the flattened feature has 32*11*11 = 3872
    entries. ``layer_norm`` adds the LayerNorm (see the module docstring for why only there).

    Input: uint8 (or float in [0, 255]) ``[N, C, H, W]``. Output: float32 ``[N, hidden_size]``.
    ``channels_last`` (default True, ~2.8x faster CPU inference) picks the conv memory format.

    Initialisation: PyTorch's default (Kaiming-uniform, a=sqrt(5)) for every layer, as in the
    reference PyTorch ports (TorchBeast, CleanRL). Its effective gain is < 1, which keeps the
    residual branches small relative to the skips so activations do not grow with depth;
    a gain-sqrt(2) orthogonal init would roughly double the variance at every residual add.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_size: int = 256,
        channels: tuple[int, ...] = (16, 32, 32),
        channels_last: bool = True,
        layer_norm: bool = False,
    ) -> None:
        super().__init__(obs_shape, hidden_size)
        c, h, w = self.obs_shape
        stages: list[nn.Module] = []
        for out_c in channels:
            stages.append(_ImpalaStage(c, out_c))
            c = out_c
            h, w = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)
        self.stages = nn.Sequential(*stages)
        self.flat_features = c * h * w
        self.fc = nn.Linear(self.flat_features, self.hidden_size)
        self.fc_norm: nn.Module = nn.LayerNorm(self.hidden_size) if layer_norm else nn.Identity()
        self._set_layout(channels_last)

    def _first_conv(self) -> nn.Conv2d:
        return typing.cast(_ImpalaStage, self.stages[0]).conv

    def forward(self, obs: Tensor) -> Tensor:
        """``[N, C, H, W]`` uint8 -> ``[N, hidden_size]`` float32 features."""
        x = self.stages(self._prepare(obs))
        # flatten() of an NHWC tensor copies it into NCHW order, so the fc weight layout is the
        # same whether or not channels_last is used (state dicts are interchangeable).
        x = torch.relu(x).flatten(1)
        return torch.relu(self.fc_norm(self.fc(x)))


class NatureCNN(ImageTorso):
    """The DQN torso (Mnih et al. 2015, *Human-level control through deep RL*, Nature).

    Conv 32 8x8 stride 4 -> ReLU -> Conv 64 4x4 stride 2 -> ReLU -> Conv 64 3x3 stride 1 ->
    ReLU -> flatten -> Linear(hidden_size) -> [LayerNorm] -> ReLU. For 84x84 input: 84 -> 20 ->
    9 -> 7, so the flattened feature has 64*7*7 = 3136 entries. ``layer_norm`` adds the
    LayerNorm (see the module docstring for why only there).

    Input: uint8 (or float in [0, 255]) ``[N, C, H, W]``. Output: float32 ``[N, hidden_size]``.
    ``channels_last`` (default False: NHWC measured no faster for this net) picks the layout.

    Initialisation: orthogonal with gain sqrt(2) (the ReLU gain), zero biases -- the OpenAI
    Baselines / CleanRL convention for this network.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_size: int = 256,
        channels_last: bool = False,
        layer_norm: bool = False,
    ) -> None:
        super().__init__(obs_shape, hidden_size)
        c, h, w = self.obs_shape
        for k, s in ((8, 4), (4, 2), (3, 1)):
            h, w = _conv_out(h, k, s), _conv_out(w, k, s)
        if h <= 0 or w <= 0:
            raise ValueError(f"NatureCNN needs H, W >= 36, got obs_shape {obs_shape}")
        self.conv0 = nn.Conv2d(c, 32, kernel_size=8, stride=4)
        self.conv1 = nn.Conv2d(32, 64, kernel_size=4, stride=2)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=1)
        self.flat_features = 64 * h * w
        self.fc = nn.Linear(self.flat_features, self.hidden_size)
        for layer in (self.conv0, self.conv1, self.conv2, self.fc):
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0))
            nn.init.zeros_(layer.bias)
        self.fc_norm: nn.Module = nn.LayerNorm(self.hidden_size) if layer_norm else nn.Identity()
        self._set_layout(channels_last)

    def _first_conv(self) -> nn.Conv2d:
        return self.conv0

    def forward(self, obs: Tensor) -> Tensor:
        """``[N, C, H, W]`` uint8 -> ``[N, hidden_size]`` float32 features."""
        x = self._prepare(obs)
        x = torch.relu(self.conv0(x))
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return torch.relu(self.fc_norm(self.fc(x.flatten(1))))


class MLP(Torso):
    """Fully connected torso for flat vector observations (e.g. CartPole's 4 floats).

    ``layers`` x (Linear(hidden_size) -> [LayerNorm if ``layer_norm``] -> Tanh). Input:
    ``[N, D]`` (any real dtype, cast to float32, not rescaled). Output: float32
    ``[N, hidden_size]``.

    Tanh rather than ReLU: it is the default of the standard actor-critic MLPs for
    low-dimensional control (Schulman et al. 2017 PPO; OpenAI Baselines, Stable-Baselines3,
    CleanRL), its bounded features are robust to unnormalised observation scales, and it has no
    dead units -- at these small widths a few dead ReLUs are a noticeable loss of capacity.
    Initialisation: orthogonal with gain sqrt(2), zero biases (same convention as above).
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        hidden_size: int = 256,
        layers: int = 2,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(obs_shape) != 1 or int(obs_shape[0]) <= 0:
            raise ValueError(f"MLP torso needs a 1-D (D,) observation shape, got {obs_shape}")
        if layers < 1:
            raise ValueError(f"MLP torso needs at least one layer, got {layers}")
        self.obs_shape = (int(obs_shape[0]),)
        self.hidden_size = int(hidden_size)
        mods: list[nn.Module] = []
        width = self.obs_shape[0]
        for _ in range(layers):
            linear = nn.Linear(width, self.hidden_size)
            nn.init.orthogonal_(linear.weight, gain=math.sqrt(2.0))
            nn.init.zeros_(linear.bias)
            mods.append(linear)
            if layer_norm:
                mods.append(nn.LayerNorm(self.hidden_size))
            mods.append(nn.Tanh())
            width = self.hidden_size
        self.net = nn.Sequential(*mods)

    def forward(self, obs: Tensor) -> Tensor:
        """``[N, D]`` -> ``[N, hidden_size]`` float32 features."""
        if obs.dim() != 2 or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"MLP expects [N, {self.obs_shape[0]}] observations, got {tuple(obs.shape)}"
            )
        return self.net(obs.to(torch.float32))
