import json

import numpy as np
import pytest

from vlrface.errors import UserError
from vlrface.eval.matchers import MATCHERS
from vlrface.serve.gallery import IVF_MIN_TRAIN, UNKNOWN, Gallery


def unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_topk(gallery_vectors, probes, k):
    s = probes @ gallery_vectors.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


def test_exact_search_equals_numpy_brute_force():
    rng = np.random.default_rng(0)
    g = Gallery(16)
    vecs = unit(rng, 50)
    g.add(vecs * 3.0, [f"p{i}" for i in range(50)])  # unnormalised input is normalised
    probes = unit(rng, 7)
    scores, ids = g.search(probes, 5)
    ref_s, ref_pos = brute_topk(vecs, probes, 5)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert ids.tolist() == [[f"p{j}" for j in row] for row in ref_pos]


def test_k_larger_than_gallery_pads():
    g = Gallery(4)
    g.add(np.eye(4)[:2], ["a", "b"])
    scores, ids = g.search(np.eye(4)[:1], 4)
    assert ids[0].tolist() == ["a", "b", "", ""] and np.isinf(scores[0, 2:]).all()


def test_identify_ranks_identities_by_best_entry_and_says_unknown():
    g = Gallery(3)
    # alice has two entries; her best (e0) beats bob's only entry
    g.add([[1, 0, 0], [0.6, 0.8, 0], [0.8, 0.6, 0]], ["alice", "alice", "bob"], quality=[1.0, 2.0, 3.0])
    res = g.identify(
        np.array([[1.0, 0.1, 0], [0, 0, 1.0]]),
        k=2,
        threshold=0.5,
        probe_quality=np.array([5.0, 0.1]),
        quality_threshold=1.0,
    )
    p0, p1 = res
    assert [c[0] for c in p0.candidates] == ["alice", "bob"] and p0.identity == "alice"
    assert p0.score == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert not p0.unknown and not p0.low_quality
    assert p1.identity == UNKNOWN and p1.unknown and p1.low_quality
    assert p1.candidates[0][1] == pytest.approx(0.0, abs=1e-6)


def test_identify_with_nac_scores_prototypes_and_thresholds_the_probability():
    g = Gallery(2)
    # alice: entries at 0° and 90° → prototype at 45°; bob at 180°
    g.add([[1, 0], [0, 1], [-1, 0]], ["alice", "alice", "bob"])
    nac = MATCHERS.build("nac", k=2, temperature=0.5)
    probe = np.array([[np.cos(np.radians(30)), np.sin(np.radians(30))]])
    (r,) = g.identify(probe, k=2, threshold=0.97, matcher=nac)
    c = np.cos(np.radians([15, 150]))  # to alice's prototype, to bob
    p = np.exp(c / 0.5) / np.exp(c / 0.5).sum()
    assert [i for i, _ in r.candidates] == ["alice", "bob"]
    assert [s for _, s in r.candidates] == pytest.approx(p.tolist(), rel=1e-5)
    assert r.identity == "alice" and r.score == pytest.approx(p[0]) and not r.unknown  # p ≈ 0.975
    (r,) = g.identify(probe, k=2, threshold=0.98, matcher=nac)
    assert r.unknown and r.identity == UNKNOWN
    (r,) = Gallery(2).identify(probe, matcher=nac)  # an empty gallery answers unknown, as without a matcher
    assert r.unknown and r.candidates == []


def test_remove_drops_every_entry_of_an_identity():
    rng = np.random.default_rng(1)
    g = Gallery(16)
    vecs = unit(rng, 6)
    g.add(vecs, ["a", "b", "a", "c", "b", "a"], quality=np.arange(6))
    assert g.remove("a") == 3 and g.remove(["zzz"]) == 0
    assert g.ids == ["b", "c", "b"] and g.quality.tolist() == [1, 3, 4]
    scores, ids = g.search(vecs[[0, 3]], 3)
    assert "a" not in set(ids.ravel())
    assert ids[1, 0] == "c" and scores[1, 0] == pytest.approx(1.0, abs=1e-5)


