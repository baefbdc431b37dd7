"""Tests for the model options: NoisyLinear heads (models/noisy.py), torso LayerNorm, the
defaults that keep the plain feed-forward model, and weight round trips for every option."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from configs.schema import ModelConfig
from models import ActorCritic, NoisyLinear, build_model
from models.torsos import ImpalaResNet, NatureCNN
from models.weights import WeightsMismatch, flatten_state, load_flat_state

A = 5
VEC = (6,)
SMALL_IMAGE = (2, 40, 40)


def obs_for(shape: tuple[int, ...], lead: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(shape) == 3:
        pixels = torch.rand((*lead, *shape), generator=g)
        brightness = torch.rand((*lead, 1, 1, 1), generator=g)
        return (pixels * brightness * 255).to(torch.uint8)
    return torch.randn((*lead, *shape), generator=g)


def make(seed: int = 0, shape: tuple[int, ...] = VEC, **kw: object) -> ActorCritic:
    torso = "mlp" if len(shape) == 1 else kw.pop("torso", "nature")
    base = ModelConfig(torso=str(torso), hidden_size=16, mlp_layers=2, core_size=12)
    torch.manual_seed(seed)
    return build_model(dataclasses.replace(base, **kw), shape, A)


# -- defaults --------------------------------------------------------------------------------


def test_defaults_build_the_plain_feed_forward_model() -> None:
    model = build_model(ModelConfig(), (4, 84, 84), A)
    assert model.core is None and model.state_shape == (0,)
    assert not any(isinstance(m, (NoisyLinear, torch.nn.LayerNorm)) for m in model.modules())
    assert isinstance(model.policy, torch.nn.Linear) and not model.noisy
    # The state_dict layout (what actors and checkpoints carry) is the one from before.
    assert list(model.state_dict()) == [
        f"{prefix}.{kind}"
        for prefix in (
            "torso.conv0",
            "torso.conv1",
            "torso.conv2",
            "torso.fc",
            "policy",
            "baseline",
        )
        for kind in ("weight", "bias")
    ]


# -- NoisyLinear -----------------------------------------------------------------------------


def test_noisy_linear_init_follows_the_paper() -> None:
    layer = NoisyLinear(64, 10, sigma0=0.4)
    bound = 1 / math.sqrt(64)
    for mu in (layer.weight_mu, layer.bias_mu):
        assert mu.abs().max() <= bound and mu.abs().max() > 0.8 * bound
    for sigma in (layer.weight_sigma, layer.bias_sigma):
        torch.testing.assert_close(sigma, torch.full_like(sigma, 0.4 / math.sqrt(64)))
    assert {name for name, _ in layer.named_parameters()} == {
        "weight_mu",
        "weight_sigma",
        "bias_mu",
        "bias_sigma",
    }


def test_noisy_linear_noise_is_factorised() -> None:
    """eps_w = f(eps_out) f(eps_in)^T (rank 1), eps_b = f(eps_out), f(x) = sgn(x) sqrt|x|, and
    forward uses mu + sigma * eps."""
    layer = NoisyLinear(2048, 2048)
    eps_w = layer.weight_epsilon
    assert eps_w.shape == (2048, 2048)
    assert torch.linalg.matrix_rank(eps_w[:64, :64]).item() == 1
    torch.testing.assert_close(eps_w, torch.outer(layer.eps_out, layer.eps_in))
    # f(eps)^2 = |eps| for eps ~ N(0, 1): mean sqrt(2 / pi); the sign is symmetric.
    for f_eps in (layer.eps_in, layer.eps_out):
        assert abs(f_eps.pow(2).mean().item() - math.sqrt(2 / math.pi)) < 0.05
        assert abs(f_eps.mean().item()) < 0.05
    small = NoisyLinear(3, 4)
    x = torch.randn(5, 3)
    weight = small.weight_mu + small.weight_sigma * torch.outer(small.eps_out, small.eps_in)
    bias = small.bias_mu + small.bias_sigma * small.eps_out
    torch.testing.assert_close(small(x), x @ weight.T + bias)


def test_noisy_linear_reset_and_disable() -> None:
    layer = NoisyLinear(8, 3)
    x = torch.randn(4, 8)
    a = layer(x)
    torch.testing.assert_close(layer(x), a)  # same noise until resampled
    layer.eval()  # noise stays on in eval mode
    layer.reset_noise()
    assert not torch.allclose(layer(x), a)
    layer.set_noise(False)
    mean = layer(x)
    torch.testing.assert_close(mean, x @ layer.weight_mu.T + layer.bias_mu)
    layer.reset_noise()
    torch.testing.assert_close(layer(x), mean)
    # A seeded generator makes the noise reproducible.
    layer.reset_noise(torch.Generator().manual_seed(3))
    eps = layer.eps_in.clone()
    layer.reset_noise(torch.Generator().manual_seed(3))
    assert torch.equal(layer.eps_in, eps)


@pytest.mark.parametrize("shape", [VEC, SMALL_IMAGE], ids=["mlp", "nature"])
def test_noisy_heads_in_the_model(shape: tuple[int, ...]) -> None:
    model = make(shape=shape, noisy=True, noisy_sigma0=0.3)
    assert isinstance(model.policy, NoisyLinear) and isinstance(model.baseline, NoisyLinear)
    assert model.policy.sigma0 == 0.3 and model.baseline.sigma0 == 0.3
    obs = obs_for(shape, (3, 4))
    with torch.no_grad():
        a = model(obs)
        model.reset_noise()
        b = model(obs)
    assert not torch.allclose(a.logits, b.logits)
    assert not torch.allclose(a.value, b.value)
    # Greedy evaluation: noise off, so the logits are deterministic.
    model.set_noise(False)
    with torch.no_grad():
        c = model(obs).logits
        model.reset_noise()
        _, logits, _ = model.act(obs[0], greedy=True)
    torch.testing.assert_close(logits, c[0])


def test_noisy_gradients_reach_mu_and_sigma() -> None:
    model = make(noisy=True)
    out = model(obs_for(VEC, (3, 4)))
    (torch.log_softmax(out.logits, -1)[..., 0].sum() + out.value.pow(2).sum()).backward()
    for head in (model.policy, model.baseline):
        for p in (head.weight_mu, head.weight_sigma, head.bias_mu, head.bias_sigma):
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_reset_noise_is_a_no_op_without_noisy() -> None:
    model = make()
    obs = obs_for(VEC, (4,))
    with torch.no_grad():
        a = model(obs).logits
        model.reset_noise()
        model.set_noise(False)
        assert torch.equal(model(obs).logits, a)


# -- LayerNorm -------------------------------------------------------------------------------


@pytest.mark.parametrize("torso", ["nature", "impala", "mlp"])
def test_layer_norm_is_present_and_in_effect(torso: str) -> None:
    shape = VEC if torso == "mlp" else SMALL_IMAGE
    with_ln = make(shape=shape, torso=torso, layer_norm=True)
    without = make(shape=shape, torso=torso)
    norms = [m for m in with_ln.torso.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == (2 if torso == "mlp" else 1)  # one per fully connected layer
    assert all(n.normalized_shape == (16,) for n in norms)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in without.modules())

    # In the forward path: the last norm's output is normalised per sample...
    captured: list[torch.Tensor] = []
    norms[-1].register_forward_hook(lambda _m, _i, out: captured.append(out))
    obs = obs_for(shape, (8,))
    with torch.no_grad():
        features = with_ln.torso(obs)
    (normed,) = captured
    torch.testing.assert_close(normed.mean(-1), torch.zeros(8), atol=1e-5, rtol=0)
    # (Not exactly 1: LayerNorm's eps = 1e-5 matters for the small pre-activations of 1/255-scaled
    # pixels.)
    torch.testing.assert_close(normed.var(-1, unbiased=False), torch.ones(8), atol=1e-2, rtol=0)
    # ... so the torso output is invariant to the scale of its last linear layer; without
    # LayerNorm it is not.
    for model in (with_ln, without):
        last = [m for m in model.torso.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            before = model.torso(obs)
            last.weight.mul_(10.0)
            last.bias.mul_(10.0)
            after = model.torso(obs)
        same = torch.allclose(before, after, atol=1e-2 * before.abs().max().item())
        assert same == (model is with_ln)
    assert features.shape == (8, 16)


def test_layer_norm_keeps_the_uint8_and_channels_last_paths() -> None:
    torch.manual_seed(0)
    fast = ActorCritic(ImpalaResNet(SMALL_IMAGE, 16, channels_last=True, layer_norm=True), A)
    plain = ActorCritic(ImpalaResNet(SMALL_IMAGE, 16, channels_last=False, layer_norm=True), A)
    plain.load_state_dict(fast.state_dict())
    obs = obs_for(SMALL_IMAGE, (2, 3))
    with torch.no_grad():
        torch.testing.assert_close(fast(obs).logits, plain(obs).logits, rtol=1e-4, atol=1e-6)
        nature = ActorCritic(NatureCNN(SMALL_IMAGE, 16, layer_norm=True), A)
        torch.testing.assert_close(nature(obs).logits, nature(obs.float()).logits)


# -- weight round trips for every option ----------------------------------------------------

OPTIONS = {
    "lstm": {"core": "lstm"},
    "gru": {"core": "gru"},
    "transformer": {"core": "transformer", "transformer_window": 3, "transformer_heads": 2},
    "noisy": {"noisy": True},
    "layer_norm": {"layer_norm": True},
    "all": {"core": "lstm", "noisy": True, "layer_norm": True},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("via", ["torch_save", "wire"])
def test_round_trip(option: str, via: str) -> None:
    """Learner weights loaded by an actor give identical outputs (torch.save, and the flat
    float32 vector the learner publishes). Noise is per process, not part of the weights."""
    src, dst = make(0, **OPTIONS[option]), make(123, **OPTIONS[option])
    assert not any("eps" in key for key in src.state_dict())
    obs = obs_for(VEC, (3, 2))
    with torch.no_grad():
        assert not torch.equal(src(obs).logits, dst(obs).logits), "seeds should differ"
        if via == "torch_save":
            buf = io.BytesIO()
            torch.save(src.state_dict(), buf)
            buf.seek(0)
            dst.load_state_dict(torch.load(buf, weights_only=True))
        else:
            layout, flat = flatten_state(src)
            assert flat.dtype == np.float32
            load_flat_state(dst, layout, flat)
        for model in (src, dst):
            model.reset_noise(torch.Generator().manual_seed(5))
        a, b = src(obs), dst(obs)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.value, b.value)
    assert torch.equal(a.core_state, b.core_state)


# -- last-action input -----------------------------------------------------------------------
@pytest.mark.parametrize("core", ["none", "lstm"])
def test_last_action_input_changes_the_policy_and_is_required(core: str) -> None:
    model = make(core=core, last_action=True)
    assert "last_action_layer.0.weight" in model.state_dict()
    assert model.state_dict()["last_action_layer.0.weight"].shape == (16, 16 + A + 1)
    obs = obs_for(VEC, (3, 2))  # [T, B] time-major works with and without a core
    previous = torch.tensor([[A, 0], [1, 4], [2, A]])  # A = "none": an episode's first step
    out = model(obs, last_action=previous)
    other = model(obs, last_action=(previous + 1) % (A + 1))
    assert out.logits.shape == (3, 2, A)
    assert not torch.allclose(out.logits, other.logits)  # the input reaches the heads
    with pytest.raises(ValueError, match="last_action"):
        model(obs)
    with pytest.raises(ValueError, match="last_action"):
        model(obs, last_action=previous[0])
    with torch.inference_mode():
        action, logits, _ = model.act(obs[0], last_action=previous[0])
    assert action.shape == (2,)
    torch.testing.assert_close(logits, out.logits[0])


def test_models_without_the_last_action_input_ignore_it() -> None:
    model = make()
    assert not any(k.startswith("last_action_layer") for k in model.state_dict())
    obs = obs_for(VEC, (2,))
    torch.testing.assert_close(model(obs).logits, model(obs, last_action=torch.ones(2)).logits)


def test_weights_that_do_not_fit_name_the_field_and_leave_the_model_unchanged() -> None:
    src, dst = make(0), make(1)
    before = [p.detach().clone() for p in dst.parameters()]
    layout, flat = flatten_state(src)
    with pytest.raises(WeightsMismatch, match="layout: bad_layout") as caught:
        load_flat_state(dst, [*layout[:-1], [layout[-1][0], [999]]], flat)
    assert caught.value.field == "layout" and caught.value.reason == "bad_layout"
    with pytest.raises(WeightsMismatch, match="flat: bad_shape"):
        load_flat_state(dst, layout, flat[:-1])
    assert all(torch.equal(a, b) for a, b in zip(before, dst.parameters()))
