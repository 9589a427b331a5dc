"""Classification metrics as a local ``evaluate`` module (loaded by path, so it works offline).

``evaluate.load("accuracy")`` downloads its script from the Hugging Face Hub; this module ships with
the package instead and computes accuracy, precision, recall and F1 (for the positive class and
macro-averaged), per-class scores, the confusion matrix and, given positive-class scores, ROC-AUC.
The arithmetic is scikit-learn's.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

_DESCRIPTION = (
    "Accuracy, precision, recall, F1 (positive class and macro), per-class scores, confusion matrix, ROC-AUC."
)
_KWARGS = """
Args:
    predictions: predicted class ids.
    references: true class ids.
    num_labels: number of classes (default: 2); fixes the confusion-matrix size.
    positive_label: the class whose precision/recall/F1 are reported as `precision`, `recall`, `f1`
        (default 1 = spam); with more than two classes these are macro averages instead.
    scores: optional positive-class probabilities, one per row, for `roc_auc` (binary only).
Returns:
    accuracy, precision, recall, f1, precision_macro, recall_macro, f1_macro, per_class
    ({class_id: {precision, recall, f1, support}}), confusion_matrix (rows = true, columns = predicted),
    roc_auc (when scores are given and both classes occur).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class SpamMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=2, positive_label=1, scores=None):
        labels = list(range(num_labels))
        per = precision_recall_fscore_support(references, predictions, labels=labels, zero_division=0)
        macro = precision_recall_fscore_support(
            references, predictions, labels=labels, average="macro", zero_division=0
        )
        result = {"accuracy": float(accuracy_score(references, predictions))}
        if num_labels == 2:
            result.update(
                precision=float(per[0][positive_label]),
                recall=float(per[1][positive_label]),
                f1=float(per[2][positive_label]),
            )
        else:
            result.update(precision=float(macro[0]), recall=float(macro[1]), f1=float(macro[2]))
        result.update(precision_macro=float(macro[0]), recall_macro=float(macro[1]), f1_macro=float(macro[2]))
        result["per_class"] = {
            i: {
                "precision": float(per[0][i]),
                "recall": float(per[1][i]),
                "f1": float(per[2][i]),
                "support": int(per[3][i]),
            }
            for i in labels
        }
        result["confusion_matrix"] = confusion_matrix(references, predictions, labels=labels).tolist()
        if scores is not None and num_labels == 2 and len(set(references)) == 2:
            positives = [int(r == positive_label) for r in references]
            result["roc_auc"] = float(roc_auc_score(positives, scores))
        return result
