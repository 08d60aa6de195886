"""Plots and Markdown for evaluation reports (also used by the demo and training reports).

Plot functions take ``{label: curve}`` dicts and write one PNG with
matplotlib's Agg backend (no display needed). :func:`write_eval_report` turns
an ``eval`` ``metrics.json`` dict (schema in docs/evaluation.md) into
``report.md`` plus ``cmc.png``, ``roc.png`` and ``erc.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_cmc(curves: Mapping[str, Mapping[Any, float]], path: str | Path, title: str = "CMC") -> Path:
    """Identification rate against rank, one line per label; ranks are ints or, read back from JSON, strings."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        ranks = sorted(int(k) for k in c)
        ax.plot(ranks, [100 * c[k] if k in c else 100 * c[str(k)] for k in ranks], marker=".", label=label)
    ax.set(xlabel="rank", ylabel="identification rate (%)", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_roc(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str = "ROC") -> Path:
    """TAR against FAR (log scale), one line per label."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (far, tar) in curves.items():
        ax.plot(far, [100 * t for t in tar], label=label)
    ax.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate (%)", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_erc(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, title: str = "ERC") -> Path:
    """FNMR against the fraction of lowest-quality pairs rejected (lower and steeper = better quality score)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (ratio, fnmr) in curves.items():
        ax.plot([100 * r for r in ratio], fnmr, marker=".", label=label)
    ax.set(xlabel="rejected (%)", ylabel="FNMR", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def write_markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; floats with 4 significant digits, None as '–'."""

    def cell(v: object) -> str:
        return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _get(d: Any, *keys: Any) -> Any:
    """Nested lookup tolerant of JSON's string keys; None when absent."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k, d.get(str(k)))
    return d


# (column header, path into a setting's results, scale)
COLUMNS = [
    ("rank-1 %", ("cmc", 1), 100),
    ("rank-5 %", ("cmc", 5), 100),
    ("rank-20 %", ("cmc", 20), 100),
    ("mAP %", ("map",), 100),
    ("TPIR20@FPIR=0.1 %", ("open_set", "tpir_at_fpir", 0.1), 100),
    ("DIR@FAR=1e-2 %", ("open_set", "dir_at_far", 0.01), 100),
    ("TAR@FAR=1e-2 %", ("verification", "tar_at_far", 0.01), 100),
    ("TAR@FAR=1e-3 %", ("verification", "tar_at_far", 0.001), 100),
    ("EER %", ("verification", "eer"), 100),
    ("AUC", ("verification", "auc"), 1),
    ("EDC pAUC@20%", ("verification", "erc", "pauc_20"), 1),
]


def _matcher_line(matcher: dict | None) -> str:
    if not matcher:
        return "every gallery image ranked by cosine."
    params = ", ".join(f"{k}={v}" for k, v in matcher.items() if k != "name")
    return f"`{matcher['name']}`" + (f" ({params})" if params else "") + ", gallery scored per identity (docs/nac.md)."


def write_eval_report(metrics: dict, out: str | Path) -> list[Path]:
    """``report.md`` and the plots for an ``eval`` metrics dict; returns the files written."""
    out = Path(out)
    results: dict[str, dict] = metrics["results"]
    rows = [(method, setting, r) for method, settings in results.items() for setting, r in settings.items()]
    cols = [c for c in COLUMNS if any(_get(r, *c[1]) is not None for _, _, r in rows)]
    table = write_markdown_table(
        ["method", "setting", *(c[0] for c in cols)],
        [[m, s, *(None if (v := _get(r, *c[1])) is None else float(v) * c[2] for c in cols)] for m, s, r in rows],
    )
    written = []
    cmc = {f"{m} {s}": r["cmc"] for m, s, r in rows if "cmc" in r}
    if cmc:
        written.append(plot_cmc(cmc, out / "cmc.png", f"CMC — {metrics['protocol']}"))
    roc = {
        f"{m} {s}": (r["verification"]["roc"]["far"], r["verification"]["roc"]["tar"])
        for m, s, r in rows
        if "verification" in r
    }
    if roc:
        written.append(plot_roc(roc, out / "roc.png", f"ROC — {metrics['protocol']}"))
    erc = {
        f"{m} {s}": (r["verification"]["erc"]["reject_ratios"], r["verification"]["erc"]["fnmr"])
        for m, s, r in rows
        if _get(r, "verification", "erc")
    }
    if erc:
        written.append(plot_erc(erc, out / "erc.png", f"ERC (PRM quality) — {metrics['protocol']}"))
    md = [
        f"# Evaluation: {metrics['protocol']}\n",
        f"**Data:** `{metrics['data']}` — {metrics['description']}.\n",
        f"**Model:** `{metrics['checkpoint']}` (flip augmentation: {'on' if metrics['flip'] else 'off'}). "
        "**Baseline:** raw-pixel matching (grey 32×32, mean-removed, cosine) on the same images; "
        "a model must beat it to be worth its compute at 8–12 px.\n",
        f"Unreadable images: {metrics['skipped_images']} (counted as failures).\n",
        f"**Matcher:** {_matcher_line(metrics.get('matcher'))}\n",
        table,
        *(f"![{p.stem}]({p.name})\n" for p in written),
    ]
    (out / "report.md").write_text("\n".join(md))
    return [out / "report.md", *written]
