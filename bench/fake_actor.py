"""A fake actor for learner benchmarks: synthetic unrolls over the real wire, as fast as credits
allow.

Run by: a process that :mod:`bench.learner_throughput` starts per ``--actors``. Owns: one DEALER
connection with its hello, credits and unroll sequence numbers, and a SUB for the learner's
status (its policy version), exactly as :mod:`actor.worker` speaks the protocol (PROTOCOL.md),
but with no env and no model: the unrolls come from :func:`bench.synthetic.synthetic_unrolls`
for the run's layout, so a learner benchmark measures decode, validation, accounting,
collation, replay and publishing as well as the update, and no actor is the bottleneck.

Each unroll carries the newest policy version the fake actor has heard of (from the welcome
and the status broadcasts), so the learner's policy lag is that of actors that act instantly.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any

import numpy as np
import zmq

from bench.synthetic import synthetic_unrolls
from configs import schema
from protocol import transport
from protocol.messages import (
    Credit,
    Hello,
    LearnerStatus,
    ProtocolError,
    Rejoin,
    TrajectorySpec,
    Weights,
    Welcome,
)


def run(config_dict: dict[str, Any], spec: TrajectorySpec, actor_id: int, seconds: float) -> None:
    """Send unrolls for ``seconds``, or until the learner says it is done (the benchmark
    usually stops the process first).

    Args:
        config_dict: the learner's config (:func:`configs.schema.to_dict`): endpoints, envs.
        spec: the run's unroll layout (:func:`bench.synthetic.run_spec`, computed by the
            benchmark, so this process never imports torch or the emulator).
        actor_id: this fake actor's id (hello and unrolls).
        seconds: how long to send at most.
    """
    config = schema.from_dict(config_dict)
    pool = synthetic_unrolls(spec, 16, seed=actor_id)
    num_envs = config.actor.num_envs
    run_id = f"fake{actor_id}-{os.getpid()}"
    ctx = zmq.Context()
    nw = config.network
    dealer = transport.connect_dealer(ctx, nw.trajectory_endpoint)
    sub = transport.connect_sub(
        ctx,
        transport.resolve_broadcast(nw.trajectory_endpoint, nw.broadcast_endpoint),
        (transport.TOPIC_STATUS,),
    )
    hello = Hello(actor_id, run_id, socket.gethostname(), os.getpid(), num_envs)
    transport.send(dealer, hello)
    credits, version, seq, done = 0, 0, 0, False
    end = time.monotonic() + seconds
    while time.monotonic() < end and not done:
        while dealer.poll(0):
            try:
                _, msg = transport.recv(dealer)
            except ProtocolError:
                continue
            if isinstance(msg, Welcome):
                credits, version = msg.credits, max(version, msg.policy_version)
            elif isinstance(msg, Credit):
                credits += msg.unrolls
            elif isinstance(msg, Weights):
                version = max(version, msg.policy_version)
            elif isinstance(msg, Rejoin):
                transport.send(dealer, dataclasses.replace(hello, policy_version=version))
        while sub.poll(0):
            try:
                _, msg = transport.recv(sub, prefix_frames=1)
            except ProtocolError:
                continue
            if isinstance(msg, LearnerStatus):
                version = max(version, msg.policy_version)
                done = done or msg.done
        if credits <= 0:
            dealer.poll(5)  # wait for a credit (or a welcome)
            continue
        base = pool[seq % len(pool)]
        unroll = dataclasses.replace(
            base,
            actor_id=actor_id,
            run_id=run_id,
            seq=seq,
            env_index=seq % num_envs,
            policy_version=np.full_like(base.policy_version, version),
        )
        transport.send(dealer, unroll)
        seq += 1
        credits -= 1
    dealer.close(0)
    sub.close(0)
    ctx.term()
