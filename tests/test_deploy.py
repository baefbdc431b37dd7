"""Deployment files: compose files validate, Dockerfiles and manifests run the real CLI, and the
health check, entrypoint scripts and environment variables behave as documented.

Compose files are validated with ``docker compose config`` (v2) or Debian's ``docker-compose``
(v1; ``.ci/run`` installs it when missing: tests never install anything). YAML is parsed with
PyYAML. A command "matches the CLI" when, run locally through this venv's Python with
``--help`` appended, it exits 0 and every ``--flag`` it uses appears in that help text (argparse
stops at ``--help`` before rejecting unknown flags, hence the second check).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import zmq

from configs import schema
from configs.cli import DEFAULT_CONFIG, env_var
from deploy import healthcheck
from protocol import transport
from protocol.messages import Heartbeat, LearnerStatus
from tests.conftest import ROOT, free_port

COMPOSE_BASE = ROOT / "docker-compose.yml"
COMPOSE_OVERRIDES = sorted(p.name for p in ROOT.glob("docker-compose.*.yml"))
DOCKERFILES = {"learner": ROOT / "deploy" / "Dockerfile.learner",
               "actor": ROOT / "deploy" / "Dockerfile.actor"}  # fmt: skip
K8S_DIR = ROOT / "deploy" / "k8s"

# Variables the processes read besides the MARIO_SECTION__FIELD config variables.
PROCESS_VARS = {"MARIO_LEARNER", "MARIO_BROADCAST", "MARIO_NUM_ENVS", "MARIO_ACTOR_ID",
                "MARIO_LOG_LEVEL", "MARIO_STALL_DIR"}  # fmt: skip
# CURVE (docker-compose.curve.yml) as protocol/security.py defines it; accepted before that code
# lands, checked like any other once the schema has the fields.
PLANNED_VARS = {"MARIO_SECURITY__CURVE", "MARIO_SECURITY__KEYS_DIR", "MARIO_CURVE_CERT",
                "MARIO_CURVE_SERVER"}  # fmt: skip


# -- tools: a compose validator, a YAML parser, the CLI check --------------------------------------
def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The compose validator's argv prefix: ``docker compose`` (v2) or ``docker-compose`` (v1)."""
    if _works(["docker", "compose", "version"]):
        return ["docker", "compose"]
    assert shutil.which("docker-compose"), (
        "no compose validator: neither `docker compose` nor docker-compose; "
        "apt-get install docker-compose (.ci/run does)"
    )
    assert _works(["docker-compose", "version"]), "docker-compose is installed but does not run"
    return ["docker-compose"]


@pytest.fixture(scope="session")
def load_yaml() -> Any:
    """``load_yaml(text) -> list of documents`` with PyYAML (in every install: optuna needs it)."""
    import yaml  # type: ignore[import-untyped]

    return lambda text: list(yaml.safe_load_all(text))


