"""Tests for learner.vtrace against deliberately naive references written from the papers."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from learner.vtrace import VTraceReturns, gae, vtrace

SHAPES = [(1, 1), (5, 3), (20, 8), (80, 2)]


def _inputs(t_len: int, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random float64 inputs; discounts mix gamma=0.99 with terminations (zeros)."""
    rng = np.random.default_rng(seed)
    terminated = rng.random((t_len, batch)) < 0.15
    return {
        "log_rhos": rng.normal(0.0, 1.0, (t_len, batch)),
        "discounts": 0.99 * (1.0 - terminated),
        "rewards": rng.normal(0.0, 1.0, (t_len, batch)),
        "values": rng.normal(0.0, 1.0, (t_len, batch)),
        "bootstrap_value": rng.normal(0.0, 1.0, (batch,)),
    }


def _torch(arrays: dict[str, np.ndarray], dtype: torch.dtype = torch.float32) -> dict:
    return {k: torch.tensor(v, dtype=dtype) for k, v in arrays.items()}


def _clip(x: float, threshold: float | None) -> float:
    return x if threshold is None else min(threshold, x)


def naive_vtrace(
    log_rhos: np.ndarray,
    discounts: np.ndarray,
    rewards: np.ndarray,
    values: np.ndarray,
    bootstrap_value: np.ndarray,
    clip_rho_threshold: float | None,
    clip_pg_rho_threshold: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Espeholt et al. 2018, Eq. 1 and Section 4.2, as literal sums and products in float64.

    v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) delta_t V, with V(x_T) the
    bootstrap; A_s = rho_pg_s (r_s + gamma_s v_{s+1} - V(x_s)) with v_T = V(x_T).
    """
    t_len, batch = values.shape
    vs = np.zeros((t_len, batch))
    pg = np.zeros((t_len, batch))
    for b in range(batch):

        def v_of(x: int, b: int = b) -> float:
            return bootstrap_value[b] if x == t_len else values[x, b]

        for s in range(t_len):
            total = v_of(s)
            for t in range(s, t_len):
                weight = 1.0
                for i in range(s, t):
                    weight *= discounts[i, b] * min(1.0, math.exp(log_rhos[i, b]))
                rho_t = _clip(math.exp(log_rhos[t, b]), clip_rho_threshold)
                delta_t = rho_t * (rewards[t, b] + discounts[t, b] * v_of(t + 1) - v_of(t))
                total += weight * delta_t
            vs[s, b] = total
        for s in range(t_len):
            v_next = bootstrap_value[b] if s + 1 == t_len else vs[s + 1, b]
            rho_pg = _clip(math.exp(log_rhos[s, b]), clip_pg_rho_threshold)
            pg[s, b] = rho_pg * (rewards[s, b] + discounts[s, b] * v_next - values[s, b])
    return vs, pg


def naive_nstep_returns(
    discounts: np.ndarray, rewards: np.ndarray, bootstrap_value: np.ndarray
) -> np.ndarray:
    """G_s = sum_t (prod_{i=s}^{t-1} gamma_i) r_t + (prod_{i=s}^{T-1} gamma_i) V(x_T), forward."""
    t_len, batch = rewards.shape
    returns = np.zeros((t_len, batch))
    for b in range(batch):
        for s in range(t_len):
            total, scale = 0.0, 1.0
            for t in range(s, t_len):
                total += scale * rewards[t, b]
                scale *= discounts[t, b]
            returns[s, b] = total + scale * bootstrap_value[b]
    return returns


def naive_gae(
    discounts: np.ndarray,
    rewards: np.ndarray,
    values: np.ndarray,
    bootstrap_value: np.ndarray,
    lam: float,
) -> np.ndarray:
    """Schulman et al. 2016, Eq. 16: A_s = sum_t (prod_{i=s}^{t-1} gamma_i lam) delta_t."""
    t_len, batch = values.shape
    v_all = np.concatenate([values, bootstrap_value[None]], axis=0)
    deltas = rewards + discounts * v_all[1:] - values
    adv = np.zeros((t_len, batch))
    for b in range(batch):
        for s in range(t_len):
            for t in range(s, t_len):
                weight = 1.0
                for i in range(s, t):
                    weight *= discounts[i, b] * lam
                adv[s, b] += weight * deltas[t, b]
    return adv


# --------------------------------------------------------------------------------------------
# V-trace against the naive Eq. 1 reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("clip_rho", "clip_pg"),
    [(1.0, 1.0), (None, None), (0.5, 3.7), (3.7, 0.5), (None, 1.0)],
)
def test_vtrace_matches_naive_eq1(
    shape: tuple[int, int], clip_rho: float | None, clip_pg: float | None
) -> None:
    arrays = _inputs(*shape, seed=zlib.crc32(repr((shape, clip_rho, clip_pg)).encode()))
    expected_vs, expected_pg = naive_vtrace(
        **arrays, clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg
    )
    out = vtrace(**_torch(arrays), clip_rho_threshold=clip_rho, clip_pg_rho_threshold=clip_pg)

    assert isinstance(out, VTraceReturns)
    assert out.vs.dtype == torch.float32
    assert out.pg_advantages.dtype == torch.float32
    assert out.vs.shape == shape
    assert out.pg_advantages.shape == shape
    expected_vs_t = torch.tensor(expected_vs, dtype=torch.float32)
    expected_pg_t = torch.tensor(expected_pg, dtype=torch.float32)
    # Unclipped rhos can reach e^4 ~ 55 and traces compound over 80 steps: allow float32 slack.
    assert_close(out.vs, expected_vs_t, rtol=1e-4, atol=1e-4)
    assert_close(out.pg_advantages, expected_pg_t, rtol=1e-4, atol=1e-4)


def test_vtrace_float64_matches_naive_tightly() -> None:
    arrays = _inputs(20, 8, seed=7)
    expected_vs, expected_pg = naive_vtrace(
        **arrays, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0
    )
    out = vtrace(**_torch(arrays, torch.float64))
    assert out.vs.dtype == torch.float64
    assert_close(out.vs, torch.tensor(expected_vs), rtol=1e-12, atol=1e-12)
    assert_close(out.pg_advantages, torch.tensor(expected_pg), rtol=1e-12, atol=1e-12)


def test_vtrace_default_thresholds_are_one() -> None:
    arrays = _torch(_inputs(20, 8, seed=11))
    default = vtrace(**arrays)
    explicit = vtrace(**arrays, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0)
    unclipped = vtrace(**arrays, clip_rho_threshold=None, clip_pg_rho_threshold=None)
    assert_close(default.vs, explicit.vs, rtol=0, atol=0)
    assert_close(default.pg_advantages, explicit.pg_advantages, rtol=0, atol=0)
    # With log_rhos ~ N(0, 1) about half the rhos exceed 1, so clipping must change something.
    assert not torch.allclose(default.vs, unclipped.vs)


def test_vtrace_hand_computed_two_steps() -> None:
    # T=2, B=1, numbers chosen so every term is visible.
    log_rhos = torch.tensor([[math.log(0.5)], [math.log(2.0)]])
    discounts = torch.tensor([[0.9], [0.8]])
    rewards = torch.tensor([[1.0], [2.0]])
    values = torch.tensor([[3.0], [4.0]])
    bootstrap = torch.tensor([5.0])
    out = vtrace(log_rhos, discounts, rewards, values, bootstrap)
    # rho clipped: [0.5, 1.0]; c: [0.5, 1.0]
    delta1 = 1.0 * (2.0 + 0.8 * 5.0 - 4.0)  # 2.0
    delta0 = 0.5 * (1.0 + 0.9 * 4.0 - 3.0)  # 0.8
    vs1 = 4.0 + delta1  # 6.0
    vs0 = 3.0 + delta0 + 0.9 * 0.5 * delta1  # 4.7
    pg0 = 0.5 * (1.0 + 0.9 * vs1 - 3.0)  # 1.7
    pg1 = 1.0 * (2.0 + 0.8 * 5.0 - 4.0)  # 2.0
    assert_close(out.vs, torch.tensor([[vs0], [vs1]]))
    assert_close(out.pg_advantages, torch.tensor([[pg0], [pg1]]))


# --------------------------------------------------------------------------------------------
# On-policy reduces to n-step bootstrapped returns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("clip_rho", "delta_scale"), [(1.0, 1.0), (None, 1.0), (0.5, 0.5)])
def test_on_policy_gives_nstep_returns(
    shape: tuple[int, int], clip_rho: float | None, delta_scale: float
) -> None:
    arrays = _inputs(*shape, seed=sum(shape) + 100)
    arrays["log_rhos"] = np.zeros(shape)
    returns = naive_nstep_returns(arrays["discounts"], arrays["rewards"], arrays["bootstrap_value"])
    out = vtrace(**_torch(arrays), clip_rho_threshold=clip_rho)

    # With rho = 1 clipped to 0.5 the traces c stay 1, so every delta is halved and
    # vs - V = 0.5 * (G - V): this checks the rho clip does not leak into the traces.
    expected = arrays["values"] + delta_scale * (returns - arrays["values"])
    assert_close(out.vs, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-5)

    # pg advantage on-policy: r_s + gamma_s * v_{s+1} - V(x_s).
    vs_next = np.concatenate([out.vs.numpy()[1:], arrays["bootstrap_value"][None]], axis=0)
    expected_pg = arrays["rewards"] + arrays["discounts"] * vs_next - arrays["values"]
    assert_close(out.pg_advantages, torch.tensor(expected_pg, dtype=torch.float32))


def test_on_policy_termination_cuts_the_return() -> None:
    # A zero discount at t=1 means rewards after t=1 and the bootstrap do not reach t=0.
    zeros = torch.zeros(4, 1)
    discounts = torch.tensor([[0.5], [0.0], [0.5], [0.5]])
    rewards = torch.tensor([[1.0], [2.0], [4.0], [8.0]])
    bootstrap = torch.tensor([16.0])
    out = vtrace(zeros, discounts, rewards, zeros, bootstrap)
    assert_close(
        out.vs, torch.tensor([[1.0 + 0.5 * 2.0], [2.0], [4.0 + 0.5 * 8.0 + 0.25 * 16.0], [16.0]])
    )


# --------------------------------------------------------------------------------------------
# Clipping behaviour
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [1.0, 0.5, 3.7])
def test_rho_clip_scales_delta_by_exactly_the_threshold(threshold: float) -> None:
    # Single step, so no traces are involved: vs - V must be threshold * TD error.
    log_rhos = torch.full((1, 3), 10.0)  # rho ~ 22026, far above any threshold
    discounts = torch.tensor([[0.99, 0.0, 0.5]])
    rewards = torch.tensor([[1.0, -2.0, 0.25]])
    values = torch.tensor([[0.5, 1.0, -1.0]])
    bootstrap = torch.tensor([2.0, 3.0, 4.0])
    out = vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho_threshold=threshold)
    td = rewards + discounts * bootstrap[None] - values
    assert_close(out.vs - values, threshold * td)


def test_traces_cap_at_one_even_when_rho_clip_is_higher() -> None:
    # rho = e^2 ~ 7.39; with rho_bar = 100 the deltas use 7.39 but the trace c_0 must be 1.
    rho = math.exp(2.0)
    log_rhos = torch.full((2, 1), 2.0)
    discounts = torch.tensor([[0.9], [0.9]])
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.0], [0.0]])
    bootstrap = torch.tensor([0.0])
    out = vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho_threshold=100.0)
    delta = rho * 1.0
    assert_close(out.vs, torch.tensor([[delta + 0.9 * 1.0 * delta], [delta]]))
    # Same with the clip disabled: the traces are still capped.
    out_none = vtrace(log_rhos, discounts, rewards, values, bootstrap, clip_rho_threshold=None)
    assert_close(out_none.vs, out.vs)


def test_small_rhos_shrink_traces() -> None:
    # rho = 0.25 < 1: c_0 = 0.25, so the second delta reaches step 0 scaled by gamma * 0.25.
    log_rhos = torch.full((2, 1), math.log(0.25))
    discounts = torch.tensor([[1.0], [1.0]])
    rewards = torch.tensor([[0.0], [4.0]])
    values = torch.zeros(2, 1)
    bootstrap = torch.tensor([0.0])
    out = vtrace(log_rhos, discounts, rewards, values, bootstrap)
    assert_close(out.vs, torch.tensor([[0.25 * 0.25 * 4.0], [0.25 * 4.0]]))


def test_pg_clip_is_independent_of_rho_clip() -> None:
    arrays = _inputs(20, 8, seed=3)
    arrays["log_rhos"] = np.abs(arrays["log_rhos"]) + 0.5  # every rho > 1.6
    tensors = _torch(arrays)
    a = vtrace(**tensors, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0)
    b = vtrace(**tensors, clip_rho_threshold=1.0, clip_pg_rho_threshold=None)
    c = vtrace(**tensors, clip_rho_threshold=None, clip_pg_rho_threshold=1.0)

    # The pg threshold does not touch the value targets ...
    assert_close(a.vs, b.vs, rtol=0, atol=0)
    # ... and the rho threshold does, while keeping the pg clip at 1.
    assert not torch.allclose(a.vs, c.vs)
    # With the pg clip lifted the advantage uses the raw rho: exactly rho times the clipped one.
    rhos = torch.exp(tensors["log_rhos"])
    assert_close(b.pg_advantages, rhos * a.pg_advantages)


def test_pg_advantage_capped_at_pg_threshold_while_vs_unclipped() -> None:
    log_rhos = torch.full((1, 1), 5.0)
    discounts = torch.tensor([[0.5]])
    rewards = torch.tensor([[1.0]])
    values = torch.tensor([[0.0]])
    bootstrap = torch.tensor([2.0])
    out = vtrace(
        log_rhos,
        discounts,
        rewards,
        values,
        bootstrap,
        clip_rho_threshold=None,
        clip_pg_rho_threshold=0.5,
    )
    td = 1.0 + 0.5 * 2.0
    assert_close(out.vs, torch.tensor([[math.exp(5.0) * td]]))
    assert_close(out.pg_advantages, torch.tensor([[0.5 * td]]))


# --------------------------------------------------------------------------------------------
# Validation and autograd
# --------------------------------------------------------------------------------------------


def _good(t_len: int = 20, batch: int = 8) -> dict[str, torch.Tensor]:
    return _torch(_inputs(t_len, batch, seed=0))


@pytest.mark.parametrize("field", ["log_rhos", "discounts", "rewards"])
def test_vtrace_shape_mismatch_names_field(field: str) -> None:
    kwargs = _good()
    kwargs[field] = kwargs[field][:, :7]
    with pytest.raises(
        ValueError, match=rf"^{field}: expected shape \[T, B\] = \(20, 8\), got \(20, 7\)$"
    ):
        vtrace(**kwargs)


@pytest.mark.parametrize("field", ["log_rhos", "discounts", "rewards"])
def test_vtrace_time_mismatch_names_field(field: str) -> None:
    kwargs = _good()
    kwargs[field] = kwargs[field][:19]
    with pytest.raises(ValueError, match=rf"^{field}: .*\(20, 8\).*\(19, 8\)"):
        vtrace(**kwargs)


@pytest.mark.parametrize("field", ["log_rhos", "discounts", "rewards", "values"])
def test_vtrace_rank_mismatch_names_field(field: str) -> None:
    kwargs = _good()
    kwargs[field] = kwargs[field][..., None]
    with pytest.raises(ValueError, match=rf"^{field}: expected rank 2"):
        vtrace(**kwargs)


def test_vtrace_bootstrap_shape_errors() -> None:
    kwargs = _good()
    kwargs["bootstrap_value"] = torch.zeros(1, 8)
    with pytest.raises(ValueError, match=r"^bootstrap_value: expected rank 1"):
        vtrace(**kwargs)
    kwargs["bootstrap_value"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"^bootstrap_value: expected shape \[B\] = \(8,\)"):
        vtrace(**kwargs)


def test_vtrace_empty_time_rejected() -> None:
    kwargs = _good()
    kwargs = {k: v[:0] if v.dim() == 2 else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=r"^values: expected T >= 1"):
        vtrace(**kwargs)


def test_vtrace_dtype_mismatch_names_field() -> None:
    kwargs = _good()
    kwargs["rewards"] = kwargs["rewards"].double()
    with pytest.raises(ValueError, match=r"^rewards: expected dtype torch.float32"):
        vtrace(**kwargs)


@pytest.mark.parametrize("name", ["clip_rho_threshold", "clip_pg_rho_threshold"])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_vtrace_rejects_nonpositive_thresholds(name: str, bad: float) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: expected a threshold > 0"):
        vtrace(**_good(), **{name: bad})


def test_vtrace_records_no_grad() -> None:
    kwargs = {k: v.clone().requires_grad_(True) for k, v in _good().items()}
    out = vtrace(**kwargs)
    assert out.vs.requires_grad is False
    assert out.pg_advantages.requires_grad is False
    assert out.vs.grad_fn is None
    assert out.pg_advantages.grad_fn is None
    # Values are the same as with grad-free inputs: no_grad must not change the numbers.
    ref = vtrace(**_good())
    assert_close(out.vs, ref.vs, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_vtrace_runs_on_input_device() -> None:
    cpu = _good()
    gpu = {k: v.cuda() for k, v in cpu.items()}
    out = vtrace(**gpu)
    assert out.vs.device.type == "cuda"
    assert_close(out.vs.cpu(), vtrace(**cpu).vs, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------------------------


def _gae_args(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if k != "log_rhos"}


@pytest.mark.parametrize("shape", SHAPES)
def test_gae_lambda_one_is_returns_minus_values(shape: tuple[int, int]) -> None:
    arrays = _gae_args(_inputs(*shape, seed=sum(shape) + 200))
    returns = naive_nstep_returns(arrays["discounts"], arrays["rewards"], arrays["bootstrap_value"])
    adv = gae(**_torch(arrays), lam=1.0)
    expected = torch.tensor(returns - arrays["values"], dtype=torch.float32)
    assert_close(adv, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_gae_lambda_zero_is_td_error(shape: tuple[int, int]) -> None:
    arrays = _gae_args(_inputs(*shape, seed=sum(shape) + 300))
    v_next = np.concatenate([arrays["values"][1:], arrays["bootstrap_value"][None]], axis=0)
    td = arrays["rewards"] + arrays["discounts"] * v_next - arrays["values"]
    adv = gae(**_torch(arrays), lam=0.0)
    assert_close(adv, torch.tensor(td, dtype=torch.float32))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lam", [0.3, 0.95])
def test_gae_matches_naive(shape: tuple[int, int], lam: float) -> None:
    arrays = _gae_args(_inputs(*shape, seed=sum(shape) + 400))
    expected = naive_gae(**arrays, lam=lam)
    adv = gae(**_torch(arrays), lam=lam)
    assert adv.dtype == torch.float32
    assert adv.shape == shape
    assert_close(adv, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-5)


def test_gae_lambda_one_agrees_with_on_policy_vtrace() -> None:
    tensors = _torch(_inputs(20, 8, seed=5))
    tensors["log_rhos"] = torch.zeros(20, 8)
    vs = vtrace(**tensors).vs
    adv = gae(**{k: v for k, v in tensors.items() if k != "log_rhos"}, lam=1.0)
    assert_close(adv + tensors["values"], vs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_gae_rejects_lambda_out_of_range(bad: float) -> None:
    kwargs = {k: v for k, v in _good().items() if k != "log_rhos"}
    with pytest.raises(ValueError, match=r"^lam: expected a value in \[0, 1\]"):
        gae(**kwargs, lam=bad)


def test_gae_shape_mismatch_names_field() -> None:
    kwargs = {k: v for k, v in _good().items() if k != "log_rhos"}
    kwargs["discounts"] = kwargs["discounts"][:, :7]
    with pytest.raises(
        ValueError, match=r"^discounts: expected shape \[T, B\] = \(20, 8\), got \(20, 7\)$"
    ):
        gae(**kwargs, lam=0.95)


def test_gae_records_no_grad() -> None:
    kwargs = {k: v.clone().requires_grad_(True) for k, v in _good().items() if k != "log_rhos"}
    adv = gae(**kwargs, lam=0.95)
    assert adv.requires_grad is False
    assert adv.grad_fn is None
