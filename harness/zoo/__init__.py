"""WHAT is measured: the model registry and the builders registered in it.

Importing this package registers every builder of the zoo modules listed here.
"""

from harness.zoo import (  # noqa: F401  (register builders)
    box_simulation,
    classifiers,
    detectors,
    detnas,
    guidelines,
    strip_pooling,
    testing,
    torchvision_models,
)
from harness.zoo.registry import create_model, get_entry, is_known_model, list_models, register_model

__all__ = ["create_model", "get_entry", "is_known_model", "list_models", "register_model"]
