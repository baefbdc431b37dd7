"""Learner training options: lr schedule, entropy schedule, gradient accumulation, AMP, GAE,
per-unroll loss weights, and checkpoints that resume exactly."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from configs import schema
from learner import batching
from learner.collate import collate
from learner.learner import Learner
from learner.targets import bootstrap_inputs, return_targets
from learner.vtrace import gae
from tests.learner.builders import (
    config,
    learner,
    params,
    time_major_batch_sizes,
    unrolls,
)


def roundtrip(state: dict) -> dict:
    """Through torch.save / weights_only torch.load, as a checkpoint goes."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor], **tol: float) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **tol)


# -- learning-rate schedule -----------------------------------------------------------------


def test_optimizer_lr_follows_warmup_then_cosine_over_the_frame_budget() -> None:
    # 4 unrolls x 4 steps x 1 frame = 16 frames per update: 160 frames = 10 updates
    lrn = learner(
        run__total_env_frames=160, learner__learning_rate=0.01, learner__lr_schedule="cosine",
        learner__warmup_updates=2, learner__min_lr_ratio=0.1,
    )  # fmt: skip
    assert lrn.total_updates == 10
    batch = collate(unrolls(4), "cpu")
    used = [lrn.train_step(batch)["optim/lr"] for _ in range(12)]
    expected = [0.01 * lrn.lr_factor(n) for n in range(12)]
    assert used == pytest.approx(expected)
    assert used[:3] == pytest.approx([0.005, 0.01, 0.01])
    assert used[10:] == pytest.approx([0.001, 0.001])
    assert lrn.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)


def test_default_lr_is_constant() -> None:
    lrn = learner(run__total_env_frames=32)
    batch = collate(unrolls(4), "cpu")
    assert {lrn.train_step(batch)["optim/lr"] for _ in range(4)} == {4e-4}


def test_resume_continues_the_schedule_and_the_parameters_exactly() -> None:
    opts = dict(
        run__total_env_frames=160, learner__lr_schedule="cosine", learner__warmup_updates=2,
        learner__entropy_cost_final=0.0,
    )  # fmt: skip
    batches = [collate(unrolls(4, seed=s), "cpu") for s in range(6)]
    a = learner(**opts)
    for batch in batches[:3]:
        a.train_step(batch)
    state = roundtrip(a.state_dict())
    b = learner(seed=99, **opts)  # different init: everything must come from the state
    b.load_state_dict(state)
    assert b.updates == 3
    for batch in batches[3:]:
        ma, mb = a.train_step(batch), b.train_step(batch)
        assert ma == mb
    assert_same(params(a), params(b), rtol=0, atol=0)


def test_old_checkpoint_without_scheduler_resumes_at_its_update() -> None:
    opts = dict(run__total_env_frames=160, learner__lr_schedule="cosine")
    a = learner(**opts)
    for _ in range(4):
        a.train_step(collate(unrolls(4), "cpu"))
    state = a.state_dict()
    del state["scheduler"], state["scaler"]
    b = learner(**opts)
    b.load_state_dict(state)
    lr = b.train_step(collate(unrolls(4), "cpu"))["optim/lr"]
    assert lr == pytest.approx(4e-4 * b.lr_factor(4))


# -- entropy schedule -----------------------------------------------------------------------


def test_entropy_cost_ramps_linearly_and_weights_the_loss() -> None:
    lrn = learner(
        run__total_env_frames=64, learner__entropy_cost=0.1, learner__entropy_cost_final=0.0
    )
    assert lrn.total_updates == 4
    batch = collate(unrolls(4), "cpu")
    metrics = [lrn.train_step(batch) for _ in range(5)]
    assert [m["optim/entropy_cost"] for m in metrics] == pytest.approx(
        [0.1, 0.075, 0.05, 0.025, 0.0]
    )
    for m in metrics:  # the cost is the one the optimised loss used
        expected = (
            m["loss/policy"]
            + 0.5 * m["loss/baseline"]
            + m["optim/entropy_cost"] * m["loss/entropy"]
        )
        assert m["loss/total"] == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_entropy_cost_schedule_changes_the_update() -> None:
    batch = collate(unrolls(4), "cpu")
    ramp = learner(run__total_env_frames=32, learner__entropy_cost=0.2,
                   learner__entropy_cost_final=0.0)  # fmt: skip
    flat = learner(run__total_env_frames=32, learner__entropy_cost=0.2)
    ramp.train_step(batch), flat.train_step(batch)  # update 0: both use 0.2
    assert_same(params(ramp), params(flat))
    assert ramp.train_step(batch)["optim/entropy_cost"] == pytest.approx(0.1)
    assert flat.train_step(batch)["optim/entropy_cost"] == pytest.approx(0.2)
    assert any(not torch.allclose(x, y) for x, y in zip(params(ramp), params(flat)))


