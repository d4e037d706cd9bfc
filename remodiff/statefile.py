"""The file format of fitted models (imputers, fusers): a nested state as ``<stem>.json`` + ``<stem>.safetensors``.

Model files travel through DVC remotes, and unpickling one runs whatever code it names, so nothing here pickles:
loading reads JSON and safetensors only, neither of which can run code.

A state is a tree of dicts (str keys), lists, tuples, str, int, float, bool and None with numpy arrays, numpy
scalars and torch tensors as leaves. The leaves go into the safetensors file under numbered keys; the JSON holds
the tree with each leaf replaced by ``{"__tensor__": key, "kind": "numpy" | "numpy_scalar" | "torch", "dtype",
"shape"}`` (what to give back: a numpy array, a numpy scalar or a CPU tensor of that dtype) and each tuple by
``{"__tuple__": [...]}``, plus the sha256 of the safetensors file written with it, so a pair from two different
saves is refused. Anything else in a file to load is refused by a ValueError naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from remodiff.store import partial_path, write_json_atomic

FORMAT, VERSION = "remodiff-state", 1
TENSOR, TUPLE = "__tensor__", "__tuple__"
KINDS = ("numpy", "numpy_scalar", "torch")


def state_files(stem: str | Path) -> tuple[Path, Path]:
    """``(<stem>.json, <stem>.safetensors)``."""
    stem = Path(stem)
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def save_state(stem: str | Path, state) -> None:
    """Write ``state`` to ``<stem>.json`` and ``<stem>.safetensors``, each atomically (tensors first: the JSON names
    the tensor file's hash). A value outside the format is a TypeError naming where it is in the state."""
    json_path, tensor_path = state_files(stem)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "state")
    blob = safetensors.torch.save(tensors)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path(tensor_path).write_bytes(blob)
    os.replace(partial_path(tensor_path), tensor_path)
    write_json_atomic(json_path, {"format": FORMAT, "version": VERSION,
                                  "tensors_sha256": hashlib.sha256(blob).hexdigest(), "state": tree})


def load_state(stem: str | Path):
    """The state saved by :func:`save_state` at ``stem``: arrays, scalars and tensors as they were saved (tensors on
    the CPU), tuples as tuples."""
    json_path, tensor_path = state_files(stem)
    try:
        header = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_path}: not a ReMoDiff state file (not JSON: {e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION \
            or set(header) != {"format", "version", "tensors_sha256", "state"}:
        raise ValueError(f"{json_path}: not a ReMoDiff state file (expected a JSON object with format {FORMAT!r}, "
                         f"version {VERSION}, tensors_sha256 and state)")
    blob = tensor_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != header["tensors_sha256"]:
        raise ValueError(f"{tensor_path}: is not the tensor file saved with {json_path} (its sha256 differs)")
    try:
        tensors = safetensors.torch.load(blob)
    except Exception as e:  # safetensors' own error type is not part of its public API
        raise ValueError(f"{tensor_path}: not a safetensors file ({e})") from None
    used: set[str] = set()
    state = _decode(header["state"], tensors, used, json_path)
    if used != set(tensors):
        raise ValueError(f"{tensor_path}: holds tensors the state does not use: {sorted(set(tensors) - used)}")
    return state


def _encode(value, tensors: dict[str, torch.Tensor], where: str):
    """``value`` as JSON, its arrays / scalars / tensors moved into ``tensors``."""
    if isinstance(value, (np.ndarray, np.generic)):  # before float: np.float64 is one, JSON would drop its type
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot save {where}: numpy dtype {value.dtype}; a model state holds numbers and bools")
        kind = "numpy" if isinstance(value, np.ndarray) else "numpy_scalar"
        return _reference(torch.from_numpy(np.array(value, order="C")), kind, str(value.dtype), tensors)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        # a copy: safetensors refuses tensors that share memory (tied weights, views of one buffer)
        return _reference(value.detach().cpu().contiguous().clone(), "torch", str(value.dtype), tensors)
    if isinstance(value, tuple):
        return {TUPLE: [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or key in (TENSOR, TUPLE):
                raise TypeError(f"cannot save {where}: its key {key!r} is not a str or is reserved by the format")
        return {key: _encode(v, tensors, f"{where}[{key!r}]") for key, v in value.items()}
    raise TypeError(f"cannot save {where}: a {type(value).__name__}; a model state holds only dicts, lists, tuples, "
                    f"str, int, float, bool, None, numpy arrays and torch tensors")


def _reference(tensor: torch.Tensor, kind: str, dtype: str, tensors: dict[str, torch.Tensor]) -> dict:
    """Put ``tensor`` (a copy the caller owns, contiguous) into ``tensors``; the JSON entry that names it."""
    key = str(len(tensors))
    tensors[key] = tensor
    return {TENSOR: key, "kind": kind, "dtype": dtype, "shape": list(tensor.shape)}


def _decode(node, tensors: dict[str, torch.Tensor], used: set[str], path: Path):
    """The value a JSON ``node`` stands for; the tensor keys it references are added to ``used``."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, tensors, used, path) for v in node]
    if not isinstance(node, dict):
        raise ValueError(f"{path}: not a ReMoDiff state file (a {type(node).__name__} in its state)")
    if TUPLE in node:
        if set(node) != {TUPLE} or not isinstance(node[TUPLE], list):
            raise ValueError(f"{path}: a malformed tuple entry {node}")
        return tuple(_decode(v, tensors, used, path) for v in node[TUPLE])
    if TENSOR in node:
        return _tensor(node, tensors, used, path)
    return {key: _decode(v, tensors, used, path) for key, v in node.items()}


def _tensor(node: dict, tensors: dict[str, torch.Tensor], used: set[str], path: Path):
    """The array / scalar / tensor a reference names, checked against what the reference says it is."""
    if set(node) != {TENSOR, "kind", "dtype", "shape"} or not isinstance(node[TENSOR], str) \
            or node["kind"] not in KINDS:
        raise ValueError(f"{path}: a malformed tensor entry {node}")
    key = node[TENSOR]
    if key not in tensors:
        raise ValueError(f"{path}: its tensor {key!r} is not in the tensor file")
    used.add(key)
    tensor = tensors[key]
    value = tensor if node["kind"] == "torch" else tensor.numpy()
    if node["kind"] == "numpy_scalar":
        value = value[()]
    if str(value.dtype) != node["dtype"] or list(tensor.shape) != node["shape"]:
        raise ValueError(f"{path}: tensor {key!r} is {value.dtype} {list(tensor.shape)}, its entry says "
                         f"{node['dtype']} {node['shape']}")
    return value


def refuse_pickled(stem: str | Path, legacy: str, retrain: str) -> None:
    """Refuse, without opening it, a model directory that holds only ``legacy``: the pickle an older ReMoDiff saved
    instead of the state at ``stem`` (unpickling a file can run any code, so it is never loaded)."""
    stem = Path(stem)
    if not state_files(stem)[0].exists() and (stem.parent / legacy).exists():
        raise ValueError(f"{stem.parent}: saved by an older version of ReMoDiff with pickle ({legacy}), which this "
                         f"version never loads (unpickling can run code); retrain it: {retrain}")
