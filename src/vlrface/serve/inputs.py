"""What the batch verbs (embed, quality, identify, align) accept as INPUT...: images, folders, file lists.

* an image file (any of ``IMAGE_EXTS``);
* a folder, searched recursively for images, in sorted order;
* a ``.txt`` file list: one path per line, relative paths taken from the
  list's own folder (so a list travels with its images); blank lines and
  lines starting with ``#`` are ignored.

A path named on the command line that does not exist is a user mistake (one
line, exit 2). A path *inside a list* that does not exist is kept: reading it
fails later and is counted in the run's :class:`~vlrface.data.readers.SkipReport`,
so a stale list is reported image by image instead of stopping a long run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from rich.progress import track

from ..data.readers import IMAGE_EXTS, SkipReport, read_image
from ..errors import NoFaceError, UserError

LIST_EXTS = (".txt",)
# Largest image the HTTP service decodes (width × height, read from the header before decoding): 4096² =
# 16.8 MP. A face needs 112 px and YuNet looks at 640 px, so a 12–16 MP phone photo is already far more than
# enough; decoding one costs ~100 MB. Larger images only cost memory (a 7000² PNG bomb: ~50 kB sent, ~300 MB
# decoded), so they get 413 unless `vlrface serve --max-pixels` says otherwise.
DEFAULT_MAX_PIXELS = 4096 * 4096


def read_file_list(path: Path) -> list[Path]:
    """The paths a ``.txt`` list names, relative ones resolved against the list's folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read file list {path}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            out.append(p if p.is_absolute() else path.parent / p)
    return out


def image_files(inputs: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Images, folders and file lists → ``(file, name relative to its input)``, in order.

    The relative name keeps a folder's layout (``photos/Ann/1.jpg`` →
    ``Ann/1.jpg``) for verbs that write one output per input; a listed or
    named file keeps just its file name.
    """
    inputs = list(inputs)
    out: list[tuple[Path, Path]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            out += [
                (f, f.relative_to(p)) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTS
            ]
        elif p.is_file() and p.suffix.lower() in LIST_EXTS:
            out += [(f, Path(f.name)) for f in read_file_list(p)]
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise UserError(f"input not found: {p}")
    if not out:
        raise UserError(
            f"no images ({', '.join(IMAGE_EXTS)}) in: {' '.join(map(str, inputs))} "
            "(a file list is a .txt with one path a line)"
        )
    return out


def read_faces(
    files: list[Path], face: Callable[[np.ndarray], np.ndarray], skips: SkipReport, chunk: int = 256
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """Face crops of ``files`` in chunks: ``(positions in files, crops)`` per chunk.

    ``face`` turns an RGB image into the network-sized crop (e.g.
    :meth:`vlrface.serve.app.FaceService.face`) and raises
    :class:`~vlrface.errors.NoFaceError` when aligning finds no face.
    Unreadable files and faceless images go to ``skips`` with the reason;
    chunking keeps a large input from being held in memory all at once.
    """
    for start in track(range(0, len(files), chunk), description="reading", transient=True, disable=len(files) <= chunk):
        keep, crops = [], []
        for i in range(start, min(start + chunk, len(files))):
            img = read_image(files[i], skips)
            if img is None:
                continue
            try:
                crops.append(face(img))
                keep.append(i)
            except NoFaceError:
                skips.add(files[i], "no face found")
        yield keep, crops
