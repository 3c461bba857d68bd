"""The PromQL the Prometheus backend sends, evaluated by Prometheus's own engine (`promtool test
rules`, from Debian's prometheus package, installed by .ci/run) against series written here:
what each query selects, how it reduces, and that label values are never read as PromQL."""

from __future__ import annotations

import json
import shutil
import subprocess

from moai_tui.backends.prometheus import (
    TAG,
    down_query,
    history_queries,
    per_gpu_query,
    promql_string,
)

PROMTOOL = shutil.which("promtool")
assert PROMTOOL, "promtool is required (Debian's prometheus package, installed by .ci/run)"
# Label values a real cluster can hold that PromQL or RE2 would read as syntax.
DOT, LOOKALIKE, QUOTED = "gpu.00", "gpuX00", 'q"uote\\ \n{x}|.*'


def series(metric: str, values: str, **labels: str) -> dict:
    inner = ",".join(f"{k}={promql_string(v)}" for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def sample(value: float, **labels: str) -> dict:
    inner = ", ".join(f"{k}={promql_string(v)}" for k, v in labels.items())
    return {"labels": f"{{{inner}}}", "value": value}


def evaluate(tmp_path, input_series: list, checks: list[tuple[str, list]], at: str = "10m"):
    """Each (expr, expected samples) evaluated at `at` over `input_series`; fails with
    promtool's own report of what differed."""
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "promql_expr_test": [
                    {"expr": expr, "eval_time": at, "exp_samples": expected}
                    for expr, expected in checks
                ],
            }
        ],
    }
    path = tmp_path / "promql-test.yml"
    path.write_text(json.dumps(document))  # JSON is YAML
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_per_gpu_query_dedupes_each_gpu_and_tags_its_metric(tmp_path):
    evaluate(
        tmp_path,
        [
            # One GPU seen through two pods (k8s dcgm-exporter): counted once, at its max.
            series("DCGM_FI_DEV_GPU_UTIL", "10x20", Hostname=QUOTED, gpu="0", pod="a"),
            series("DCGM_FI_DEV_GPU_UTIL", "30x20", Hostname=QUOTED, gpu="0", pod="b"),
            series("DCGM_FI_DEV_FB_USED", "500x20", Hostname=QUOTED, gpu="0", pod="a"),
            series("gpu_used_vram", "2048x20", hostname="amd1", gpu_id="3", job="amd"),
        ],
        [
            (
                per_gpu_query(),
                [
                    sample(30, Hostname=QUOTED, gpu="0", **{TAG: "DCGM_FI_DEV_GPU_UTIL"}),
                    sample(500, Hostname=QUOTED, gpu="0", **{TAG: "DCGM_FI_DEV_FB_USED"}),
                    sample(2048, hostname="amd1", gpu_id="3", **{TAG: "gpu_used_vram"}),
                ],
            )
        ],
    )


def test_history_selects_exactly_the_devices_gpus_with_literal_names(tmp_path):
    """The device holds gpu.00:0-1 and QUOTED:0. `gpu.00` as a regex would also match gpuX00,
    and its GPU 2 is not the device's: both would move the averages."""
    nvidia = [
        ("gpu.00", "0", 10, 100, 300),
        ("gpu.00", "1", 20, 200, 200),
        ("gpu.00", "2", 90, 900, 100),
        (LOOKALIKE, "0", 95, 950, 50),
        (QUOTED, "0", 60, 100, 100),
    ]
    input_series = []
    for node, gpu, util, used, free in nvidia:
        for pod in ("a", "b"):  # each GPU through two pods: deduped, not double-counted
            labels = {"Hostname": node, "gpu": gpu, "pod": pod}
            input_series += [
                series("DCGM_FI_DEV_GPU_UTIL", f"{util}x20", **labels),
                series("DCGM_FI_DEV_FB_USED", f"{used}x20", **labels),
                series("DCGM_FI_DEV_FB_FREE", f"{free}x20", **labels),
            ]
    where = [("Hostname", DOT, "gpu", ["0", "1"]), ("Hostname", QUOTED, "gpu", [])]
    util, memory = history_queries("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", where)
    evaluate(
        tmp_path,
        input_series,
        [(util, [sample((10 + 20 + 60) / 3)]), (memory, [sample(100 * 400 / (400 + 600))])],
    )


