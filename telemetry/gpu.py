"""GPU figures from NVML (the ``pynvml`` module of nvidia-ml-py), safe without a driver.

Run by: every process that sends heartbeats. Owns NVML initialisation (once per process,
in :class:`NvmlSampler`'s constructor) and the mapping of NVML errors to ``None``: no driver
or library -> ``sample()`` returns None; a field a device does not support
(``NVMLError_NotSupported``, or any other per-field NVML error) -> None for that field only.
Nothing here ever raises to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

from protocol.messages import GpuStats

log = logging.getLogger(__name__)


def _load_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except Exception:  # a broken install must not take the process down
        return None
    return pynvml


class NvmlSampler:
    """Reads utilisation, memory, temperature and power of every visible NVIDIA GPU.

    Args:
        nvml: the ``pynvml`` module, or a stand-in with the same API (tests); by default the
            installed one.
    """

    def __init__(self, nvml: ModuleType | bool | None = True) -> None:
        self._nvml: Any = _load_pynvml() if nvml is True else (nvml or None)
        self.available = False
        self._handles: list[Any] = []
        if self._nvml is None:
            return
        try:
            self._nvml.nvmlInit()
            count = self._nvml.nvmlDeviceGetCount()
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.available = True
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            log.debug("NVML unavailable: %s", exc)
            self._handles = []

    def _field(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception as exc:  # NVMLError_NotSupported and friends: this field only
            log.debug("NVML field unavailable: %s", exc)
            return None

    def sample(self) -> list[GpuStats] | None:
        """Figures for each GPU, or None when NVML (the driver) is unavailable."""
        if not self.available:
            return None
        nvml = self._nvml
        out = []
        for index, handle in enumerate(self._handles):
            name = self._field(lambda h=handle: nvml.nvmlDeviceGetName(h))
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            util = self._field(lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            memory = self._field(lambda h=handle: nvml.nvmlDeviceGetMemoryInfo(h))
            temp = self._field(
                lambda h=handle: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
            )
            power = self._field(lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h))
            out.append(
                GpuStats(
                    index=index,
                    name=str(name) if name is not None else f"gpu{index}",
                    utilization=None if util is None else float(util),
                    memory_used_mb=None if memory is None else memory.used / 2**20,
                    memory_total_mb=None if memory is None else memory.total / 2**20,
                    temperature_c=None if temp is None else float(temp),
                    power_w=None if power is None else power / 1000.0,  # NVML reports mW
                )
            )
        return out
