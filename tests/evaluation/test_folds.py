"""Grouped k-fold cross-validation, per-clip predictions and the paired bootstrap of the comparison."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from remodiff.evaluation.folds import assign_folds, cross_validation, group_rule, pool
from remodiff.evaluation.matrix import hierarchical_bootstrap
from remodiff.pipeline import stage
from remodiff.pipeline.compare_table import comparison_markdown, how_named, mark
from remodiff.results import Predictions, concatenate_predictions, load_predictions, save_predictions
from remodiff.store import save_featureset
from tests.conftest import ROOT, toy_featureset


def test_group_rules_on_the_ids_each_adapter_writes():
    assert group_rule("ravdess_actor")("01-01-06-01-02-01-12") == "12"
    assert group_rule("crema_d_actor")("1001_DFA_ANG_XX") == "1001"
    assert group_rule("youtube_id")("J4GQm9j0JZ0.003.mp4") == "J4GQm9j0JZ0"
    assert group_rule("youtube_id")("--Ymqszjv54.001.mp4") == "--Ymqszjv54"  # FI ids may start with dashes, hold dots
    assert group_rule("youtube_id")("a.b.c.004.mp4") == "a.b.c"
    assert group_rule("mmsa_video")("03bSnISJMiM$_$1") == "03bSnISJMiM"
    assert group_rule("clip")("x.001.mp4") == "x.001.mp4"
    assert group_rule(r"regex:^spk(\d+)_")("spk07_take3") == "07"
    for rule, bad in (("ravdess_actor", "1001_DFA_ANG_XX"), ("crema_d_actor", "01-01-06-01-02-01-12"),
                      ("youtube_id", "clip7"), ("mmsa_video", "03bSnISJMiM_1"), (r"regex:^spk(\d+)_", "take3")):
        with pytest.raises(ValueError, match=bad.replace("$", r"\$")):
            group_rule(rule)(bad)
    with pytest.raises(ValueError, match="valid: crema_d_actor, mmsa_video, ravdess_actor, youtube_id, clip"):
        group_rule("actor")
    with pytest.raises(ValueError, match="needs a group"):
        group_rule("regex:spk")


def test_folds_keep_groups_whole_test_every_clip_once_and_are_seeded_and_balanced():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 30, size=24)  # 24 actors with 1..29 clips each
    groups = [f"actor{g}" for g, n in enumerate(sizes) for _ in range(n)]
    folds = assign_folds(groups, 5, seed=0)
    for g in set(groups):
        assert len({folds[i] for i, h in enumerate(groups) if h == g}) == 1
    load = np.bincount(folds, minlength=5)
    assert load.sum() == len(groups) and load.max() - load.min() <= sizes.max()
    np.testing.assert_array_equal(folds, assign_folds(groups, 5, seed=0))
    assert any((assign_folds(groups, 5, seed=s) != folds).any() for s in (1, 2, 3))
    with pytest.raises(ValueError, match="at least 5 groups"):
        assign_folds(["a", "a", "b"], 5, seed=0)

    data = pool([toy_featureset(30, seed=1), toy_featureset(12, seed=2)])
    runs = cross_validation(data, 3, r"regex:clip(\d+_\d)", seed=0)  # groups of up to 10 clips
    tested = [i for run in runs for i in run["test"].ids]
    assert sorted(tested) == sorted(data.ids)
    for run in runs:
        roles = [set(run[r].ids) for r in ("train", "val", "test")]
        assert sum(map(len, roles)) == len(data) and not (roles[0] & roles[1] or roles[0] & roles[2] or
                                                          roles[1] & roles[2])
        row = data.ids.index(run["test"].ids[0])
        np.testing.assert_array_equal(run["test"].features["audio"][0], data.features["audio"][row])


def predictions_with(correct: dict[str, float], n: int, seed: int) -> dict[str, Predictions]:
    """Classification predictions of each imputer, right on a share ``correct[imputer]`` of ``n`` clips."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=n)
    out = {}
    for imputer, share in correct.items():
        right = rng.random(n) < share
        guess = np.where(right, labels, (labels + 1) % 3)
        out[imputer] = Predictions([f"c{i}" for i in range(n)], labels[:, None].astype(np.float32), ["emotion"],
                                   "classification", ["a", "b", "c"], np.eye(3)[labels],
                                   {"random/mr_0.5": {"imputed": np.eye(3)[guess]}})
    return out


