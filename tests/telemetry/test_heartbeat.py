"""Heartbeat messages, NVML handling, the fleet view's states, stall dumps and the registry."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from learner.fleet import FleetView
from protocol.codec import decode, encode
from protocol.messages import GpuStats, Heartbeat, ProtocolError, to_json
from telemetry.gpu import NvmlSampler
from telemetry.heartbeat import HeartbeatBuilder
from telemetry.registry import live_runs, register, unregister
from telemetry.stall import StallWatchdog


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def fake_nvml(unsupported: str = "", init_error: bool = False) -> SimpleNamespace:
    """A stand-in for pynvml with two GPUs; ``unsupported`` names a function that raises."""

    def maybe(name, value):
        def call(*args):
            if name == unsupported:
                raise NVMLError_NotSupported(name)
            return value

        return call

    def init():
        if init_error:
            raise NVMLError("NVML Shared Library Not Found")

    return SimpleNamespace(
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=maybe("nvmlDeviceGetName", b"NVIDIA H100"),
        nvmlDeviceGetUtilizationRates=maybe("nvmlDeviceGetUtilizationRates",
                                            SimpleNamespace(gpu=87)),
        nvmlDeviceGetMemoryInfo=maybe("nvmlDeviceGetMemoryInfo",
                                      SimpleNamespace(used=2**30, total=80 * 2**30)),
        nvmlDeviceGetTemperature=maybe("nvmlDeviceGetTemperature", 61),
        nvmlDeviceGetPowerUsage=maybe("nvmlDeviceGetPowerUsage", 312_000),
        NVML_TEMPERATURE_GPU=0,
    )  # fmt: skip


def test_heartbeat_round_trips_through_the_codec() -> None:
    hb = HeartbeatBuilder("actor", "7", "run1", nvml=fake_nvml()).build(
        env_fps=950.0, policy_version=12, policy_lag=1.5, credits=3,
        counters={"unrolls_sent": 40},
    )  # fmt: skip
    decoded = decode(encode(hb))
    assert decoded == hb
    assert decoded.key == "actor:7" and decoded.pid == os.getpid()
    assert decoded.rss_mb > 0 and decoded.threads >= 1
    assert decoded.gpu[1] == GpuStats(1, "NVIDIA H100", 87.0, 1024.0, 80 * 1024.0, 61.0, 312.0)
    json_view = to_json(decoded)
    assert {"role", "id", "host", "state", "gpu"} <= set(json_view)
    assert json_view["gpu"][0]["power_w"] == 312.0


def test_without_nvml_gpu_is_null_and_nothing_raises() -> None:
    assert NvmlSampler(fake_nvml(init_error=True)).sample() is None
    assert NvmlSampler(None).sample() is None
    hb = HeartbeatBuilder("learner", "0", "r", nvml=fake_nvml(init_error=True)).build()
    assert hb.gpu is None
    assert decode(encode(hb)).gpu is None
    assert to_json(hb)["gpu"] is None


@pytest.mark.parametrize(
    ("function", "field"),
    [
        ("nvmlDeviceGetUtilizationRates", "utilization"),
        ("nvmlDeviceGetTemperature", "temperature_c"),
        ("nvmlDeviceGetPowerUsage", "power_w"),
    ],
)
def test_not_supported_nulls_only_that_field(function: str, field: str) -> None:
    (gpu, _) = NvmlSampler(fake_nvml(unsupported=function)).sample()
    assert getattr(gpu, field) is None
    others = {k: v for k, v in gpu.as_dict().items() if k not in (field, "index", "name")}
    assert all(v is not None for v in others.values()), others


def test_malformed_gpu_figures_are_rejected_by_name() -> None:
    hb = HeartbeatBuilder("actor", "1", "r", nvml=fake_nvml()).build()
    import msgpack

    frames = encode(hb)
    header = msgpack.unpackb(frames[0])
    header["f"]["gpu"][0][2] = "hot"
    with pytest.raises(ProtocolError) as info:
        decode([msgpack.packb(header)])
    assert info.value.field == "gpu[0]" and info.value.reason == "bad_gpu"


def heartbeat(role: str, id: str, **kw) -> Heartbeat:
    return HeartbeatBuilder(role, id, "r", nvml=None).build(**kw)


def test_fleet_view_goes_stale_then_dead_and_revives_on_any_data() -> None:
    fleet = FleetView(stale_after_s=5, dead_after_s=15)
    fleet.observe(heartbeat("actor", "1", env_fps=100.0, policy_lag=2.0), now=0.0)
    fleet.observe(heartbeat("actor", "2", env_fps=50.0, policy_lag=4.0), now=0.0)
    assert fleet.sweep(now=4.0) == []
    changed = fleet.sweep(now=6.0)
    assert sorted((h.id, h.state) for h in changed) == [("1", "stale"), ("2", "stale")]
    fleet.observe(heartbeat("actor", "2", env_fps=50.0, policy_lag=4.0), now=6.0)
    assert fleet.state("actor:1") == "stale" and fleet.state("actor:2") == "alive"
    totals = fleet.totals()
    assert (totals.actors_alive, totals.actors_stale, totals.env_fps) == (1, 1, 50.0)
    assert [h.state for h in fleet.sweep(now=16.0) if h.id == "1"] == ["dead"]
    assert fleet.totals().actors_dead == 1
    revived = fleet.touch("actor:1", now=17.0)  # e.g. an unroll arrived
    assert revived is not None and revived.state == "alive"
    assert fleet.touch("actor:1", now=17.5) is None  # already alive: nothing to republish
    assert fleet.touch("actor:99", now=18.0) is None  # unknown peers appear with a heartbeat
    with pytest.raises(ValueError, match="dead_after_s"):
        FleetView(stale_after_s=5, dead_after_s=5)


def test_fleet_totals_average_lag_and_learner_gpu() -> None:
    fleet = FleetView(5, 15)
    fleet.observe(heartbeat("actor", "1", policy_lag=1.0), 0.0)
    fleet.observe(heartbeat("actor", "2", policy_lag=3.0), 0.0)
    learner = HeartbeatBuilder("learner", "0", "r", nvml=fake_nvml()).build()
    fleet.observe(learner, 0.0)
    totals = fleet.totals()
    assert totals.mean_policy_lag == 2.0 and totals.gpu_utilization == 87.0


def hang_here(seconds: float) -> None:
    time.sleep(seconds)


def test_stall_watchdog_dumps_every_thread_naming_the_stuck_function(tmp_path: Path) -> None:
    watchdog = StallWatchdog(tmp_path / "stalls", "actor-3", stall_after_s=0.5).start()
    try:
        watchdog.progress()
        hang_here(2.0)
        assert watchdog.stalled
        (dump,) = (tmp_path / "stalls").glob("actor-3-*.txt")
        text = dump.read_text()
        assert "hang_here" in text and "no progress for" in text
        assert watchdog.stall_file == str(dump)
        watchdog.progress()
        assert not watchdog.stalled and watchdog.stall_file == ""
    finally:
        watchdog.stop()


def test_registry_lists_live_runs_newest_first(tmp_path: Path) -> None:
    entry = register("tcp://127.0.0.1:7777", tmp_path / "run", directory=tmp_path)
    (tmp_path / "999999999.json").write_text('{"pid": 999999999, "broadcast_endpoint": "x"}')
    runs = live_runs(tmp_path)
    assert [r["broadcast_endpoint"] for r in runs] == ["tcp://127.0.0.1:7777"]
    assert not (tmp_path / "999999999.json").exists()  # dead launchers are cleaned up
    unregister(entry)
    assert live_runs(tmp_path) == []


def test_a_peer_whose_main_loop_hangs_goes_stale_and_dead_despite_heartbeats() -> None:
    fleet = FleetView(stale_after_s=5, dead_after_s=15)
    assert fleet.observe(heartbeat("actor", "1", progress_age_s=1.0), now=0.0).state == "alive"
    assert fleet.observe(heartbeat("actor", "1", progress_age_s=7.0), now=6.0).state == "stale"
    assert fleet.observe(heartbeat("actor", "1", progress_age_s=12.0), now=11.0).state == "stale"
    assert [h.state for h in fleet.sweep(now=15.0)] == ["dead"]  # 12 s + 4 s since that beat
    assert fleet.observe(heartbeat("actor", "1", progress_age_s=0.5), now=16.0).state == "alive"
