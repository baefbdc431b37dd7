"""The launcher's one-line progress summary, built from the learner's fleet-wide status.

Run by: the launcher (and anything else that wants the same line from a status broadcast).
"""

from __future__ import annotations

import time

from protocol.messages import LearnerStatus

#: Seconds without a status broadcast after which the progress line says the run is waiting
#: for its learner (a learner starting up broadcasts within a few seconds of importing torch).
WAITING_AFTER_S = 10.0


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def progress_line(s: LearnerStatus) -> str:
    """Env frames (of the budget), env frames/s, updates, actors, episodes, mean return, mean
    and max ``x_pos``, flags and the ETA to the frame budget."""
    frac = s.env_frames / s.total_env_frames if s.total_env_frames else 0.0
    remaining = max(0, s.total_env_frames - s.env_frames)
    eta = remaining / s.env_fps if s.env_fps > 0 else float("inf")
    eta_txt = "--" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta))
    if eta != float("inf") and eta >= 86400:
        eta_txt = f"{eta / 86400:.1f}d"
    actors = f"actors {s.actors_alive}" + (f" (+{s.actors_stale} stale)" if s.actors_stale else "")
    if s.actors_dead:
        actors += f" ({s.actors_dead} dead)"
    return (
        f"frames {human(s.env_frames)}/{human(s.total_env_frames)} ({frac:.1%}) | "
        f"{s.env_fps:,.0f} fps | updates {s.updates:,} | {actors} | episodes {s.episodes:,} | "
        f"return {s.mean_return:.1f} | x_pos {s.mean_x_pos:.0f} (max {s.max_x_pos}) | "
        f"flags {s.flags} | ETA {eta_txt}"
        + (f" | hints: {', '.join(s.hints)} (see the learner log)" if s.hints else "")
    )


def waiting_line(endpoint: str, seconds: float, actors: int, own_learner: bool = False) -> str:
    """The progress line while no status has come from the learner for ``seconds``: the
    launcher's actors keep saying hello (each gives up after ``actor.connect_timeout_s``).
    With ``own_learner`` (the launcher started it) the learner is still starting up."""
    if own_learner:
        return f"starting: no status from the learner at {endpoint} yet ({seconds:.0f} s)"
    who = f"{actors} actor{'s' if actors != 1 else ''}" if actors else "the launcher"
    return (
        f"waiting for the learner at {endpoint}: no status for {seconds:.0f} s "
        f"({who} waiting; is it running, and are its ports reachable?)"
    )
