"""The rules the benchmark tables follow (benchmarks/): a CPU target is met only when every
window meets it; a script rewrites its own section of a results file and no other."""

from __future__ import annotations

from benchmarks.bench_dashboard import cpu_row
from benchmarks.common import write_section

HALF = ("<= 0.5x naive, every window", lambda ours, base: ours <= 0.5 * base)


def test_target_met_only_when_the_worst_window_meets_it():
    # Median ratio 0.33x, but the third window is 0.67x: not met.
    row = cpu_row("f", [1.0, 1.0, 2.0], "naive", [3.0, 3.0, 3.0], HALF)
    assert row["value"] == "1.00 % core (1.00-2.00)"
    assert row["baseline"] == "naive: 3.00 % (3.00-3.00)"
    assert row["ratio"] == "0.33x (0.33-0.67)" and row["ok"] is False
    assert cpu_row("f", [1.0, 1.5, 1.2], "naive", [3.0, 3.0, 3.0], HALF)["ok"] is True
    assert cpu_row("f", [9.0] * 3, "naive", [3.0] * 3)["ok"] is None  # no target: no verdict


def test_each_script_owns_its_section(tmp_path):
    results = tmp_path / "results.md"
    results.write_text("# Benchmark results\n")
    write_section(results, "run", "table 1")
    write_section(results, "mutation", "scores 1")
    write_section(results, "run", "table 2")
    assert results.read_text() == (
        "# Benchmark results\n\n"
        "<!-- begin run -->\ntable 2\n<!-- end run -->\n\n"
        "<!-- begin mutation -->\nscores 1\n<!-- end mutation -->\n"
    )
