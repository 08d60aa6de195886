"""Few-shot enrolment on a tiny random model: imprinted rows, BN-only updates, the checkpoint and the CLI."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlrface.checkpoint import load_checkpoint, load_model
from vlrface.cli import main
from vlrface.config import VLRConfig
from vlrface.data.readers import SkipReport
from vlrface.errors import UserError
from vlrface.models import HEADS
from vlrface.serve.gallery import Gallery
from vlrface.train.enrol import bn_affine_parameters, enrol, enrol_shots, enrolled_scores, read_shots


def write_people(root, names, shots=2, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        base = rng.integers(0, 255, (4, 4, 3)).astype(np.float32)
        for k in range(shots):
            img = cv2.resize(base, (112, 112), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 6, (112, 112, 3))
            (root / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / name / f"{k}.png"), np.clip(img, 0, 255).astype(np.uint8))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and the test machine's cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def people(tmp_path):
    return write_people(tmp_path / "new", ["ann", "bob", "cy"])


def test_read_shots_caps_counts_and_reports(people):
    (people / "bob" / "9.jpg").write_bytes(b"not an image")
    skips = SkipReport()
    shots = read_shots(people, max_shots=3, skips=skips)
    assert shots.names == ["ann", "bob", "cy"] and shots.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert shots.images.shape == (6, 3, 112, 112) and len(skips) == 1
    assert read_shots(people, max_shots=1).labels.tolist() == [0, 1, 2]
    for f in (people / "cy").iterdir():
        f.write_bytes(b"")
    with pytest.raises(UserError, match="no readable shot for cy"):
        read_shots(people)


def test_bn_affine_parameters_are_gamma_and_beta_of_every_batchnorm(ckpt):
    model, _, _ = load_model(ckpt)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    params = bn_affine_parameters(model)
    assert bns and len(params) == 2 * len(bns)
    assert {id(p) for p in params} == {id(p) for m in bns for p in (m.weight, m.bias)}


def test_imprinting_only_appends_normalised_mean_rows(ckpt, people):
    model, pre, _ = load_model(ckpt)
    shots = read_shots(people)
    base = torch.randn(5, model.embedding_size)
    res = enrol_shots(model, pre, shots, base_weight=base, steps=0)
    assert res.first == 5 and res.names == ["ann", "bob", "cy"] and res.weight.shape == (8, model.embedding_size)
    assert torch.equal(res.weight[:5], base)
    emb = model.embed(pre.normalize(shots.images))
    for y in range(3):
        mean = F.normalize(emb[shots.labels == y].mean(0), dim=0)
        assert F.normalize(res.weight[5 + y], dim=0) == pytest.approx(mean, abs=1e-5)
    one = read_shots(people, max_shots=1)
    res1 = enrol_shots(model, pre, one, steps=0)
    scores = enrolled_scores(model.embed(pre.normalize(one.images)).numpy(), res1)
    assert np.diag(scores) == pytest.approx(1.0, abs=1e-5)  # one shot: the row is that shot's embedding


def test_bn_fine_tuning_changes_only_batchnorm_affine_and_lowers_the_loss(ckpt, people):
    model, pre, _ = load_model(ckpt)
    shots = read_shots(people)
    x, y = torch.cat([shots.images, shots.images.flip(3)]), torch.cat([shots.labels, shots.labels])

    def loss(weight):  # the margin loss on every shot and its mirror (the augmentations seen without VLR)
        head = HEADS.build("arcface", embedding_size=16, num_classes=3)
        head.weight.data = weight
        with torch.no_grad():
            return float(head(model(pre.normalize(x)).embedding, y).loss)

    before = {k: v.clone() for k, v in model.state_dict().items()}
    imprinted = loss(enrol_shots(model, pre, shots, steps=0).weight)
    res = enrol_shots(model, pre, shots, steps=10, lr=1e-3, vlr=VLRConfig(prob=0.0))
    bn_names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.rsplit(".", 1)[0] in bn_names and k.endswith((".weight", ".bias")) for k in changed)
    assert len(res.losses) == 10 and loss(res.weight) < 0.8 * imprinted
    assert all(p.requires_grad for p in model.parameters())  # flags restored for whoever trains next


def test_enrol_writes_a_new_checkpoint_and_accumulates(ckpt, people, tmp_path):
    out = tmp_path / "enrolled.pt"
    raw = ckpt.read_bytes()
    enrol(ckpt, people, out, steps=2)
    assert ckpt.read_bytes() == raw  # the original is kept
    ck = load_checkpoint(out)
    assert ck["enrolled"] == {"first": 0, "names": ["ann", "bob", "cy"]} and ck["num_classes"] == 3
    assert ck["objective"]["head.weight"].shape == (3, 16) and ck["config"]["head"]["name"] == "arcface"
    load_model(out)  # still a loadable model
    with pytest.raises(UserError, match=r"already enrolled.*ann"):
        enrol(out, people, tmp_path / "again.pt", steps=0)
    more = write_people(tmp_path / "more", ["dee"], seed=1)
    enrol(out, more, tmp_path / "more.pt", steps=0)
    ck2 = load_checkpoint(tmp_path / "more.pt")
    assert ck2["enrolled"]["names"] == ["ann", "bob", "cy", "dee"] and ck2["objective"]["head.weight"].shape == (4, 16)
    assert torch.equal(ck2["objective"]["head.weight"][:3], ck["objective"]["head.weight"])
    with pytest.raises(UserError, match="must differ"):
        enrol(out, more, out)


def test_cli_enrol_with_gallery(ckpt, people, tmp_path, capsys):
    out, gallery = tmp_path / "e.pt", tmp_path / "gal"
    with pytest.raises(SystemExit) as e:
        main(
            [
                "enrol",
                "--ckpt",
                str(ckpt),
                "--shots",
                str(people),
                "--out",
                str(out),
                "--steps",
                "2",
                "--gallery",
                str(gallery),
            ]
        )
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "enrolled 3 identities as head rows 0–2" in text and "gallery: 6 images of 3 identities" in text
    assert Gallery.load(gallery).identities == {"ann": 2, "bob": 2, "cy": 2}
    with pytest.raises(SystemExit) as e:
        main(["enrol", "--ckpt", str(ckpt), "--shots", str(tmp_path / "nope"), "--out", str(out)])
    assert e.value.code == 2 and "image folder not found" in capsys.readouterr().err
