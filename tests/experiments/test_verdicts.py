"""Report verdicts on made-up comparison results: intervals, "not significant", the paper's 5.84 % claim."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepoc.experiments.compare import CompareConfig, CompareResult, MethodRun, method_status
from edgepoc.experiments.stats import Interval, claim_verdict, difference_verdict, mean_interval, t975


def test_t_quantiles():
    assert t975(1) == 12.706 and t975(9) == 2.262 and t975(30) == 2.042
    assert t975(60) == pytest.approx(2.000, abs=1e-3)  # published table value
    assert t975(120) == pytest.approx(1.980, abs=1e-3)
    assert t975(10**6) == pytest.approx(1.960, abs=1e-3)


def test_mean_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0, 4.0])  # mean 2.5, sd 1.2910, se 0.6455, t(3) 3.182
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.low == pytest.approx(2.5 - 3.182 * 0.645497, abs=1e-5)
    assert iv.high == pytest.approx(2.5 + 3.182 * 0.645497, abs=1e-5)
    one = mean_interval([7.0, float("nan")])
    assert one.n == 1 and one.mean == 7.0 and not one.defined and math.isnan(one.low)
    assert "no interval" in one.fmt()
    assert mean_interval([]).n == 0


@pytest.mark.parametrize("iv, expected", [
    (Interval(3.0, 1.0, 5.0, 10), "significantly better"),
    (Interval(-3.0, -5.0, -1.0, 10), "significantly worse"),
    (Interval(0.5, -1.0, 2.0, 10), "not significant"),
    (Interval(4.0, math.nan, math.nan, 1), "not significant (one instance: no interval)"),
])
def test_difference_verdict(iv, expected):
    assert difference_verdict(iv) == expected


@pytest.mark.parametrize("iv, expected", [
    (Interval(6.5, 4.0, 9.0, 10), "holds"),  # significant and as large as claimed on average
    (Interval(3.0, 1.0, 5.0, 10), "does not hold"),  # significant but smaller than claimed
    (Interval(-2.0, -3.0, -1.0, 10), "does not hold"),  # significantly worse
    (Interval(8.0, -1.0, 17.0, 10), "not significant"),  # large mean, but the interval includes 0
    (Interval(8.0, math.nan, math.nan, 1), "not significant"),
])
def test_claim_verdict(iv, expected):
    assert claim_verdict(iv, 5.84) == expected


def made_up(totals: dict[str, list[float]], failed: dict[str, set[int]] | None = None) -> CompareResult:
    """A comparison result from per-method totals (one per instance), built without running anything."""
    failed = failed or {}
    n = len(next(iter(totals.values())))
    names = [f"i{j}" for j in range(n)]
    runs = []
    for m, values in totals.items():
        for j, v in enumerate(values):
            if j in failed.get(m, set()):
                runs.append(MethodRun(m, names[j], math.nan, math.nan, status="failed: too many providers"))
            else:
                runs.append(MethodRun(m, names[j], v, 0.01))
    best = {name: min(r.total_latency for r in runs if r.instance == name and r.ok) for name in names}
    for r in runs:
        if r.ok:
            r.gap_pct = (r.total_latency / best[r.instance] - 1) * 100
    config = CompareConfig(methods=list(totals), instances=names)
    status = {m: method_status(runs, m, None) for m in totals}
    return CompareResult(config, runs, status, best)


def test_claim_holds_when_consistently_better():
    rng = np.random.default_rng(0)
    ga = rng.uniform(900, 1100, size=10)
    res = made_up({"greedy": list(ga * 1.3), "ga": list(ga), "teacher": list(ga * 0.92)})
    claim = res.claim()
    assert claim["verdict"] == "holds" and claim["holds"] is True
    assert claim["deep_method"] == "teacher" and claim["best_other"] == "ga"
    assert claim["measured_pct"] == pytest.approx(8.0)
    assert claim["statement"].startswith("The paper's claim holds here")


def test_claim_not_significant_when_noise():
    """On average 6 % better, but worse on some instances: the interval includes zero."""
    ga = [1000.0] * 10
    teacher = [1000 * f for f in (0.7, 1.2, 0.8, 1.1, 0.75, 1.15, 0.8, 1.05, 0.9, 0.95)]
    res = made_up({"ga": ga, "teacher": teacher})
    claim = res.claim()
    assert claim["measured_pct"] == pytest.approx(6.0)
    assert claim["ci_low"] < 0 < claim["ci_high"]
    assert claim["verdict"] == "not significant" and claim["holds"] is False
    assert "not significant" in claim["statement"] and "is not confirmed" in claim["statement"]


def test_claim_does_not_hold_when_worse_and_one_instance_has_no_interval():
    res = made_up({"ga": [100.0, 110.0, 120.0], "student": [103.0, 113.5, 123.0]})
    assert res.claim()["verdict"] == "does not hold"
    one = made_up({"ga": [100.0], "student": [80.0]}).claim()
    assert one["verdict"] == "not significant" and "one instance" in one["statement"]


def test_no_model_control_is_reported():
    search = [100.0, 200.0, 300.0, 400.0]
    res = made_up({"search": search, "teacher": [v * 0.99 for v in search], "ga": [v * 0.98 for v in search]})
    control = res.claim()["control"]
    assert control["deep_method"] == "teacher" and control["measured_pct"] == pytest.approx(1.0)
    assert control["verdict"] == "significantly better"
    assert "no-model control" in res.claim()["statement"]


def test_ratio_interval_and_per_instance_status():
    res = made_up({"ga": [100.0, 200.0, 300.0], "dqn": [110.0, 220.0, 330.0]}, failed={"dqn": {1}})
    rows = {r["method"]: r for r in res.summary()}
    assert rows["dqn"]["instances"] == 2 and rows["dqn"]["ratio_to_best"] == pytest.approx(1.1)
    assert rows["dqn"]["status"] == "failed on 1 of 3 instance(s): too many providers"
    assert rows["ga"]["ratio_to_best"] == 1.0 and rows["ga"]["ratio_ci_low"] == pytest.approx(1.0)
    assert res.claim()["verdict"] == "not measured"  # no deep model at all
