"""The one import of the model wrapper used for serving; re-point this line when the Classifier moves."""

from pipeline.predict import Classifier, Prediction, resolve_device

__all__ = ["Classifier", "Prediction", "resolve_device"]
