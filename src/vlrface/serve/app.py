"""The face service: a model and a gallery behind one lock, and its HTTP face.

:class:`FaceService` is what ``vlrface identify`` and ``vlrface serve`` share:
images in (RGB ``uint8``, any size), faces prepared the same way (YuNet +
5-point alignment with ``align=True``, else a plain resize of an already
cropped face), embeddings and PRM quality out, gallery search and enrolment.
One re-entrant lock serialises model inference and gallery mutation, so
concurrent HTTP requests are safe; every enrolment or removal is saved to
disk at once (atomic snapshot swap, see :mod:`vlrface.serve.gallery`).

:func:`create_app` wraps a service in FastAPI; the endpoints are documented in
``docs/serving.md``. FastAPI is imported only there, so ``identify`` and
batch jobs run without it. (No ``from __future__ import annotations`` here:
FastAPI reads the endpoints' annotations, which name locally imported classes.)
"""

import hashlib
import re
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from ..checkpoint import load_model, resolve_device
from ..data.align import YuNetDetector
from ..data.readers import SkipReport
from ..errors import NoFaceError, UserError
from .gallery import MAX_TOP_K, THRESHOLD_LIMIT, Gallery, Identification, SaveError, check_identity
from .inputs import DEFAULT_MAX_PIXELS, read_faces

if TYPE_CHECKING:
    from fastapi import FastAPI

DEFAULT_MAX_BYTES = 10 * 2**20  # uploads above this get 413
DECODE_SLOTS = 4  # images decoded at once, whatever the number of requests: bounds the decoding memory
MULTIPART_SLACK = 64 * 2**10  # multipart headers around the file, allowed on top of the limit
# An oversized upload up to this many times the limit is read and dropped before the 413: a server that
# answers and closes with the body unread makes the kernel reset the connection, and the client may see
# the reset instead of the 413. Larger bodies are refused at once (the reset is the lesser cost).
DRAIN_FACTOR = 8
BATCH = 64  # model batch: enough to fill a CPU, small enough for any GPU at 112×112


