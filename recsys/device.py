"""Pick the torch device the engine runs on.

``select_device("auto")`` prefers CUDA, then Apple MPS, then the CPU. An explicit request
(``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is honoured or refused with a plain
``ValueError`` that says why, never silently replaced by another device.
"""

from __future__ import annotations

import torch

__all__ = ["select_device", "describe_device"]

_KINDS = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Return the ``torch.device`` to use.

    ``preference``: ``"auto"`` (CUDA if available, then MPS, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` or a ``torch.device``. Raises ``ValueError`` when the requested device
    does not exist on this machine or the string is not a device name.
    """
    if preference is None:
        preference = "auto"
    if isinstance(preference, torch.device):
        text = str(preference)
    else:
        text = str(preference).strip().lower()
    if text in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    kind, _, index_text = text.partition(":")
    if kind not in _KINDS:
        raise ValueError(f"Unknown device {preference!r}: use one of 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    index: int | None = None
    if index_text:
        if not index_text.isdigit():
            raise ValueError(f"Unknown device {preference!r}: the index after ':' must be a number.")
        index = int(index_text)

    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"CUDA was requested ({text!r}) but torch sees no GPU on this machine "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}). "
                "Use device='auto' or 'cpu', or install a CUDA build of torch and check the driver."
            )
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            raise ValueError(
                f"GPU {text!r} was requested but torch sees only {count} GPU(s) "
                f"(valid: {', '.join(f'cuda:{i}' for i in range(count))})."
            )
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    # mps
    if not _mps_available():
        raise ValueError(
            "Apple MPS was requested but torch reports it is not available on this machine "
            "(it needs an Apple-silicon Mac and a torch build with MPS). Use device='auto' or 'cpu'."
        )
    if index not in (None, 0):
        raise ValueError(f"MPS has a single device; {text!r} does not exist.")
    return torch.device("mps")


def describe_device(device: torch.device | str) -> str:
    """A short human-readable name: the GPU's name, ``"Apple MPS"`` or ``"CPU (N threads)"``."""
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        try:
            props = torch.cuda.get_device_properties(index)
            memory_gib = props.total_memory / 2**30
            return f"{props.name} (cuda:{index}, {memory_gib:.0f} GiB)"
        except Exception:  # pragma: no cover - depends on the driver
            return f"CUDA GPU cuda:{index}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
