"""The model-state file format (remodiff.statefile): nested states round-trip exactly, and a file that is not one
(crafted, tampered, or a legacy pickle) is refused without running anything."""
from __future__ import annotations

import hashlib
import json
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from remodiff.fusion import build_fuser, load_fuser
from remodiff.imputers import build_imputer, load_imputer
from remodiff.standardise import Standardiser
from remodiff.statefile import load_state, save_state, state_files
from tests.conftest import RunsCode, toy_featureset


def every_kind() -> dict:
    return {"array": np.arange(6, dtype=np.float32).reshape(2, 3).T,  # not C-contiguous
            "ints": np.array([3, 1], np.int64), "mask": np.array([True, False]), "empty": np.zeros((0, 4), np.float16),
            "scalar": np.float64(0.1), "flag": np.bool_(True),
            "weights": OrderedDict(w=torch.randn(2, 3, dtype=torch.float64), n=torch.tensor(7)),
            "pair": (np.ones(2, np.float32), {"mean": [1.5, None]}), "history": [{"loss": 0.25, "epoch": 1}],
            "name": "x", "count": 3, "ratio": float("inf"), "done": False, "nothing": None}


def test_a_nested_state_round_trips_with_its_types_and_dtypes(tmp_path):
    state = every_kind()
    save_state(tmp_path / "state", state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]  # no .partial left
    again = load_state(tmp_path / "state")
    assert list(again) == list(state)
    for key in ("array", "ints", "mask", "empty"):
        assert type(again[key]) is np.ndarray and again[key].dtype == state[key].dtype
        np.testing.assert_array_equal(again[key], state[key])
    assert type(again["scalar"]) is np.float64 and again["scalar"] == state["scalar"]
    assert type(again["flag"]) is np.bool_ and again["flag"]
    assert all(torch.equal(again["weights"][k], v) and again["weights"][k].dtype == v.dtype
               for k, v in state["weights"].items())
    assert type(again["pair"]) is tuple and again["pair"][1] == {"mean": [1.5, None]}
    assert {k: again[k] for k in ("history", "name", "count", "ratio", "done", "nothing")} == \
           {k: state[k] for k in ("history", "name", "count", "ratio", "done", "nothing")}


def test_saving_an_object_is_refused_naming_where_it_is(tmp_path):
    scaler = Standardiser({"audio": np.zeros(2)}, {"audio": np.ones(2)})
    with pytest.raises(TypeError, match=r"state\['fit'\]\['scaler'\]: a Standardiser"):
        save_state(tmp_path / "state", {"fit": {"scaler": scaler}})
    with pytest.raises(TypeError, match="numpy dtype object"):
        save_state(tmp_path / "state", {"names": np.array(["a", None], dtype=object)})
    with pytest.raises(TypeError, match="reserved"):
        save_state(tmp_path / "state", {"__tensor__": "0"})


def tamper(tmp_path, change) -> None:
    """Save a small state, then rewrite its JSON header through ``change``."""
    save_state(tmp_path / "state", {"w": np.ones(3, np.float32), "n": 2})
    json_path = state_files(tmp_path / "state")[0]
    header = json.loads(json_path.read_text())
    change(header)
    json_path.write_text(json.dumps(header))


@pytest.mark.parametrize("change, message", [
    (lambda h: h.update(format="pickle"), "not a ReMoDiff state file"),
    (lambda h: h.pop("tensors_sha256"), "not a ReMoDiff state file"),
    (lambda h: h["state"]["w"].update({"__tensor__": "5"}), "tensor '5' is not in the tensor file"),
    (lambda h: h["state"]["w"].update(dtype="float64"), "tensor '0' is float32 \\[3\\], its entry says float64"),
    (lambda h: h["state"]["w"].update(kind="module"), "malformed tensor entry"),
    (lambda h: h["state"]["w"].update({"__tensor__": [0]}), "malformed tensor entry"),
    (lambda h: h["state"].update(n={"__tuple__": 2}), "malformed tuple entry"),
    (lambda h: h["state"].update(w=2), "holds tensors the state does not use"),
    (lambda h: h.update(tensors_sha256="0" * 64), "is not the tensor file saved with"),
])
def test_a_tampered_state_is_refused_naming_the_file(tmp_path, change, message):
    tamper(tmp_path, change)
    with pytest.raises(ValueError, match=message) as error:
        load_state(tmp_path / "state")
    assert str(tmp_path) in str(error.value)


def test_a_json_that_is_not_json_is_refused_naming_the_file(tmp_path):
    save_state(tmp_path / "state", {"n": 1})
    (tmp_path / "state.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(ValueError, match=r"state\.json: not a ReMoDiff state file"):
        load_state(tmp_path / "state")


def test_a_pickle_in_place_of_the_tensor_file_runs_nothing(tmp_path):
    """Even with a header naming the crafted file's own hash, the tensor file is parsed as safetensors only."""
    marker = tmp_path / "ran"
    save_state(tmp_path / "state", {"w": np.ones(3, np.float32)})
    payload = pickle.dumps(RunsCode(marker))
    (tmp_path / "state.safetensors").write_bytes(payload)
    header = json.loads((tmp_path / "state.json").read_text())
    header["tensors_sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / "state.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_state(tmp_path / "state")
    assert not marker.exists()


def test_the_payload_would_run_code_if_unpickled(tmp_path):
    """The check the refusals rely on: plain unpickling of the crafted payload does create the marker."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


def test_a_legacy_pickled_imputer_is_refused_unopened(tmp_path):
    imputer = build_imputer("mean")
    imputer.fit(toy_featureset(10))
    imputer.save(tmp_path / "mean")
    for new in state_files(tmp_path / "mean" / "state"):
        new.unlink()  # what an older version left: imputer.json and state.pkl
    marker = tmp_path / "ran"
    (tmp_path / "mean" / "state.pkl").write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(ValueError, match="older version of ReMoDiff with pickle \\(state.pkl\\).*train_imputer"):
        load_imputer(tmp_path / "mean")
    assert not marker.exists()


def test_a_legacy_pickled_fuser_is_refused_unopened(tmp_path):
    fuser = build_fuser("linear", ["audio", "video"])
    fuser.fit(toy_featureset(20), None)
    fuser.save(tmp_path / "linear")
    for new in state_files(tmp_path / "linear" / "state"):
        new.unlink()
    marker = tmp_path / "ran"
    torch.save(RunsCode(marker), tmp_path / "linear" / "state.pt")  # torch.save pickles
    with pytest.raises(ValueError, match="older version of ReMoDiff with pickle \\(state.pt\\).*train_fuser"):
        load_fuser(tmp_path / "linear")
    assert not marker.exists()
