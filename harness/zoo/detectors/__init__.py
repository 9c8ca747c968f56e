"""Object detectors, one module per family, sharing :class:`~harness.zoo.detectors.base.Detector`'s
interface (images in, per-image boxes, scores and labels out; network timed apart from pre- and
post-processing). Importing this package registers every family's builders in the model registry.
"""

from harness.zoo.detectors import (  # noqa: F401  (importing a family registers its builders)
    centernet,
    cornernet,
    extremenet,
    ssd,
    torchvision_detectors,
    yolov3,
)
from harness.zoo.detectors.base import Detections, Detector, ImageMeta, Target
from harness.zoo.detectors.postprocess import METHODS, Suppression, suppress

#: Each registered detector's Methods and Backbone as the papers print them (the report's detector table).
PAPER_NAMES: dict[str, tuple[str, str]] = {
    "yolov3_darknet53": ("YOLOv3", "DarkNet-53"),
    "retinanet_resnet50_fpn": ("RetinaNet", "ResNet-50-FPN"),
    "retinanet_detnas_300m_fpn": ("RetinaNet", "DetNAS-COCO-RetinaNet-300M"),
    "retinanet_resnext101_fpn": ("RetinaNet", "ResNeXt-101-FPN"),
    "fasterrcnn_resnet50_fpn": ("Faster R-CNN", "ResNet-50-FPN"),
    "ssd300_vgg16": ("SSD300", "VGG-16"),
    "ssdlite320_mobilenet_v3_large": ("SSDLite", "MobileNetV3-Large"),
    "centernet_resnet18": ("CenterNet", "ResNet-18"),
    "centernet_dla34": ("CenterNet", "DLA-34"),
    "centernet_hourglass104": ("CenterNet", "Hourglass-104"),
    "cornernet_hourglass104": ("CornerNet", "Hourglass-104"),
    "cornernet_saccade": ("CornerNet-Saccade", "Hourglass-54 + attention"),
    "cornernet_squeeze": ("CornerNet-Squeeze", "Hourglass (fire modules)"),
    "extremenet_hourglass104": ("ExtremeNet", "Hourglass-104"),
}

__all__ = ["METHODS", "PAPER_NAMES", "Detections", "Detector", "ImageMeta", "Suppression", "Target", "suppress"]
