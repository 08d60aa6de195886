"""The loop: exact resume, NaN guard, checkpoints, init + imprinting."""

import json
import re

import pytest
import torch

from vlrface.checkpoint import load_checkpoint, load_model
from vlrface.config import load_config
from vlrface.errors import UserError
from vlrface.train.trainer import NonFiniteGuard, Trainer

TINY = [
    "data.num_identities=6",
    "data.images_per_identity=4",
    "data.ui.size=8",
    "model.backbone=iresnet_nano",
    "model.embedding_size=16",
    "train.batch_size=8",
    "train.steps=6",
    "train.log_every=1",
    "train.ckpt_every=0",
    "ri.ui_every=2",
    "optim.lr=0.05",
    "schedule.warmup_steps=2",
]


def tiny(tmp_path, name, *extra):
    return load_config(None, [f"out={tmp_path / name}", *TINY, *extra])


def weights(trainer):
    return {**trainer.model.state_dict(), **{f"obj.{k}": v for k, v in trainer.objective.state_dict().items()}}


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    full = Trainer(tiny(tmp_path, "full"), progress=False)
    full.fit()
    part = Trainer(tiny(tmp_path, "part"), progress=False)
    part.fit(stop_at=3)  # "interrupted" after 3 steps: last.pt on disk
    assert load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 3
    resumed = Trainer(tiny(tmp_path, "part"), progress=False)  # a new process would do this
    assert resumed.step == 3
    resumed.fit()
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.history[-1]["loss"] == resumed.history[-1]["loss"]


def test_outputs_and_log(tmp_path):
    t = Trainer(tiny(tmp_path, "run"), progress=False)
    t.fit()
    model, pre, ckpt = load_model(tmp_path / "run" / "model.pt")
    assert "optimizer" not in ckpt and ckpt["step"] == 6 and pre.color == "RGB"
    assert model.prm is not None and model.pam is not None
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert {"cls", "ri", "l1", "id", "mse", "lr", "img_per_s", "data_wait_share"} <= set(records[-1])
    assert 0 <= records[-1]["data_wait_share"] < 1


def test_nan_guard_skips_then_stops():
    guard = NonFiniteGuard(patience=2)
    assert guard.check(torch.tensor(1.0), 0)
    assert not guard.check(torch.tensor(float("nan")), 1)
    assert guard.check(torch.tensor(2.0), 2) and guard.in_a_row == 0
    assert not guard.check(torch.tensor(float("inf")), 3)
    with pytest.raises(UserError, match="2 non-finite losses in a row at step 4"):
        guard.check(torch.tensor(float("nan")), 4)


def test_diverging_run_stops_with_clear_message(tmp_path):
    t = Trainer(tiny(tmp_path, "nan", "train.nan_patience=2"), progress=False)
    with torch.no_grad():
        t.objective.head.weight.fill_(float("nan"))
    with pytest.raises(UserError, match="training diverged"):
        t.fit()


def test_init_from_checkpoint_imprints_head(tmp_path):
    Trainer(tiny(tmp_path, "pre", "model.pam=false", "model.prm=false", "ri.enabled=false"), progress=False).fit()
    t = Trainer(tiny(tmp_path, "ft", f"model.init={tmp_path / 'pre' / 'model.pt'}"), progress=False)
    pre = load_model(tmp_path / "pre" / "model.pt")[0]
    torch.testing.assert_close(t.model.backbone.state_dict(), pre.backbone.state_dict())
    # imprinted prototypes: the normalised class means of the training images' embeddings
    w = torch.nn.functional.normalize(t.objective.head.weight, dim=1)
    images, labels = next(t.data.batches(t.data.num_images, 0))
    emb = pre.embed(t.preprocessing.normalize(images))
    cos_own = (emb * w[labels]).sum(1)
    assert float(cos_own.detach().mean()) > 0.5


def test_init_head_from_checkpoint_keeps_trained_centres(tmp_path):
    Trainer(tiny(tmp_path, "pre", "model.pam=false", "model.prm=false", "ri.enabled=false"), progress=False).fit()
    init = f"model.init={tmp_path / 'pre' / 'model.pt'}"
    t = Trainer(tiny(tmp_path, "ft", init, "model.init_head=checkpoint"), progress=False)
    saved = load_checkpoint(tmp_path / "pre" / "model.pt")["objective"]["head.weight"]
    assert torch.equal(t.objective.head.weight.detach(), saved)
    with pytest.raises(UserError, match="no head for these 7 classes"):  # other people: imprint instead
        Trainer(tiny(tmp_path, "ft7", init, "model.init_head=checkpoint", "data.num_identities=7"), progress=False)
    with pytest.raises(UserError, match=re.escape("'model.init_head' must be one of imprint, checkpoint")):
        Trainer(tiny(tmp_path, "ftx", init, "model.init_head=copy"), progress=False)


def test_resume_with_another_model_is_refused(tmp_path):
    Trainer(tiny(tmp_path, "r"), progress=False).fit(stop_at=1)
    with pytest.raises(UserError, match="different model config"):
        Trainer(tiny(tmp_path, "r", "model.pam=false"), progress=False)


def write_att(root, subjects=range(21, 41), images=2):
    import cv2

    from vlrface.data.synth import SynthFaces

    faces = SynthFaces(5)
    for s in subjects:
        (root / f"s{s}").mkdir(parents=True)
        for n in range(1, images + 1):
            grey = cv2.cvtColor(faces.render(s, n), cv2.COLOR_RGB2GRAY)
            cv2.imwrite(str(root / f"s{s}" / f"{n}.pgm"), cv2.resize(grey, (92, 112)))


def test_periodic_evaluation_from_config(tmp_path):
    write_att(tmp_path / "att")
    cfg = tiny(
        tmp_path,
        "ev",
        "train.eval_every=3",
        "eval.protocols=[att-vlr]",
        f"eval.data={{att-vlr: {tmp_path / 'att'}}}",
        "eval.probe_sizes=[null, 8]",
    )
    t = Trainer(cfg, progress=False)
    final = t.fit()
    assert set(final["att-vlr"]) == {"hr", "8px"}
    assert 0.0 <= final["att-vlr"]["8px"]["rank1"] <= 1.0
    evals = [r for r in t.history if "eval" in r]
    assert [r["step"] for r in evals] == [3, 6]


def test_periodic_evaluation_needs_a_data_folder(tmp_path):
    with pytest.raises(UserError, match=re.escape("eval.data has no folder for protocol")):
        Trainer(tiny(tmp_path, "ev2", "eval.protocols=[att-vlr]"), progress=False)


def test_ri_trains_with_partial_fc(tmp_path):
    t = Trainer(tiny(tmp_path, "pfc", "train.partial_fc_rate=0.5", "train.steps=2"), progress=False)
    t.fit()
    assert {"ri", "id", "l1"} <= set(t.history[-1])
