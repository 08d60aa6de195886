"""Networks: backbones, margin heads and the RI modules (PAM, PRM).

``BACKBONES`` and ``HEADS`` are registries: ``BACKBONES.build("iresnet50")``,
``HEADS.build("arcface", embedding_size=512, num_classes=1000)``.
``PRETRAINED`` names the ready models (``sface``, ``sface-vlr``) that
``load_pretrained(name)`` builds (:mod:`vlrface.models.pretrained`).
"""

# Importing the modules registers their entries.
from . import backbones, heads  # noqa: F401
from .face_model import FaceModel, FaceOutput, build_model
from .pretrained import PRETRAINED, load_pretrained
from .registries import BACKBONES, HEADS

__all__ = ["BACKBONES", "HEADS", "PRETRAINED", "FaceModel", "FaceOutput", "build_model", "load_pretrained"]
