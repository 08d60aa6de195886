"""Networks: backbones, margin heads and the RI modules (PAM, PRM).

``BACKBONES`` and ``HEADS`` are registries: ``BACKBONES.build("iresnet50")``,
``HEADS.build("arcface", embedding_size=512, num_classes=1000)``.
"""

# Importing the modules registers their entries.
from . import backbones, heads  # noqa: F401
from .face_model import FaceModel, FaceOutput, build_model
from .registries import BACKBONES, HEADS

__all__ = ["BACKBONES", "HEADS", "FaceModel", "FaceOutput", "build_model"]
