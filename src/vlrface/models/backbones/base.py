"""What :class:`~vlrface.models.FaceModel` needs of a backbone network.

A backbone maps ``[B,3,H,W]`` through ``forward_features`` to its last feature
map ``[B, feature_channels, h, w]`` and through ``forward_head`` to an
unnormalised embedding ``[B, embedding_size]``. The built-in backbones
subclass :class:`Backbone`; it only declares that interface (no state, no
``__init__``), so any ``nn.Module`` with these members works as well.
"""

from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """The backbone interface: ``forward_features``, ``forward_head``, ``embedding_size``, ``feature_channels``."""

    embedding_size: int
    feature_channels: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Network input ``[B,3,H,W]`` → the last feature map ``[B,C,h,w]``."""
        raise NotImplementedError

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        """A feature map ``[B,C,h,w]`` → the unnormalised embedding ``[B,D]``."""
        raise NotImplementedError
