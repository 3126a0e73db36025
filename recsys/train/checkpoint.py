"""Resume checkpoints without pickle: tensors in safetensors, structure in JSON.

A training checkpoint holds the network's state, the optimiser's state (nested dicts of tensors and
numbers), the epoch and the best-so-far record. ``torch.save`` would pickle all that; a checkpoint a
user may hand us must never execute code on load, so the nested structure is flattened to
``{path: tensor}`` for safetensors plus a JSON skeleton that says where every tensor goes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_directory

_TENSOR = "__tensor__"


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {_TENSOR: path}
    if isinstance(value, dict):
        return {"__dict__": [[_key(k), _flatten(v, f"{path}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return {"__nan__": True}
    return value


def _key(key: Any) -> Any:
    return {"__int__": key} if isinstance(key, int) else key


def _unkey(key: Any) -> Any:
    return key["__int__"] if isinstance(key, dict) else key


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if "__dict__" in value:
            return {_unkey(k): _unflatten(v, tensors) for k, v in value["__dict__"]}
        if "__list__" in value:
            return [_unflatten(v, tensors) for v in value["__list__"]]
        if "__nan__" in value:
            return float("nan")
    return value


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts/lists of tensors and JSON values) atomically into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "s", tensors)
    with atomic_directory(folder) as staging:
        save_file(tensors, str(staging / "tensors.safetensors"))
        (staging / "structure.json").write_text(json.dumps(skeleton))
    return folder


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    from safetensors.torch import load_file

    folder = Path(folder)
    tensors = load_file(str(folder / "tensors.safetensors"), device=str(device))
    return _unflatten(json.loads((folder / "structure.json").read_text()), tensors)


def remove_checkpoint(folder: str | Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