def test_history_amd_memory_and_nodes_keyed_by_instance(tmp_path):
    amd = {"hostname": "amd.1", "gpu_id": "0"}
    by_instance = {"instance": "10.0.0.7:9400", "gpu": "1"}
    evaluate(
        tmp_path,
        [
            series("gpu_gfx_activity", "70x20", **amd),
            series("gpu_used_vram", "1000x20", **amd),
            series("gpu_total_vram", "4000x20", **amd),
            series("gpu_used_vram", "4000x20", hostname="amdX1", gpu_id="0"),
            series("gpu_total_vram", "4000x20", hostname="amdX1", gpu_id="0"),
            series("DCGM_FI_DEV_GPU_UTIL", "40x20", **by_instance),
            series("DCGM_FI_DEV_FB_USED", "10x20", **by_instance),
            series("DCGM_FI_DEV_FB_FREE", "30x20", **by_instance),
        ],
        [
            *zip(
                history_queries(
                    "gpu_gfx_activity", "gpu_used_vram", [("hostname", "amd.1", "gpu_id", [])]
                ),
                ([sample(70)], [sample(25)]),
                strict=True,
            ),
            *zip(
                history_queries(
                    "DCGM_FI_DEV_GPU_UTIL",
                    "DCGM_FI_DEV_FB_USED",
                    [("instance", "10.0.0.7:9400", "gpu", ["1"])],
                ),
                ([sample(40)], [sample(25)]),
                strict=True,
            ),
        ],
    )


def test_down_query_finds_what_a_dead_exporter_served_last(tmp_path):
    dead = "10.0.0.2:9400"
    evaluate(
        tmp_path,
        [
            # Scraped for 5 minutes, then its exporter died (no samples after).
            series("DCGM_FI_DEV_GPU_UTIL", "7x5", Hostname="n.2", gpu="0", instance=dead),
            series("DCGM_FI_DEV_GPU_UTIL", "8x5", Hostname="n.2", gpu="1", instance=dead),
            series("DCGM_FI_DEV_GPU_UTIL", "9x20", Hostname="n1", gpu="0", instance="other"),
        ],
        [
            (
                down_query([dead, 'never"seen']),
                [
                    sample(7, Hostname="n.2", gpu="0", instance=dead),
                    sample(8, Hostname="n.2", gpu="1", instance=dead),
                ],
            )
        ],
        at="30m",
    )


def test_amd_names_with_a_configured_prefix_and_partitions_kept_apart(tmp_path):
    """device-metrics-exporter's MetricsFieldPrefix ("amd_") is matched; each partition of an
    MI300X in CPX mode stays one GPU; an unprefixed exporter on another node is read too."""
    cpx = {"hostname": "mi300-1", "gpu_compute_partition_type": "cpx"}
    evaluate(
        tmp_path,
        [
            series("amd_gpu_gfx_activity", "20x20", gpu_id="0", gpu_partition_id="0", **cpx),
            series("amd_gpu_gfx_activity", "30x20", gpu_id="1", gpu_partition_id="1", **cpx),
            series("amd_gpu_used_visible_vram", "9x20", gpu_id="0", gpu_partition_id="0", **cpx),
            series("gpu_gfx_activity", "70x20", hostname="amd1", gpu_id="3"),
        ],
        [
            (
                per_gpu_query(),
                [
                    sample(
                        20, gpu_id="0", gpu_partition_id="0", **cpx, **{TAG: "gpu_gfx_activity"}
                    ),
                    sample(
                        30, gpu_id="1", gpu_partition_id="1", **cpx, **{TAG: "gpu_gfx_activity"}
                    ),
                    sample(70, hostname="amd1", gpu_id="3", **{TAG: "gpu_gfx_activity"}),
                ],
            ),
            (
                history_queries(
                    "gpu_gfx_activity", "gpu_used_vram", [("hostname", "mi300-1", "gpu_id", [])]
                )[0],
                [sample(25)],
            ),
        ],
    )