def test_reserved_name_and_dimension_mismatch_are_user_errors():
    g = Gallery(4)
    with pytest.raises(UserError, match="reserved"):
        g.add(np.eye(4)[:1], [UNKNOWN])
    with pytest.raises(UserError, match="does not match"):
        g.add(np.ones((1, 5)), ["x"])


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    rng = np.random.default_rng(2)
    g = Gallery(16, index=kind, checkpoint="abc123")
    g.add(unit(rng, 20), [f"id{i % 7}" for i in range(20)], quality=rng.random(20))
    g.save(tmp_path / "g")
    g.add(unit(rng, 3), ["new"] * 3)
    g.save(tmp_path / "g")  # a second save replaces the snapshot
    h = Gallery.load(tmp_path / "g", checkpoint="abc123")
    assert h.ids == g.ids and h.index_type == kind and h.checkpoint == "abc123"
    np.testing.assert_array_equal(h.quality, g.quality)
    probes = unit(rng, 4)
    for a, b in zip(g.search(probes, 5), h.search(probes, 5)):
        np.testing.assert_array_equal(a, b)
    files = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert len(files) == 3 and files[:2] == [".lock", "gallery.json"] and files[2].startswith("snapshot-")
    assert json.loads((tmp_path / "g/gallery.json").read_text())["entries"] == 23


def test_load_rejects_missing_other_checkpoint_and_damage(tmp_path):
    with pytest.raises(UserError, match="no gallery"):
        Gallery.load(tmp_path)
    g = Gallery(4, checkpoint="aaa")
    g.add(np.eye(4), list("wxyz"))
    g.save(tmp_path)
    with pytest.raises(UserError, match="another checkpoint"):
        Gallery.load(tmp_path, checkpoint="bbb")
    snap = json.loads((tmp_path / "gallery.json").read_text())["snapshot"]
    (tmp_path / snap / "ids.json").write_text('["w"]')
    with pytest.raises(UserError, match="damaged"):
        Gallery.load(tmp_path)


@pytest.mark.parametrize("kind, params", [("ivf", {"nprobe": 16}), ("hnsw", {})])
def test_approximate_indexes_have_high_recall(kind, params):
    rng = np.random.default_rng(3)
    n = IVF_MIN_TRAIN + 476
    vecs = unit(rng, n, 32)
    g = Gallery(32, index=kind, **params)
    g.add(vecs[:500], [str(i) for i in range(500)])  # below the IVF minimum: exact fallback
    g.add(vecs[500:], [str(i) for i in range(500, n)])  # crosses it: trained here
    if kind == "ivf":
        assert g._index.is_trained and g._index.ntotal == n and type(g._index).__name__ == "IndexIVFFlat"
    probes = unit(rng, 50, 32)
    _, ids = g.search(probes, 10)
    _, ref = brute_topk(vecs, probes, 10)
    recall = np.mean([len(set(map(int, a)) & set(b)) / 10 for a, b in zip(ids, ref)])
    assert recall >= 0.8, recall
    # near-duplicate probes find themselves
    _, top = g.search(vecs[:20] + 0.01 * unit(rng, 20, 32), 1)
    assert [int(i) for i in top[:, 0]] == list(range(20))


@pytest.mark.parametrize("n_ids", [0, 3])
def test_a_huge_top_k_is_clamped_to_the_identities_not_allocated(n_ids):
    """top_k = 10¹² used to reach the result arrays (500 on an empty gallery, GBs on a small one)."""
    g = Gallery(4)
    if n_ids:
        g.add(np.eye(4)[:n_ids], list("abc")[:n_ids])
    (res,) = g.identify(np.eye(4)[:1], k=10**12, threshold=0.0)
    assert len(res.candidates) == n_ids and res.unknown == (n_ids == 0)
    with pytest.raises(UserError, match="top-k must be ≥ 1"):
        g.identify(np.eye(4)[:1], k=0)


