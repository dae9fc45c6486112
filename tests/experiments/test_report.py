"""The report renderer: every section lands in both forms; a missing figure is a loud error."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from edgepoc.errors import EdgepocError
from edgepoc.experiments.report import Figure, Section, Table, write_report


def _png(path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    fig.savefig(path)
    plt.close(fig)
    return path


def test_report_has_every_section_and_inline_figures(tmp_path):
    sections = [
        Section("Claims", ["What the paper says beside what we measured."],
                tables=[Table(["claim", "paper", "measured", "verdict"], [["latency", "5.84%", "1.2%", "does not hold"]])]),
        Section("Chain", figures=[Figure(_png(tmp_path / "c.png"), "contribution over time")]),
    ]
    md, page = write_report(tmp_path / "out", "run", sections)
    text, html = md.read_text(), page.read_text()
    for title in ("Claims", "Chain"):
        assert f"## {title}" in text and title in html
    assert "data:image/png;base64," in html and "does not hold" in html


def test_missing_figure_fails_loudly(tmp_path):
    sections = [Section("Training", figures=[Figure(tmp_path / "fig5_loss.png", "loss")])]
    with pytest.raises(EdgepocError, match="fig5_loss.png"):
        write_report(tmp_path / "out", "run", sections)
    assert not (tmp_path / "out" / "report.html").exists()
