"""The model registries, in a module of their own so that the networks can register
themselves without importing the package that imports them."""

from ..registry import Registry

BACKBONES: Registry = Registry("backbone")
HEADS: Registry = Registry("head")
