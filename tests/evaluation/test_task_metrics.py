"""Task conventions and task metrics (sentiment, classification, dispatch, K-sample aggregation), by hand."""
from __future__ import annotations

import numpy as np
import pytest

from remodiff.tasks import Task, class_indices, classification_metrics, sentiment_metrics
from tests.conftest import TRAITS

SENTIMENT_TRUE = np.array([-2.4, -0.6, 0.0, 0.0, 1.2, 2.6])
SENTIMENT_PRED = np.array([-1.0, 0.4, 0.1, 0.3, 2.5, 1.6])
CLASSES = ["neutral", "happy", "sad"]
CLASS_TRUE = np.array([[0.0], [0.0], [1.0], [1.0], [1.0], [2.0]])
CLASS_PRED = np.array([0, 1, 1, 1, 0, 0])


def test_sentiment_metrics_follow_mmsa_definitions():
    out = sentiment_metrics(SENTIMENT_TRUE, SENTIMENT_PRED[:, None])
    # Has0: truth >= 0 = [F F T T T T], prediction >= 0 = [F T T T T T] -> 5 of 6 agree.
    assert out["Has0_acc_2"] == pytest.approx(5 / 6)
    # F1(False) = 2/3 (P 1/1, R 1/2), F1(True) = 8/9 (P 4/5, R 4/4); weighted by support 2, 4: 44/54.
    assert out["Has0_F1_score"] == pytest.approx(22 / 27)
    # Non0: the two neutral clips leave; truth > 0 = [F F T T], prediction > 0 = [F T T T] -> 3 of 4.
    assert out["Non0_acc_2"] == pytest.approx(3 / 4)
    # F1(False) = 2/3 (P 1/1, R 1/2), F1(True) = 4/5 (P 2/3, R 2/2); supports 2, 2: 11/15.
    assert out["Non0_F1_score"] == pytest.approx(11 / 15)
    # Acc7 rounds half to even as MMSA's np.round: truth [-2 -1 0 0 1 3], prediction [-1 0 0 0 2 2] (2.5 -> 2;
    # rounding half up would make it 3 and give 3/6).
    assert out["Mult_acc_7"] == pytest.approx(2 / 6)
    # Acc5 clips to [-2, 2] first: truth [-2 -1 0 0 1 2], prediction [-1 0 0 0 2 2] -> 3 of 6.
    assert out["Mult_acc_5"] == pytest.approx(3 / 6)
    # |errors| = 1.4 1.0 0.1 0.3 1.3 1.0 -> 5.1 / 6
    assert out["MAE"] == pytest.approx(0.85)
    assert out["Corr"] == pytest.approx(np.corrcoef(SENTIMENT_TRUE, SENTIMENT_PRED)[0, 1])
    assert set(out) == {"Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7",
                        "MAE", "Corr"}


def test_sentiment_metrics_edge_cases_and_bad_input():
    neutral = sentiment_metrics(np.zeros(3), np.array([0.5, -0.5, 0.0]))
    assert neutral["Non0_acc_2"] is None and neutral["Non0_F1_score"] is None  # no non-neutral clip
    assert neutral["Corr"] is None  # constant truth: r undefined
    assert neutral["Has0_acc_2"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"must be \[N\] or \[N, 1\]"):
        sentiment_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        sentiment_metrics(np.zeros(2), np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="same non-empty length"):
        sentiment_metrics(np.zeros(2), np.zeros(3))


