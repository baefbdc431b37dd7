"""PROTOCOL.md against the code: a third party's bytes decode, and the encoder's bytes match.

Covers: a hello and a trajectory built by hand from the document's description (msgpack and
numpy only, never ``protocol.codec``) must equal the document's hex examples and decode with the
project's decoder into the expected messages; the project's encoder must produce exactly those
bytes (header fields, descriptor order, frame order and contents); the document's reference
``pack``/``unpack`` code must produce and read the same bytes; the document's tables (header
fields per message type with their types, presence and defaults, record items, trajectory
arrays, dtype allow-list, limits, rejection reason tokens) must match the code; and the
rejections the document promises for unknown, missing or misplaced fields happen.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from learner.accounting import Accounting
from protocol.codec import DEFAULT_LIMITS, decode, encode
from protocol.messages import (
    ALLOWED_DTYPES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    EpisodeStats,
    GpuStats,
    Hello,
    Message,
    ProtocolError,
    Trajectory,
    TrajectorySpec,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "PROTOCOL.md").read_text(encoding="utf-8")

# -- what PROTOCOL.md section 13 describes, written out from its text -------------------------
HELLO_FIELDS: dict[str, Any] = {
    "actor_id": 1, "run_id": "5f2a9c01d3e4", "host": "box", "pid": 4242, "num_envs": 0,
    "policy_version": -1,
}  # fmt: skip
SPEC = TrajectorySpec(2, (4,), np.dtype(np.float32), 2, (0,))  # CartPole-v1, T = 2, no core
UNROLL_FIELDS: dict[str, Any] = {
    "actor_id": 1, "run_id": "5f2a9c01d3e4", "seq": 0, "env_index": 0,
    "episodes": [[9.0, 9, 0, False, "CartPole-v1", {}, False, False]],
}  # fmt: skip
UNROLL_ARRAYS: list[tuple[str, str, Any]] = [  # (name, dtype, values) in section 6's order
    ("obs", "float32", [[0.5, 0.25, -0.5, 1.0], [0.0, 0.125, 0.0, -0.125], [2.0, 0.0, -1.0, 0.5]]),
    ("action", "int64", [1, 0]),
    ("reward", "float32", [1.0, 1.0]),
    ("terminated", "bool", [False, False]),
    ("truncated", "bool", [True, False]),
    ("behaviour_logits", "float32", [[0.5, -0.5], [0.25, -0.25]]),
    ("policy_version", "int64", [7, 7]),
    ("truncated_obs", "float32", [[1.5, -0.25, 0.75, -1.0]]),
    ("initial_core_state", "float32", np.zeros(0)),
    ("initial_last_action", "int64", 0),
]

DOC_TYPES: dict[Any, str] = {
    int: "int",
    str: "str",
    float: "float",
    bool: "bool",
    float | None: "float or nil",
    dict[str, float]: "map str → number",
    list[EpisodeStats]: "list of EpisodeStats",
    list[GpuStats] | None: "list of GpuStats or nil",
    list[list[Any]]: "list of lists",
    list[str]: "list of str",
}
"""How PROTOCOL.md spells each header field annotation."""


# -- reading PROTOCOL.md ---------------------------------------------------------------------
def example(name: str) -> str:
    """The fenced block right after ``<!-- example: NAME -->``."""
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```\w*\n(.*?)^```", DOC, re.S | re.M)
    assert m, f"PROTOCOL.md has no example block {name!r}"
    return m.group(1)


def hex_example(name: str) -> bytes:
    """A hex example's bytes; whitespace and ``# comments`` are ignored."""
    data = bytes.fromhex("\n".join(line.split("#", 1)[0] for line in example(name).splitlines()))
    assert data, f"example {name!r} is empty"
    return data


def frames_example(name: str) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` per row of a frame listing: ``index name bytes hex... | -``."""
    rows = []
    for i, line in enumerate(example(name).splitlines()[1:], start=1):
        index, array, nbytes, *hexes = line.split()
        data = b"" if hexes == ["-"] else bytes.fromhex("".join(hexes))
        assert int(index) == i, f"{name}: frame {index} out of order"
        assert len(data) == int(nbytes), f"{name}: {array} has {len(data)} bytes, not {nbytes}"
        rows.append((array, data))
    return rows


def table(name: str) -> list[dict[str, str]]:
    """Rows of the markdown table right after ``<!-- table: NAME -->``, backticks removed."""
    lines = DOC.split(f"<!-- table: {name} -->", 1)
    assert len(lines) == 2, f"PROTOCOL.md has no table {name!r}"
    rows = []
    for line in lines[1].strip().splitlines():
        if not line.strip().startswith("|"):
            break
        rows.append([c.strip().replace("`", "") for c in line.strip().strip("|").split("|")])
    head, _, *body = rows
    assert body, f"table {name!r} is empty"
    return [dict(zip(head, row, strict=True)) for row in body]


