"""Process telemetry: psutil and NVML figures, heartbeats, stall diagnostics.

Run by: every process (learner, actors, launcher). Owns how a process measures itself and
reports it; the fleet view that aggregates reports lives in :mod:`learner.fleet`.
"""
