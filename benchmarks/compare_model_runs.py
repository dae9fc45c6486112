"""Paired comparison of two `bench_model.py` runs on the same held-out instances (e.g. two bundles).

Each model's decodes are deterministic (work budgets), so the delays of two runs on the same instances
compare pair by pair; the GA column is not used (it differs between runs by its CPU-time budget).
Prints, per family and decoder, the mean per-instance gain of NEW over OLD in % of OLD's delay (positive:
NEW is better) with its 95 % t-interval, and writes the table as Markdown.

    python benchmarks/compare_model_runs.py benchmarks/results/model-previous-bundle.json \\
        benchmarks/results/model.json --out benchmarks/results/model-vs-previous-bundle.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_model import gain_interval  # noqa: E402

DECODERS = ("onepass", "search", "student onepass", "student search", "no-model")  # no-model: the control


def compare(old: dict, new: dict) -> list[str]:
    every = [r for rows in (*old["rows"].values(), *new["rows"].values()) for r in rows]
    decoders = [c for c in DECODERS if all(c in r for r in every)]  # older runs may lack a column
    lines = ["| family | " + " | ".join(decoders) + " |", "|---|" + "---:|" * len(decoders)]
    for fam, rows in new["rows"].items():
        if fam not in old["rows"]:
            continue
        before = {r["instance"]: r for r in old["rows"][fam]}
        paired = [{**{f"old {c}": before[r["instance"]][c] for c in decoders}, **{c: r[c] for c in decoders}}
                  for r in rows if r["instance"] in before]
        cells = [gain_interval(paired, c, f"old {c}").fmt("+.2f", "%") for c in decoders]
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="Markdown file for the table")
    args = ap.parse_args()
    try:
        old, new = (json.loads(p.read_text()) for p in (args.old, args.new))
    except (OSError, ValueError) as exc:
        sys.exit(f"error: cannot read a bench_model.py result: {exc}")
    table = compare(old, new)
    text = (f"# {args.new.name} against {args.old.name}: paired gain per instance\n\n"
            "Mean per-instance gain of the new run's decoder over the old run's, in % of the old delay "
            "(positive: the new one is better), 95 % t-interval; same held-out instances.\n\n" + "\n".join(table) + "\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
