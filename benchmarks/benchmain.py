"""The command line the dataclass-configured benchmarks share: one option per field of their config, `--out` for
the report; the config and every row go to a JSON file beside it, and the report is printed."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable


def bench_main(description: str, config_cls: type, run: Callable[[Any], dict], report: Callable[[dict, str], str],
               default_out: Path) -> None:
    """Parse the options of `config_cls`, `run` it, write `<out>.json` and the `report` (told that JSON's name)."""
    ap = argparse.ArgumentParser(description=description)
    for f, v in asdict(config_cls()).items():
        ap.add_argument(f"--{f.replace('_', '-')}", type=type(v), default=v)
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args()
    out: Path = args.out
    doc = run(config_cls(**{k: v for k, v in vars(args).items() if k != "out"}))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    text = report(doc, out.with_suffix(".json").name)
    out.write_text(text)
    print(text)
