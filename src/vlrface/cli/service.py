"""Service verbs: identify, serve, align.

Unreadable images and (with ``--align``) images without a face are reported
on stderr — count and names — never silently dropped.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import cv2
import typer

from ..data.readers import SkipReport, read_image, read_image_folder
from ..errors import UserError
from ..serve.gallery import INDEXES, MAX_TOP_K, THRESHOLD_LIMIT, Gallery
from ..serve.inputs import DEFAULT_MAX_PIXELS, image_files
from .app import app, finite
from .pretrained import CKPT_OPTION, MODEL_OPTION, resolve_ckpt

_THRESHOLD = typer.Option(
    0.3,
    min=-THRESHOLD_LIMIT,
    max=THRESHOLD_LIMIT,
    callback=finite,
    help="Cosine score below which the answer is 'unknown' (tune it on your data).",
)
_DEVICE = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:1 …")


def _build_gallery(service, folder: Path) -> None:
    images = read_image_folder(folder)
    skips = SkipReport()
    emb, q, keep = service.encode_files(images.paths, skips)
    if not keep:
        raise UserError(f"no usable gallery image in {folder}: {skips.summary()}")
    service.gallery.add(emb, [images.names[images.labels[i]] for i in keep], q)
    service.save()
    g = service.gallery
    print(f"gallery: {len(g)} images of {len(g.identities)} identities → {service.gallery_dir}")
    skips.print_summary()


@app.command()
def identify(
    ckpt: Path | None = CKPT_OPTION,
    model: str | None = MODEL_OPTION,
    gallery: Path = typer.Option(..., help="Gallery folder: read, or written by --build."),
    probe: list[Path] = typer.Option([], help="Probe image or folder; more may follow as arguments."),
    inputs: list[Path] = typer.Argument(None, help="More probe images or folders.", show_default=False),
    build: Path = typer.Option(None, help="Build (replace) the gallery from an ID/image.jpg folder first."),
    top: int = typer.Option(5, min=1, max=MAX_TOP_K, help="Candidates per probe."),
    threshold: float = _THRESHOLD,
    quality_threshold: float = typer.Option(
        None, callback=finite, help="Flag probes whose quality (PRM) is below this."
    ),
    index: str = typer.Option("flat", help=f"Index for a new gallery: {', '.join(INDEXES.names())}."),
    align: bool = typer.Option(False, help="Detect (YuNet) and align whole photos first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    device: str = _DEVICE,
    matcher: str = typer.Option(
        "cosine",
        help="cosine (best entry, via the index) or nac (exact; --threshold then "
        "applies to the top-1 probability, docs/nac.md).",
    ),
    nac_k: int = typer.Option(16, min=1, help="NAC: identity prototypes in the softmax."),
    nac_temperature: float = typer.Option(1.0, min=1e-6, callback=finite, help="NAC: softmax temperature T."),
) -> None:
    """Search probes in a gallery (FAISS); top-K with an 'unknown' threshold and quality flags."""
    from ..eval.matchers import MATCHERS
    from ..serve.app import FaceService

    match = None if matcher == "cosine" else MATCHERS.build(matcher, k=nac_k, temperature=nac_temperature)
    ckpt = resolve_ckpt(ckpt, model)

    probes = [*probe, *(inputs or [])]
    if build is None and not Gallery.exists(gallery):
        raise UserError(f"no gallery in {gallery}: build one with --build ID_FOLDER")
    if not probes and build is None:
        raise UserError("nothing to do: give --probe INPUT... (and/or --build FOLDER)")
    INDEXES.get(index)
    files = image_files(probes) if probes else []
    service = FaceService(ckpt, gallery, align=align, index=index, device=device, rebuild=build is not None)
    if build is not None:
        _build_gallery(service, build)
    if not files:
        return
    if not len(service.gallery):
        raise UserError(f"gallery {gallery} is empty")
    skips = SkipReport()
    emb, q, keep = service.encode_files([f for f, _ in files], skips)
    results = service.gallery.identify(emb, top, threshold, q, quality_threshold, match)
    rows = [{"probe": str(files[i][0]), **r.to_dict()} for i, r in zip(keep, results)]
    if as_json:
        for r in rows:
            r["quality"] = None if r["quality"] is None or math.isnan(r["quality"]) else r["quality"]
        print(json.dumps(rows, indent=1))
    else:
        _print_table(rows, top)
    skips.print_summary()


def _print_table(rows: list[dict], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"top-{top} identities per probe")
    for col in ("probe", "answer", "score", "quality", "flags", f"top-{top}"):
        table.add_column(col)
    for r in rows:
        flags = ", ".join(f for f, on in (("unknown", r["unknown"]), ("low quality", r["low_quality"])) if on)
        q = r["quality"]
        table.add_row(
            r["probe"],
            r["identity"],
            f"{r['score']:.3f}",
            "-" if q is None or math.isnan(q) else f"{q:.3f}",
            flags,
            " ".join(f"{c['identity']}({c['score']:.2f})" for c in r["candidates"]),
        )
    Console(width=160).print(table)


@app.command()
def serve(
    ckpt: Path | None = CKPT_OPTION,
    model: str | None = MODEL_OPTION,
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 exposes it to the network)."),
    gallery: Path = typer.Option(None, help="Gallery folder, kept on disk across restarts (default: in memory only)."),
    align: bool = typer.Option(False, help="Detect (YuNet) and align whole photos."),
    max_bytes: int = typer.Option(10 * 2**20, min=1, help="Largest accepted upload in bytes."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, min=1, help="Largest accepted image (width × height, read from its header)."
    ),
    top: int = typer.Option(5, min=1, max=MAX_TOP_K, help="Default candidates per /identify."),
    threshold: float = _THRESHOLD,
    quality_threshold: float = typer.Option(
        None, callback=finite, help="Default for /identify: flag probes whose quality (PRM) is below this."
    ),
    index: str = typer.Option("flat", help=f"Index for a new gallery: {', '.join(INDEXES.names())}."),
    device: str = _DEVICE,
) -> None:
    """HTTP service (FastAPI): embedding, quality, identification, gallery enrolment."""
    import uvicorn

    from ..serve.app import create_app

    INDEXES.get(index)
    web = create_app(
        resolve_ckpt(ckpt, model),
        gallery,
        align=align,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        top=top,
        threshold=threshold,
        quality_threshold=quality_threshold,
        index=index,
        device=device,
    )
    if gallery is None:
        typer.echo("vlrface: warning: no --gallery DIR: enrolments live in memory and are lost at exit", err=True)
    else:
        _writable_folder(gallery)
    uvicorn.run(web, host=host, port=port, log_level="warning")


def _writable_folder(folder: Path) -> None:
    """A gallery folder must be a folder we can write (created if missing): found at startup, not at the
    first enrolment."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--gallery {folder} is a file, not a folder: give a folder (created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"--gallery {folder} cannot be written: {e.strerror or e}") from None


