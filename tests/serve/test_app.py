"""The HTTP service, tested against the real server: ``vlrface serve`` under uvicorn on loopback."""

import contextlib
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest

MAX_BYTES = 200_000


def png(seed: int, size: int = 112) -> bytes:
    """A distinct random-texture 'face' per seed (the model is untrained; identities only need to differ)."""
    img = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return cv2.imencode(".png", cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC))[1].tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(ckpt, gallery):
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        "from vlrface.cli import main; main()",
        "serve",
        "--ckpt",
        str(ckpt),
        "--gallery",
        str(gallery),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-bytes",
        str(MAX_BYTES),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"server exited: {proc.stdout.read().decode()[-2000:]}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def upload(data: bytes, name: str = "face.png") -> dict:
    return {"image": (name, data, "image/png")}


def test_enrol_identify_restart_errors_and_concurrency(ckpt, tmp_path):
    gallery = tmp_path / "gallery"
    with server(ckpt, gallery) as c:
        assert c.get("/health").json()["entries"] == 0
        for who, seed in (("alice", 1), ("bob", 2), ("carol", 3)):
            r = c.post(f"/gallery/{who}", files=upload(png(seed)))
            assert r.status_code == 201 and r.json()["entries"] == 1
        assert c.post("/gallery/alice", files=upload(png(11))).json()["entries"] == 2

        emb = c.post("/embed", files=upload(png(2)))
        body = emb.json()
        assert emb.status_code == 200 and body["dim"] == 16 and isinstance(body["quality"], float)
        assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-5)

        hit = c.post("/identify", params={"top_k": 3, "threshold": 0.0}, files=upload(png(2))).json()
        assert hit["identity"] == "bob" and hit["score"] == pytest.approx(1.0, abs=1e-4) and not hit["unknown"]
        assert hit["candidates"][0]["identity"] == "bob" and len(hit["candidates"]) == 3
        miss = c.post("/identify", params={"threshold": 1.01}, files=upload(png(2))).json()
        assert miss["identity"] == "unknown" and miss["unknown"]
        flagged = c.post("/identify", params={"quality_threshold": 1e9}, files=upload(png(2))).json()
        assert flagged["low_quality"] and "embedding" not in flagged
        full = c.post("/identify", params={"embedding": True}, files=upload(png(2))).json()
        assert full["identity"] == "bob" and np.allclose(full["embedding"], body["embedding"], atol=1e-6)

        # bad uploads → 4xx with a JSON message
        assert c.post("/embed", files=upload(b"")).status_code == 400
        bad = c.post("/embed", files=upload(b"this is not an image", "x.txt"))
        assert bad.status_code == 415 and "not a decodable image" in bad.json()["detail"]
        big = c.post("/embed", files=upload(b"\0" * (MAX_BYTES + 100_000)))
        assert big.status_code == 413 and "too large" in big.json()["detail"]
        assert c.post("/embed", files=upload(b"\0" * (MAX_BYTES + 1))).status_code == 413  # within header slack
        assert c.post("/embed").status_code == 422  # no file field
        assert c.delete("/gallery/nobody").status_code == 404
        assert c.post("/gallery/unknown", files=upload(png(5))).status_code == 400  # reserved name

        # concurrency: 8 threads × 3 requests, identify and enrol interleaved
        def work(t):
            out = []
            for j in range(3):
                if j == 1:
                    out.append(c.post(f"/gallery/t{t}", files=upload(png(100 + t))).status_code)
                else:
                    r = c.post("/identify", params={"threshold": 0.0}, files=upload(png(1 + t % 3)))
                    out.append(r.status_code if r.json()["identity"] == ["alice", "bob", "carol"][t % 3] else -1)
            return out

        with ThreadPoolExecutor(8) as pool:
            codes = [c for out in pool.map(work, range(8)) for c in out]
        assert sorted(set(codes)) == [200, 201], codes
        listing = c.get("/gallery").json()
        assert listing["entries"] == 12 and listing["identities"]["alice"] == 2 and listing["persistent"]
        assert c.delete("/gallery/carol").json() == {"identity": "carol", "removed": 1}

    with server(ckpt, gallery) as c:  # restart: the gallery survived on disk
        listing = c.get("/gallery").json()
        assert listing["entries"] == 11 and "carol" not in listing["identities"]
        assert c.post("/identify", params={"threshold": 0.0}, files=upload(png(1))).json()["identity"] == "alice"