def header_fields(cls: type[Message]) -> list[tuple[str, Any, dataclasses.Field[Any]]]:
    """``(name, annotation, field)`` of every non-array field, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], f) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if hints[f.name] is not np.ndarray]  # fmt: skip


# -- building the examples by hand (msgpack and numpy only) ----------------------------------
def hello_by_hand() -> list[bytes]:
    header = {"v": PROTOCOL_VERSION, "t": "hello", "f": HELLO_FIELDS, "a": []}
    return [msgpack.packb(header, use_bin_type=True)]


def unroll_by_hand() -> list[bytes]:
    arrays = [(name, np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")))
              for name, dtype, values in UNROLL_ARRAYS]  # fmt: skip
    descriptors = [[name, dtype, list(a.shape)]
                   for (name, a), (_, dtype, _) in zip(arrays, UNROLL_ARRAYS)]  # fmt: skip
    header = {"v": PROTOCOL_VERSION, "t": "trajectory", "f": UNROLL_FIELDS, "a": descriptors}
    return [msgpack.packb(header, use_bin_type=True), *(a.tobytes(order="C") for _, a in arrays)]


def unroll_message() -> Trajectory:
    arrays = {name: np.asarray(values, dtype=dtype) for name, dtype, values in UNROLL_ARRAYS}
    return Trajectory(
        **{k: v for k, v in UNROLL_FIELDS.items() if k != "episodes"},
        **arrays,
        episodes=[EpisodeStats(9.0, 9, 0, False, "CartPole-v1", {}, False)],
    )


def as_bytes(frames: list[Any]) -> list[bytes]:
    return [bytes(f) for f in frames]


# -- the examples ----------------------------------------------------------------------------
def test_examples_state_the_current_protocol_version() -> None:
    for name in ("hello.header.hex", "unroll.header.hex"):
        assert msgpack.unpackb(hex_example(name))["v"] == PROTOCOL_VERSION
    assert f"version {PROTOCOL_VERSION})" in DOC.splitlines()[0]


def test_hello_built_from_the_document_decodes() -> None:
    frames = hello_by_hand()
    assert frames == [hex_example("hello.header.hex")]
    assert frames == [hex_example("hello.header.annotated")]
    assert msgpack.unpackb(frames[0]) == json.loads(example("hello.header.json"))
    assert decode(frames) == Hello(**HELLO_FIELDS)


def test_hello_encoder_writes_the_documented_bytes() -> None:
    assert as_bytes(encode(Hello(**HELLO_FIELDS))) == [hex_example("hello.header.hex")]


def test_unroll_built_from_the_document_decodes() -> None:
    frames = unroll_by_hand()
    assert frames[0] == hex_example("unroll.header.hex")
    assert msgpack.unpackb(frames[0]) == json.loads(example("unroll.header.json"))
    documented = frames_example("unroll.frames")
    assert [name for name, _ in documented] == [name for name, _, _ in UNROLL_ARRAYS]
    assert frames[1:] == [data for _, data in documented]

    msg = decode(frames)
    assert isinstance(msg, Trajectory)
    SPEC.validate(msg)  # the layout section 6 gives for this config
    assert (msg.actor_id, msg.run_id, msg.seq, msg.env_index) == (1, "5f2a9c01d3e4", 0, 0)
    assert msg.episodes == [EpisodeStats(9.0, 9, 0, False, "CartPole-v1", {}, False)]
    for name, dtype, values in UNROLL_ARRAYS:
        got = getattr(msg, name)
        assert got.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(got, np.asarray(values, dtype=dtype), err_msg=name)
        assert got.shape == np.asarray(values).shape, name


def test_unroll_encoder_writes_the_documented_bytes() -> None:
    frames = as_bytes(encode(unroll_message()))
    documented = [data for _, data in frames_example("unroll.frames")]
    assert frames == [hex_example("unroll.header.hex"), *documented]
    descriptors = msgpack.unpackb(frames[0])["a"]
    assert [d[0] for d in descriptors] == list(SPEC.fields)  # frames follow declaration order


def test_reference_code_writes_and_reads_the_documented_bytes() -> None:
    ns: dict[str, Any] = {}
    exec(compile(example("reference.py"), "PROTOCOL.md#reference.py", "exec"), ns)
    pack: Callable[..., list[bytes]] = ns["pack"]
    unpack: Callable[..., tuple[str, dict[str, Any], dict[str, np.ndarray]]] = ns["unpack"]

    assert pack("hello", HELLO_FIELDS, []) == [hex_example("hello.header.hex")]
    # big-endian input must still go out little-endian, as section 4 says
    arrays = [(name, np.asarray(values, dtype=np.dtype(dtype).newbyteorder(">")))
              for name, dtype, values in UNROLL_ARRAYS]  # fmt: skip
    assert pack("trajectory", UNROLL_FIELDS, arrays) == unroll_by_hand()

    msg_type, fields, got = unpack(as_bytes(encode(unroll_message())))
    assert (msg_type, fields) == ("trajectory", UNROLL_FIELDS)
    for name, dtype, values in UNROLL_ARRAYS:
        np.testing.assert_array_equal(got[name], np.asarray(values, dtype=dtype), err_msg=name)
    assert got["initial_last_action"].shape == ()


# -- the tables ------------------------------------------------------------------------------
@pytest.mark.parametrize("msg_type", sorted(MESSAGE_TYPES))
def test_field_table_matches_the_message_class(msg_type: str) -> None:
    rows = table(f"fields.{msg_type}")
    fields = header_fields(MESSAGE_TYPES[msg_type])
    assert [r["field"] for r in rows] == [name for name, _, _ in fields]
    for row, (name, hint, f) in zip(rows, fields):
        assert row["type"] == DOC_TYPES[hint], name
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert row["presence"] == "required", name
            continue
        prefix, _, text = row["presence"].partition("optional, default ")
        assert not prefix and text, f"{name}: optional fields say 'optional, default X'"
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        assert (None if text == "nil" else json.loads(text)) == default, name
        assert type(None if text == "nil" else json.loads(text)) is type(default), name


@pytest.mark.parametrize("record", [EpisodeStats, GpuStats])
def test_record_table_matches_to_wire(record: type) -> None:
    rows = table(f"record.{record.__name__}")
    hints = typing.get_type_hints(record)
    fields = [f.name for f in dataclasses.fields(record)]
    assert [r["field"] for r in rows] == fields
    assert [int(r["index"]) for r in rows] == list(range(len(fields)))
    assert [r["type"] for r in rows] == [DOC_TYPES[hints[name]] for name in fields]
    sample = EpisodeStats(1.0, 1) if record is EpisodeStats else GpuStats(0, "gpu")
    assert len(sample.to_wire()) == len(fields)


def test_trajectory_table_matches_the_spec() -> None:
    rows = table("trajectory.arrays")
    assert [int(r["#"]) for r in rows] == list(range(1, len(SPEC.fields) + 1))
    assert [r["name"] for r in rows] == list(SPEC.fields)
    for row in rows:
        dtype = SPEC.fields[row["name"]].dtype
        if row["dtype"] == "obs dtype":
            assert dtype == SPEC.obs_dtype, row["name"]
        else:
            assert dtype.name == row["dtype"], row["name"]
    assert 1 + len(rows) <= DEFAULT_LIMITS.max_frames


def test_dtype_table_matches_the_allow_list() -> None:
    rows = table("dtypes")
    assert {r["dtype"] for r in rows} == ALLOWED_DTYPES
    for row in rows:
        assert np.dtype(row["dtype"]).itemsize == int(row["bytes per element"]), row["dtype"]


def test_limits_table_matches_the_codec() -> None:
    rows = table("limits")
    assert {r["limit"]: int(r["value"]) for r in rows} == dataclasses.asdict(DEFAULT_LIMITS)


def test_every_rejection_reason_is_documented() -> None:
    raised = set()
    for path in ("protocol/messages.py", "protocol/codec.py", "learner/credits.py",
                 "models/weights.py"):  # fmt: skip
        source = (ROOT / path).read_text()
        # models/weights.py raises its own WeightsMismatch (models know nothing of the wire);
        # the actor turns it into a ProtocolError with the same tokens
        pattern = r'(?:ProtocolError|WeightsMismatch)\(\s*[^,()]+,\s*"([a-z_]+)"'
        raised |= set(re.findall(pattern, source, re.S))
    server = (ROOT / "learner/server.py").read_text()
    for key in re.findall(r'rejected\[f?"([^"]+)"\]', server):
        if not key.startswith("{exc."):
            raised.add(key.rsplit(":", 1)[1].replace("{msg.TYPE}", "<type>"))
    assert "unexpected_<type>" in raised and "no_credit" in raised  # the scan found them
    paragraph = DOC.split("Reason tokens, for reference:", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`([^`]+)`", paragraph)) == raised


def test_counter_key_format_is_as_documented() -> None:
    acc = Accounting()
    acc.rejected["credits:no_credit"] += 1
    assert acc.as_counters()["rejected:credits:no_credit"] == 1
    assert "**`rejected:<field>:<reason>`**" in DOC


# -- the rejections the document promises ----------------------------------------------------
def _hello_header(**change: Any) -> dict[str, Any]:
    header = msgpack.unpackb(hex_example("hello.header.hex"))
    header.update(change)
    return header


def _pack(header: dict[str, Any], *arrays: bytes) -> list[bytes]:
    return [msgpack.packb(header, use_bin_type=True), *arrays]


def _unroll(mutate: Callable[[dict[str, Any], list[bytes]], None]) -> list[bytes]:
    header, *arrays = hex_example("unroll.header.hex"), *unroll_by_hand()[1:]
    decoded = msgpack.unpackb(header)
    mutate(decoded, arrays)
    return _pack(decoded, *arrays)


def _swap_first_two(header: dict[str, Any], arrays: list[bytes]) -> None:
    header["a"][0], header["a"][1] = header["a"][1], header["a"][0]
    arrays[0], arrays[1] = arrays[1], arrays[0]


REJECTIONS: dict[str, tuple[list[bytes], str, str]] = {
    "unknown header field": (
        _pack(_hello_header(f={**HELLO_FIELDS, "colour": "red"})),
        "colour",
        "unknown_field",
    ),
    "missing required field": (
        _pack(_hello_header(f={k: v for k, v in HELLO_FIELDS.items() if k != "pid"})),
        "pid",
        "missing_field",
    ),
    "bool for an int": (
        _pack(_hello_header(f={**HELLO_FIELDS, "actor_id": True})),
        "actor_id",
        "bad_type",
    ),
    "bin for a str": (_pack(_hello_header(f={**HELLO_FIELDS, "host": b""})), "host", "bad_type"),
    "other version": (
        _pack(_hello_header(v=PROTOCOL_VERSION - 1)),
        "protocol_version",
        "bad_version",
    ),
    "unknown type": (_pack(_hello_header(t="goodbye")), "type", "unknown_type"),
    "extra top-level key": (_pack(_hello_header(x=1)), "header", "bad_header"),
    "array frame on a hello": (_pack(_hello_header(), b""), "frames", "frame_count"),
    "arrays out of order": (_unroll(_swap_first_two), "obs", "unknown_field"),
    "byte-order dtype": (_unroll(lambda h, a: h["a"][0].__setitem__(1, "<f4")), "obs", "bad_dtype"),
    "dtype outside the allow-list": (
        _unroll(lambda h, a: h["a"][2].__setitem__(1, "float64")),
        "reward",
        "bad_dtype",
    ),
    "short frame": (_unroll(lambda h, a: a.__setitem__(0, a[0][:-1])), "obs", "bad_byte_count"),
    "missing frame": (_unroll(lambda h, a: a.pop()), "frames", "frame_count"),
    "bad episode": (
        _unroll(lambda h, a: h["f"]["episodes"][0].pop()),
        "episodes[0]",
        "bad_episode",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_documented_rejection(case: str) -> None:
    frames, field, reason = REJECTIONS[case]
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert (info.value.field, info.value.reason) == (field, reason)


def test_optional_fields_may_be_left_out() -> None:
    fields = {k: v for k, v in HELLO_FIELDS.items() if k != "policy_version"}
    assert decode(_pack(_hello_header(f=fields))) == Hello(**fields)  # policy_version -1
    msg = decode(_unroll(lambda h, a: h["f"].pop("episodes")))
    assert isinstance(msg, Trajectory)
    assert msg.episodes == []


def test_run_tokens_match_only_their_own_run() -> None:
    from protocol.messages import in_run, run_token_of, tagged_run_id

    assert tagged_run_id("ab12", "c0ffee") == "ab12.c0ffee" and tagged_run_id("", "c0") == "c0"
    assert run_token_of("ab12.c0ffee") == "ab12" and run_token_of("c0ffee") == ""
    assert in_run("ab12.c0ffee", "ab12") and not in_run("zz99.c0ffee", "ab12")
    assert in_run("c0ffee", "ab12") and in_run("zz99.c0ffee", "")  # no token: anyone