@app.command()
def align(
    inputs: list[Path] = typer.Argument(
        None, help="Images, folders (recursive) or .txt file lists.", show_default=False
    ),
    out: Path = typer.Option(..., help="Output folder; folder inputs keep their sub-folder layout."),
    landmarks: Path = typer.Option(
        None, help="Landmark file (IMAGE x1 y1 … x5 y5 per line): align these images, no detection."
    ),
    all_faces: bool = typer.Option(False, "--all-faces", help="Write every face (name_1.png …), not only the largest."),
) -> None:
    """Align faces to the 112×112 arcface template: detected by YuNet, or from given 5-point landmarks."""
    from ..data.align import YuNetDetector, read_landmarks
    from ..data.align import align as warp

    if bool(inputs) == (landmarks is not None):
        raise UserError("give either INPUT... (faces are detected) or --landmarks FILE (faces are given), not both")
    if landmarks is not None:
        jobs = [(p, _relative(p, landmarks.parent), lm) for p, lm in read_landmarks(landmarks)]
    else:
        jobs = [(p, rel, None) for p, rel in image_files(inputs)]
    detector = YuNetDetector() if landmarks is None else None
    skips, no_face, written = SkipReport(), [], 0
    for path, rel, points in jobs:
        img = read_image(path, skips)
        if img is None:
            continue
        crops = [warp(img, points)] if points is not None else detector.detect_and_align(img)
        if not crops:
            no_face.append(str(path))
            continue
        for k, crop in enumerate(crops if all_faces else crops[:1]):
            dst = out / rel.with_name(f"{rel.stem}_{k}.png" if k else f"{rel.stem}.png")
            dst.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dst), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            written += 1
    print(f"aligned {written} face(s) from {len(jobs) - len(no_face) - len(skips)} of {len(jobs)} image(s) → {out}")
    if no_face:
        (out / "no_face.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / "no_face.txt").write_text("\n".join(no_face) + "\n")
        shown = ", ".join(no_face[:5]) + (f" and {len(no_face) - 5} more" if len(no_face) > 5 else "")
        typer.echo(f"no face found in {len(no_face)} image(s) (listed in {out / 'no_face.txt'}): {shown}", err=True)
    skips.print_summary()


def _relative(path: Path, root: Path) -> Path:
    """Output name of a listed image: its path below the list's folder (layout kept), else its file name."""
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return Path(path.name)
