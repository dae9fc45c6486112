"""The run report: Markdown and self-contained HTML (figures inline) from a run's results.

A report is a list of `Section`s; each holds prose, tables and figure paths. Every figure a section
names must exist: a missing figure is an `EdgepocError`, never a silently thinner report.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from edgepoc.errors import EdgepocError
from edgepoc.experiments.stats import readable


@dataclass
class Table:
    header: list[str]
    rows: list[list[object]]
    caption: str = ""


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (Markdown inline syntax kept simple)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else readable(v, ",.1f")
    return str(v)


def check_figures(sections: list[Section]) -> None:
    missing = [f"{s.title}: {f.path}" for s in sections for f in s.figures if not Path(f.path).is_file()]
    if missing:
        raise EdgepocError(f"report: figure data missing for {len(missing)} figure(s): {'; '.join(missing)}")


def to_markdown(title: str, sections: list[Section], base: Path) -> str:
    out = [f"# {title}", ""]
    out += [f"- [{s.title}](#{s.title.lower().replace(' ', '-')})" for s in sections] + [""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for p in s.text:
            out += [p, ""]
        for t in s.tables:
            if t.caption:
                out += [f"*{t.caption}*", ""]
            out.append("| " + " | ".join(t.header) + " |")
            out.append("|" + "---|" * len(t.header))
            out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in t.rows]
            out.append("")
        for f in s.figures:
            rel = Path(f.path).resolve().relative_to(base.resolve()) if Path(f.path).resolve().is_relative_to(base.resolve()) else f.path
            out += [f"![{f.caption}]({rel})", "", f"*{f.caption}*", ""]
    return "\n".join(out)


def to_html(title: str, sections: list[Section]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:8px;"
        "width:47%;vertical-align:top}figure img{width:100%}figcaption{font-size:90%;color:#555}"
        ".holds{color:#08660b;font-weight:bold}.fails{color:#a40000;font-weight:bold}</style></head><body>",
        f"<h1>{esc(title)}</h1><ul>",
    ]
    parts += [f"<li><a href='#s{i}'>{esc(s.title)}</a></li>" for i, s in enumerate(sections)]
    parts.append("</ul>")
    for i, s in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{esc(s.title)}</h2>")
        parts += [f"<p>{esc(p)}</p>" for p in s.text]
        for t in s.tables:
            parts.append("<table>")
            if t.caption:
                parts.append(f"<caption>{esc(t.caption)}</caption>")
            parts.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in t.header) + "</tr>")
            for row in t.rows:
                cells = []
                for v in row:
                    cls = " class='holds'" if v == "holds" else " class='fails'" if v == "does not hold" else ""
                    cells.append(f"<td{cls}>{esc(_fmt(v))}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</table>")
        for f in s.figures:
            data = base64.b64encode(Path(f.path).read_bytes()).decode()
            parts.append(f"<figure><img alt='{esc(f.caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{esc(f.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into `out_dir`; refuses if any figure is missing."""
    check_figures(sections)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(to_markdown(title, sections, out_dir), encoding="utf-8")
    page.write_text(to_html(title, sections), encoding="utf-8")
    return md, page
