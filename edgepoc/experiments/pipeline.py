"""The main job end to end: data -> GA labels -> teacher -> student -> comparison -> PoC chain -> report.

Each stage runs the project's own CLI in a child process (the contract other tools rely on is what
the demo exercises), with its output kept under `<out>/logs/`. Stage timings, config, seeds and
versions go to `<out>/run.json`; `report.py` turns the results into `report.html` and `report.md`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from edgepoc.errors import EdgepocError, Interrupted, ctrl_c_held
from edgepoc.experiments.runinfo import RunRecord

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

console = Console(stderr=True)


def _stop(proc: subprocess.Popen, sig: int, grace: float = 60.0) -> None:
    """Send `sig` to a stage's command and wait for it to end (at most `grace` s, then SIGKILL)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@dataclass
class PipelineConfig:
    """Everything that decides a run's numbers; written to run.json beside its results."""

    out: str = "runs/demo"
    preset: str = "paper"
    seed: int = 0
    n_tasks: int = 200  # tasks per instance
    train_count: int = 24  # labelled training instances
    test_count: int = 6  # held-out instances (validation, comparison)
    label_generations: int = 40  # GA generations per label (a generation budget keeps labels reproducible)
    epochs: int = 200
    patience: int = 200  # the demo shows the whole training curve; best.pt is still the best epoch
    distill_epochs: int = 100
    compare_count: int = 10  # held-out instances in the algorithm comparison (seed HELD_OUT_SEED + seed)
    compare_methods: str = ""  # comma-separated; empty: every registered method of the comparison
    compare_seconds: float = 2.0  # CPU-time budget per instance for GA / CP-SAT in the comparison
    nodes: int = 4
    chain_tasks: int = 2000
    chain_rate: float = 0.0  # tasks/s submitted; 0 = as fast as the node takes them
    work_tasks: int = 300  # tasks that really run (WebAssembly workloads) in the chain stage, per workload
    workers: int = 0  # 0 = all cores
    smoke: bool = False  # --quick: every stage at toy size; the run and its report say it is a smoke run
    stages: list[str] = field(default_factory=lambda: list(STAGES))


STAGES = ["label", "train", "distill", "figures", "compare", "chain", "report"]


def quick_config(out: str, seed: int = 0) -> PipelineConfig:
    """The smoke run (`demo --quick`, `reproduce --quick`): small enough for CI (about 3 minutes on a busy
    2-core machine) while still running every stage for real; marked `smoke` in run.json and the report."""
    return PipelineConfig(out=out, seed=seed, n_tasks=60, train_count=8, test_count=3, label_generations=15,
                          epochs=6, patience=6, distill_epochs=5, compare_count=2, compare_seconds=0.5,
                          chain_tasks=300, work_tasks=40, smoke=True)


SMOKE_LINE = ("smoke run (--quick): every stage at toy size; it checks that the pipeline works end to end, "
              "its numbers do not test the paper's claims")


def paper_config(out: str, seed: int = 0) -> PipelineConfig:
    """The paper's experiment at its size: one training and one test instance of 1000 tasks each (the paper's
    "1000 training and 1000 test tasks"), 3 providers, 2 resources; 10 held-out instances in the comparison."""
    return PipelineConfig(out=out, seed=seed, n_tasks=1000, train_count=1, test_count=1, label_generations=200,
                          epochs=300, patience=300, distill_epochs=150, compare_count=10, compare_seconds=10.0,
                          chain_tasks=3000)