def checkpoint_hash(path: str | Path) -> str:
    """SHA-256 of the checkpoint file: galleries remember which model made their embeddings."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


class FaceService:
    """Model + preprocessing + optional detector + gallery, thread-safe."""

    def __init__(
        self,
        ckpt: str | Path,
        gallery_dir: str | Path | None = None,
        *,
        align: bool = False,
        index: str = "flat",
        device: str = "cpu",
        rebuild: bool = False,
        flip: bool = False,
        batch_size: int = BATCH,
    ) -> None:
        """``rebuild=True`` starts an empty gallery that replaces the saved one at the next save;
        ``flip`` adds the mirrored image's embedding (see :meth:`FaceModel.infer`)."""
        self.gallery_dir = Path(gallery_dir) if gallery_dir else None
        if self.gallery_dir and self.gallery_dir.exists() and not self.gallery_dir.is_dir():
            raise UserError(f"gallery {self.gallery_dir} is a file, not a folder: give a folder (created if missing)")
        self.device = resolve_device(device)
        self.model, self.preprocessing, _ = load_model(ckpt, self.device)
        self.flip, self.batch_size = flip, batch_size
        self.checkpoint = checkpoint_hash(ckpt)
        if self.gallery_dir and Gallery.exists(self.gallery_dir) and not rebuild:
            self.gallery = Gallery.load(self.gallery_dir, checkpoint=self.checkpoint)
        else:
            self.gallery = Gallery(self.model.embedding_size, index=index, checkpoint=self.checkpoint)
        self.detector = YuNetDetector() if align else None
        self.lock = threading.RLock()

    def face(self, image: np.ndarray) -> np.ndarray:
        """The network-sized face crop of an RGB image (largest face when aligning)."""
        size = self.preprocessing.size
        if self.detector is not None:
            with self.lock:
                faces = self.detector.detect_and_align(image, size)
            if not faces:
                raise NoFaceError("no face found in the image")
            return faces[0]
        if image.shape[:2] == (size, size):
            return image
        return cv2.resize(
            image, (size, size), interpolation=cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_CUBIC
        )

    def encode(self, faces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Face crops → L2-normalised embeddings ``[N,D]`` and PRM quality ``[N]`` (NaN without a PRM)."""
        embs, quals = [], []
        with self.lock, torch.inference_mode():
            for i in range(0, len(faces), self.batch_size):
                x = self.preprocessing.to_tensor(faces[i : i + self.batch_size]).to(self.device)
                e, q = self.model.infer(x, self.flip)
                embs.append(e.cpu().numpy())
                quals.append(q.cpu().numpy() if q is not None else np.full(len(e), np.nan, np.float32))
        d = self.model.embedding_size
        return (np.concatenate(embs) if embs else np.zeros((0, d), np.float32)), (
            np.concatenate(quals) if quals else np.zeros(0)
        )

    def encode_files(
        self, files: list[Path], skips: SkipReport, chunk: int = 256
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Embeddings and quality of the readable images with a face, and their positions in ``files``.

        Unreadable files and (aligning) images without a face go to ``skips``
        with the reason (see :func:`~vlrface.serve.inputs.read_faces`, which
        also keeps memory bounded by reading ``chunk`` files at a time).
        """
        embs, quals, keep = [], [], []
        for pos, faces in read_faces(files, self.face, skips, chunk):
            e, q = self.encode(faces)
            embs.append(e)
            quals.append(q)
            keep += pos
        d = self.model.embedding_size
        return (
            (np.concatenate(embs) if embs else np.zeros((0, d), np.float32)),
            (np.concatenate(quals) if quals else np.zeros(0)),
            keep,
        )

    def search(
        self,
        emb: np.ndarray,
        quality: np.ndarray,
        k: int = 5,
        threshold: float = 0.3,
        quality_threshold: float | None = None,
    ) -> list[Identification]:
        """Gallery answers for embeddings from :meth:`encode`, under the lock (enrolment may run beside it)."""
        with self.lock:
            return self.gallery.identify(emb, k, threshold, quality, quality_threshold)

    def enrol(self, identities: list[str], faces: list[np.ndarray]) -> np.ndarray:
        """Add faces under the given identities and persist; returns their quality.

        All or nothing: when the save fails (:class:`~vlrface.serve.gallery.SaveError`) the entries
        are taken out of memory again, so memory and disk agree and a retry adds no duplicate.
        """
        emb, q = self.encode(faces)
        with self.lock, self.gallery.transaction():
            self.gallery.add(emb, identities, q)
            self.save()
        return q

    def remove(self, identity: str) -> int:
        """Remove an identity's entries and persist; all or nothing, like :meth:`enrol`."""
        with self.lock, self.gallery.transaction():
            n = self.gallery.remove(identity)
            if n:
                self.save()
            return n

    def save(self) -> None:
        if self.gallery_dir is not None:
            with self.lock:
                self.gallery.save(self.gallery_dir)


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a JPEG, PNG, BMP or PNM file; ``None`` for anything else.

    Read before decoding: a few kB of PNG can inflate to gigabytes of pixels
    (a decompression bomb), so the service checks the size the header
    announces against its pixel limit first.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if m := _PNM_HEADER.match(data):
        return int(m[1]), int(m[2])
    if data[:2] == b"\xff\xd8":  # JPEG: walk the segments to the first start-of-frame
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
            elif marker in _JPEG_SOF:
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            elif 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
                i += 2
            else:
                i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


_PNM_HEADER = re.compile(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)")
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def decode_upload(data: bytes) -> np.ndarray | None:
    """Encoded image bytes → RGB uint8 (grey and 16-bit files converted), or ``None``."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def create_app(
    ckpt: str | Path | FaceService,
    gallery_dir: str | Path | None = None,
    *,
    align: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    top: int = 5,
    threshold: float = 0.3,
    quality_threshold: float | None = None,
    index: str = "flat",
    device: str = "cpu",
) -> "FastAPI":
    """The FastAPI app over a :class:`FaceService` (built from ``ckpt`` unless one is given).

    ``index`` applies to a new gallery only; a saved one keeps the index it was built with.
    """
    from typing import Annotated

    from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
    from fastapi.responses import JSONResponse
    from starlette.requests import ClientDisconnect

    service = (
        ckpt
        if isinstance(ckpt, FaceService)
        else FaceService(ckpt, gallery_dir, align=align, index=index, device=device)
    )
    # no redirect_slashes: "POST /gallery/" (an empty name) must be an error, not a 307 to GET /gallery
    app = FastAPI(
        title="vlrface", summary="VLR face embedding, quality (RI) and identification", redirect_slashes=False
    )
    app.state.service = service
    decoding = threading.BoundedSemaphore(DECODE_SLOTS)

    class BodyLimit:
        """Counts body bytes as they arrive: a chunked upload (no Content-Length) stops at the limit
        instead of being spooled whole to disk by the multipart parser."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)
            seen = 0

            async def counted() -> dict:
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > max_bytes + MULTIPART_SLACK:
                    raise HTTPException(413, f"upload too large: limit {max_bytes} bytes")
                return message

            await self.app(scope, counted, send)

    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def refuse_oversized(request: Request, call_next: Any) -> Any:
        """Reject by Content-Length before the body is parsed; chunked bodies are checked on read."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes + MULTIPART_SLACK:
            # a client waiting on "Expect: 100-continue" has sent no body and will send none after a 413
            if int(length) <= DRAIN_FACTOR * max_bytes and request.headers.get("expect", "").lower() != "100-continue":
                try:
                    async for _ in request.stream():
                        pass
                except ClientDisconnect:
                    pass  # it gave up: the answer below goes nowhere, but no 500 and no traceback
            return JSONResponse({"detail": f"upload too large: {length} bytes, limit {max_bytes}"}, status_code=413)
        return await call_next(request)

    def read_face(image: UploadFile) -> np.ndarray:
        data = image.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload too large: limit {max_bytes} bytes")
        if not data:
            raise HTTPException(400, "empty upload: send an image file in the 'image' form field")
        size = image_dimensions(data)
        if size is None:
            raise HTTPException(
                415, f"'{image.filename}' is not a decodable image: JPEG, PNG, BMP or PNM (PGM/PPM) expected"
            )
        if size[0] * size[1] > max_pixels:
            raise HTTPException(
                413,
                f"image too large: {size[0]}×{size[1]} pixels, limit {max_pixels:,} "
                "(send a face crop or a smaller photo)",
            )
        if not (size[0] and size[1]):
            raise HTTPException(415, f"'{image.filename}' announces an empty image ({size[0]}×{size[1]} pixels)")
        with decoding:
            img = decode_upload(data)
            if img is None:
                raise HTTPException(
                    415, f"'{image.filename}' is not a decodable image: its header is fine but the data is damaged"
                )
            try:
                return service.face(img)
            except NoFaceError as e:
                raise HTTPException(422, str(e)) from None

    @app.get("/health")
    def health() -> dict[str, Any]:
        g = service.gallery
        return {"status": "ok", "checkpoint": service.checkpoint, "dim": g.dim, "entries": len(g)}

    @app.post("/embed")
    def embed(image: UploadFile = File(...)) -> dict[str, Any]:
        emb, q = service.encode([read_face(image)])
        return {"embedding": emb[0].tolist(), "quality": _num(q[0]), "dim": int(emb.shape[1])}

    @app.post("/identify")
    def identify(
        image: UploadFile = File(...),
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = top,
        threshold: Annotated[float, Query(ge=-THRESHOLD_LIMIT, le=THRESHOLD_LIMIT, allow_inf_nan=False)] = threshold,
        quality_threshold: Annotated[float | None, Query(allow_inf_nan=False)] = quality_threshold,
        embedding: bool = False,
    ) -> dict[str, Any]:
        emb, q = service.encode([read_face(image)])
        res = service.search(emb, q, top_k, threshold, quality_threshold)[0].to_dict()
        res["quality"] = _num(res["quality"])
        if embedding:  # one call for the whole answer: identities, quality and the embedding
            res["embedding"] = emb[0].tolist()
        return res

    @app.get("/gallery")
    def gallery() -> dict[str, Any]:
        with service.lock:
            g = service.gallery
            return {**g.meta(), "persistent": service.gallery_dir is not None, "identities": g.identities}

    @app.post("/gallery/{identity}", status_code=201)
    def enrol(identity: str, image: UploadFile = File(...)) -> dict[str, Any]:
        try:
            check_identity(identity)  # before the image is read
        except UserError as e:
            raise HTTPException(400, str(e)) from None
        face = read_face(image)
        try:
            q = service.enrol([identity], [face])
        except SaveError as e:  # the server's disk, not the request: nothing was enrolled, a retry is safe
            raise HTTPException(503, f"{e}; nothing was enrolled") from None
        except UserError as e:
            raise HTTPException(400, str(e)) from None
        return {"identity": identity, "entries": service.gallery.identities.get(identity, 0), "quality": _num(q[0])}

    @app.api_route("/gallery/", methods=["POST", "DELETE"], include_in_schema=False)
    def no_name() -> None:
        raise HTTPException(400, "the identity name is empty: use /gallery/NAME")

    @app.delete("/gallery/{identity}")
    def remove(identity: str) -> dict[str, Any]:
        try:
            n = service.remove(identity)
        except SaveError as e:
            raise HTTPException(503, f"{e}; nothing was removed") from None
        if not n:
            raise HTTPException(404, f"identity '{identity}' is not in the gallery")
        return {"identity": identity, "removed": n}

    return app


def _num(x: float | None) -> float | None:
    """JSON has no NaN: a model without a PRM reports quality ``null``."""
    return None if x is None or not np.isfinite(x) else float(x)
