"""vlrface: very low-resolution face recognition and quality estimation.

Implements the Recognizability Index (Chai et al., CVPR 2023) with the
backbones, margin heads, training, protocols and serving around it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vlrface")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
