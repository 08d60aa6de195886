"""Training configuration: YAML recipe + ``key=value`` overrides, validated.

The schema is a tree of dataclasses, so an unknown key or a wrong type is a
one-line :class:`UserError` that names the key, not a crash deep in training.
The values each key accepts (counts ≥ 1, probabilities in [0, 1], names from a
fixed list …) are declared once, in :data:`CHECKS`, and enforced when a config
is built; floats must be finite everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


@dataclass
class VLRConfig:
    """HR→VLR mixing during training (sizes in pixels, before upsampling to 112)."""

    prob: float = 0.5  # fraction of each batch degraded to VLR
    min_size: int = 8
    max_size: int = 32
    interpolations: list[str] = field(default_factory=lambda: ["bicubic", "area", "bilinear"])
    blur_prob: float = 0.3
    noise_std: float = 0.02
    jpeg_prob: float = 0.0


@dataclass
class JitterConfig:
    """Framing jitter of the HR crop, before any VLR degradation; all 0 = off (the default).

    Other pipelines frame faces differently from ours: each image is zoomed by a
    factor in ``[1 − scale, 1 + scale]``, shifted by up to ``shift`` of its side
    along each axis and rotated by up to ``rotate`` degrees (uniform draws).
    """

    scale: float = 0.0
    shift: float = 0.0
    rotate: float = 0.0  # degrees

    @property
    def enabled(self) -> bool:
        return bool(self.scale or self.shift or self.rotate)


@dataclass
class UIConfig:
    """Unrecognisable images: a folder if given, else generated from training data."""

    folder: str | None = None
    size: int = 256  # UI images used per refresh of the UI centre
    max_px: int = 6
    nonface_fraction: float = 0.25


@dataclass
class DataConfig:
    kind: str = "synth"  # synth | folder | att | lfw-vlr
    root: str | None = None  # dataset folder for non-synthetic kinds
    num_identities: int = 100  # synth only
    images_per_identity: int = 20  # synth only
    identity_offset: int = 0  # synth: first identity index (disjoint test ids use others)
    crop: str = "default"  # reader-specific face crop (documented per reader)
    # one-image people (a folder of ID/img): no class of their own, trained only by the cross-resolution
    # term (train.cross_res) towards their frozen HR embedding; needs the cached-trunk trainer
    singles: str | None = None
    num_workers: int = 0  # DataLoader processes decoding images when the set is too big to keep decoded
    prefetch: int = 2  # batches made ahead of the training step (background thread or per worker)
    vlr: VLRConfig = field(default_factory=VLRConfig)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    ui: UIConfig = field(default_factory=UIConfig)


@dataclass
class ModelConfig:
    backbone: str = "iresnet18"
    embedding_size: int = 512
    pam: bool = True
    pam_mode: str = "residual"  # residual (gated, v_a is the embedding) | branch (the paper's: v_a only feeds L_MSE)
    prm: bool = True
    prm_dropout: float = 0.5
    init: str | None = None  # checkpoint path to start from, or "sface"
    init_head: str = "imprint"  # imprint (new people) | checkpoint (same people as the init checkpoint)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class HeadConfig:
    name: str = "arcface"
    kwargs: dict[str, Any] = field(default_factory=dict)  # scale, margin, … per head


@dataclass
class RIConfig:
    """The Recognizability Index terms; all off = plain margin-head training."""

    enabled: bool = True
    form: str = "additive"  # additive | ratio
    tau: float = 2.0
    alpha: float = 1.0  # PRM regression (SmoothL1, beta 0.75)
    beta: float = 1.0  # index diversion
    gamma: float = 1.0  # PAM MSE
    ui_update: str = "recompute"  # recompute | ema
    ui_every: int = 50  # steps between UI-centre refreshes
    ema_momentum: float = 0.9
    ui_stats: str = "nearest"  # μ_UI, σ_UI from the UIs' label-free RI (nearest) or the PRM's prediction (prm)
    div_source: str = "labelled"  # L_ID on the faces' labelled ξ (labelled) or the PRM's ξ̂ (predicted)
    smooth_l1_beta: float = 0.75


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    backbone_lr_mult: float = 1.0  # lower to keep a pretrained backbone's HR skill
    fused: bool = False


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | step | constant
    warmup_steps: int = 0
    milestones: list[int] = field(default_factory=list)  # step schedule
    gamma: float = 0.1
    min_lr_ratio: float = 0.0


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    grad_clip: float = 5.0
    log_every: int = 10
    eval_every: int = 0  # 0 = only at the end
    ckpt_every: int = 200
    nan_patience: int = 5  # stop after this many non-finite losses in a row
    partial_fc_rate: float = 1.0  # PartialFC sample rate (1.0 = all class centres)
    # weight of 1 − cos(embedding, the pretrained model's HR embedding of the same face): a cross-resolution
    # pull that also lets data.singles train; needs the cached-trunk trainer, which caches those targets
    cross_res: float = 0.0
    singles_per_batch: int = 32  # data.singles rows added to each step (cross-resolution term only)


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=list)  # run at eval points
    probe_sizes: list[int | None] = field(default_factory=lambda: [16, 8])  # null = HR probes
    data: dict[str, str] = field(default_factory=dict)  # protocol name → root


@dataclass
class Config:
    seed: int = 0
    out: str = "runs/train"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    ri: RIConfig = field(default_factory=RIConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ value checks
@dataclass(frozen=True)
class Check:
    """The values a config key accepts: a number in ``[ge, le]`` (``gt``: strictly above), or one of
    ``choices``. A list value is checked item by item; ``None`` (an optional key left unset) passes."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {', '.join(self.choices)}"
        if self.gt is not None and not value > self.gt:
            return f"must be > {self.gt:g}"
        if self.ge is not None and not value >= self.ge:
            return f"must be ≥ {self.ge:g}"
        if self.le is not None and not value <= self.le:
            return f"must be ≤ {self.le:g}"
        return None


