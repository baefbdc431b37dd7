"""Episode videos: 60 fps MP4 files and animated GIFs for TensorBoard.

Run by: evaluation worker processes (``launcher.py eval --video DIR``) and the eval actor.
Owns: turning the full-resolution NES frames that :class:`envs.preprocessing.NESFrameTap`
hands over (every emulated frame, not just agent steps) into videos, with an optional panel
showing the agent's own preprocessed view beside the game, and writing a GIF as a TensorBoard
image summary.

TensorBoard: torch's ``SummaryWriter.add_video`` encodes its GIF with ``moviepy.editor``, a
module moviepy 2.x removed (only the unmaintained moviepy 1.x has it); without it add_video
prints a warning and logs an empty image. So :func:`add_gif_summary` writes what ``add_video``
would: an image summary whose encoded image is an animated GIF, here encoded by imageio's
Pillow plugin (imageio and Pillow are dependencies already). TensorBoard's Images tab plays it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cv2
import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np

#: NES frames per second (NTSC): the MP4 frame rate, one video frame per emulated frame.
NES_FPS = 60

_BLOCK = 16  # H.264 macroblock: keep frame sizes multiples of it so ffmpeg never rescales


class FrameSink(Protocol):
    """Receives composed RGB video frames (H, W, 3) uint8."""

    def add(self, frame: np.ndarray) -> None:
        """Take one frame (the sink copies what it keeps)."""


def agent_view_panel(obs: np.ndarray, height: int) -> np.ndarray:
    """The agent's stacked grayscale frames as a grid, oldest first, for beside the game.

    Args:
        obs: (frame_stack, R, R) uint8 observation as the network sees it.
        height: panel height in pixels (the NES frame's, 240).

    Returns:
        (height, W, 3) uint8 RGB; frames at native size (shrunk only if R > height), as many
        per column as fit, W padded to a multiple of 16 (black).

    Raises:
        ValueError: ``obs`` is not a (C, R, R) array.
    """
    if obs.ndim != 3 or obs.shape[1] != obs.shape[2]:
        raise ValueError(f"expected a (C, R, R) observation, got shape {obs.shape}")
    frames = [np.asarray(f, dtype=np.uint8) for f in obs]
    side = frames[0].shape[0]
    if side > height:
        frames = [cv2.resize(f, (height, height), interpolation=cv2.INTER_AREA) for f in frames]
        side = height
    rows = max(1, height // side)
    cols = math.ceil(len(frames) / rows)
    width = math.ceil(cols * side / _BLOCK) * _BLOCK
    panel = np.zeros((height, width), dtype=np.uint8)
    top = (height - min(rows, len(frames)) * side) // 2
    for i, frame in enumerate(frames):
        r, c = i % rows, i // rows
        panel[top + r * side : top + (r + 1) * side, c * side : (c + 1) * side] = frame
    return np.repeat(panel[:, :, None], 3, axis=2)


def compose(frame: np.ndarray, obs: np.ndarray | None) -> np.ndarray:
    """The NES frame, with the agent's view panel on its right when ``obs`` is given.

    Args:
        frame: (240, 256, 3) uint8 RGB NES frame.
        obs: the agent's observation to show beside it, or None for the frame alone.

    Returns:
        (240, 256 [+ panel width], 3) uint8, C-contiguous.
    """
    if obs is None:
        return np.ascontiguousarray(frame)
    return np.concatenate([frame, agent_view_panel(obs, frame.shape[0])], axis=1)


class Mp4Writer:
    """H.264 MP4 at :data:`NES_FPS` through imageio-ffmpeg (its bundled ffmpeg binary).

    Frame sizes must stay constant; both sides should be multiples of 16 (NES frames and
    :func:`compose` outputs are) so ffmpeg keeps every pixel.

    Args:
        path: the .mp4 file to write (parent directories are created).
        fps: frames per second.
    """

    def __init__(self, path: str | Path, fps: int = NES_FPS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self._writer: Any = imageio_v2.get_writer(
            self.path,
            format="FFMPEG",  # type: ignore[arg-type]
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=7,
            macro_block_size=_BLOCK,
            ffmpeg_log_level="error",
        )

    def add(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 frame."""
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (flushes ffmpeg)."""
        self._writer.close()


class GifRecorder:
    """Keeps every ``stride``-th frame, downscaled, for one animated GIF.

    Frames are held in memory until :meth:`encode`, so ``max_frames`` bounds memory
    (900 frames of 120x128 RGB is 41 MB); later frames are dropped.

    Args:
        stride: keep one frame in ``stride`` (4 = one per agent step at frame skip 4).
        scale: resize factor applied to kept frames.
        max_frames: frames kept at most.
    """

    def __init__(self, stride: int = 4, scale: float = 0.5, max_frames: int = 900) -> None:
        if stride < 1 or not 0 < scale <= 1 or max_frames < 1:
            raise ValueError("stride and max_frames must be >= 1 and scale in (0, 1]")
        self.stride = stride
        self.scale = scale
        self.max_frames = max_frames
        self.frames: list[np.ndarray] = []
        self._seen = 0

    def add(self, frame: np.ndarray) -> None:
        """Offer one frame; every ``stride``-th one is kept (up to ``max_frames``)."""
        keep = self._seen % self.stride == 0 and len(self.frames) < self.max_frames
        self._seen += 1
        if not keep:
            return
        if self.scale != 1:
            h, w = frame.shape[:2]
            size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        self.frames.append(np.array(frame, dtype=np.uint8))

    @property
    def fps(self) -> float:
        """Playback rate that keeps game time: :data:`NES_FPS` / ``stride``."""
        return NES_FPS / self.stride

    def encode(self) -> bytes:
        """The kept frames as a looping animated GIF.

        Raises:
            ValueError: no frame was kept.
        """
        if not self.frames:
            raise ValueError("no frames recorded")
        buffer = io.BytesIO()
        iio.imwrite(
            buffer,
            np.stack(self.frames),
            extension=".gif",
            duration=1000.0 / self.fps,
            loop=0,
        )
        return buffer.getvalue()


class EpisodeRecorder:
    """Collects the NES frames of each agent step and sends them, composed, to sinks.

    Use :meth:`on_frame` as the env's frame hook (through a :class:`FrameRelay`), and call
    :meth:`flush` after ``reset`` and after every ``step`` with the observation the agent acted
    on during those frames (so the side panel shows what the agent saw when it chose).

    Args:
        sinks: where composed frames go (e.g. :class:`Mp4Writer`, :class:`GifRecorder`).
        agent_view: add the agent's view panel beside the game.
    """

    def __init__(self, sinks: list[FrameSink], agent_view: bool = False) -> None:
        self.sinks = sinks
        self.agent_view = agent_view
        self.frames = 0
        self._pending: list[np.ndarray] = []

    def on_frame(self, frame: np.ndarray) -> None:
        """Frame hook: keep a copy until the next :meth:`flush`."""
        self._pending.append(frame.copy())

    def flush(self, obs: np.ndarray | None) -> None:
        """Send the pending frames, composed with ``obs`` if the agent view is on."""
        view = obs if self.agent_view else None
        for frame in self._pending:
            composed = compose(frame, view)
            for sink in self.sinks:
                sink.add(composed)
            self.frames += 1
        self._pending.clear()


class FrameRelay:
    """A frame hook whose destination can change between episodes (None drops frames)."""

    def __init__(self) -> None:
        self.target: Callable[[np.ndarray], None] | None = None

    def __call__(self, frame: np.ndarray) -> None:
        """Forward one frame to the current target, if any."""
        if self.target is not None:
            self.target(frame)


def add_gif_summary(writer: Any, tag: str, recorder: GifRecorder, step: int) -> None:
    """Log the recorder's frames as an animated-GIF image summary (what ``add_video`` writes).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        tag: the summary tag.
        recorder: holds the frames (at least one).
        step: the global step (e.g. the policy version).

    Raises:
        ValueError: the recorder holds no frame.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    gif = recorder.encode()
    height, width = recorder.frames[0].shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    # add_video itself writes through the SummaryWriter's file writer this way.
    writer._get_file_writer().add_summary(summary, step)
