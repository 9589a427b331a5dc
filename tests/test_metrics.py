"""Metric values and decision thresholds against numbers worked out by hand on small fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.metrics import classification_metrics
from pipeline.evaluation.thresholds import apply_threshold, choose_threshold, precision_recall_at

# 10 rows, positive class 1: TP = 4 (rows 4-7), FP = 1 (row 3), FN = 2 (rows 8, 9), TN = 3 (rows 0-2).
REFS = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
PREDS = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
# p(spam): negatives 0.1 0.2 0.3 0.6; positives 0.9 0.8 0.7 0.65 0.4 0.35. Of the 24 (positive, negative)
# pairs the positive scores higher in 4 + 4 + 4 + 4 + 3 + 3 = 22, so ROC-AUC = 22/24.
SCORES = [0.1, 0.2, 0.3, 0.6, 0.9, 0.8, 0.7, 0.65, 0.4, 0.35]


def test_binary_metrics_match_hand_computed_values():
    m = classification_metrics(REFS, PREDS, num_labels=2, positive_label=1, scores=SCORES)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["recall"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(8 / 11)  # 2TP / (2TP + FP + FN)
    # Class 0: precision TN/(TN+FN) = 3/5, recall TN/(TN+FP) = 3/4, F1 = 6/9.
    assert m["per_class"][0] == pytest.approx({"precision": 0.6, "recall": 0.75, "f1": 6 / 9, "support": 4})
    assert m["per_class"][1] == pytest.approx({"precision": 0.8, "recall": 4 / 6, "f1": 8 / 11, "support": 6})
    assert m["precision_macro"] == pytest.approx((0.6 + 0.8) / 2)
    assert m["recall_macro"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert m["f1_macro"] == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert m["confusion_matrix"] == [[3, 1], [2, 4]]  # rows true, columns predicted
    assert m["roc_auc"] == pytest.approx(22 / 24)


def test_positive_label_zero_reports_the_other_class():
    m = classification_metrics(REFS, PREDS, num_labels=2, positive_label=0)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((0.6, 0.75, 6 / 9))
    assert "roc_auc" not in m  # no scores given


def test_multiclass_metrics_are_macro_averages():
    # class 0: P 1/1 R 1/2; class 1: P 1/2 R 1/2; class 2: P 2/3 R 2/2.
    m = classification_metrics([0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1], num_labels=3)
    f1s = [2 / 3, 1 / 2, 4 / 5]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["f1"] == pytest.approx(sum(f1s) / 3) == pytest.approx(m["f1_macro"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert "roc_auc" not in m


def test_a_class_absent_from_the_data_still_gets_a_row_and_no_roc_auc():
    m = classification_metrics([0, 0, 0], [0, 1, 0], num_labels=2, scores=[0.1, 0.9, 0.2])
    assert m["confusion_matrix"] == [[2, 1], [0, 0]]
    assert m["per_class"][1]["support"] == 0 and m["precision"] == 0.0
    assert "roc_auc" not in m  # undefined with one class


# Validation set for thresholds: labels and p(spam). Going down the distinct scores:
#   t=0.9: P 1   R 1/3  F1 .5     t=0.8: P 1   R 2/3  F1 .8     t=0.7: P 2/3 R 2/3 F1 2/3
#   t=0.6: P 3/4 R 1    F1 6/7    t=0.4: P 3/5 R 1    F1 3/4    t=0.1: P 1/2 R 1   F1 2/3
VAL_LABELS = [0, 0, 0, 1, 1, 1]
VAL_SCORES = [0.1, 0.4, 0.7, 0.6, 0.8, 0.9]


def test_best_f1_threshold_sits_between_the_best_cut_and_the_next_score():
    t = choose_threshold(VAL_LABELS, VAL_SCORES, strategy="best_f1")
    assert t.value == pytest.approx((0.6 + 0.4) / 2)
    assert (t.validation_precision, t.validation_recall, t.validation_f1) == pytest.approx((3 / 4, 1, 6 / 7))
    assert t.target_precision is None and t.target_reached


@pytest.mark.parametrize(("target", "value", "recall"), [(1.0, (0.8 + 0.7) / 2, 2 / 3), (0.7, (0.6 + 0.4) / 2, 1.0)])
def test_target_precision_takes_the_most_recall_among_precise_enough_cuts(target, value, recall):
    t = choose_threshold(VAL_LABELS, VAL_SCORES, strategy="target_precision", target_precision=target)
    assert t.value == pytest.approx(value)
    assert t.validation_precision >= target and t.validation_recall == pytest.approx(recall)
    assert t.target_reached and t.target_precision == target


def test_unreachable_target_precision_falls_back_to_the_most_precise_cut():
    t = choose_threshold([0, 1], [0.9, 0.1], strategy="target_precision", target_precision=0.99)
    assert not t.target_reached
    assert t.value == pytest.approx(0.05) and t.validation_precision == pytest.approx(0.5)


def test_threshold_for_positive_label_zero_uses_that_class():
    # p(class 0) for rows whose true class is 0 (first three) is high.
    t = choose_threshold([0, 0, 0, 1, 1], [0.9, 0.8, 0.7, 0.3, 0.2], strategy="best_f1", positive_label=0)
    assert t.value == pytest.approx(0.5) and t.validation_f1 == 1.0 and t.positive_label == 0


def test_apply_threshold_matches_the_classifier_rule():
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    assert apply_threshold(probs, None).tolist() == [0, 1, 0]  # argmax
    assert apply_threshold(probs, 0.35).tolist() == [1, 1, 1]
    assert apply_threshold(probs, 0.5).tolist() == [0, 1, 1]  # >= : a tie goes to the positive class
    assert apply_threshold(probs, 0.55, positive_label=0).tolist() == [0, 1, 1]
    three = np.array([[0.2, 0.3, 0.5]])
    assert apply_threshold(three, 0.1).tolist() == [2]  # thresholds only apply to binary tasks


def test_precision_recall_at_with_no_positive_predictions_is_zero_not_nan():
    assert precision_recall_at(np.array([0, 1]), np.array([0.1, 0.2]), 0.5) == (0.0, 0.0, 0.0)
