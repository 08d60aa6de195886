import pytest

from vlrface.errors import UserError
from vlrface.serve.inputs import image_files


def test_files_folders_and_lists_in_order(tmp_path):
    for name in ("b/2.png", "b/sub/1.jpg", "a.JPG", "b/notes.md", "c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    lst = tmp_path / "lists" / "probes.txt"
    lst.parent.mkdir()
    lst.write_text(f"# probes\n../c.png\n\n  {tmp_path / 'a.JPG'}  \nmissing.png\n")
    got = image_files([tmp_path / "a.JPG", tmp_path / "b", lst])
    assert [(str(f.relative_to(tmp_path)) if f.is_relative_to(tmp_path) else str(f), str(r)) for f, r in got] == [
        ("a.JPG", "a.JPG"),
        ("b/2.png", "2.png"),
        ("b/sub/1.jpg", "sub/1.jpg"),  # recursive, folder layout kept, non-images ignored
        ("lists/../c.png", "c.png"),  # relative to the list's folder
        ("a.JPG", "a.JPG"),  # absolute, whitespace stripped
        ("lists/missing.png", "missing.png"),  # kept: reading it fails later and is reported
    ]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "nope.jpg", "input not found"),
        (lambda d: d, "no images"),
        (lambda d: (d / "l.txt").write_text("# nothing\n") and d / "l.txt", "no images"),
        (lambda d: (d / "l.txt").write_bytes(b"\xff\xfe\xfa") and d / "l.txt", "cannot read file list"),
    ],
)
def test_user_mistakes(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        image_files([make(tmp_path)])


def test_read_faces_chunks_and_reports_unreadable_and_faceless(tmp_path):
    import cv2
    import numpy as np

    from vlrface.data.readers import SkipReport
    from vlrface.errors import NoFaceError
    from vlrface.serve.inputs import read_faces

    files = []
    for i, value in enumerate((10, 20, 30, 40)):
        files.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(files[-1]), np.full((4, 4, 3), value, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    files.insert(1, tmp_path / "bad.png")

    def face(img):  # "no face" in the image of value 30
        if img[0, 0, 0] == 30:
            raise NoFaceError("no face found in the image")
        return img[:2, :2]

    skips = SkipReport()
    chunks = list(read_faces(files, face, skips, chunk=2))
    assert [keep for keep, _ in chunks] == [[0], [2], [4]]  # positions in files, chunks of 2 files
    assert [int(c[0][0, 0, 0]) for _, c in chunks] == [10, 20, 40] and chunks[0][1][0].shape == (2, 2, 3)
    assert [(p.rsplit("/", 1)[-1], r) for p, r in skips.skipped] == [
        ("bad.png", "not a decodable image"),
        ("2.png", "no face found"),
    ]