def test_default_entropy_cost_is_constant() -> None:
    lrn = learner(run__total_env_frames=16, learner__entropy_cost=0.03)
    batch = collate(unrolls(4), "cpu")
    assert {lrn.train_step(batch)["optim/entropy_cost"] for _ in range(3)} == {0.03}


# -- gradient accumulation ------------------------------------------------------------------


def test_slice_batch_equals_collating_the_slice() -> None:
    trajs = unrolls(7)
    full = collate(trajs)
    for lo, hi in batching.micro_bounds(7, 3):
        part, direct = batching.slice_batch(full, lo, hi), collate(trajs[lo:hi])
        for name in full._fields:
            torch.testing.assert_close(getattr(part, name), getattr(direct, name))
    assert batching.micro_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert batching.micro_bounds(2, 5) == [(0, 1), (1, 2)]


@pytest.mark.parametrize("parts", [2, 3])
def test_grad_accumulation_gives_the_full_batch_update(parts: int) -> None:
    # adam_eps = 1 makes Adam's first step smooth in the gradient (lr * g / (|g| + 1)), so the
    # comparison is not at the mercy of sign(g) for gradients at rounding level
    opts = dict(learner__adam_eps=1.0, learner__learning_rate=0.05)
    batch = collate(unrolls(4), "cpu")  # truncations in columns 1; a termination in 2
    assert batch.truncated_index.numel() > 0
    one = learner(**opts)
    many = learner(learner__grad_accumulation=parts, **opts)
    seen = time_major_batch_sizes(many)
    m1, mn = one.train_step(batch), many.train_step(batch)
    assert seen == [hi - lo for lo, hi in batching.micro_bounds(4, parts)]  # really split
    for p1, pn in zip(one.model.parameters(), many.model.parameters()):
        torch.testing.assert_close(p1.grad, pn.grad, rtol=1e-4, atol=1e-7)
    assert_same(params(one), params(many), rtol=1e-5, atol=1e-7)
    for key in ("loss/total", "loss/policy", "loss/baseline", "policy/entropy", "vtrace/mean_vs"):
        assert mn[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7)
    assert mn["optim/grad_norm"] == pytest.approx(m1["optim/grad_norm"], rel=1e-5)


def test_grad_accumulation_cannot_exceed_the_batch() -> None:
    with pytest.raises(schema.ConfigError, match=r"learner\.grad_accumulation"):
        config(learner__grad_accumulation=5)


# -- per-unroll loss weights ----------------------------------------------------------------


def test_weights_scale_each_unrolls_loss() -> None:
    opts = dict(learner__max_grad_norm=1e9)  # no clipping: compare raw gradients
    trajs = unrolls(4)
    weighted, half = learner(**opts), learner(**opts)
    weighted.train_step(collate(trajs), weights=np.array([1, 1, 0, 0], np.float32))
    half.train_step(collate(trajs[:2]))
    # zero weight removes an unroll; the mean still divides by B = 4, hence the 1/2
    for pw, ph in zip(weighted.model.parameters(), half.model.parameters()):
        torch.testing.assert_close(pw.grad, 0.5 * ph.grad, rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="weights"):
        weighted.train_step(collate(trajs), weights=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="weights"):
        weighted.train_step(collate(trajs), weights=np.array([1, -1, 1, 1], np.float32))


# -- mixed precision ------------------------------------------------------------------------