def test_the_paired_bootstrap_marks_better_worse_and_equal_imputers():
    shares = {"mean": 0.6, "knn": 0.55, "diffusion": 0.9, "gan": 0.2, "cvae": 0.6}
    runs = [predictions_with(shares, 80, seed) for seed in range(3)]
    per_imputer = {i: [run[i] for run in runs] for i in shares}
    table = {"upper_bound": {"accuracy": 1.0}, "train_mean": {"accuracy": 0.33}, "runs": 3, "resamples": 500,
             "random": {"mr_0.5": {}}, "labels": {i: i for i in shares}, "classical": ["mean", "knn"]}
    for imputer, parts in per_imputer.items():
        accuracy = [np.mean(p.cells["random/mr_0.5"]["imputed"].argmax(1) == p.labels[:, 0]) for p in parts]
        table["random"]["mr_0.5"][imputer] = {"accuracy": float(np.mean(accuracy))}
    kinds = {i: "imputed" for i in shares}
    mark(table, per_imputer, kinds, "accuracy", 500)
    row = table["random"]["mr_0.5"]
    reference = "mean" if row["mean"]["accuracy"] >= row["knn"]["accuracy"] else "knn"
    assert "best_classical" not in row[reference]["paired"]
    assert row["diffusion"]["paired"]["best_classical"]["reference"] == reference
    assert row["diffusion"]["paired"]["best_classical"]["ci95_low"] > 0
    assert row["gan"]["paired"]["best_classical"]["ci95_high"] < 0 and row["gan"]["paired"]["mean"]["ci95_high"] < 0
    assert "mean" not in row["mean"]["paired"]  # never tested against itself
    markdown = comparison_markdown(table, list(shares), "accuracy")
    line = next(x for x in markdown.splitlines() if x.startswith("| row"))
    assert line == "| row | mr_0.5 |"
    cells = {x.strip("| ").split(" | ")[0]: x.strip("| ").split(" | ")[1] for x in markdown.splitlines()
             if x.startswith("| ")}
    assert cells["diffusion"].endswith(" * +m") and cells["gan"].endswith(" † −m")
    assert cells[reference].startswith("**") and cells["cvae"][-1].isdigit()  # as good as mean: unmarked
    # the same predictions under another name: no difference, so no mark
    same = {"mean": per_imputer["mean"], "copy": per_imputer["mean"]}
    diffs = hierarchical_bootstrap([lambda clips: 0.0] * 3, [80] * 3, 100, seed=0)
    assert np.all(diffs == 0)
    assert np.all(hierarchical_bootstrap([np.zeros(80)] * 3, [80] * 3, 100, seed=0) == 0)
    table = {"random": {"mr_0.5": {"mean": {"accuracy": 0.6}, "copy": {"accuracy": 0.6}}}, "classical": ["mean"]}
    mark(table, same, {"mean": "imputed", "copy": "imputed"}, "accuracy", 200)
    paired = table["random"]["mr_0.5"]["copy"]["paired"]["mean"]
    assert paired["ci95_low"] == paired["ci95_high"] == 0.0


def test_predictions_round_trip_and_pool_out_of_fold(tmp_path):
    parts = [predictions_with({"mean": 0.5}, n, seed)["mean"] for n, seed in ((5, 0), (7, 1))]
    save_predictions(tmp_path / "fold_0/seed_0.h5", parts[0])
    again = load_predictions(tmp_path / "fold_0/seed_0.h5")
    assert again.ids == parts[0].ids and again.task == "classification" and again.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(again.cells["random/mr_0.5"]["imputed"], parts[0].cells["random/mr_0.5"]["imputed"])
    pooled = concatenate_predictions(parts)
    assert len(pooled.ids) == 12 and pooled.cells["random/mr_0.5"]["imputed"].shape == (12, 3)
    with pytest.raises(FileNotFoundError, match="fold_1"):
        load_predictions(tmp_path / "fold_1/seed_0.h5")


