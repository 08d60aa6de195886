"""Report helpers: Markdown table formatting and PNG plots."""

from vlrface.eval.report import plot_cmc, plot_erc, plot_roc, write_markdown_table


def test_markdown_table():
    md = write_markdown_table(["a", "b"], [["x", 0.123456], ["y", None]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x | 0.1235 |", "| y | – |"]


def test_plots_write_png(tmp_path):
    for fn, curves in [
        (plot_cmc, {"m": {1: 0.5, "5": 0.9}}),
        (plot_roc, {"m": ([1e-3, 1e-1], [0.2, 0.8])}),
        (plot_erc, {"m": ([0, 0.5], [0.3, 0.1])}),
    ]:
        path = fn(curves, tmp_path / f"{fn.__name__}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
