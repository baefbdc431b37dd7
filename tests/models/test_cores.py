"""Tests for models/cores.py through ActorCritic: state contract, resets, step-by-step inference,
memory, and the transformer's bounded window."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from torch.nn import functional as F

from configs.schema import ConfigError, ModelConfig, from_dict
from models import ActorCritic, build_model
from models.cores import GatedTransformerCore

A = 5
VEC = (6,)
SMALL_IMAGE = (2, 40, 40)
CORES = ["lstm", "gru", "transformer"]
WINDOW = 4


def cfg(core: str, torso: str = "mlp", **kw: object) -> ModelConfig:
    base = ModelConfig(
        torso=torso,
        hidden_size=16,
        mlp_layers=1,
        core=core,
        core_size=12,
        transformer_window=WINDOW,
        transformer_layers=2,
        transformer_heads=3,
    )
    return dataclasses.replace(base, **kw)


def make(core: str, torso: str = "mlp", seed: int = 0, **kw: object) -> ActorCritic:
    torch.manual_seed(seed)
    shape = VEC if torso == "mlp" else SMALL_IMAGE
    return build_model(cfg(core, torso, **kw), shape, A)


def obs_seq(lead: tuple[int, ...], shape: tuple[int, ...] = VEC, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(shape) == 3:
        return (torch.rand((*lead, *shape), generator=g) * 255).to(torch.uint8)
    return torch.randn((*lead, *shape), generator=g)


def warm_state(model: ActorCritic, batch: int, steps: int = 6, seed: int = 7) -> torch.Tensor:
    """A realistic non-zero state (for the transformer: a partly filled, valid memory)."""
    with torch.no_grad():
        return model(obs_seq((steps, batch), seed=seed)).core_state


def expected_state_shape(core: str) -> tuple[int, ...]:
    return {"lstm": (2, 12), "gru": (1, 12), "transformer": (WINDOW, 2 * 2 * 12 + 1)}[core]


@pytest.mark.parametrize("core", CORES)
def test_state_shape_and_initial_state(core: str) -> None:
    model = make(core)
    assert model.state_shape == expected_state_shape(core)
    state = model.initial_state(3)
    assert state.shape == (3, *expected_state_shape(core))
    assert state.dtype == torch.float32
    assert not state.any()
    obs = obs_seq((4, 3))
    with torch.no_grad():
        default, explicit = model(obs), model(obs, state)
    assert torch.equal(default.logits, explicit.logits)
    assert torch.equal(default.core_state, explicit.core_state)


def test_feed_forward_state_is_empty() -> None:
    model = make("none")
    assert model.core is None
    assert model.state_shape == (0,)
    assert model.initial_state(4).shape == (4, 0)
    with torch.no_grad():
        out = model(obs_seq((3, 4)))
        # Passing a state and resets is harmless (generic callers), and changes nothing.
        out2 = model(obs_seq((3, 4)), model.initial_state(4), torch.ones(3, 4, dtype=torch.bool))
    assert out.core_state is not None and out.core_state.shape == (4, 0)
    assert torch.equal(out.logits, out2.logits)


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("torso", ["mlp", "nature"])
def test_shapes(core: str, torso: str) -> None:
    model = make(core, torso)
    shape = VEC if torso == "mlp" else SMALL_IMAGE
    steps, batch = 3, 2
    with torch.no_grad():
        out = model(obs_seq((steps, batch), shape))
        action, logits, state = model.act(obs_seq((batch,), shape), out.core_state)
    assert out.logits.shape == (steps, batch, A)
    assert out.value.shape == (steps, batch)
    assert out.core_state.shape == (batch, *model.state_shape)
    assert out.logits.dtype == out.value.dtype == out.core_state.dtype == torch.float32
    assert action.shape == (batch,) and action.dtype == torch.int64
    assert logits.shape == (batch, A)
    assert state.shape == (batch, *model.state_shape) and state.dtype == torch.float32


def _single(model: ActorCritic, obs: torch.Tensor, state: torch.Tensor | None) -> tuple:
    out = model(obs, state)
    return out.logits, out.value, out.core_state


@pytest.mark.parametrize("core", CORES)
def test_reset_is_exact(core: str) -> None:
    """A reset at step t == running [:t] and then [t:] from the initial state, per env."""
    model = make(core)
    steps, batch = 9, 3
    obs = obs_seq((steps, batch))
    state = warm_state(model, batch)
    reset = torch.zeros(steps, batch, dtype=torch.bool)
    reset[3, 0] = True  # env 0: one reset
    reset[2, 1] = reset[7, 1] = True  # env 1: two resets
    # env 2: none
    with torch.no_grad():
        full = model(obs, state, reset)
        for b, cuts in enumerate([[3], [2, 7], []]):
            bounds = [0, *cuts, steps]
            s = state[b : b + 1]
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                logits, value, s = _single(model, obs[lo:hi, b : b + 1], None if i else s)
                torch.testing.assert_close(full.logits[lo:hi, b : b + 1], logits)
                torch.testing.assert_close(full.value[lo:hi, b : b + 1], value)
            torch.testing.assert_close(full.core_state[b : b + 1], s)
    # And the reset matters: without it env 0's later outputs differ.
    with torch.no_grad():
        no_reset = model(obs, state)
    assert not torch.allclose(no_reset.logits[3:, 0], full.logits[3:, 0])
    torch.testing.assert_close(no_reset.logits[:3, 0], full.logits[:3, 0])


@pytest.mark.parametrize("core", CORES)
def test_step_by_step_equals_sequence(core: str) -> None:
    """T one-step act() calls carrying the state == one T-step forward (the actor vs the
    learner), including resets and, for the transformer, more steps than its window."""
    model = make(core)
    steps, batch = 11, 3
    obs = obs_seq((steps, batch))
    reset = torch.zeros(steps, batch, dtype=torch.bool)
    reset[0, 2] = reset[4, 0] = reset[9, 1] = True
    state0 = warm_state(model, batch)
    with torch.no_grad():
        full = model(obs, state0, reset)
        state = state0
        for t in range(steps):
            action, logits, state = model.act(obs[t], state, reset[t], greedy=True)
            torch.testing.assert_close(logits, full.logits[t], rtol=1e-5, atol=1e-5)
            assert torch.equal(action, full.logits[t].argmax(-1))
        torch.testing.assert_close(state, full.core_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("core", CORES)
def test_output_depends_on_the_past_until_a_reset(core: str) -> None:
    model = make(core)
    obs = obs_seq((4, 2))
    changed = obs.clone()
    changed[0] += 3.0
    reset = torch.zeros(4, 2, dtype=torch.bool)
    reset[2, 1] = True  # env 1 starts a new episode at step 2
    with torch.no_grad():
        a, b = model(obs, None, reset), model(changed, None, reset)
    assert not torch.allclose(a.logits[3, 0], b.logits[3, 0]), "no memory of step 0"
    torch.testing.assert_close(a.logits[2:, 1], b.logits[2:, 1], rtol=0, atol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_transformer_window_is_bounded(layers: int) -> None:
    """Each layer sees its input at the previous `window` steps, so with L layers step t depends
    on steps t - L * window .. t and on nothing older."""
    model = make("transformer", transformer_layers=layers)
    steps = layers * WINDOW + 2
    obs = obs_seq((steps, 1))
    changed = obs.clone()
    changed[0] += 3.0
    with torch.no_grad():
        a, b = model(obs), model(changed)
    reach = layers * WINDOW
    assert not torch.allclose(a.logits[reach], b.logits[reach])
    torch.testing.assert_close(a.logits[reach + 1 :], b.logits[reach + 1 :], rtol=0, atol=0)


def test_transformer_state_layout() -> None:
    """Memory slots hold each layer's keys and values (newest last) plus a validity flag; slots
    not yet filled in this episode are zero and flagged invalid."""
    model = make("transformer")
    with torch.no_grad():
        state = model(obs_seq((2, 1))).core_state[0]  # 2 of the 4 slots filled
    assert torch.equal(state[:, -1], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert not state[:2].any()
    assert state[2:, :-1].abs().sum(-1).min() > 0
    # The newest slot of layer 0 holds the key and value of the last step: W_kv LN(embed(x)).
    obs = obs_seq((2, 1))
    core = model.core
    assert isinstance(core, GatedTransformerCore)
    layer = core.layers[0]
    with torch.no_grad():
        e = core.embed(model.torso(obs[-1]))
        key_value = layer.qkv(layer.norm_attn(e))[..., 12:]
    torch.testing.assert_close(state[-1, : 2 * 12], key_value[0])


@pytest.mark.parametrize("core", CORES)
def test_gradients_reach_every_parameter(core: str) -> None:
    model = make(core)
    out = model(obs_seq((5, 3)), warm_state(model, 3))
    loss = (torch.log_softmax(out.logits, -1) * torch.randn(5, 3, A)).sum() + out.value.pow(2).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


@pytest.mark.parametrize("core", CORES)
def test_channels_last_and_bf16_keep_working(core: str) -> None:
    model = make(core, "nature")
    obs = obs_seq((3, 2), SMALL_IMAGE)
    with torch.no_grad():
        ref = model(obs)
    model.to(memory_format=torch.channels_last)
    assert model.torso.channels_last
    model.set_cpu_bf16_inference(True)  # a no-op on CPUs without native bf16
    with torch.inference_mode():
        out = model(obs)
    assert out.logits.dtype == out.core_state.dtype == torch.float32
    tol = 0.05 if model.cpu_bf16_inference else 1e-5
    torch.testing.assert_close(out.logits, ref.logits, rtol=tol, atol=tol)


def test_core_rejects_bad_inputs() -> None:
    model = make("lstm")
    with pytest.raises(ValueError, match="time-major"):
        model(obs_seq((3,)))
    with pytest.raises(ValueError, match="core_state"):
        model(obs_seq((2, 3)), torch.zeros(2, *model.state_shape))
    with pytest.raises(ValueError, match="reset"):
        model(obs_seq((2, 3)), None, torch.zeros(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="one step"):
        model.act(obs_seq((2, 3)))
    with pytest.raises(TypeError, match="act"):
        model.act(obs_seq((3,)), True)  # type: ignore[arg-type]  # the old act(obs, greedy)


def test_transformer_heads_must_divide_core_size() -> None:
    with pytest.raises(ConfigError, match=r"^model\.transformer_heads"):
        ModelConfig(core="transformer", core_size=30, transformer_heads=4)
    ModelConfig(core="lstm", core_size=30, transformer_heads=4)  # irrelevant without transformer
    bad = ModelConfig(torso="mlp", core="transformer", core_size=32, transformer_heads=4)
    object.__setattr__(bad, "core_size", 30)  # bypass the config layer
    with pytest.raises(ValueError, match=r"^model\.transformer_heads"):
        build_model(bad, VEC, A)
    with pytest.raises(ValueError, match="divisible"):
        GatedTransformerCore(8, 30, window=4, layers=1, heads=4)


def test_build_model_rejects_unknown_core() -> None:
    bad = ModelConfig(torso="mlp")
    object.__setattr__(bad, "core", "mamba")
    with pytest.raises(ValueError, match=r"^model\.core"):
        build_model(bad, VEC, A)


def test_config_fields_parse_and_validate() -> None:
    config = from_dict({"model": {"core": "gru", "core_size": 64, "transformer_window": 8}})
    assert (config.model.core, config.model.core_size) == ("gru", 64)
    with pytest.raises(ConfigError, match=r"^model\.core"):
        from_dict({"model": {"core": "rnn"}})
    with pytest.raises(ConfigError, match=r"^model\.transformer_window"):
        from_dict({"model": {"transformer_window": 0}})
    default = ModelConfig()
    assert (default.core, default.noisy, default.layer_norm) == ("none", False, False)


# -- a tiny memory task: the cue is shown at step 0, the answer is needed at step K ---------

K = 5
EPISODE = K + 1
EPISODES = 2  # two episodes per sequence, so the reset path is trained through too


def _memory_batch(
    batch: int, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """obs [T, B, 3] = (cue +-1 at step 0, "first step" flag, "answer now" flag at step K)."""
    cue = torch.randint(0, 2, (EPISODES, batch), generator=g)
    obs = torch.zeros(EPISODES * EPISODE, batch, 3)
    for e in range(EPISODES):
        obs[e * EPISODE, :, 0] = cue[e] * 2.0 - 1.0
        obs[e * EPISODE, :, 1] = 1.0
        obs[e * EPISODE + K, :, 2] = 1.0
    reset = torch.zeros(EPISODES * EPISODE, batch, dtype=torch.bool)
    reset[::EPISODE] = True
    return obs, reset, cue


def _train_memory_task(core: str, updates: int) -> float:
    torch.manual_seed(0)
    config = cfg(
        core,
        hidden_size=32,
        core_size=32,
        transformer_window=8,
        transformer_layers=1,
        transformer_heads=2,
    )
    model = build_model(config, (3,), 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(updates):
        obs, reset, cue = _memory_batch(64, g)
        # A random carried-in state: the reset at step 0 must wipe it.
        state = torch.randn(64, *model.state_shape, generator=g) if model.core else None
        out = model(obs, state, reset)
        loss = F.cross_entropy(out.logits[K::EPISODE].reshape(-1, 2), cue.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        obs, reset, cue = _memory_batch(1000, torch.Generator().manual_seed(99))
        answer = model(obs, None, reset).logits[K::EPISODE].argmax(-1)
    return (answer == cue).float().mean().item()


@pytest.mark.parametrize("core", ["lstm", "gru", "transformer", "none"])
def test_memory_task(core: str) -> None:
    """Trained through forward(obs, core_state, reset) for 150 Adam steps (~1 s each core on
    one idle thread): the memory cores learn it, the feed-forward model cannot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: extra threads only add contention on a busy box
    try:
        accuracy = _train_memory_task(core, updates=150)
    finally:
        torch.set_num_threads(threads)
    if core == "none":
        # At step K the observation is the same whatever the cue: chance is all it can do.
        assert accuracy < 0.56
    else:
        assert accuracy > 0.97
