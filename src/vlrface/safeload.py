"""Reading tensor files without running code: the one place the package unpickles anything.

A ``.pt`` / ``.pth`` / ``.ckpt`` file is a pickle, and unpickling calls
whatever the file names (a crafted file's ``__reduce__`` can return
``(os.system, ("…",))``). Every tensor file vlrface reads — checkpoints, the
optimiser shards of distributed runs, trunk caches, published weights for
``vlrface convert`` — goes through :func:`load_tensors`:

* first ``torch.load(weights_only=True)``: PyTorch's restricted unpickler,
  which builds tensors, dtypes and plain containers (dict, list, tuple, str,
  numbers) and refuses every other name *before* calling anything;
* with ``foreign_ok=True`` (published weights only), a zip-format file that
  also holds other classes (a Lightning ``.ckpt``'s hyper-parameters) is read
  again by :class:`TensorsOnlyUnpickler`: it rebuilds tensors and turns every
  other class into an inert :class:`Opaque` dict, so nothing foreign is
  imported or called. It reads the whole file, the legacy magic-number
  records included, and the legacy formats (raw pickle stream, tar) are
  never handed to it at all.

Any failure is a one-line :class:`~vlrface.errors.UserError` that says what is
wrong with the file (empty, truncated, foreign code refused …). Arrays
(``.npy``/``.npz``: galleries, embedding caches) are read with NumPy's
``allow_pickle=False``, the same rule.
"""

from __future__ import annotations

import pickle
import re
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError, brief

# torch._utils functions that rebuild a tensor or parameter from its storage (the ones PyTorch's own
# weights-only unpickler allows; they take tensors, sizes and dtypes, never a callable to run)
_REBUILD = frozenset(
    {
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_qtensor",
        "_rebuild_sparse_tensor",
    }
)
_PLAIN = {("collections", "OrderedDict"), ("torch", "Size")}


class Opaque(dict):
    """Stands in for any class that is not a tensor or a plain container (Lightning hyper-parameters …)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        pass


class TensorsOnlyUnpickler(pickle.Unpickler):
    """Rebuilds tensors; every other global becomes :class:`Opaque`, so no foreign code is imported or run."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in _REBUILD:
            return getattr(torch._utils, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        return Opaque


def _load_restricted(file: Any, **kwargs: Any) -> Any:
    return TensorsOnlyUnpickler(file, **kwargs).load()


# the ``pickle_module`` handed to torch.load: its ``load`` (used for the legacy magic-number records) and its
# ``Unpickler`` (used for the data) are both the restricted one — never the raw ``pickle.load``
TENSORS_ONLY = types.SimpleNamespace(Unpickler=TensorsOnlyUnpickler, load=_load_restricted, __name__="tensors_only")


def load_tensors(
    path: str | Path, *, what: str = "checkpoint", map_location: Any = "cpu", foreign_ok: bool = False
) -> Any:
    """The tensors and plain containers in a torch file; a :class:`UserError` for anything else.

    ``what`` names the file in messages ("checkpoint", "trunk cache" …).
    ``foreign_ok`` reads other classes in a zip-format file as inert
    :class:`Opaque` stubs instead of refusing the file (published weights).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path} is empty (0 bytes): an interrupted copy or save? Copy or write it again")
    try:
        with warnings.catch_warnings():  # PyTorch warns about legacy pickles; the error below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # refused by the restricted unpickler before anything was called
        refused = _refused_global(e)
        blocked = "is blocked" in str(e)  # os, subprocess, builtins …: never stubbed, always refused
        if refused is None:
            raise UserError(
                f"cannot read {what} {path}: not a PyTorch tensor file (truncated or damaged, or a pickle of "
                "other objects); refused, nothing in it was run"
            ) from None
    except Exception as e:  # truncated, damaged, not a torch file, or a device it cannot map to
        raise UserError(f"cannot read {what} {path}: {_damaged(path, e)}") from None
    if not foreign_ok or not zipfile.is_zipfile(path) or blocked:
        raise UserError(
            f"{what} {path} holds Python objects besides tensors ({refused}); refused, nothing in it was run "
            "(loading them could run code: vlrface reads tensors and plain containers only)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=False, pickle_module=TENSORS_ONLY)
    except Exception as e:
        raise UserError(f"cannot read {what} {path} as tensors: {brief(e)}") from None


def _refused_global(error: pickle.UnpicklingError) -> str | None:
    """The class or function PyTorch's weights-only unpickler refused, or None when it refused the data itself."""
    m = re.search(r"GLOBAL ([\w.]+)", str(error))
    return m.group(1) if m else None


def _damaged(path: Path, error: BaseException) -> str:
    if isinstance(error, RuntimeError) and "device" in str(error).lower() and zipfile.is_zipfile(path):
        return brief(error)  # a good file saved on a device this machine lacks
    size = path.stat().st_size
    return f"not a complete PyTorch file ({size:,} bytes): truncated, damaged or of another kind ({brief(error)})"
