"""Datasets: image folders read for a model, and small real datasets shipped inside installed packages.

``digits``: the scikit-learn 8×8 handwritten digits written once as a PNG image folder (train/test).
``imagefolder``: any ``<root>/<class>/<image>`` folder as preprocessed batches for a model.
"""

from harness.data.digits import digits_root
from harness.data.imagefolder import image_folder_loader

__all__ = ["digits_root", "image_folder_loader"]
