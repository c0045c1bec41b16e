"""The benchmark's verdicts on issue 7's targets (scripts/bench_targets.py).

Only the judging is tested here; the measurements come from ``make bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from bench_common import Result, waits_before_reaching  # noqa: E402
from bench_targets import targets  # noqa: E402


def trained(kind: str, family: str, accuracy: float, curve: list, waits: list,
            ex_per_s: float = 100.0) -> Result:
    """A BBC row whose epochs ended at ``curve``'s clock times after ``waits``
    seconds of waiting for their first batches."""
    epochs = [{"train": 1.0, "total": 1.1, "first_batch_wait": w} for w in waits]
    return Result(contender=f"{kind} {family}", dataset="bbc", family=family, kind=kind,
                  n_train=100, test_accuracy=accuracy, train_seconds=curve[-1][0],
                  steady_ex_per_s=ex_per_s, curve=curve, predict_docs=10,
                  predict_docs_per_s=10.0, extra={"epoch_times": epochs})


def test_waits_count_from_the_second_epoch_up_to_the_one_that_reached_the_target():
    naive = trained("naive", "cnn", 0.9, [[5, 0.5], [20, 0.8], [30, 0.9], [40, 0.9]],
                    waits=[3.0, 10.0, 2.0, 7.0])
    # Epoch 1's wait is the pipeline's start, not a stall; epoch 4 came after.
    assert waits_before_reaching(naive, 0.9) == 12.0
    assert waits_before_reaching(naive, 0.5) == 0.0
    assert waits_before_reaching(naive, 0.99) == 19.0  # never reached: every epoch


def target_2(tool: Result, naive: Result) -> dict:
    rows = targets([tool, naive], {}, {}, {}, None)
    return next(r for r in rows if r["number"] == "2" and r["target"].startswith("CNN"))


def test_target_2_is_not_met_by_the_naive_models_stalls_alone():
    # textclf reaches 0.9 at 10 s; the naive model at 40 s, 15 s of it waiting.
    tool = trained("textclf", "cnn", 0.95, [[5, 0.8], [10, 0.92]], waits=[0.0, 0.0])
    naive = trained("naive", "cnn", 0.9, [[15, 0.7], [40, 0.9]], waits=[0.0, 15.0])
    row = target_2(tool, naive)
    assert row["met"] is False  # 10/40 = 0.25, but 10/25 = 0.4 without the stall
    assert "0.25" in row["measured"] and "0.40 without" in row["measured"]

    undisturbed = trained("naive", "cnn", 0.9, [[15, 0.7], [40, 0.9]], waits=[0.0, 0.0])
    assert target_2(tool, undisturbed)["met"] is True


def target_6(gflop_per_s: float, probe: dict | None, peak: float = 200.0) -> dict:
    tool = trained("textclf", "rnn", 0.95, [[5, 0.95]], waits=[0.0])
    tool.flops = {"train": {"executed_gflop_per_s": gflop_per_s,
                            "useful_gflop_per_s": gflop_per_s * 0.9}}
    if probe is not None:
        tool.extra["speed_probe"] = probe
    return next(r for r in targets([tool], {}, {}, {}, peak) if r["number"] == "6")


def test_target_6_is_judged_against_the_runs_peak_when_the_machine_kept_its_speed():
    row = target_6(80.0, {"before": 195.0, "after": 205.0})
    assert row["met"] is False  # 40% of 200
    assert "40% executed" in row["measured"]
    assert "195.0 / 205.0 GFLOP/s" in row["measured"] and "slow" not in row["measured"]
    assert target_6(110.0, {"before": 195.0, "after": 205.0})["met"] is True
    assert target_6(80.0, None)["met"] is False  # no probes (an older run's JSON)


def test_target_6_cannot_be_missed_in_a_slow_phase_but_can_be_passed():
    # The machine ran at 60% of its peak right after the row: a 40% share
    # might be the loop's or the machine's.
    slow = {"before": 198.0, "after": 120.0}
    row = target_6(80.0, slow)
    assert row["met"] is None
    assert "below 85% of the run's peak" in row["measured"]
    # 55% of the run's highest peak holds whatever the machine did meanwhile.
    assert target_6(110.0, slow)["met"] is True