@pytest.mark.parametrize(
    "ext, params, grey",
    [
        (".png", [], False),
        (".png", [], True),
        (".jpg", [], False),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], False),
        (".jpg", [], True),
        (".bmp", [], False),
        (".pgm", [], True),
        (".ppm", [], False),
    ],
)
def test_image_dimensions_read_from_the_header_agree_with_decoding(ext, params, grey):
    from vlrface.serve.app import image_dimensions

    img = np.random.default_rng(0).integers(0, 256, (37, 53) if grey else (37, 53, 3), dtype=np.uint8)
    data = cv2.imencode(ext, img, params)[1].tobytes()
    if ext == ".jpg":  # a comment segment before the frame header, as cameras write EXIF there
        data = data[:2] + b"\xff\xfe\x00\x07hello" + data[2:]
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image_dimensions(data) == (decoded.shape[1], decoded.shape[0]) == (53, 37)


def test_decompression_bombs_and_unsupported_formats_are_refused_before_decoding(ckpt):
    from fastapi.testclient import TestClient

    from vlrface.serve.app import create_app, image_dimensions

    bomb = cv2.imencode(".png", np.zeros((4000, 3000), np.uint8))[1].tobytes()  # ~12 MP in a few kB
    assert len(bomb) < 100_000 and image_dimensions(bomb) == (3000, 4000)
    client = TestClient(create_app(ckpt, max_pixels=10_000_000))
    r = client.post("/embed", files=upload(bomb))
    assert r.status_code == 413 and "3000×4000 pixels" in r.json()["detail"]
    tiff = cv2.imencode(".tiff", np.zeros((8, 8, 3), np.uint8))[1].tobytes()  # OpenCV decodes it; the service does not
    r = client.post("/embed", files=upload(tiff, "x.tiff"))
    assert r.status_code == 415 and "JPEG, PNG, BMP or PNM" in r.json()["detail"]
    r = client.post("/embed", files=upload(png(1)[:60]))  # a good header, the rest cut off
    assert r.status_code == 415 and "data is damaged" in r.json()["detail"]
    assert (
        client.post(
            "/embed", files=upload(cv2.imencode(".jpg", np.zeros((3000, 3000, 3), np.uint8))[1].tobytes())
        ).status_code
        == 200
    )


def post_asgi(
    app, n_chunks: int, length_header: bool, extra_headers: tuple = (), disconnect_after: int | None = None
) -> tuple[list[dict], int, int]:
    """POST a multipart body of ``n_chunks`` × 64 kB straight to the ASGI app (the test client would read
    the whole body itself, hiding what the app reads); returns (sent messages, chunks read, chunks in all).
    ``disconnect_after``: the client hangs up after that many chunks."""
    import anyio

    head = b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    chunks = [head] + [b"\0" * 65536] * n_chunks + [b"\r\n--xx--\r\n"]
    read, sent = [], []

    async def receive():
        read.append(1)
        if disconnect_after is not None and len(read) > disconnect_after:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[len(read) - 1], "more_body": len(read) < len(chunks)}

    async def send(message):
        sent.append(message)

    size = (
        (b"content-length", str(sum(map(len, chunks))).encode())
        if length_header
        else (b"transfer-encoding", b"chunked")
    )
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": "/embed",
        "raw_path": b"/embed",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
        "headers": [(b"content-type", b"multipart/form-data; boundary=xx"), size, *extra_headers],
    }
    anyio.run(app, scope, receive, send)
    return sent, len(read), len(chunks)


def test_a_chunked_upload_is_stopped_at_the_limit_not_read_to_the_end(ckpt):
    from vlrface.serve.app import MULTIPART_SLACK, create_app

    sent, read, _ = post_asgi(create_app(ckpt, max_bytes=MAX_BYTES), 64, length_header=False)  # 4 MB
    assert sent[0]["status"] == 413 and b"too large" in sent[1]["body"]
    assert read <= (MAX_BYTES + MULTIPART_SLACK) // 65536 + 2  # stopped reading: never spooled the 4 MB


