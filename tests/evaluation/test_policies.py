"""The evaluation policies' own state: the agent feeds its model its previous action."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from configs.schema import ModelConfig
from evaluation.baselines import AgentPolicy
from models import build_model


def test_agent_policy_feeds_back_its_previous_action_and_resets_it() -> None:
    config = ModelConfig(torso="mlp", hidden_size=8, mlp_layers=1, core="none")
    model = build_model(dataclasses.replace(config, last_action=True), (2,), 3)
    seen: list[int] = []
    act = model.act

    def spy(obs: torch.Tensor, **kwargs: object):
        last = kwargs["last_action"]
        assert isinstance(last, torch.Tensor)
        seen.append(int(last[0]))
        return act(obs, **kwargs)  # type: ignore[arg-type]

    model.act = spy  # type: ignore[method-assign]
    policy = AgentPolicy(model, greedy=False, seed=0)
    obs = np.zeros(2, np.float32)
    taken = [policy.act(obs) for _ in range(4)]
    policy.reset()
    policy.act(obs)
    assert seen == [3, *taken[:3], 3]  # 3 = "none" at each episode start