def test_a_k_fold_run_of_the_stages_scores_every_clip_out_of_fold(tmp_path, monkeypatch):
    """The stages from masks to report on stored toy features, 3 folds x 1 seed (no DVC, seconds)."""
    dims = (("audio", 8), ("video", 6))
    splits = {"train": toy_featureset(18, seed=1, segments=2, dims=dims),
              "val": toy_featureset(6, seed=2, segments=2, dims=dims), "test": toy_featureset(6, seed=3, segments=2, dims=dims)}
    for name, data in splits.items():
        save_featureset(tmp_path / f"data/features/{name}.h5", data)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"].pop("text")
    params["eval"].update(seeds=[0], samples=1, folds={"k": 3, "group": "clip", "seed": 0})
    params["masks"].update(protocol="random", random=[0.0, 0.5])
    params["imputer"]["type"] = "mean"
    params["fuser"]["train"].update(epochs=3, patience=3, device="cpu")
    params["compare"].update(imputers=["zero", "mean", "knn"], resamples=50)
    params["report"]["benchmark"] = None
    monkeypatch.chdir(tmp_path)
    for name in ("masks", "train_imputer", "reconstruct", "train_fuser", "evaluate"):
        stage(name)(params)
    for imputer in params["compare"]["imputers"]:
        stage("compare_train")(params, imputer)
        stage("compare")(params, imputer)
    table = stage("compare_table")(params)
    figures = stage("report")(params)

    every = sorted(i for data in splits.values() for i in data.ids)
    tested = [load_predictions(tmp_path / f"data/predictions/main/fold_{f}/seed_0.h5").ids for f in range(3)]
    assert sorted(i for ids in tested for i in ids) == every
    compared = load_predictions(tmp_path / "data/predictions/compare/knn/fold_2/seed_0.h5")
    assert compared.ids == tested[2] and set(compared.cells) == {"random/mr_0.0", "random/mr_0.5"}
    downstream = json.loads((tmp_path / "metrics/downstream.json").read_text())
    assert set(downstream["pooled"]["random"]["mr_0.5"]) == {"imputed", "lower_bound"}
    assert downstream["complete"]["mean_acc_ci95"] is not None  # over 3 runs
    assert table["runs"] == 3
    assert table["random"]["mr_0.5"]["lower_bound"]["paired"]["best_classical"]["reference"] in ("zero", "mean", "knn")
    # with folds the table shows pooled out-of-fold numbers; auto routes between the rows on validation clips
    assert set(table["pooled"]["random"]["mr_0.5"]) == {"zero", "mean", "knn", "lower_bound", "auto"}
    assert "pooled out-of-fold" in (tmp_path / "metrics/comparison.md").read_text()
    assert sum(table["routes"]["audio"].values()) == 3  # one choice per run for clips that have audio only
    assert figures["comparison_missing_rate.png"] is not None
    assert "zero (raw 0)" in (tmp_path / "metrics/comparison.md").read_text()


def test_per_clip_differences_resample_like_the_recomputed_ones():
    """The vectorised path (per-clip arrays) and the general one (a function of the drawn clips) draw from the same
    distribution: same centre and spread on runs of different means and sizes."""
    rng = np.random.default_rng(3)
    deltas = [rng.normal(mu, 1.0, n) for mu, n in ((0.1, 60), (0.3, 90), (-0.05, 40))]
    fast = hierarchical_bootstrap(deltas, [len(d) for d in deltas], 4000, seed=1)
    slow = hierarchical_bootstrap([lambda clips, d=d: float(d[clips].mean()) for d in deltas],
                                  [len(d) for d in deltas], 4000, seed=2)
    assert fast.shape == slow.shape == (4000,)
    assert abs(fast.mean() - slow.mean()) < 0.01
    assert abs(np.subtract(*np.percentile(fast, [97.5, 2.5])) - np.subtract(*np.percentile(slow, [97.5, 2.5]))) < 0.03


def test_the_table_names_imputers_as_the_compare_stages_recorded_and_refuses_older_results():
    labels, classical = how_named({"zero": {"classical": True, "imputer_label": "zero (raw 0)"},
                                   "knn": {"classical": True}, "cvae": {"classical": False}})
    assert labels == {"zero": "zero (raw 0)"} and classical == ["zero", "knn"]
    with pytest.raises(ValueError, match=r"compare/knn/downstream.json: written before .* re-run the compare stage"):
        how_named({"knn": {"train_mean": {"accuracy": 0.3}}})