@pytest.mark.parametrize("bad", [{"threshold": float("nan")}, {"quality_threshold": float("inf")}])
def test_non_finite_thresholds_are_refused(bad):
    """threshold=nan made every comparison false: everyone matched."""
    g = Gallery(4)
    g.add(np.eye(4), list("abcd"))
    with pytest.raises(UserError, match="finite"):
        g.identify(np.eye(4)[:1], **bad)


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        (" ann", "leading or trailing spaces"),
        ("a\x00b", "control or invisible"),
        ("a\nb", "control or invisible"),
        ("x" * 201, "at most 200"),
        (UNKNOWN, "reserved"),
    ],
)
def test_odd_identity_names_are_refused(name, message):
    g = Gallery(4)
    with pytest.raises(UserError, match=message):
        g.add(np.eye(4)[:1], [name])
    assert len(g) == 0
    g.add(np.eye(4)[:1], ["Zoë O'Brien-Ünal 2"])  # printable unicode, spaces inside: fine


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_failed_change_is_undone_in_memory(kind, change):
    """The service saves inside a transaction: when the save fails, memory goes back to what disk holds."""
    rng = np.random.default_rng(5)
    g = Gallery(16, index=kind)
    g.add(unit(rng, 12), [f"id{i % 4}" for i in range(12)])
    before = (g.vectors.copy(), list(g.ids), g.quality.copy())
    with pytest.raises(OSError), g.transaction():
        g.add(unit(rng, 2), ["new", "new"]) if change == "add" else g.remove("id1")
        raise OSError("disk full")
    assert len(g) == g._index.ntotal == 12 and g.ids == before[1]
    np.testing.assert_array_equal(g.vectors, before[0])
    probes = unit(np.random.default_rng(6), 3)
    np.testing.assert_array_equal(g.search(probes, 5)[1], _copy(before, kind).search(probes, 5)[1])


def _copy(before, kind):
    h = Gallery(16, index=kind)
    h.add(before[0], before[1], before[2])
    return h


def test_stale_temp_snapshots_are_removed_on_open_and_save(tmp_path):
    """A save killed mid-way (kill -9) leaves .snapshot-*.tmp folders and temp gallery.json files."""
    import fcntl

    g = Gallery(4)
    g.add(np.eye(4), list("abcd"))
    g.save(tmp_path)

    def leave_debris():
        (tmp_path / ".snapshot-dead00000000.tmp").mkdir()
        (tmp_path / ".snapshot-dead00000000.tmp" / "vectors.npy").write_bytes(b"half")
        (tmp_path / ".gallery.json.x1y2.tmp").write_text("{")
        (tmp_path / "snapshot-orphan000000").mkdir()  # renamed into place, gallery.json never pointed at it

    def debris():
        return sorted(p.name for p in tmp_path.iterdir() if p.name not in {"gallery.json", ".lock"})

    current = json.loads((tmp_path / "gallery.json").read_text())["snapshot"]
    leave_debris()
    with open(tmp_path / ".lock") as held:  # a save under way in another process: its temp files stay
        fcntl.flock(held, fcntl.LOCK_EX)
        assert Gallery.load(tmp_path).ids == list("abcd") and len(debris()) == 4
    assert Gallery.load(tmp_path).ids == list("abcd")
    assert debris() == [current]
    leave_debris()
    g.save(tmp_path)
    assert debris() == [json.loads((tmp_path / "gallery.json").read_text())["snapshot"]]


def test_a_file_where_the_folder_should_be_is_a_save_error(tmp_path):
    from vlrface.serve.gallery import SaveError

    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")
    g = Gallery(4)
    g.add(np.eye(4)[:1], ["a"])
    with pytest.raises(SaveError, match="is a file, not a gallery folder") as e:
        g.save(tmp_path / "photo.jpg")
    assert "\n" not in str(e.value)


def test_a_save_killed_mid_way_leaves_the_old_gallery_and_its_debris_is_cleared(tmp_path):
    """kill -9 during a save: the old gallery still loads, and opening it removes the dead save's temp folder
    (each killed save used to leave a .snapshot-*.tmp behind for good)."""
    import signal
    import subprocess
    import sys
    import time

    g = Gallery(4)
    g.add(np.eye(4), list("abcd"))
    g.save(tmp_path)
    script = f"""
import sys, time
import numpy as np
from vlrface.serve import gallery as G
g = G.Gallery.load({str(tmp_path)!r})
g.add(np.ones((1, 4)), ["e"])
write = G._write
def slow(path, fn):
    write(path, fn)
    open({str(tmp_path / "ready")!r}, "w").close()  # the temp snapshot holds a file: kill me now
    time.sleep(60)
G._write = slow
g.save({str(tmp_path)!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the saving process did not get going"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert list(tmp_path.glob(".snapshot-*.tmp")), "the kill should have left a temp snapshot"
    assert Gallery.load(tmp_path).ids == list("abcd")  # the old gallery, whole; its lock died with the process
    assert not list(tmp_path.glob(".snapshot-*.tmp"))
