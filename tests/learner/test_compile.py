"""learner.compile: the training model is torch.compiled, and checkpoints stay interchangeable
between compiled and uncompiled learners (no ``_orig_mod.`` key prefixes)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.eval_frame import OptimizedModule
from torch._dynamo.utils import counters

from learner.collate import collate
from tests.learner.builders import learner, params, unrolls


def test_compiled_learner_trains_and_checkpoints_load_both_ways() -> None:
    torch._dynamo.reset()
    counters.clear()
    batch = collate(unrolls(4, truncations=False), "cpu")
    compiled = learner(learner__compile=True)
    plain = learner()  # same seed: same initial weights
    assert isinstance(compiled.train_model, OptimizedModule)
    assert plain.train_model is plain.model
    m_compiled, m_plain = compiled.train_step(batch), plain.train_step(batch)
    assert counters["stats"]["unique_graphs"] >= 1  # inductor really compiled a graph
    assert m_compiled["loss/total"] == pytest.approx(m_plain["loss/total"], rel=1e-4)
    for x, y in zip(params(compiled), params(plain)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)

    state = copy.deepcopy(compiled.state_dict())
    assert not any(key.startswith("_orig_mod.") for key in state["model"])
    fresh_plain = learner(seed=5)
    fresh_plain.load_state_dict(state)  # compiled -> uncompiled
    for x, y in zip(params(fresh_plain), params(compiled)):
        assert (x == y).all()
    # a state dict taken from the compiled wrapper itself (prefixed keys) loads as well
    prefixed = copy.deepcopy(state)
    prefixed["model"] = copy.deepcopy(compiled.train_model.state_dict())
    assert all(key.startswith("_orig_mod.") for key in prefixed["model"])
    fresh_plain.load_state_dict(prefixed)

    back = learner(seed=6, learner__compile=True)
    back.load_state_dict(copy.deepcopy(fresh_plain.state_dict()))  # uncompiled -> compiled
    m_back, m_ref = back.train_step(batch), fresh_plain.train_step(batch)
    assert m_back["loss/total"] == pytest.approx(m_ref["loss/total"], rel=1e-4)
    # truncated steps add a no-grad forward of the final observations
    m_back = back.train_step(collate(unrolls(4, seed=1), "cpu"))
    m_ref = fresh_plain.train_step(collate(unrolls(4, seed=1), "cpu"))
    assert m_back["loss/total"] == pytest.approx(m_ref["loss/total"], rel=1e-4)
