"""Report verdicts on made-up comparison results: intervals, "not significant", the paper's 5.84 % claim,
no interval from fewer than 5 instances, the sign of "worse" and its interval, Fig. 18's error bars."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepoc.experiments.compare import CompareConfig, CompareResult, MethodRun, comparison_figure, method_status, \
    ratio_text, summary_markdown
from edgepoc.experiments.stats import Interval, claim_verdict, difference_verdict, mean_interval, t975


def test_t_quantiles():
    assert t975(1) == 12.706 and t975(9) == 2.262 and t975(30) == 2.042
    assert t975(60) == pytest.approx(2.000, abs=1e-3)  # published table value
    assert t975(120) == pytest.approx(1.980, abs=1e-3)
    assert t975(10**6) == pytest.approx(1.960, abs=1e-3)


def test_mean_interval_by_hand():
    iv = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # mean 3, sd 1.5811, se 0.7071, t(4) 2.776
    assert iv.mean == 3.0 and iv.n == 5 and iv.defined
    assert iv.low == pytest.approx(3.0 - 2.776 * 0.707107, abs=1e-5)
    assert iv.high == pytest.approx(3.0 + 2.776 * 0.707107, abs=1e-5)
    one = mean_interval([7.0, float("nan")])
    assert one.n == 1 and one.mean == 7.0 and not one.defined and math.isnan(one.low)
    assert "no interval" in one.fmt()
    assert mean_interval([]).n == 0


def test_no_interval_from_fewer_than_five_instances():
    """Two instances gave a ratio interval of [-2.1, 4.x] (issue 19): below 5 values none is computed."""
    for n in (2, 3, 4):
        iv = mean_interval([1.0, 1.5, 0.9, 1.2][:n])
        assert not iv.defined and math.isnan(iv.low) and math.isnan(iv.high) and iv.n == n
        assert "n < 5: no interval" in iv.fmt()
        assert difference_verdict(Interval(3.0, math.nan, math.nan, n)) == "not significant (n < 5: no interval)"
    assert mean_interval([1.0, 1.5, 0.9, 1.2, 1.1]).defined
    assert mean_interval([1.0, 1.5], min_n=2).defined  # the plain t-interval is still there when asked


@pytest.mark.parametrize("iv, expected", [
    (Interval(3.0, 1.0, 5.0, 10), "significantly better"),
    (Interval(-3.0, -5.0, -1.0, 10), "significantly worse"),
    (Interval(0.5, -1.0, 2.0, 10), "not significant"),
    (Interval(4.0, math.nan, math.nan, 1), "not significant (n < 5: no interval)"),
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


def test_claim_does_not_hold_when_worse_and_few_instances_have_no_interval():
    res = made_up({"ga": [100.0, 110.0, 120.0, 130.0, 140.0], "student": [103.0, 113.5, 123.0, 134.0, 144.0]})
    assert res.claim()["verdict"] == "does not hold"
    for totals in ({"ga": [100.0], "student": [80.0]}, {"ga": [100.0, 120.0], "student": [80.0, 130.0]}):
        few = made_up(totals).claim()
        assert few["verdict"] == "not significant" and "n < 5: no interval" in few["statement"]
        assert "[" not in few["statement"]  # no interval printed from 1 or 2 instances


def test_worse_comes_with_its_interval_in_the_same_sign_convention():
    """"1.18 % worse" came with "[-3.32 %, +0.95 %]", the improvement's interval (issue 19): the interval
    of how much worse has the worse-sign too, here [-0.95 %, +3.32 %] around +1.18 %."""
    ga = [1000.0] * 6
    student = [1000 * (1 + f) for f in (0.0118 + d for d in (-0.03, 0.03, -0.02, 0.02, 0.0, 0.0))]
    claim = made_up({"ga": ga, "student": student}).claim()
    assert claim["measured_pct"] == pytest.approx(-1.18) and claim["ci_low"] < 0 < claim["ci_high"]
    s = claim["statement"]
    assert "1.18% worse" in s
    worse_low, worse_high = -claim["ci_high"], -claim["ci_low"]
    assert f"95% interval of how much worse: [{worse_low:+.2f}%, {worse_high:+.2f}%]" in s
    assert worse_low < 1.18 < worse_high  # the number lies inside its own interval
    better = made_up({"ga": ga, "student": [v * 0.95 for v in ga[:5]] + [960.0]}).claim()["statement"]
    assert "better" in better and "95% interval of how much better: [+" in better


def test_no_model_control_is_reported():
    search = [100.0, 200.0, 300.0, 400.0, 500.0]
    res = made_up({"search": search, "teacher": [v * 0.99 for v in search], "ga": [v * 0.98 for v in search]})
    control = res.claim()["control"]
    assert control["deep_method"] == "teacher" and control["measured_pct"] == pytest.approx(1.0)
    assert control["verdict"] == "significantly better"
    assert "no-model control" in res.claim()["statement"]


def test_ratio_interval_and_per_instance_status():
    res = made_up({"ga": [100.0, 200.0, 300.0, 400.0, 500.0], "dqn": [110.0, 220.0, 330.0, 440.0, 550.0]},
                  failed={"dqn": {1}})
    rows = {r["method"]: r for r in res.summary()}
    assert rows["dqn"]["instances"] == 4 and rows["dqn"]["ratio_to_best"] == pytest.approx(1.1)
    assert rows["dqn"]["status"] == "failed on 1 of 5 instance(s): too many providers"
    assert rows["ga"]["ratio_to_best"] == 1.0 and rows["ga"]["ratio_ci_low"] == pytest.approx(1.0)
    assert ratio_text(rows["ga"]) == "1.000 [1.000, 1.000]"
    assert ratio_text(rows["dqn"]) == "1.100 (n < 5: no interval)"  # 4 instances solved: none printed
    assert math.isnan(rows["dqn"]["ratio_ci_low"]) and "1.100 (n < 5: no interval)" in summary_markdown(
        res.summary(), {"statement": ""})
    assert res.claim()["verdict"] == "not measured"  # no deep model at all


def _error_bars(ax) -> dict[str, tuple[float, float]]:
    """method -> (low, high) of each error bar drawn on a bar chart's axes."""
    from matplotlib.container import ErrorbarContainer

    labels = [t.get_text() for t in ax.get_xticklabels()]
    out = {}
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            for seg in c.lines[2][0].get_segments():
                (x, y0), (_, y1) = seg
                out[labels[int(round(x))]] = (min(y0, y1), max(y0, y1))
    return out


