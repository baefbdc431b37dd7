"""Message <-> list of frames: a small msgpack header plus one raw frame per array.

Run by: every process that sends or receives messages.
Owns: the wire encoding and its structural validation (version, type, header fields, dtype
allow-list, shapes, byte counts, frame count and size limits). Semantic checks that need a run's
layout (:meth:`TrajectorySpec.validate`) are applied by the receiver after decoding.

Wire layout: ``[header, array_0, array_1, ...]`` where header is msgpack
``{"v": PROTOCOL_VERSION, "t": TYPE, "f": {scalar fields}, "a": [[name, dtype, shape], ...]}``
and each array frame holds exactly ``prod(shape) * itemsize`` bytes in C order. Decoding is
zero-copy: arrays are read-only views of the received frames (``np.frombuffer``). Nothing is
pickled; msgpack ext types are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from protocol.messages import (
    ALLOWED_DTYPES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Message,
    ProtocolError,
)

Frame = bytes | memoryview


@dataclass(frozen=True)
class Limits:
    """Caps applied before any allocation. ZMQ_MAXMSGSIZE is per frame only, so these matter.

    Attributes:
        max_frames: frames per message (header included).
        max_header_bytes: size of the msgpack header.
        max_frame_bytes: size of one array frame.
        max_total_bytes: all frames together.
        max_list_len: length of any list in the header (msgpack's max_array_len).
        max_str_len: length of any string in the header.
        max_ndim: dimensions of one array.
    """

    max_frames: int = 32
    max_header_bytes: int = 256 * 1024
    max_frame_bytes: int = 32 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024
    max_list_len: int = 4096
    max_str_len: int = 64 * 1024
    max_ndim: int = 8


DEFAULT_LIMITS = Limits()


@functools.cache
def _layout(cls: type[Message]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Split a message class's fields into header fields (name -> type) and array names."""
    hints = typing.get_type_hints(cls)
    header: dict[str, Any] = {}
    arrays: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if hints[f.name] is np.ndarray:
            arrays.append(f.name)
        else:
            header[f.name] = hints[f.name]
    return header, tuple(arrays)


def _to_wire(value: Any) -> Any:
    if isinstance(value, list) and value and hasattr(value[0], "to_wire"):
        return [v.to_wire() for v in value]
    return value


def encode(message: Message) -> list[Frame]:
    """Encode a message into frames for ``socket.send_multipart(frames, copy=False)``.

    Arrays are sent without copying when already C-contiguous.

    Raises:
        ProtocolError: if an array has a dtype outside :data:`ALLOWED_DTYPES`.
    """
    header_types, array_names = _layout(type(message))
    fields = {name: _to_wire(getattr(message, name)) for name in header_types}
    arrays = []
    frames: list[Frame] = []
    for name in array_names:
        arr = np.asarray(getattr(message, name))
        if not arr.flags.c_contiguous:  # not always: ascontiguousarray makes a 0-d array [1]
            arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in ALLOWED_DTYPES:
            raise ProtocolError(name, "bad_dtype", f"{arr.dtype} is not allowed on the wire")
        arrays.append([name, arr.dtype.name, list(arr.shape)])
        frames.append(memoryview(arr).cast("B") if arr.size else b"")
    header = msgpack.packb(
        {"v": PROTOCOL_VERSION, "t": message.TYPE, "f": fields, "a": arrays}, use_bin_type=True
    )
    return [header, *frames]


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("header", "ext_type", f"msgpack ext type {code} is not allowed")


def _check_header_value(name: str, typ: Any, value: Any) -> Any:
    """Validate one header field against its annotation; return the Python value.

    Supported annotations: ``bool``, ``int``, ``float`` (finite), ``str``, ``X | None``,
    ``dict[str, int | float]``, ``list[R]`` for a record class ``R`` with ``from_wire``
    (e.g. :class:`EpisodeStats`), ``list[str]`` and ``list[list[Any]]``.
    """
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_header_value(name, inner, value)
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif typ is str:
        ok = isinstance(value, str)
    elif origin is dict:
        ok = isinstance(value, dict) and all(
            isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            for k, v in value.items()
        )
    elif origin is list:
        (item,) = args
        if not isinstance(value, list):
            ok = False
        elif hasattr(item, "from_wire"):
            return [item.from_wire(v, f"{name}[{i}]") for i, v in enumerate(value)]
        elif item is str:
            ok = all(isinstance(v, str) for v in value)
        else:
            ok = all(isinstance(v, list) for v in value)
    else:  # pragma: no cover - a schema bug, not bad input
        raise TypeError(f"unsupported header field type {typ!r} for {name}")
    if not ok:
        raise ProtocolError(name, "bad_type", f"expected {typ}")
    return value


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode and structurally validate a received multipart message.

    Args:
        frames: the parts as received (``bytes``, ``memoryview`` or ``zmq.Frame``).
        limits: size and count caps, checked before anything is allocated.

    Returns:
        The message instance; its arrays are read-only views of ``frames``.

    Raises:
        ProtocolError: with ``field`` naming what is wrong and ``reason`` one of
            ``too_many_frames``, ``no_frames``, ``too_large``, ``bad_header``,
            ``bad_version``, ``unknown_type``, ``missing_field``, ``unknown_field``,
            ``bad_type``, ``bad_dtype``, ``bad_shape``, ``bad_byte_count``, ``frame_count``.
    """
    if not frames:
        raise ProtocolError("frames", "no_frames")
    if len(frames) > limits.max_frames:
        raise ProtocolError("frames", "too_many_frames", f"{len(frames)} > {limits.max_frames}")
    views = [memoryview(f).cast("B") for f in frames]
    if views[0].nbytes > limits.max_header_bytes:
        raise ProtocolError("header", "too_large", f"{views[0].nbytes} bytes")
    total = sum(v.nbytes for v in views)
    if total > limits.max_total_bytes:
        raise ProtocolError("frames", "too_large", f"{total} bytes in all")
    biggest = max(v.nbytes for v in views[1:]) if len(views) > 1 else 0
    if biggest > limits.max_frame_bytes:
        raise ProtocolError("frames", "too_large", f"a {biggest}-byte frame")
    try:
        header = msgpack.unpackb(
            views[0],
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=limits.max_str_len,
            max_bin_len=0,
            max_array_len=limits.max_list_len,
            max_map_len=limits.max_list_len,
            max_ext_len=1024,  # small ext payloads reach _refuse_ext, which names them
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types on garbage; all mean one thing here
        raise ProtocolError("header", "bad_header", f"not valid msgpack: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"v", "t", "f", "a"}:
        raise ProtocolError("header", "bad_header", "expected keys v, t, f, a")
    if header["v"] != PROTOCOL_VERSION:
        raise ProtocolError(
            "protocol_version", "bad_version", f"got {header['v']!r}, expected {PROTOCOL_VERSION}"
        )
    cls = MESSAGE_TYPES.get(header["t"]) if isinstance(header["t"], str) else None
    if cls is None:
        raise ProtocolError("type", "unknown_type", f"{header['t']!r}")
    try:
        return _decode_body(cls, header, views, limits)
    except ProtocolError as exc:
        exc.message_type = cls.TYPE
        raise


def _decode_body(
    cls: type[Message], header: dict[str, Any], views: list[memoryview], limits: Limits
) -> Message:
    """The fields and arrays of a message whose header names ``cls``; raises ProtocolError."""
    header_types, array_names = _layout(cls)
    fields, arrays = header["f"], header["a"]
    if not isinstance(fields, dict) or not isinstance(arrays, list):
        raise ProtocolError("header", "bad_header", "f must be a map and a a list")
    kwargs: dict[str, Any] = {}
    required = {
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    for name in fields:
        if name not in header_types:
            raise ProtocolError(str(name), "unknown_field")
    for name, typ in header_types.items():
        if name in fields:
            kwargs[name] = _check_header_value(name, typ, fields[name])
        elif name in required:
            raise ProtocolError(name, "missing_field")
    if len(arrays) != len(array_names) or len(views) != 1 + len(array_names):
        raise ProtocolError("frames", "frame_count", f"{cls.TYPE} needs {len(array_names)} arrays")
    for (desc, view), expected in zip(zip(arrays, views[1:]), array_names):
        kwargs[expected] = _decode_array(expected, desc, view, limits)
    return cls(**kwargs)


def _decode_array(expected: str, desc: Any, view: memoryview, limits: Limits) -> np.ndarray:
    if not (isinstance(desc, list) and len(desc) == 3):
        raise ProtocolError(expected, "bad_header", "array descriptor must be [name, dtype, shape]")
    name, dtype, shape = desc
    if name != expected:
        raise ProtocolError(expected, "unknown_field", f"got array {name!r} in its place")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        raise ProtocolError(name, "bad_dtype", f"{dtype!r} is not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > limits.max_ndim
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ProtocolError(name, "bad_shape", f"{shape!r}")
    np_dtype = np.dtype(dtype)
    expected_bytes = math.prod(shape) * np_dtype.itemsize
    if view.nbytes > limits.max_frame_bytes:
        raise ProtocolError(name, "too_large", f"{view.nbytes} bytes")
    if view.nbytes != expected_bytes:
        raise ProtocolError(
            name, "bad_byte_count", f"{view.nbytes} bytes for shape {shape} {dtype}"
        )
    return np.frombuffer(view, dtype=np_dtype).reshape(shape)