def _clean_env() -> dict[str, str]:
    """This environment without MARIO_* variables, so defaults are what gets checked."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MARIO_")}


def local_argv(command: list[str]) -> list[str]:
    """A container command as this venv runs it (``python`` -> this interpreter)."""
    assert command, "empty command"
    if command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    if command[0] == "tensorboard":
        return [str(Path(sys.executable).with_name("tensorboard")), *command[1:]]
    raise AssertionError(f"unknown program in a container command: {command}")


@functools.cache
def _help(argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=_clean_env()
    )


def prefetch_help(commands: list[list[str]]) -> None:
    """Run the distinct ``--help`` calls side by side (each imports torch: seconds apiece)."""
    distinct = list(dict.fromkeys(tuple(local_argv(c)) for c in commands))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(_help, distinct))


def assert_matches_cli(command: list[str], where: str) -> None:
    """``command --help`` exits 0 locally and documents every flag ``command`` uses."""
    done = _help(tuple(local_argv(command)))
    assert done.returncode == 0, f"{where}: `{' '.join(command)} --help` failed:\n{done.stderr}"
    for token in command[1:]:
        if token.startswith("--"):
            flag = token.split("=", 1)[0]
            assert flag in done.stdout, f"{where}: {flag} is not a flag of `{command[:3]}`"


def assert_resumes_automatically(command: list[str], where: str) -> None:
    """A learner command continues its run when restarted: ``--resume auto`` (or ``=auto``)."""
    argv = " ".join(command).replace("--resume=", "--resume ")
    assert command[:3] == ["python", "-m", "learner"], where
    assert "--resume auto" in argv, f"{where}: a restarted learner would train from scratch"


def check_environment(env: dict[str, str], where: str) -> None:
    """Every MARIO_* variable is one the code reads (or a planned CURVE one) and its value is
    valid for its config field."""
    overrides: dict[str, Any] = {}
    fields = {env_var(dotted): dotted for dotted, _, _ in schema.iter_fields()}
    for name, value in env.items():
        if not name.startswith("MARIO_"):
            continue
        if name in fields:
            overrides[fields[name]] = schema.parse_override(fields[name], str(value))
        else:
            assert name in PROCESS_VARS | PLANNED_VARS, f"{where}: {name} is read by nothing"
    schema.load(DEFAULT_CONFIG, overrides)  # raises ConfigError naming a bad field


# -- compose ---------------------------------------------------------------------------------------
def compose_config(compose: list[str], load_yaml: Any, *overrides: str) -> dict[str, Any]:
    files = ["-f", str(COMPOSE_BASE)]
    for name in overrides:
        files += ["-f", str(ROOT / name)]
    done = subprocess.run(
        [*compose, *files, "config"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=_clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(files)} does not validate:\n{done.stderr}"
    # compose v1 keeps a nested ${...} it cannot interpolate as text; nothing may be left over
    assert "${" not in done.stdout, f"uninterpolated variable in:\n{done.stdout}"
    (config,) = load_yaml(done.stdout)
    return config


def test_the_override_files_are_the_expected_ones() -> None:
    assert {"docker-compose.gpu.yml", "docker-compose.curve.yml"} <= set(COMPOSE_OVERRIDES)


@pytest.mark.parametrize("overrides", [(), *[(o,) for o in COMPOSE_OVERRIDES], COMPOSE_OVERRIDES])
def test_compose_files_validate(compose: list[str], load_yaml: Any, overrides: tuple) -> None:
    config = compose_config(compose, load_yaml, *overrides)
    services = config["services"]
    assert {"learner", "actor", "monitor", "tensorboard"} <= set(services)
    for name, service in services.items():
        check_environment(service.get("environment") or {}, f"service {name}")
    learner, actor = services["learner"], services["actor"]
    # volumes for the run output and the checkpoints
    assert {"runs", "checkpoints"} <= set(config.get("volumes") or {})
    targets = {str(v).split(":")[1] if isinstance(v, str) else v["target"]
               for v in learner["volumes"]}  # fmt: skip
    assert {"/data/runs", "/data/runs/learner/checkpoints"} <= targets
    assert "/data/runs/learner" in learner["command"]
    assert_resumes_automatically(learner["command"], "compose learner")
    # --scale actor=N needs a service without a fixed name or host ports
    assert "container_name" not in actor and not actor.get("ports")
    # the GPU reservation is only in the GPU override, so the base file runs on CPU-only hosts
    has_gpu = "deploy" in learner
    assert has_gpu == ("docker-compose.gpu.yml" in overrides)
    if has_gpu:
        (device,) = learner["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    if "docker-compose.curve.yml" in overrides:
        check_curve(config)


def check_curve(config: dict[str, Any]) -> None:
    """Every key path a service is given is a secret mounted into it, from keys/."""
    services, secrets = config["services"], config["secrets"]
    assert all("/keys/" in s["file"] for s in secrets.values())
    for name in ("learner", "actor", "monitor"):
        env, mounts = services[name]["environment"], services[name]["secrets"]
        targets = {m["target"] if isinstance(m, dict) else m for m in mounts}
        assert {m["source"] if isinstance(m, dict) else m for m in mounts} <= set(secrets)
        needed = {Path(env["MARIO_CURVE_CERT"]), Path(env["MARIO_CURVE_SERVER"])}
        if name == "learner":
            assert env["MARIO_SECURITY__CURVE"] == "true"
            keys_dir = Path(env["MARIO_SECURITY__KEYS_DIR"])
            needed |= {keys_dir / "learner.key_secret", keys_dir / "authorized"}
        for path in needed:
            assert path.parent == Path("/run/secrets") and path.name in targets, (name, path)


def test_compose_commands_match_the_cli(compose: list[str], load_yaml: Any) -> None:
    config = compose_config(compose, load_yaml, *COMPOSE_OVERRIDES)
    services = config["services"]
    healthchecks = [(s.get("healthcheck") or {}).get("test") or ["NONE"] for s in services.values()]
    prefetch_help([s["command"] for s in services.values()] +
                  [t[1:] for t in healthchecks if t[0] == "CMD"])  # fmt: skip
    for name, service in services.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: use the exec (list) form"
        assert_matches_cli(command, f"compose service {name}")
        test = (service.get("healthcheck") or {}).get("test") or ["NONE"]
        if test[0] == "CMD":
            assert_matches_cli(test[1:], f"compose service {name} healthcheck")
    actor = config["services"]["actor"]
    assert actor["command"][:3] == ["python", "-m", "actor"]
    assert actor["environment"]["MARIO_LEARNER"] == "tcp://learner:5555"
    learner_env = config["services"]["learner"]["environment"]
    assert learner_env["MARIO_NETWORK__TRAJECTORY_ENDPOINT"] == "tcp://*:5555"
    assert learner_env["MARIO_NETWORK__BROADCAST_ENDPOINT"] == "tcp://*:5556"


# -- Dockerfiles -----------------------------------------------------------------------------------
def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, rest)`` pairs of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``rel`` out (patterns without ``!``, as used here)."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if any(fnmatch(p, pattern) or fnmatch(p, bare) for p in prefixes):
            return True
        if fnmatch(parts[-1], bare):
            return True
    return False


@pytest.mark.parametrize("role", sorted(DOCKERFILES))
def test_dockerfile_builds_from_the_lock_as_non_root_with_a_healthcheck(role: str) -> None:
    steps = instructions(DOCKERFILES[role])
    runs = [rest for word, rest in steps if word == "RUN"]
    assert any("uv sync --locked --no-dev" in r for r in runs), "not built from uv.lock"
    final_stage = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    base = steps[final_stage][1]
    expected_base = "${CUDA_IMAGE}" if role == "learner" else "${PYTHON_IMAGE}"
    assert base == expected_base
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    if role == "learner":
        assert args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    else:
        assert args["PYTHON_IMAGE"].startswith("python:3.13-slim")
    final = steps[final_stage:]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert [w for w, _ in final].index("USER") < [w for w, _ in final].index("CMD")
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    health_cmd = json.loads(health[health.index("CMD") + 3 :])
    assert_matches_cli(health_cmd, f"{role} HEALTHCHECK")
    (cmd,) = [json.loads(rest) for word, rest in final if word == "CMD"]
    assert_matches_cli(cmd, f"{role} CMD")
    env = dict(pair.split("=", 1) for word, rest in final if word == "ENV"
               for pair in shlex.split(rest))  # fmt: skip
    check_environment(env, f"{role} ENV")
    if role == "learner":
        assert_resumes_automatically(cmd, "learner CMD")
    else:
        (entrypoint,) = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
        script = Path(entrypoint[-1])
        assert script.parts[:2] == ("/", "app")
        assert (ROOT / Path(*script.parts[2:])).is_file(), f"{role}: no {script}"


def test_build_context_holds_the_code_and_no_secrets() -> None:
    patterns = dockerignore()
    for needed in ("pyproject.toml", "uv.lock", "launcher.py", "actor/worker.py",
                   "learner/server.py", "protocol/transport.py", "models", "configs/mario-1-1.toml",
                   "deploy/healthcheck.py", "deploy/actor-entrypoint.sh"):  # fmt: skip
        assert (ROOT / needed).exists(), needed
        assert not ignored(needed, patterns), f"{needed} is left out of the build context"
    for private in (".venv", ".git", "runs", "keys/learner.key_secret", "actor/__pycache__/x.pyc"):
        assert ignored(private, patterns), f"{private} would be sent to the Docker daemon"
    for path in DOCKERFILES.values():
        for word, rest in instructions(path):
            if word == "COPY" and not rest.startswith("--from"):
                for src in rest.split()[:-1]:
                    assert (ROOT / src).exists() and (src == "." or not ignored(src, patterns))


# -- Kubernetes ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def k8s(load_yaml: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest in deploy/k8s by (kind, name)."""
    out = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in load_yaml(path.read_text()):
            if doc:
                out[(doc["kind"], doc.get("metadata", {}).get("name", path.name))] = doc
    return out


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_k8s_manifests_hang_together(k8s: dict) -> None:
    learner = k8s[("Deployment", "mario-learner")]
    actor = k8s[("Deployment", "mario-actor")]
    service = k8s[("Service", "mario-learner")]
    kustomization = next(doc for (kind, _), doc in k8s.items() if kind == "Kustomization")
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    for deployment in (learner, actor):
        spec = deployment["spec"]
        assert (
            spec["selector"]["matchLabels"].items()
            <= spec["template"]["metadata"]["labels"].items()
        )
        assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert learner["spec"]["replicas"] == 1 and learner["spec"]["strategy"]["type"] == "Recreate"
    assert isinstance(actor["spec"]["replicas"], int)  # the scaling knob
    labels = learner["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # the Service forwards the ports the learner binds
    container = _container(learner)
    env = {e["name"]: e["value"] for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    bound = {int(env["MARIO_NETWORK__TRAJECTORY_ENDPOINT"].rsplit(":", 1)[1]),
             int(env["MARIO_NETWORK__BROADCAST_ENDPOINT"].rsplit(":", 1)[1])}  # fmt: skip
    assert set(ports.values()) == bound
    svc_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for name, port in svc_ports.items():
        assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]], name
    # actors reach the learner through the Service, broadcasts on the Service's next port
    actor_env = {e["name"]: e["value"] for e in _container(actor)["env"]}
    assert actor_env["MARIO_LEARNER"] == f"tcp://mario-learner:{svc_ports['unrolls']['port']}"
    assert svc_ports["broadcast"]["port"] == svc_ports["unrolls"]["port"] + 1
    volumes = learner["spec"]["template"]["spec"]["volumes"]
    claim = volumes[0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in k8s


def test_k8s_commands_match_the_cli(k8s: dict) -> None:
    containers = [_container(d) for (kind, _), d in k8s.items() if kind == "Deployment"]
    prefetch_help([c["args"] for c in containers] +
                  [c[p]["exec"]["command"] for c in containers
                   for p in ("readinessProbe", "livenessProbe") if p in c])  # fmt: skip
    for (kind, name), doc in k8s.items():
        if kind != "Deployment":
            continue
        container = _container(doc)
        # args only: the actor image's ENTRYPOINT (actor ids) must stay in place
        assert "command" not in container, f"{name}: `command` would replace the entrypoint"
        assert_matches_cli(container["args"], f"k8s {name}")
        if name == "mario-learner":
            assert_resumes_automatically(container["args"], f"k8s {name}")
        check_environment({e["name"]: e["value"] for e in container["env"]}, f"k8s {name}")
        for probe in ("readinessProbe", "livenessProbe"):
            if probe in container:
                assert_matches_cli(container[probe]["exec"]["command"], f"k8s {name} {probe}")


# -- entrypoint scripts ----------------------------------------------------------------------------
def _sh(script: str, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["sh", str(ROOT / "deploy" / script), *argv], capture_output=True, text=True, timeout=30,
        env={**_clean_env(), **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_actor_entrypoint_gives_each_host_its_own_actor_id() -> None:
    def actor_id(host: str, **extra: str) -> str:
        out = _sh("actor-entrypoint.sh", "sh", "-c", 'echo "$MARIO_ACTOR_ID"',
                  env={"HOSTNAME": host, **extra})  # fmt: skip
        return out.strip()

    first, second = actor_id("mario-actor-7d9f-abcde"), actor_id("mario-actor-7d9f-fghij")
    assert first.isdigit() and second.isdigit() and first != second
    assert actor_id("mario-actor-7d9f-abcde") == first  # stable across restarts of the pod
    assert int(first) % 1000 == 0  # room for launcher-style offsets, like --actor-id-base
    assert actor_id("anything", MARIO_ACTOR_ID="42") == "42"  # an explicit id wins


# -- the health check ------------------------------------------------------------------------------
def _status(**changes: Any) -> LearnerStatus:
    fields: dict[str, Any] = dict(
        learner_run_id="abc", policy_version=7, updates=7, env_frames=4480,
        total_env_frames=16000, env_fps=300.0, episodes=3, mean_return=1.0, mean_x_pos=300.0,
        max_x_pos=400, flags=0, accepted=28, rejected=0, dropped_stale=0, duplicates=0,
    )  # fmt: skip
    fields.update(changes)
    return LearnerStatus(**fields)


@pytest.fixture
def publisher() -> Iterator[tuple[str, list[Any]]]:
    """A stand-in learner PUB socket sending the ``script`` items (messages, or raw frames) in
    turn, one every 0.1 s, round and round; the test fills ``script``; empty, it sends nothing."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    pub = transport.bind_pub(ctx, endpoint)
    script: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        i = 0
        while not stop.wait(0.1):
            if not script:
                continue
            item = script[i % len(script)]
            i += 1
            if isinstance(item, Heartbeat):
                transport.send(pub, item, prefix=[transport.TOPIC_HEARTBEAT])
            elif isinstance(item, LearnerStatus):
                transport.send(pub, item, prefix=[transport.TOPIC_STATUS])
            else:
                pub.send_multipart([transport.TOPIC_STATUS, *item])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield endpoint, script
    stop.set()
    thread.join()
    pub.close(0)
    ctx.term()


def _heartbeat(**changes: Any) -> Heartbeat:
    fields: dict[str, Any] = dict(
        role="actor", id="7000", host="actor-pod-1", pid=1, run_id="r", uptime_s=30.0,
        cpu_percent=95.0, rss_mb=400.0, threads=4, env_fps=700.0, updates_per_s=0.0,
        policy_version=12, policy_lag=1.0, queue_depth=0, credits=8, progress_age_s=0.1,
        stalled=False, stall_file="", counters={}, gpu=None, state="alive",
    )  # fmt: skip
    fields.update(changes)
    return Heartbeat(**fields)


def test_healthcheck_passes_on_a_status(publisher, capsys) -> None:
    endpoint, script = publisher
    script.append(_status())
    assert healthcheck.main(["--endpoint", endpoint, "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("healthy: learner abc training: policy version 7") and endpoint in out


def test_healthcheck_fails_on_silence_within_the_timeout(publisher, capsys) -> None:
    endpoint, _ = publisher  # bound, but publishes nothing
    assert healthcheck.main(["--endpoint", endpoint, "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("unhealthy: no status arrived: is the learner running")
    assert f"(asked {endpoint} for 1 s)" in err


def test_healthcheck_fails_on_garbage(publisher, capsys) -> None:
    endpoint, script = publisher
    script.append([b"\x93not-msgpack"])
    assert healthcheck.main(["--endpoint", endpoint, "--timeout", "1"]) == 1
    assert "unhealthy: only malformed messages" in capsys.readouterr().err


def test_healthcheck_fails_cleanly_on_a_bad_endpoint(capsys) -> None:
    assert healthcheck.main(["--endpoint", "not-an-endpoint", "--timeout", "1"]) == 1
    assert "unhealthy: cannot connect to 'not-an-endpoint'" in capsys.readouterr().err


def test_actor_healthcheck_wants_this_hosts_actor_alive_and_not_stalled(publisher, capsys) -> None:
    endpoint, script = publisher
    check = ["--actor", "--endpoint", endpoint, "--host", "actor-pod-1", "--timeout", "1.5"]
    script[:] = [_status(), _heartbeat(host="other-pod")]
    assert healthcheck.main(check) == 1
    assert "the learner is up but relays no heartbeat from an actor on actor-pod-1" in (
        capsys.readouterr().err
    )
    script[:] = [_heartbeat(stalled=True, stall_file="stalls/actor-7000.txt")]
    assert healthcheck.main(check) == 1
    assert "actor 7000 on actor-pod-1 is alive, stalled (stalls/actor-7000.txt)" in (
        capsys.readouterr().err
    )
    script[:] = [_heartbeat(state="stale")]
    assert healthcheck.main(check) == 1
    assert "actor 7000 on actor-pod-1 is stale" in capsys.readouterr().err
    script[:] = [_heartbeat(state="stale"), _heartbeat()]
    assert healthcheck.main(check) == 0
    assert capsys.readouterr().out.startswith("healthy: actor 7000 on actor-pod-1 alive")


def test_healthcheck_finds_the_endpoint_like_the_containers_set_it() -> None:
    resolve = healthcheck.resolve_endpoint
    assert resolve("tcp://h:1", {"MARIO_BROADCAST": "tcp://x:2"}) == "tcp://h:1"
    assert resolve(None, {"MARIO_BROADCAST": "tcp://x:2", "MARIO_LEARNER": "tcp://y:5"}) == (
        "tcp://x:2"
    )
    # learner container: its own bound wildcard endpoint, asked on loopback
    learner_env = {"MARIO_NETWORK__BROADCAST_ENDPOINT": "tcp://*:5556"}
    assert resolve(None, learner_env) == "tcp://127.0.0.1:5556"
    # actor container: the learner's port + 1, as launcher.py --actors-only assumes
    assert resolve(None, {"MARIO_LEARNER": "tcp://learner:5555"}) == "tcp://learner:5556"
    assert resolve(None, {}) == healthcheck.DEFAULT_ENDPOINT
    with pytest.raises(ValueError, match="MARIO_LEARNER"):
        resolve(None, {"MARIO_LEARNER": "ipc:///tmp/x"})


def test_compose_recipes_in_the_docs_use_real_services() -> None:
    """The commands in the compose header name services that exist."""
    text = COMPOSE_BASE.read_text()
    services = set(re.findall(r"^  ([a-z]+):$", text, flags=re.M))
    for line in re.findall(r"docker compose [^\n]*", text):
        pattern = r"(?:logs -f|run --rm|up -d(?: --no-deps)?(?: --scale \S+)?) ([a-z]+)"
        for word in re.findall(pattern, line):
            assert word in services, line