COUNT = Check(ge=1)  # steps, sizes, batch sizes, periods
NON_NEGATIVE = Check(ge=0)  # offsets, weights, periods where 0 means "off"
POSITIVE = Check(gt=0)  # real numbers that must be above zero
PROBABILITY = Check(ge=0, le=1)  # probabilities, fractions, momenta
INTERPOLATIONS = ("bicubic", "area", "bilinear")  # vlrface.data.degrade.INTERPOLATIONS

# Every range check a config needs, once. Keys the code validates itself against a registry (backbone,
# head, data.kind, ri.form …) are not repeated here.
CHECKS: dict[str, Check] = {
    "seed": NON_NEGATIVE,
    "data.num_identities": COUNT,
    "data.images_per_identity": COUNT,
    "data.identity_offset": NON_NEGATIVE,
    "data.num_workers": NON_NEGATIVE,
    "data.prefetch": NON_NEGATIVE,
    "data.vlr.prob": PROBABILITY,
    "data.vlr.min_size": COUNT,
    "data.vlr.max_size": COUNT,
    "data.vlr.interpolations": Check(choices=INTERPOLATIONS),
    "data.vlr.blur_prob": PROBABILITY,
    "data.vlr.noise_std": NON_NEGATIVE,
    "data.vlr.jpeg_prob": PROBABILITY,
    "data.jitter.scale": Check(ge=0, le=0.5),  # zoom in [1 − scale, 1 + scale]: must stay well above 0
    "data.jitter.shift": Check(ge=0, le=0.5),  # of the side
    "data.jitter.rotate": Check(ge=0, le=180),  # degrees
    "data.ui.size": COUNT,
    "data.ui.max_px": COUNT,
    "data.ui.nonface_fraction": PROBABILITY,
    "model.embedding_size": COUNT,
    "model.prm_dropout": PROBABILITY,
    "model.init_head": Check(choices=("imprint", "checkpoint")),
    "model.pam_mode": Check(choices=("residual", "branch")),  # as models.face_model.PAM_MODES
    "ri.alpha": NON_NEGATIVE,
    "ri.beta": NON_NEGATIVE,
    "ri.gamma": NON_NEGATIVE,
    "ri.ui_every": COUNT,
    "ri.ema_momentum": PROBABILITY,
    "ri.div_source": Check(choices=("labelled", "predicted")),  # as train.objective.DIV_SOURCES
    "ri.smooth_l1_beta": POSITIVE,
    "optim.name": Check(choices=("sgd", "adamw")),
    "optim.lr": POSITIVE,
    "optim.momentum": PROBABILITY,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.backbone_lr_mult": NON_NEGATIVE,
    "schedule.name": Check(choices=("cosine", "step", "constant")),
    "schedule.warmup_steps": NON_NEGATIVE,
    "schedule.milestones": NON_NEGATIVE,
    "schedule.gamma": POSITIVE,
    "schedule.min_lr_ratio": PROBABILITY,
    "train.steps": COUNT,
    "train.batch_size": COUNT,
    "train.amp": Check(choices=("none", "bf16", "fp16")),
    "train.grad_clip": NON_NEGATIVE,
    "train.log_every": COUNT,
    "train.eval_every": NON_NEGATIVE,
    "train.ckpt_every": NON_NEGATIVE,
    "train.nan_patience": COUNT,
    "train.partial_fc_rate": Check(gt=0, le=1),
    "train.cross_res": NON_NEGATIVE,
    "train.singles_per_batch": NON_NEGATIVE,
    "eval.probe_sizes": COUNT,
}
# (smaller, larger): the first key's value may not exceed the second's
ORDERED: list[tuple[str, str]] = [("data.vlr.min_size", "data.vlr.max_size")]


