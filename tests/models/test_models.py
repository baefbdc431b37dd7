"""Tests for models/: torsos, ActorCritic and build_model."""

from __future__ import annotations

import io
import math

import pytest
import torch

from configs.schema import ModelConfig
from models import ActorCritic, PolicyOutput, build_model
from models.actor_critic import cpu_has_native_bf16
from models.torsos import ImpalaResNet, NatureCNN

A = 7
IMAGE_SHAPE = (4, 84, 84)
SMALL_IMAGE_SHAPE = (2, 40, 40)  # smallest-ish shape NatureCNN accepts; keeps tests fast
VEC_SHAPE = (5,)

# (torso, obs_shape) combinations exercised by the shape/gradient/round-trip tests.
CASES = [
    ("impala", IMAGE_SHAPE),
    ("nature", IMAGE_SHAPE),
    ("impala", SMALL_IMAGE_SHAPE),
    ("nature", SMALL_IMAGE_SHAPE),
    ("mlp", VEC_SHAPE),
]
CASE_IDS = [f"{t}-{'x'.join(map(str, s))}" for t, s in CASES]


def make(torso: str, obs_shape: tuple[int, ...], hidden: int = 32, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return build_model(ModelConfig(torso=torso, hidden_size=hidden, mlp_layers=2), obs_shape, A)


def sample_obs(obs_shape: tuple[int, ...], lead: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(obs_shape) == 3:
        # Per-image brightness varies so that images differ in more than i.i.d. pixel noise
        # (which an untrained conv net averages away).
        pixels = torch.rand((*lead, *obs_shape), generator=g)
        brightness = torch.rand((*lead, 1, 1, 1), generator=g)
        return (pixels * brightness * 255).to(torch.uint8)
    return torch.randn((*lead, *obs_shape), generator=g)


@pytest.mark.parametrize(("torso", "obs_shape"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("lead", [(3,), (4, 3), ()], ids=["B", "TB", "single"])
def test_output_shapes_and_dtypes(
    torso: str, obs_shape: tuple[int, ...], lead: tuple[int, ...]
) -> None:
    model = make(torso, obs_shape)
    out = model(sample_obs(obs_shape, lead))
    assert isinstance(out, PolicyOutput)
    assert out.logits.shape == (*lead, A)
    assert out.value.shape == lead
    assert out.logits.dtype == torch.float32
    assert out.value.dtype == torch.float32
    assert out.logits.is_contiguous()
    action, logits, state = model.act(sample_obs(obs_shape, lead))
    assert state.shape == (*lead[-1:], 0)  # feed-forward: an empty state
    assert action.shape == lead
    assert action.dtype == torch.int64
    assert logits.shape == (*lead, A)
    assert ((action >= 0) & (action < A)).all()


@pytest.mark.parametrize(("torso", "obs_shape"), CASES, ids=CASE_IDS)
def test_time_major_matches_per_step(torso: str, obs_shape: tuple[int, ...]) -> None:
    """[T, B, ...] gives the same per-sample results as running each [B, ...] slice."""
    model = make(torso, obs_shape)
    obs = sample_obs(obs_shape, (3, 2))
    with torch.no_grad():
        full = model(obs)
        for t in range(3):
            step = model(obs[t])
            torch.testing.assert_close(full.logits[t], step.logits, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(full.value[t], step.value, rtol=1e-5, atol=1e-6)


def test_torso_feature_sizes() -> None:
    """The flattened conv features match the paper architectures for 84x84 input."""
    assert ImpalaResNet(IMAGE_SHAPE, 256).flat_features == 32 * 11 * 11
    assert NatureCNN(IMAGE_SHAPE, 256).flat_features == 64 * 7 * 7
    impala = ImpalaResNet(IMAGE_SHAPE, 256)
    convs = [m for m in impala.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 * 5  # per stage: 1 conv + 2 residual blocks x 2 convs
    assert [c.out_channels for c in convs[::5]] == [16, 32, 32]


@pytest.mark.parametrize("torso", ["impala", "nature"])
def test_uint8_matches_float(torso: str) -> None:
    """uint8 pixels == the same values as float; and the torso really divides by 255."""
    model = make(torso, SMALL_IMAGE_SHAPE)
    obs = sample_obs(SMALL_IMAGE_SHAPE, (3,))
    obs_f = obs.to(torch.float32)
    before = obs_f.clone()
    with torch.no_grad():
        out_u8 = model(obs)
        out_f = model(obs_f)
        torch.testing.assert_close(out_u8.logits, out_f.logits, rtol=0, atol=0)
        torch.testing.assert_close(out_u8.value, out_f.value, rtol=0, atol=0)
        assert torch.equal(obs_f, before), "forward must not modify a float input in place"

        # Reference: run the layers by hand on x / 255 (in plain NCHW layout).
        t = model.torso
        x = obs_f / 255.0
        if torso == "impala":
            assert isinstance(t, ImpalaResNet)
            h = torch.relu(t.stages(x)).flatten(1)
        else:
            assert isinstance(t, NatureCNN)
            h = torch.relu(t.conv2(torch.relu(t.conv1(torch.relu(t.conv0(x)))))).flatten(1)
        feats = torch.relu(t.fc(h))
        torch.testing.assert_close(out_u8.logits, model.policy(feats), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(
            out_u8.value, model.baseline(feats).squeeze(-1), rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("torso", ["impala", "nature"])
def test_channels_last_is_internal(torso: str) -> None:
    """channels_last and NCHW builds with the same weights give the same outputs."""
    cls = ImpalaResNet if torso == "impala" else NatureCNN
    torch.manual_seed(0)
    fast = ActorCritic(cls(SMALL_IMAGE_SHAPE, 32, channels_last=True), A)
    torch.manual_seed(0)
    plain = ActorCritic(cls(SMALL_IMAGE_SHAPE, 32, channels_last=False), A)
    plain.load_state_dict(fast.state_dict())
    conv_weights = [p for p in fast.parameters() if p.dim() == 4]
    assert conv_weights
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    obs = sample_obs(SMALL_IMAGE_SHAPE, (2, 3))
    with torch.no_grad():
        a, b = fast(obs), plain(obs)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a.value, b.value, rtol=1e-4, atol=1e-6)
    # The layout follows the weights: converting the module switches the input conversion too.
    assert fast.torso.channels_last and not plain.torso.channels_last
    fast.to(memory_format=torch.contiguous_format)
    assert not fast.torso.channels_last
    with torch.no_grad():
        c = fast(obs)
    torch.testing.assert_close(c.logits, b.logits, rtol=1e-4, atol=1e-6)


def test_default_layouts() -> None:
    """NHWC where it was measured faster on CPU (ImpalaResNet), NCHW where not (NatureCNN)."""
    assert make("impala", IMAGE_SHAPE).torso.channels_last
    assert not make("nature", IMAGE_SHAPE).torso.channels_last


@pytest.mark.parametrize(("torso", "obs_shape"), CASES, ids=CASE_IDS)
def test_gradients_reach_every_parameter(torso: str, obs_shape: tuple[int, ...]) -> None:
    model = make(torso, obs_shape)
    out = model(sample_obs(obs_shape, (2, 3)))
    # Scalar that depends on every logit and value (like the IMPALA loss).
    loss = (torch.log_softmax(out.logits, -1) * torch.randn(2, 3, A)).sum() + out.value.pow(2).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_build_model_rejects_mlp_with_image_shape() -> None:
    with pytest.raises(ValueError, match=r"^model\.torso") as info:
        build_model(ModelConfig(torso="mlp"), IMAGE_SHAPE, A)
    assert "(4, 84, 84)" in str(info.value)


@pytest.mark.parametrize("torso", ["impala", "nature"])
@pytest.mark.parametrize("shape", [(4,), (84, 84), (1, 4, 84, 84)])
def test_build_model_rejects_image_torso_with_wrong_rank(
    torso: str, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match=r"^model\.torso") as info:
        build_model(ModelConfig(torso=torso), shape, A)
    assert str(shape) in str(info.value)


def test_build_model_rejects_too_small_image_for_nature() -> None:
    with pytest.raises(ValueError, match=r"^model\.torso") as info:
        build_model(ModelConfig(torso="nature"), (4, 16, 16), A)
    assert "(4, 16, 16)" in str(info.value)


def test_build_model_rejects_unknown_torso() -> None:
    # Bypass ModelConfig's own choices validation (the config layer normally rejects it).
    cfg = ModelConfig()
    object.__setattr__(cfg, "torso", "transformer")
    with pytest.raises(ValueError, match=r"^model\.torso"):
        build_model(cfg, IMAGE_SHAPE, A)


def test_build_model_uses_config() -> None:
    model = build_model(ModelConfig(torso="mlp", hidden_size=24, mlp_layers=3), VEC_SHAPE, A)
    linears = [m for m in model.torso.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 24), (24, 24), (24, 24)]
    assert model.policy.in_features == 24
    assert model.obs_shape == VEC_SHAPE
    assert model.num_actions == A
    assert isinstance(build_model(ModelConfig(torso="impala"), IMAGE_SHAPE, A).torso, ImpalaResNet)
    assert isinstance(build_model(ModelConfig(torso="nature"), IMAGE_SHAPE, A).torso, NatureCNN)


def test_forward_rejects_wrong_obs_shape() -> None:
    model = make("mlp", VEC_SHAPE)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(3, 6))


@pytest.mark.parametrize(("torso", "obs_shape"), CASES, ids=CASE_IDS)
def test_state_dict_round_trip(torso: str, obs_shape: tuple[int, ...]) -> None:
    """Weights serialised by the learner and loaded by an actor give identical outputs."""
    src = make(torso, obs_shape, seed=0)
    dst = make(torso, obs_shape, seed=123)
    obs = sample_obs(obs_shape, (2, 3))
    with torch.no_grad():
        assert not torch.equal(src(obs).logits, dst(obs).logits), "seeds should differ"
        buf = io.BytesIO()
        torch.save(src.state_dict(), buf)
        buf.seek(0)
        dst.load_state_dict(torch.load(buf, weights_only=True))
        a, b = src(obs), dst(obs)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.value, b.value)


@pytest.mark.parametrize(("torso", "obs_shape"), CASES, ids=CASE_IDS)
def test_greedy_act_is_argmax(torso: str, obs_shape: tuple[int, ...]) -> None:
    model = make(torso, obs_shape)
    with torch.no_grad():
        # Logits = W (features - their batch mean): at init the features of different
        # observations differ little, and this makes the greedy action vary across the batch so
        # that the comparison below is meaningful.
        obs = sample_obs(obs_shape, (4, 5))
        mean_feature = model.torso(obs.flatten(0, 1)).mean(0)
        model.policy.weight.normal_(0.0, 1.0)
        model.policy.bias.copy_(-model.policy.weight @ mean_feature)
        action, logits, _ = model.act(obs, greedy=True)
        torch.testing.assert_close(logits, model(obs).logits)
    assert torch.equal(action, logits.argmax(-1))
    assert action.dtype == torch.int64
    assert len(set(action.flatten().tolist())) > 1, "actions should depend on the observation"


def test_sampled_actions_follow_the_policy() -> None:
    model = make("mlp", VEC_SHAPE)
    with torch.no_grad():
        model.policy.weight.zero_()
        model.policy.bias.copy_(torch.tensor([0.0, 0.0, math.log(3.0), -30, -30, -30, -30]))
        obs = torch.zeros(20_000, *VEC_SHAPE)
        action, _, _ = model.act(obs, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(action, minlength=A).float() / action.numel()
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.2, 0.6, 0, 0, 0, 0]), atol=0.02, rtol=0)
    # A seeded generator makes sampling reproducible.
    with torch.no_grad():
        again, _, _ = model.act(obs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(action, again)


@pytest.mark.parametrize(
    ("torso", "obs_shape"), CASES[:2] + CASES[-1:], ids=CASE_IDS[:2] + CASE_IDS[-1:]
)
def test_initial_policy_is_near_uniform(torso: str, obs_shape: tuple[int, ...]) -> None:
    model = make(torso, obs_shape, hidden=256)
    with torch.no_grad():
        logits = model(sample_obs(obs_shape, (16,))).logits
    probs = torch.softmax(logits, -1)
    entropy = -(probs * torch.log_softmax(logits, -1)).sum(-1)
    assert entropy.min() > 0.99 * math.log(A)
    assert (probs - 1.0 / A).abs().max() < 0.02


def test_bf16_inference_is_opt_in_and_float32_out() -> None:
    model = make("nature", IMAGE_SHAPE)
    assert model.cpu_bf16_inference is False
    obs = sample_obs(IMAGE_SHAPE, (4,))
    with torch.inference_mode():
        ref = model(obs)
    enabled = model.set_cpu_bf16_inference(True)
    assert enabled == cpu_has_native_bf16()
    with torch.inference_mode():
        out = model(obs)
    assert out.logits.dtype == torch.float32
    assert out.value.dtype == torch.float32
    torch.testing.assert_close(out.logits, ref.logits, rtol=0.05, atol=0.01)
    # Training forwards (grad enabled) are never autocast: results are float32-exact.
    train_out = model(obs)
    assert train_out.logits.requires_grad
    torch.testing.assert_close(train_out.logits, ref.logits, rtol=0, atol=0)
    model.set_cpu_bf16_inference(False)
    assert model.cpu_bf16_inference is False