def test_an_announced_oversized_upload_is_drained_unless_huge(ckpt):
    """Answering with the body unread makes the kernel reset the connection (the client may never see the
    413), so a body up to DRAIN_FACTOR × the limit is read away first; a larger one is refused unread."""
    from vlrface.serve.app import DRAIN_FACTOR, create_app

    app = create_app(ckpt, max_bytes=MAX_BYTES)
    sent, read, total = post_asgi(app, 5, length_header=True)  # 320 kB: over limit + slack, under the drain cap
    assert sent[0]["status"] == 413 and read == total
    sent, read, total = post_asgi(app, DRAIN_FACTOR * MAX_BYTES // 65536 + 1, length_header=True)
    assert sent[0]["status"] == 413 and read == 0
    # a client waiting for "100 Continue" has sent nothing: refuse at once instead of inviting the body
    sent, read, _ = post_asgi(app, 5, length_header=True, extra_headers=((b"expect", b"100-continue"),))
    assert sent[0]["status"] == 413 and read == 0
    # a client hanging up mid-drain is not a server error
    sent, read, _ = post_asgi(app, 5, length_header=True, disconnect_after=2)
    assert sent[0]["status"] == 413 and read == 3


def test_top_k_is_clamped_to_the_gallery_and_capped(ckpt):
    """top_k=10¹² answered 500 on an empty gallery and 10⁸ cost 17 s and 1.2 GB: now ≤ 1000, clamped to the
    identities enrolled (an empty gallery answers 'unknown' with no candidates)."""
    from fastapi.testclient import TestClient

    from vlrface.serve.app import create_app
    from vlrface.serve.gallery import MAX_TOP_K

    client = TestClient(create_app(ckpt))
    r = client.post("/identify", params={"top_k": MAX_TOP_K}, files=upload(png(1)))
    assert r.status_code == 200 and r.json()["unknown"] and r.json()["candidates"] == []
    for who, seed in (("ann", 1), ("ben", 2)):
        assert client.post(f"/gallery/{who}", files=upload(png(seed))).status_code == 201
    r = client.post("/identify", params={"top_k": MAX_TOP_K, "threshold": 0.0}, files=upload(png(1)))
    assert r.status_code == 200 and [c["identity"] for c in r.json()["candidates"]] == ["ann", "ben"]
    assert client.post("/identify", params={"top_k": MAX_TOP_K + 1}, files=upload(png(1))).status_code == 422


def test_an_enrolment_is_written_and_acknowledged_or_neither(ckpt, tmp_path, monkeypatch):
    """A failed save used to leave the entry in memory (GET /gallery: 1 entry) and a retry added a duplicate."""
    from fastapi.testclient import TestClient

    from vlrface.serve.app import create_app
    from vlrface.serve.gallery import Gallery

    client = TestClient(create_app(ckpt, tmp_path / "g"))
    assert client.post("/gallery/ann", files=upload(png(1))).status_code == 201
    write = Gallery._write_snapshot

    def full_disk(self, directory):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Gallery, "_write_snapshot", full_disk)
    r = client.post("/gallery/ben", files=upload(png(2)))
    assert r.status_code == 503 and "No space left on device" in r.json()["detail"] and "nothing was enrolled" in r.text
    r = client.delete("/gallery/ann")
    assert r.status_code == 503 and "nothing was removed" in r.text
    listing = client.get("/gallery").json()
    assert listing["entries"] == 1 and listing["identities"] == {"ann": 1}  # memory = disk
    monkeypatch.setattr(Gallery, "_write_snapshot", write)
    assert client.post("/gallery/ben", files=upload(png(2))).json()["entries"] == 1  # the retry: no duplicate
    assert (
        Gallery.load(tmp_path / "g").identities == client.get("/gallery").json()["identities"] == {"ann": 1, "ben": 1}
    )
    hit = client.post("/identify", params={"threshold": 0.0}, files=upload(png(1))).json()
    assert hit["identity"] == "ann" and [c["identity"] for c in hit["candidates"]] == ["ann", "ben"]


def test_a_gallery_that_is_a_file_is_a_one_line_startup_error(ckpt, tmp_path, cli, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started"))
    (tmp_path / "some_file.jpg").write_bytes(b"\xff\xd8\xff")
    code, _, err = cli(["serve", "--ckpt", ckpt, "--gallery", tmp_path / "some_file.jpg"])
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder" in err