class Pipeline:
    def __init__(self, config: PipelineConfig):
        self.cfg = config
        self.out = Path(config.out)
        self.logs = self.out / "logs"
        self.record = RunRecord(self.out, config)

    # -- running the CLI
    def cli(self, stage: str, *args: str, timeout: float = 900) -> str:
        """Run `edgepoc ARGS`; stderr (progress bars) goes to the console, stdout is returned and logged."""
        self.logs.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "edgepoc", *args]
        (self.logs / f"{stage}.cmd").write_text(" ".join(["edgepoc", *args]) + "\n")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # its own session: a terminal's Ctrl-C reaches only this process, which passes it on once (below)
        proc = None
        try:
            with ctrl_c_held():  # a Ctrl-C inside the spawn would leave the command running on its own (errors.py)
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env,
                                        start_new_session=True)
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc, signal.SIGKILL)
            raise EdgepocError(f"stage {stage}: `edgepoc {' '.join(args)}` ran past {timeout:.0f} s") from None
        except KeyboardInterrupt:  # the command stops what it started (a network's nodes) and says so: let it
            if proc is not None:
                _stop(proc, signal.SIGINT)
            raise
        (self.logs / f"{stage}.out").write_text(stdout)
        if proc.returncode != 0:
            raise EdgepocError(f"stage {stage}: `edgepoc {' '.join(args)}` failed with exit {proc.returncode}")
        return stdout

    def step(self, i: int, name: str, what: str) -> AbstractContextManager[None]:
        console.rule(f"[bold]{i}/{len(self.cfg.stages)} {name}[/bold]: {what}")
        return self.record.stage(name)

    # -- stages
    def label(self) -> None:
        c = self.cfg
        common = ["--preset", c.preset, "--n-tasks", str(c.n_tasks), "--label", "ga",
                  "--generations", str(c.label_generations), "--workers", str(c.workers)]
        self.cli("label-train", "generate", *common, "--count", str(c.train_count), "--seed", str(c.seed),
                 "--out", str(self.out / "data" / "train"))
        self.cli("label-test", "generate", *common, "--count", str(c.test_count),
                 "--seed", str(c.seed + 1), "--out", str(self.out / "data" / "test"))

    def train(self) -> None:
        c = self.cfg
        self.cli("train", "train", "--data", str(self.out / "data" / "train"),
                 "--test-data", str(self.out / "data" / "test"), "--out", str(self.out / "teacher"),
                 "--epochs", str(c.epochs), "--patience", str(c.patience), "--seed", str(c.seed))

    def distill(self) -> None:
        c = self.cfg
        self.cli("distill", "distill", "--teacher", str(self.out / "teacher" / "best.pt"),
                 "--data", str(self.out / "data" / "train"), "--test-data", str(self.out / "data" / "test"),
                 "--out", str(self.out / "student"), "--epochs", str(c.distill_epochs),
                 "--patience", str(c.patience), "--seed", str(c.seed))

    def figures(self) -> None:
        self.cli("plot-teacher", "plot", str(self.out / "teacher"), "--out", str(self.out / "figures"))
        self.cli("plot-student", "plot", str(self.out / "student"), "--out", str(self.out / "figures"))

    def compare(self) -> None:
        """Every method on held-out instances: seeds the run's (and the bundled) models never saw."""
        from edgepoc.experiments.compare import HELD_OUT_SEED

        c = self.cfg
        methods = ["--methods", c.compare_methods] if c.compare_methods else []
        self.cli("compare", "compare", "--preset", c.preset, "--n-tasks", str(c.n_tasks), "--count",
                 str(c.compare_count), "--instance-seed", str(HELD_OUT_SEED + c.seed), *methods,
                 "--seconds", str(c.compare_seconds), "--teacher", str(self.out / "teacher" / "best.pt"),
                 "--student", str(self.out / "student" / "best.pt"), "--out", str(self.out / "compare"))

    def chain(self) -> None:
        c = self.cfg
        net = self.out / "testnet"
        self.cli("network-init", "network", "init", "--nodes", str(c.nodes), "--base-port", "0",
                 "--dir", str(net), "--seed", str(c.seed))
        try:  # Ctrl-C or a failure while the nodes start stops them too
            self.cli("network-up", "network", "up", "--dir", str(net))
            t0 = time.perf_counter()
            self.cli("submit", "submit", "--dir", str(net), "--count", str(c.chain_tasks), "--rate",
                     str(c.chain_rate), "--seed", str(c.seed), "--wait", "--timeout", "300")
            (self.out / "chain_submit_seconds.txt").write_text(f"{time.perf_counter() - t0:.3f}\n")
            self.workloads(net)
            self.cli("network-status", "network", "status", "--dir", str(net), "--json")
            self.cli("contributions", "contributions", "--dir", str(net), "--json")
            self.explorer_screenshot(net)
        finally:
            self.cli("network-down", "network", "down", "--dir", str(net))
        self.cli("chain-verify", "chain", "verify", "--home", str(net / "node0"))

    def workloads(self, net: Path) -> None:
        """Tasks that really run: each shipped workload put on chain, run by the providers, every result fetched
        from the provider that ran it and checked against its receipt (logs/work-<name>.out, results/<name>/)."""
        from edgepoc.execution import WORKLOADS, workload_path

        for name in sorted(WORKLOADS):
            function, args, _ = WORKLOADS[name]
            added = json.loads(self.cli(f"module-{name}", "module", "add", str(workload_path(name)), "--dir",
                                        str(net)).strip().splitlines()[-1])
            self.cli(f"work-{name}", "submit", "--dir", str(net), "--module", added["module"], "--function", function,
                     "--args", ",".join(str(a) for a in args), "--fuel", "50000000", "--count",
                     str(self.cfg.work_tasks), "--results", str(self.out / "results" / name), "--timeout", "300")

    def explorer_screenshot(self, net: Path) -> None:
        """node0's explorer while the network still runs -> figures/explorer.png (or explorer.txt: why not)."""
        from edgepoc.chain.api.screenshot import explorer_screenshot

        shot = self.out / "figures" / "explorer.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        why = explorer_screenshot(json.loads((net / "network.json").read_text())["nodes"][0]["api"], shot)
        if why is not None:
            shot.with_suffix(".txt").write_text(why + "\n")

    def report(self) -> Path:
        from edgepoc.experiments.report_build import build_report

        return build_report(self.out)

    def _how_to_finish(self, rest: list[str]) -> str:
        """After Ctrl-C in stage `rest[0]`: what finished, and the command line that finishes the run. The chain
        stage's network was stopped (its `finally`), but its folder would make a rerun refuse, so it goes first."""
        done = [s for s in self.cfg.stages if s not in rest]
        clear = f"remove {self.out / 'testnet'}, then " if (self.out / "testnet").exists() else ""
        return (f"in stage {rest[0]}" + (f" (finished: {', '.join(done)})" if done else "") + f"; to finish the run, "
                f"{clear}rerun the same command with --out {self.out} --stages {','.join(rest)}")

    def run(self) -> Path | None:
        what = {
            "label": "instances with GA labels", "train": "the teacher (GNN + RNN encoders, one decoder)",
            "distill": "a student for the edge nodes", "figures": "the paper's figures 4-17",
            "compare": "every method on held-out instances (Fig. 18)",
            "chain": f"a {self.cfg.nodes}-node PoC network: submit, commit, verify", "report": "HTML + Markdown",
        }
        report = None
        t0 = time.perf_counter()
        if self.cfg.smoke:
            console.print(SMOKE_LINE, style="yellow", soft_wrap=True)
        for i, name in enumerate(self.cfg.stages, 1):
            try:
                with self.step(i, name, what[name]):
                    result = getattr(self, name)()
                    report = result if name == "report" else report
            except KeyboardInterrupt:
                raise Interrupted(self._how_to_finish(self.cfg.stages[i - 1:])) from None
        console.print(f"[green]done[/green] in {time.perf_counter() - t0:.0f} s; results in {self.out}/"
                      + (" (a smoke run)" if self.cfg.smoke else ""))
        return report


def run_pipeline(config: PipelineConfig) -> Path | None:
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise EdgepocError(f"--stages: unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    # settings a later stage would refuse, refused before the first stage spends minutes on GA labels (imported
    # here: every CLI command loads this module, and the generators bring the compiled kernel)
    from edgepoc.game.generators import PRESETS

    if config.preset not in PRESETS:
        raise EdgepocError(f"--preset: unknown preset {config.preset!r}; known: {', '.join(PRESETS)}")
    if config.epochs < 1:
        raise EdgepocError(f"--epochs: must be >= 1, got {config.epochs}")
    out = Path(config.out)
    if (out / "testnet" / "network.json").exists() and "chain" in config.stages:
        raise EdgepocError(f"{out} already holds a run; pick another --out or remove it")
    return Pipeline(config).run()