def test_fig18_has_95_percent_error_bars_and_none_from_fewer_than_five():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    ga = list(rng.uniform(900, 1100, size=6))
    res = made_up({"ga": ga, "greedy": [v * 1.2 for v in ga], "dqn": [v * 1.1 for v in ga]},
                  failed={"dqn": {0, 1}})  # dqn solved 4: no interval, no bar
    summary = res.summary()
    rows = {r["method"]: r for r in summary}
    fig = comparison_figure(summary)
    try:
        delay, ratio = _error_bars(fig.axes[0]), _error_bars(fig.axes[1])
        for name in ("ga", "greedy"):
            assert delay[name] == pytest.approx((rows[name]["delay_ci_low"], rows[name]["delay_ci_high"]))
            assert ratio[name] == pytest.approx((rows[name]["ratio_ci_low"], rows[name]["ratio_ci_high"]))
        assert delay["greedy"][1] - delay["greedy"][0] > 10  # a real interval, not a zero-height bar
        for bars in (delay, ratio):  # no interval from 4 instances: the bar has zero height
            assert "dqn" not in bars or bars["dqn"][0] == pytest.approx(bars["dqn"][1])
        texts = [t.get_text() for ax in fig.axes[:2] for t in ax.texts]
        assert any("n < 5: no interval" in t and "dqn" in t for t in texts)
        assert "95% interval" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_values_past_1e9_print_in_four_digits_and_their_interval_does_not_overflow():
    """A valid instance with capacities near 1e-300 gave round-robin a delay of 6e298: `,.2f` printed a 300-digit
    number that stretched the compare table to hundreds of columns, and the interval's std overflowed."""
    import warnings

    from edgepoc.experiments.stats import readable
    assert readable(1234.5678, ",.2f") == "1,234.57" and readable(6e298, ",.2f") == "6e+298"
    assert readable(float("nan"), ".3f") == "nan"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iv = mean_interval([6e298, 1e299, 2e298, 5e298, 3e298])
    assert iv.defined and iv.low < iv.mean < iv.high < 1e300
    small = mean_interval([6.0, 10.0, 2.0, 5.0, 3.0])
    assert iv.high / 1e298 == pytest.approx(small.high, rel=1e-12)  # the same interval, scaled
    assert len(iv.fmt(",.2f")) < 60


def test_fig18_goes_logarithmic_when_bars_span_orders_of_magnitude():
    import warnings

    import matplotlib.pyplot as plt

    rng = np.random.default_rng(2)
    ga = list(rng.uniform(900, 1100, size=6))
    for factor, log in ((1.3, False), (1e6, True), (1e290, False)):  # past 1e200 matplotlib's log ticks overflow
        res = made_up({"ga": ga, "round-robin": [v * factor * rng.uniform(1, 2) for v in ga]})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fig = comparison_figure(res.summary())
            fig.canvas.draw()
        try:
            assert [ax.get_yscale() for ax in fig.axes[:2]] == (["log", "log"] if log else ["linear", "linear"])
            assert all(len(t.get_text()) < 20 for t in fig.axes[0].texts)  # gap labels stay short
        finally:
            plt.close(fig)
