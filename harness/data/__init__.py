"""Datasets: image folders read for a model, and small real datasets shipped inside installed packages.

``digits``: the scikit-learn 8×8 handwritten digits written once as a PNG image folder (train/test).
``imagefolder``: any ``<root>/<class>/<image>`` folder as preprocessed batches for a model.
``digit_boxes``: the same digits pasted on canvases with exact boxes, as a COCO-format detection dataset.
``coco``: any image folder with a COCO instances json, as (image, target) pairs; ``coco_json`` reads and checks
COCO json (torch-free); ``targets``: a detector's ground truth of one image.

Importing the package imports nothing else: each module is imported where it is used.
"""
