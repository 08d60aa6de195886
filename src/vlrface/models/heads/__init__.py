"""Margin heads; each module registers its classes in ``HEADS``.

All share :class:`~vlrface.models.heads.base.MarginSoftmax` and return
:class:`~vlrface.models.heads.base.HeadOutput`.
"""

from . import adaface, additive, curricularface, magface, movr, mv_softmax, softmax, unpg  # noqa: F401
from .base import HeadOutput, MarginSoftmax, additive_angular

__all__ = ["HeadOutput", "MarginSoftmax", "additive_angular"]
