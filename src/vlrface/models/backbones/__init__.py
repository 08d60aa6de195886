"""Backbone networks; each module registers its constructors in ``BACKBONES``."""

from . import (  # noqa: F401
    iresnet,
    mobilefacenet,
    nano,
    sface,
)
