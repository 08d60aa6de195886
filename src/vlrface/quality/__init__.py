"""Face-quality scorers behind one interface; each module registers its class in ``SCORERS``.

``score(images or embeddings) → np.ndarray``, higher = better (DESIGN.md
"Quality scorers"). ``build_scorer(name, model, checkpoint)`` builds one from a
loaded model and its checkpoint dict (some need the trained head or its name).
"""

from typing import Any

from ..models.face_model import FaceModel

# Importing the modules registers their entries.
from . import crfiqa, magface, nan, norm, ri, serfiq  # noqa: F401
from .base import EmbeddingScorer, QualityScorer, head_input
from .registry import SCORERS


def build_scorer(name: str, model: FaceModel, checkpoint: dict[str, Any]) -> QualityScorer:
    """The scorer ``name`` for a model loaded from ``checkpoint`` (see :func:`vlrface.checkpoint.load_model`)."""
    return SCORERS.get(name).from_checkpoint(model, checkpoint)


__all__ = ["SCORERS", "EmbeddingScorer", "QualityScorer", "build_scorer", "head_input"]
