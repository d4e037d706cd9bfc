"""The shared training loop: early stopping on a validation score, min_epochs, learning-rate schedules."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from remodiff.training import TrainConfig, fit


class Scalar(nn.Module):
    """One parameter ``w``: with loss ``w`` (gradient 1) each Adam step moves it by exactly the learning rate."""

    def __init__(self, start: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(start))


ONE_BATCH = {"x": torch.zeros(8, 1)}  # one step per epoch with batch_size 8


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 25, "batch_size": 8, "lr": 0.1, "patience": 100, "seed": 0,
                          "cpu_threads": 1, **overrides})


def test_early_stopping_keeps_the_best_validation_score_not_the_lowest_loss():
    """w walks from 3 down by 0.1 per epoch: the loss w^2 falls every epoch, the score -(w - 1.5)^2 peaks midway."""
    def run(with_score: bool) -> tuple[float, list[dict], list[float]]:
        model, seen = Scalar(3.0), []

        def score(m: nn.Module) -> float:
            seen.append(float(m.w.detach()))
            return -(float(m.w.detach()) - 1.5) ** 2

        history = fit(model, lambda m, b: m.w ** 2, ONE_BATCH, ONE_BATCH, config(),
                      val_score=score if with_score else None)
        return float(model.w.detach()), history, seen

    w, history, seen = run(with_score=True)
    best = max(range(len(history)), key=lambda e: history[e]["val_score"])
    assert 5 < best < len(history) - 5  # the case is built so that the two criteria disagree
    assert w == pytest.approx(seen[best]) and w == pytest.approx(1.5, abs=0.06)
    # the history says which epoch's weights were restored, out of how many allowed; JSON sees a plain list
    assert (history.best_epoch, history.epoch_cap) == (best, 25)
    assert history.summary("val score") == {"epochs": len(history), "best_epoch": best, "epoch_cap": 25,
                                            "criterion": "val score"}
    assert json.loads(json.dumps(history)) == [dict(row) for row in history]
    assert min(range(len(history)), key=lambda e: history[e]["val_loss"]) == len(history) - 1
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_score"}

    w_by_loss, history_by_loss, _ = run(with_score=False)
    assert "val_score" not in history_by_loss[0]
    assert w_by_loss == pytest.approx(min(row["val_loss"] for row in history_by_loss) ** 0.5, rel=1e-4)
    assert w_by_loss < 0.7


def test_min_epochs_delays_early_stopping():
    flat = lambda m: 0.0  # noqa: E731  (never improves after the first epoch)
    loss = lambda m, b: m.w ** 2  # noqa: E731
    assert len(fit(Scalar(1.0), loss, ONE_BATCH, ONE_BATCH, config(patience=2), val_score=flat)) == 3
    assert len(fit(Scalar(1.0), loss, ONE_BATCH, ONE_BATCH, config(patience=2, min_epochs=9),
                   val_score=flat)) == 9


def test_warm_up_epochs_are_never_kept_nor_counted_for_patience():
    """The score falls every epoch (epoch 0 is best): with monitor_from the first candidate is the first epoch after
    the warm-up, and patience counts from there."""
    falling = lambda m: float(m.w.detach())  # noqa: E731  (w falls every epoch: epoch 0 scores best)
    loss = lambda m, b: m.w  # noqa: E731
    plain = fit(Scalar(3.0), loss, ONE_BATCH, ONE_BATCH, config(patience=2), val_score=falling)
    assert plain.best_epoch == 0 and len(plain) == 3
    model = Scalar(3.0)
    warm = fit(model, loss, ONE_BATCH, ONE_BATCH, config(patience=2, monitor_from=5), val_score=falling)
    assert warm.best_epoch == 5 and len(warm) == 8  # epochs 0-4 warm-up, 5 kept, 6-7 without improvement
    assert float(model.w.detach()) == pytest.approx(warm[5]["val_score"])
    short = fit(Scalar(3.0), loss, ONE_BATCH, ONE_BATCH, config(epochs=3, monitor_from=5), val_score=falling)
    assert short.best_epoch == 2  # only warm-up epochs: the last model is kept


def learning_rates(cfg: TrainConfig, val_score=None) -> list[float]:
    """The step each epoch took, which Adam makes equal to that epoch's learning rate for a constant gradient."""
    model = Scalar(0.0)
    positions = [0.0]
    fit(model, lambda m, b: m.w, ONE_BATCH, ONE_BATCH, cfg, after_step=lambda: positions.append(float(model.w.detach())),
        val_score=val_score)
    return [before - after for before, after in zip(positions, positions[1:])]


def test_schedules_set_the_learning_rate_per_epoch():
    assert learning_rates(config(epochs=4)) == pytest.approx([0.1] * 4, rel=1e-5)
    cosine = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert learning_rates(config(epochs=4, schedule="cosine")) == pytest.approx(cosine, rel=1e-5)
    # plateau: halved once the score has not improved for patience // 2 = 2 epochs (after epoch 3)
    plateau = learning_rates(config(epochs=6, patience=4, min_epochs=6, schedule="plateau"), val_score=lambda m: 0.0)
    assert plateau == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05], rel=1e-5)


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="training schedule 'linear'; valid values: constant, cosine, plateau"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="min_epochs must be >= 0"):
        TrainConfig(min_epochs=-1)
    with pytest.raises(ValueError, match=r"unknown training params \['warmup'\]"):
        TrainConfig.from_params({"warmup": 3})

    def own_step(batch, epoch):
        return {"loss": 0.0}

    with pytest.raises(ValueError, match="custom training step owns its optimisers"):
        fit(Scalar(0.0), lambda m, b: m.w, ONE_BATCH, None, config(schedule="cosine"), step=own_step)
