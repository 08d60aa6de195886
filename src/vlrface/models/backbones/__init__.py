"""Backbone networks; each module registers its constructors in ``BACKBONES``."""

from . import iresnet, mobilefacenet, nano  # noqa: F401
from . import sface  # noqa: F401