def _value(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_values(cfg: Config) -> Config:
    """Enforce :data:`CHECKS` and :data:`ORDERED` on a built config; the first violation is a UserError."""
    for key, check in CHECKS.items():
        value = _value(cfg, key)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            problem = check.problem(item)
            if problem:
                where = f"{key}[{i}]" if isinstance(value, list) else key
                raise UserError(f"config key '{where}' {problem}, got {item!r}")
    for small, large in ORDERED:
        if _value(cfg, small) > _value(cfg, large):
            raise UserError(
                f"config key '{small}' ({_value(cfg, small)}) must not exceed '{large}' ({_value(cfg, large)})"
            )
    return cfg


# ------------------------------------------------------------------ building
def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; UserError on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping, got {value!r}")
        return build_section(tp, value, key + ".")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if not isinstance(value, list):
            value = [value]
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"config key '{key}' must be true/false, got {value!r}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key '{key}' must be a finite number, got {value!r}")
    if (tp in (int, float, str) and not isinstance(value, tp)) or (isinstance(value, bool) and tp is not bool):
        raise UserError(f"config key '{key}' must be {tp.__name__}, got {value!r}")
    return value


def build_section(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in values.items():
        if k not in hints:
            close = difflib.get_close_matches(k, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise UserError(f"unknown config key '{prefix}{k}'{hint}")
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    return cls(**kwargs)


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.steps=10", "ri.enabled=false"]`` → nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like key=value (e.g. train.steps=100)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as e:
            raise UserError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
        _set_path(tree, key.strip(), value)
    return tree


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Free-form dicts (kwargs) merge too."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config_path(path: str | Path) -> Path:
    """A YAML path, or the name of a recipe shipped in ``vlrface/configs``."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = Path(__file__).resolve().parent / "configs" / f"{p.stem}.yaml"
    if shipped.is_file() and p.suffix in ("", ".yaml"):
        return shipped
    raise UserError(f"config file not found: {path}")


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file (path or shipped name) that must hold a mapping; ``what`` says what it should be."""
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{p}: cannot read it as YAML text ({e.__class__.__name__})") from None
    if data is None:  # empty, or comments only: not silently "all defaults"
        raise UserError(f"{p} is empty: {what}")
    if not isinstance(data, dict):
        raise UserError(f"{p}: {what}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a recipe (file path or shipped name) and apply overrides; validate all keys."""
    data = read_mapping(path, "a config must be a mapping of sections") if path is not None else {}
    data = merge(data, parse_overrides(overrides or []))
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build and validate: unknown keys, wrong types and values outside :data:`CHECKS` are UserErrors."""
    return check_values(build_section(Config, data))