def first_linear_dtypes(lrn: Learner) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    linear = next(m for m in lrn.model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize(
    ("amp", "dtype"), [("off", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_amp_autocasts_the_training_forward(amp: str, dtype: torch.dtype) -> None:
    lrn = learner(learner__amp=amp)
    seen = first_linear_dtypes(lrn)
    metrics = lrn.train_step(collate(unrolls(4), "cpu"))
    assert seen and set(seen) == {dtype}
    assert lrn.scaler.is_enabled() == (amp == "fp16")
    assert ("optim/grad_scale" in metrics) == (amp == "fp16")
    assert all(torch.isfinite(p).all() for p in lrn.model.parameters())


def test_fp16_scales_the_loss_and_unscales_before_the_step() -> None:
    opts = dict(learner__max_grad_norm=1e9)
    batch = collate(unrolls(4), "cpu")
    plain, fp16 = learner(**opts), learner(learner__amp="fp16", **opts)
    raw: dict[str, torch.Tensor] = {}
    for name, lrn in (("plain", plain), ("fp16", fp16)):
        lrn.model.baseline.weight.register_hook(lambda g, name=name: raw.__setitem__(name, g))
    plain.train_step(batch)
    metrics = fp16.train_step(batch)
    scale = metrics["optim/grad_scale"]
    assert scale == 2.0**16
    # during backward the gradient is multiplied by the scale ...
    ratio = raw["fp16"].norm() / raw["plain"].norm()
    assert float(ratio) == pytest.approx(scale, rel=0.05)
    # ... and the optimiser sees it unscaled
    torch.testing.assert_close(
        fp16.model.baseline.weight.grad, plain.model.baseline.weight.grad, rtol=0.05, atol=1e-4
    )
    state = roundtrip(fp16.state_dict())
    assert state["scaler"]["scale"] == scale
    again = learner(learner__amp="fp16")
    again.load_state_dict(state)
    assert again.scaler.get_scale() == scale


# -- GAE ------------------------------------------------------------------------------------


def test_gae_targets_on_a_hand_case() -> None:
    lc = config(learner__returns="gae", learner__gae_lambda=0.5).learner
    rewards = torch.tensor([[1.0], [2.0]])
    discounts = torch.full((2, 1), 0.5)
    values = torch.ones(2, 1)
    bootstrap = torch.tensor([4.0])
    log_rhos = torch.tensor([[3.0], [-3.0]])  # ignored by GAE
    targets, advantages = return_targets(lc, log_rhos, discounts, rewards, values, bootstrap)
    # delta_1 = 2 + 0.5 * 4 - 1 = 3; delta_0 = 1 + 0.5 * 1 - 1 = 0.5;
    # A_1 = 3; A_0 = 0.5 + 0.5 * 0.5 * 3 = 1.25; targets = A + V
    torch.testing.assert_close(advantages, torch.tensor([[1.25], [3.0]]))
    torch.testing.assert_close(targets, torch.tensor([[2.25], [4.0]]))
    vt_targets, _ = return_targets(
        config().learner, log_rhos, discounts, rewards, values, bootstrap
    )
    assert not torch.allclose(vt_targets, targets)


def test_gae_is_what_the_learner_trains_on() -> None:
    batch = collate(unrolls(4), "cpu")  # off-policy: behaviour logits are random
    gae_learner = learner(learner__returns="gae", learner__gae_lambda=0.9)
    vtrace_learner = learner()
    with torch.no_grad():
        out = gae_learner.model(batch.obs)
        final_values = gae_learner.model(batch.truncated_obs).value
    lc = gae_learner.config.learner
    rewards, discounts = bootstrap_inputs(batch, final_values, lc.discount)
    expected = gae(discounts, rewards, out.value[:-1], out.value[-1], 0.9) + out.value[:-1]
    m_gae, m_vtrace = gae_learner.train_step(batch), vtrace_learner.train_step(batch)
    assert m_gae["vtrace/mean_vs"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert m_gae["vtrace/mean_vs"] != pytest.approx(m_vtrace["vtrace/mean_vs"], rel=1e-3)
    assert any(
        not torch.allclose(x, y) for x, y in zip(params(gae_learner), params(vtrace_learner))
    )


def test_gae_with_replay_is_refused_when_the_config_is_built() -> None:
    with pytest.raises(schema.ConfigError, match=r"learner\.returns: gae assumes on-policy"):
        config(learner__returns="gae", replay__enabled=True)
    vtrace = config(replay__enabled=True)
    with pytest.raises(schema.ConfigError, match=r"learner\.returns"):  # replace() checks too
        dataclasses.replace(vtrace, learner=dataclasses.replace(vtrace.learner, returns="gae"))
