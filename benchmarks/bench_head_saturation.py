"""Why the one-pass decode is weakest on Alibaba windows: the head's scale on heavy tails (issue 18 item 4).

For each teacher and family, along the teacher's own one-pass decode of a few instances (seed 3000: neither
training (1000), selection (2000) nor the held-out benchmarks (5000+)): the 99th percentile of each dynamic
feature, the share of the head's tanh pre-activations beyond |3| (saturated), and the median per-step spread
(max - min over providers) of the linear term `c . dyn` and of the tanh correction `w . tanh(...)`: when the
linear pilot term's spread dwarfs the correction's, the learned correction cannot change a decision.

    python benchmarks/bench_head_saturation.py [TEACHER.pt ...] --out benchmarks/results/head-saturation.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepoc.game.generators import generate  # noqa: E402
from edgepoc.models.checkpoint import bundled_path, load_model  # noqa: E402
from edgepoc.models.general.decode import DYN_FEATURES, onepass, trajectory_features  # noqa: E402
from edgepoc.models.general.model import embedding  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teachers", nargs="*", type=Path)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--seed", type=int, default=3000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    teachers = args.teachers or [bundled_path("teacher")]
    lines = ["# The general head's scale on heavy tails", "",
             f"{args.count} instances per family (1000 tasks, generator seed {args.seed}), each teacher's own one-pass "
             "decode. Columns: 99th percentile of |feature| over steps and providers; share of tanh "
             "pre-activations with |z| > 3; median per-step spread over providers of the linear term and of the "
             "tanh correction.", "",
             "| teacher | family | " + " | ".join(f"q99 {f}" for f in DYN_FEATURES)
             + " | tanh saturated | spread linear | spread tanh |", "|---|---|" + "---:|" * (len(DYN_FEATURES) + 3)]
    for path in teachers:
        model, _ = load_model(path, "teacher")
        head = model.head()
        for fam in ("paper", "varied", "alibaba"):
            size = {} if fam == "varied" else {"n_tasks": 1000}
            q99, sat, s_lin, s_tanh = [], [], [], []
            for inst in generate(fam, seed=args.seed, count=args.count, **size):
                emb = embedding(model, inst)
                x, _, _ = onepass(inst, emb, head)
                dyn = trajectory_features(inst, x, head.horizon, scale=head.scale)
                t = dyn if head.dyn_input == "linear" else np.sign(dyn) * np.log1p(np.abs(dyn))
                z = head.gain * emb + t @ head.a.T + head.b
                q99.append(np.quantile(np.abs(dyn), 0.99, axis=(0, 1)))
                sat.append(float((np.abs(z) > 3).mean()))
                s_lin.append(float(np.median(np.ptp(dyn @ head.c, axis=1))))
                s_tanh.append(float(np.median(np.ptp(np.tanh(z) @ head.w, axis=1))))
            q = np.mean(q99, axis=0)
            lines.append(f"| `{path}` | {fam} | " + " | ".join(f"{v:.1f}" for v in q)
                         + f" | {np.mean(sat):.2f} | {np.mean(s_lin):.2f} | {np.mean(s_tanh):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