def test_classification_metrics_by_hand():
    # predictions as probabilities; row 0 ties classes 0 and 1 -> class 0 (the lowest index)
    probabilities = np.eye(3)[CLASS_PRED] * 0.5 + 0.1
    probabilities[0] = [0.4, 0.4, 0.2]
    from_scores = classification_metrics(CLASS_TRUE, probabilities, CLASSES)
    from_indices = classification_metrics(CLASS_TRUE, CLASS_PRED[:, None].astype(np.float32), CLASSES)
    assert from_scores == from_indices
    # correct: rows 0, 2, 3 -> 3 / 6
    assert from_scores["accuracy"] == pytest.approx(0.5)
    # F1 class 0: P 1/3 (rows 0, 4, 5 predicted), R 1/2 -> 2/5; class 1: P 2/3, R 2/3 -> 2/3; class 2: 0
    assert from_scores["macro_f1"] == pytest.approx((2 / 5 + 2 / 3 + 0) / 3)
    assert from_scores["weighted_f1"] == pytest.approx((2 * 2 / 5 + 3 * 2 / 3 + 0) / 6)
    # recall per class: 1/2, 2/3, 0
    assert from_scores["uar"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    # a class predicted but absent from the truth does not count in UAR: recalls 1/2 (class 0), 1 (class 1)
    assert classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], CLASSES)["uar"] == pytest.approx(0.75)


def test_classification_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match=r"integers in \[0, 3\); found \[1.5\]"):
        classification_metrics(np.array([0.0, 1.5]), np.array([0, 1]), CLASSES)
    with pytest.raises(ValueError, match=r"integers in \[0, 3\); found \[3\]"):
        classification_metrics(np.array([0, 1]), np.array([0, 3]), CLASSES)
    with pytest.raises(ValueError, match="at least two classes"):
        classification_metrics(np.array([0]), np.array([0]), ["only"])
    with pytest.raises(ValueError, match="same non-empty length"):
        classification_metrics(np.array([0, 1]), np.array([0]), CLASSES)


def test_task_metric_families_dispatch():
    sentiment = Task.of("regression").metrics(["sentiment"])
    assert sentiment.compute(SENTIMENT_TRUE[:, None], SENTIMENT_PRED[:, None]) == \
        sentiment_metrics(SENTIMENT_TRUE, SENTIMENT_PRED)
    traits = np.full((4, len(TRAITS)), 0.5)
    personality = Task.of("regression").metrics(TRAITS).compute(traits, traits + 0.1)
    assert personality["mean_acc"] == pytest.approx(0.9)
    assert Task.of("classification", CLASSES).metrics(["emotion"]).compute(CLASS_TRUE, CLASS_PRED)["accuracy"] == 0.5
    with pytest.raises(ValueError, match="needs at least two class names"):
        Task.of("classification")
    with pytest.raises(ValueError, match="unknown task 'ranking'; valid values: classification, regression"):
        Task.of("ranking")


def test_aggregate_predictions_mean_and_majority_vote():
    mean = Task.of("regression").aggregate([np.array([[1.0], [3.0]]), np.array([[3.0], [5.0]])])
    np.testing.assert_allclose(mean, [[2.0], [4.0]])
    # three samples over two clips: clip 0 votes 2, 1, 2 -> class 2; clip 1 votes 0, 1, 2 -> tie -> class 0
    samples = [np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]]),
               np.array([[0.2, 0.5, 0.3], [0.3, 0.6, 0.1]]),
               np.array([[0.0, 0.1, 0.9], [0.2, 0.3, 0.5]])]
    shares = Task.of("classification", CLASSES).aggregate(samples)
    np.testing.assert_allclose(shares, [[0, 1 / 3, 2 / 3], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_array_equal(class_indices(shares), [2, 0])
    # two samples voting 2 and 1: tie -> class 1 (lower index), though sample 0 was more confident
    tie = Task.of("classification", CLASSES).aggregate([np.array([[0.0, 0.1, 0.9]]), np.array([[0.0, 0.6, 0.4]])])
    np.testing.assert_array_equal(class_indices(tie), [1])
    with pytest.raises(ValueError, match="no predictions"):
        Task.of("regression").aggregate([])


def test_task_from_attrs():
    assert Task.from_attrs({}) == Task.of("regression")
    task = Task.from_attrs({"task": "classification", "classes": CLASSES})
    assert task.is_classification and task.classes == tuple(CLASSES)
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        Task.from_attrs({"task": "ranking"})
    with pytest.raises(ValueError, match="labels contain NaN or inf"):
        Task.of("regression").check_labels(np.array([[0.1], [np.inf]]))
    with pytest.raises(ValueError, match=r"must be \[N\] or \[N, 1\] class indices"):
        task.check_labels(np.zeros((3, 2)))
