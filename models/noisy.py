"""NoisyNet linear layers: learned, state-independent exploration noise in the weights.

Run by: the actor processes (noisy policy/value heads during CPU inference; they resample the
noise once per unroll) and the learner (training ``mu`` and ``sigma``; it resamples once per
update). Both hold the layers inside :class:`models.actor_critic.ActorCritic`.
Owns: :class:`NoisyLinear` -- factorised Gaussian noise, its initialisation, resampling and the
switch that turns it off for greedy evaluation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["NoisyLinear"]


def _scaled_noise(size: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """``f(eps)`` with ``eps ~ N(0, 1)`` and ``f(x) = sgn(x) sqrt(|x|)`` (Fortunato et al.)."""
    eps = torch.randn(size, device=device, generator=generator)
    return eps.sign() * eps.abs().sqrt()


class NoisyLinear(nn.Module):
    """Linear layer with factorised Gaussian parameter noise (Fortunato et al. 2018, *Noisy
    Networks for Exploration*, Sec. 3 and 3.2).

    ``y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b`` (Sec. 3), with the factorised
    noise of Eq. 10-11: ``eps_w[j, i] = f(eps_out[j]) f(eps_in[i])`` and
    ``eps_b[j] = f(eps_out[j])``, ``f(x) = sgn(x) sqrt(|x|)``, ``eps_in ~ N(0, I_p)``,
    ``eps_out ~ N(0, I_q)``. So only ``p + q`` Gaussians are drawn per resample and
    ``eps_w`` is rank 1.

    Initialisation (Sec. 3.2, factorised case): every ``mu`` entry ~ U[-1/sqrt(p), 1/sqrt(p)]
    and every ``sigma`` entry = ``sigma0 / sqrt(p)``, with ``p = in_features``.

    Noise is applied in both ``train()`` and ``eval()`` mode -- it is the exploration policy
    (the NoisyNet-A3C actors act with it) -- until :meth:`set_noise` ``(False)`` makes the
    layer use ``mu`` alone (greedy evaluation). The noise vectors are non-persistent buffers:
    they follow ``.to(device)`` but are not in the ``state_dict``, so published weights carry
    only ``mu`` and ``sigma`` and each process draws its own noise.

    Input ``[..., in_features]`` float; output ``[..., out_features]`` of the same dtype.

    Attributes:
        weight_mu, weight_sigma: ``[out_features, in_features]`` parameters.
        bias_mu, bias_sigma: ``[out_features]`` parameters.
        eps_in, eps_out: the current ``f(eps)`` vectors, ``[in_features]`` / ``[out_features]``.
        noise_enabled: whether ``forward`` adds the noise.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        """Raises ValueError if a size is < 1 or ``sigma0 < 0``."""
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"NoisyLinear sizes must be >= 1, got ({in_features}, {out_features})")
        if sigma0 < 0:
            raise ValueError(f"NoisyLinear sigma0 must be >= 0, got {sigma0}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.sigma0 = float(sigma0)
        self.noise_enabled = True
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        """The paper's factorised-noise initialisation (Sec. 3.2)."""
        bound = 1.0 / math.sqrt(self.in_features)
        sigma = self.sigma0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(sigma)
            self.bias_sigma.fill_(sigma)

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw new ``eps_in``, ``eps_out`` (Eq. 10-11); ``generator`` for reproducibility."""
        device = self.weight_mu.device
        self.eps_in.copy_(_scaled_noise(self.in_features, device, generator))
        self.eps_out.copy_(_scaled_noise(self.out_features, device, generator))

    def set_noise(self, enabled: bool) -> None:
        """Turn the noise on (default) or off (``mu`` only, e.g. for greedy evaluation)."""
        self.noise_enabled = bool(enabled)

    @property
    def weight_epsilon(self) -> Tensor:
        """The current weight noise ``[out_features, in_features]`` (Eq. 10, rank 1)."""
        return torch.outer(self.eps_out, self.eps_in)

    def forward(self, x: Tensor) -> Tensor:
        """``[..., in_features]`` -> ``[..., out_features]``."""
        if not self.noise_enabled:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * self.weight_epsilon
        bias = self.bias_mu + self.bias_sigma * self.eps_out
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"sigma0={self.sigma0}, noise_enabled={self.noise_enabled}"
        )
