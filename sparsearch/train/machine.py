"""What machine a result was measured on: CPU model, cores, torch and its threads, the device.

PyTorch does not promise identical floats across CPU types (its kernels pick instructions by what the
CPU offers), so every committed result names the machine it came from.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["cpu_model", "describe_machine"]


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it (``platform.processor()`` where /proc is absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """A JSON-ready description of this machine for results that depend on it."""
    device = torch.device(device)
    description = {
        "cpu": cpu_model(),
        "architecture": platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description
