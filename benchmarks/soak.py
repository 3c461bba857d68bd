"""Resident memory of the dashboard at 48xLarge, every minute for a long run (default 30
minutes): it must stay flat after the first minutes. Writes benchmarks/soak.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.bench_dashboard import start_dashboard


def main(seconds: float) -> int:
    app = start_dashboard("48xLarge.24576GB")
    try:
        app.wait_for("● live")
        started = time.perf_counter()
        samples = [(0.0, app.rss_mb())]
        while time.perf_counter() - started < seconds:
            time.sleep(60.0)
            samples.append((time.perf_counter() - started, app.rss_mb()))
            assert app.process.poll() is None, "the dashboard exited during the soak"
    finally:
        app.stop()
    at5 = next((rss for t, rss in samples if t >= 300), samples[-1][1])
    end = samples[-1][1]
    lines = [
        "# Dashboard memory soak, 48xLarge, 1 Hz, 120x40",
        "",
        "`python3 -m benchmarks.soak`; the seeded job runs from the start "
        "(benchmarks/bench_dashboard.py `seeded_config`); RSS read once a minute.",
        "",
        f"RSS after 5 min: {at5:.1f} MB; after {samples[-1][0] / 60:.0f} min: {end:.1f} MB; "
        f"growth {end - at5:+.1f} MB ({end / at5:.3f}x).",
        "",
        "| minute | RSS MB |",
        "|---|---|",
    ]
    lines += [f"| {t / 60:.0f} | {rss:.1f} |" for t, rss in samples]
    Path(__file__).with_name("soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:5]))
    return 0 if end - at5 < 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 1800.0))
