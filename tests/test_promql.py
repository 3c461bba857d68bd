"""The PromQL the Prometheus backend sends, evaluated by Prometheus's own engine (`promtool test
rules`, from Debian's prometheus package, installed by .ci/run) against series written here:
what each query selects, how it reduces, and that label values are never read as PromQL."""

from __future__ import annotations

import json
import shutil
import subprocess

from moai_tui.backends.prometheus import (
    DOWN,
    NOT_SUPPORTED,
    down_query,
    gpu_queries,
    history_queries,
    holder_queries,
    promql_string,
    summary_queries,
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


def test_gpu_queries_select_every_series_as_written(tmp_path):
    """Each metric in the query of its line: utilization as the exporter wrote it (a GPU seen
    through two pods twice: the client keeps one), the other readings one per GPU with the
    labels that say whose; other names are not asked for."""
    util, memory, power = gpu_queries()
    evaluate(
        tmp_path,
        [
            series("DCGM_FI_DEV_GPU_UTIL", "10x20", Hostname=QUOTED, gpu="0", pod="a"),
            series("DCGM_FI_DEV_GPU_UTIL", "30x20", Hostname=QUOTED, gpu="0", pod="b"),
            series("DCGM_FI_DEV_FB_USED", "500x20", Hostname=QUOTED, gpu="0", pod="a"),
            series("DCGM_FI_DEV_FB_USED", "400x20", Hostname=QUOTED, gpu="0", pod="b"),
            series("gpu_used_vram", "2048x20", hostname="amd1", gpu_id="3", job="amd"),
            series("DCGM_FI_DEV_MEM_COPY_UTIL", "5x20", Hostname=QUOTED, gpu="0"),
        ],
        [
            (
                util,
                [
                    sample(10, __name__="DCGM_FI_DEV_GPU_UTIL", Hostname=QUOTED, gpu="0", pod="a"),
                    sample(30, __name__="DCGM_FI_DEV_GPU_UTIL", Hostname=QUOTED, gpu="0", pod="b"),
                ],
            ),
            (
                memory,
                [
                    sample(500, __name__="DCGM_FI_DEV_FB_USED", Hostname=QUOTED, gpu="0"),
                    sample(2048, __name__="gpu_used_vram", hostname="amd1", gpu_id="3"),
                ],
            ),
            (power, []),
        ],
    )


def test_gpu_queries_of_some_nodes_select_exactly_those(tmp_path):
    """The nodes shown GPU by GPU, by the label naming each: `gpu.00` is not a regex that
    matches gpuX00, the quoted name is one name, and a node named by `hostname` is asked by
    that label."""
    nodes = [
        (DOT, "Hostname"),
        (LOOKALIKE, "Hostname"),
        (QUOTED, "Hostname"),
        ("amd.1", "hostname"),
    ]
    input_series = [
        series("DCGM_FI_DEV_GPU_UTIL", "7x20", **{label: node}, gpu="0") for node, label in nodes
    ]
    where = {"Hostname": {DOT, QUOTED}, "hostname": {"amd.1"}}
    expected = [
        sample(7, __name__="DCGM_FI_DEV_GPU_UTIL", **{label: node}, gpu="0")
        for node, label in nodes
        if node != LOOKALIKE
    ]
    evaluate(tmp_path, input_series, [(gpu_queries(where)[0], expected)])


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


def test_down_asks_only_the_exporters_down_under_their_own_name(tmp_path):
    """The backend tells DOWN's series from the GPUs' answered beside them by the name `up`."""
    evaluate(
        tmp_path,
        [
            series("up", "1x20", instance="10.0.0.1:9400", job="dcgm"),
            series("up", "0x20", instance="10.0.0.2:9400", job="dcgm"),
        ],
        [(DOWN, [sample(0, __name__="up", instance="10.0.0.2:9400", job="dcgm")])],
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
                gpu_queries()[0],
                [
                    sample(
                        20, __name__="amd_gpu_gfx_activity", gpu_id="0", gpu_partition_id="0", **cpx
                    ),
                    sample(
                        30, __name__="amd_gpu_gfx_activity", gpu_id="1", gpu_partition_id="1", **cpx
                    ),
                    sample(70, __name__="gpu_gfx_activity", hostname="amd1", gpu_id="3"),
                ],
            ),
            (gpu_queries()[1], []),  # gpu_used_visible_vram is not gpu_used_vram
            (
                history_queries(
                    "gpu_gfx_activity", "gpu_used_vram", [("hostname", "mi300-1", "gpu_id", [])]
                )[0],
                [sample(25)],
            ),
        ],
    )


# A cluster for the summaries, read at 10m. a.1 (NVIDIA, Hostname): GPUs 0 and 3 held by Slurm
# job 12; GPU 1 idle and holding 5 % of its memory (free); GPU 2 idle but holding 20 % (busy);
# GPU 3 reporting DCGM's "not supported" as utilization, memory empty. aX1: a name a regex
# `a.1` would match. b: NVIDIA (Hostname, exporter i2) beside AMD (hostname, i3, names prefixed
# "amd_"): NVIDIA GPU 0 holds exactly a tenth (busy), GPU 1 works; AMD GPU 0 holds a tenth, GPU 1
# just under (free), GPU 2 held by job 77. c: its exporter died at 3m. 10.0.0.9:9400: no host
# label, named by its exporter. aX1's GPU holds just under a tenth (100 of 1005 MiB: free).
NV = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")
NV_MORE = ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE")
AMD = ("amd_gpu_gfx_activity", "amd_gpu_used_vram", "amd_gpu_total_vram")
SUMMARY_GPUS = [
    # (labels, (util, used, free or total), (temperature, power) or None, values notation)
    ({"Hostname": "a.1", "instance": "i1", "gpu": "0", "hpc_job": "12"}, NV, (90, 500, 500)),
    ({"Hostname": "a.1", "instance": "i1", "gpu": "1"}, NV, (3, 50, 950)),
    ({"Hostname": "a.1", "instance": "i1", "gpu": "2"}, NV, (3, 200, 800)),
    (
        {"Hostname": "a.1", "instance": "i1", "gpu": "3", "hpc_job": "12"},
        NV,
        (NOT_SUPPORTED * 1.02, 0, 1000),
    ),
    ({"Hostname": "aX1", "instance": "i4", "gpu": "0"}, NV, (1, 100, 905)),
    ({"Hostname": "b", "instance": "i2", "gpu": "0"}, NV, (0, 10, 90)),
    ({"Hostname": "b", "instance": "i2", "gpu": "1"}, NV, (60, 10, 90)),
    ({"hostname": "b", "instance": "i3", "gpu_id": "0"}, AMD, (3, 100, 1000)),
    ({"hostname": "b", "instance": "i3", "gpu_id": "1"}, AMD, (0, 99, 1000)),
    ({"hostname": "b", "instance": "i3", "gpu_id": "2", "job_id": "77"}, AMD, (0, 0, 1000)),
    ({"instance": "10.0.0.9:9400", "gpu": "0"}, NV, (50, 0, 1000)),
]
SUMMARY_MORE = [  # temperatures and power where a GPU gives them
    ("DCGM_FI_DEV_GPU_TEMP", {"Hostname": "a.1", "instance": "i1", "gpu": "0"}, 50),
    ("DCGM_FI_DEV_GPU_TEMP", {"Hostname": "a.1", "instance": "i1", "gpu": "1"}, 70),
    ("DCGM_FI_DEV_GPU_TEMP", {"Hostname": "a.1", "instance": "i1", "gpu": "2"}, 200),  # absurd
    ("DCGM_FI_DEV_POWER_USAGE", {"Hostname": "a.1", "instance": "i1", "gpu": "0"}, 300),
    ("DCGM_FI_DEV_POWER_USAGE", {"Hostname": "a.1", "instance": "i1", "gpu": "1"}, 100),
    ("DCGM_FI_DEV_POWER_USAGE", {"Hostname": "a.1", "instance": "i1", "gpu": "2"}, 9.2e18),
    ("amd_gpu_junction_temperature", {"hostname": "b", "instance": "i3", "gpu_id": "0"}, 55),
    ("amd_gpu_edge_temperature", {"hostname": "b", "instance": "i3", "gpu_id": "0"}, 41),
    ("amd_gpu_edge_temperature", {"hostname": "b", "instance": "i3", "gpu_id": "1"}, 45),
    ("amd_gpu_package_power", {"hostname": "b", "instance": "i3", "gpu_id": "0"}, 250),
    ("amd_gpu_power_usage", {"hostname": "b", "instance": "i3", "gpu_id": "0"}, 240),
    ("DCGM_FI_DEV_GPU_UTIL", {"Hostname": "c", "instance": "i5", "gpu": "0"}, None),
]


def summary_cluster(pods: bool = False) -> list[dict]:
    out = []
    for labels, names, values in SUMMARY_GPUS:
        for name, value in zip(names, values, strict=True):
            copies = ("a", "b") if pods and labels.get("Hostname") == "a.1" else ("",)
            for pod in copies:
                extra = {"pod": pod} if pod else {}
                out.append(series(name, f"{value:.17g}x20", **labels, **extra))
    for name, labels, value in SUMMARY_MORE:
        out.append(series(name, "7x3" if value is None else f"{value:.17g}x20", **labels))
    return out


def test_summary_queries_count_and_sum_each_node_as_the_client_would(tmp_path):
    """What summary_queries compute per group, by Prometheus's own engine: the GPUs, the free
    ones by view.is_free's rule (holder, utilization, memory in whole tenths), readings within
    validate's bounds; a node with both vendors is two groups; a dead exporter's node is gone;
    `skip` leaves out exactly the nodes named."""
    a1 = {"Hostname": "a.1", "instance": "i1"}
    ax1 = {"Hostname": "aX1", "instance": "i4"}
    b_nv = {"Hostname": "b", "instance": "i2"}
    b_amd = {"hostname": "b", "instance": "i3"}
    bare = {"instance": "10.0.0.9:9400"}
    queries = summary_queries()
    expected = {
        "gpus": [(a1, 4), (ax1, 1), (b_nv, 2), (b_amd, 3), (bare, 1)],
        "free": [(a1, 1), (ax1, 1), (b_amd, 1)],
        "util": [(a1, (90 + 3 + 3) / 3), (ax1, 1), (b_nv, 30), (b_amd, 1), (bare, 50)],
        "mem_used_mib": [(a1, 750), (ax1, 100), (b_nv, 20), (b_amd, 199), (bare, 0)],
        "mem_free_mib": [(a1, 3250), (ax1, 905), (b_nv, 180), (bare, 1000)],
        "mem_total_mib": [(b_amd, 3000)],
        "temp_c": [(a1, 70), (b_amd, 55)],
        "power_w": [(a1, 400), (b_amd, 240)],  # AMD: gpu_power_usage, the first name present
    }
    checks = [
        (queries[name], [sample(value, **labels) for labels, value in rows])
        for name, rows in expected.items()
    ]
    skipped = summary_queries({"Hostname": {"a.1"}, "hostname": {"b"}})
    checks.append((skipped["gpus"], [sample(n, **g) for g, n in ((ax1, 1), (b_nv, 2), (bare, 1))]))
    evaluate(tmp_path, summary_cluster(), checks)


def test_summary_readings_of_some_nodes_select_exactly_those(tmp_path):
    """Memory, temperature and power of a.1 and b only (b under both its host labels, as the
    backend knows it), the regex lookalike aX1 and the bare exporter left out; the utilization
    of every node still; no reading asked for at all: no such query."""
    a1 = {"Hostname": "a.1", "instance": "i1"}
    ax1 = {"Hostname": "aX1", "instance": "i4"}
    b_nv = {"Hostname": "b", "instance": "i2"}
    b_amd = {"hostname": "b", "instance": "i3"}
    bare = {"instance": "10.0.0.9:9400"}
    queries = summary_queries(readings={"Hostname": {"a.1", "b"}, "hostname": {"b"}})
    expected = {
        "util": [(a1, (90 + 3 + 3) / 3), (ax1, 1), (b_nv, 30), (b_amd, 1), (bare, 50)],
        "mem_used_mib": [(a1, 750), (b_nv, 20), (b_amd, 199)],
        "mem_free_mib": [(a1, 3250), (b_nv, 180)],
        "mem_total_mib": [(b_amd, 3000)],
        "temp_c": [(a1, 70), (b_amd, 55)],
        "power_w": [(a1, 400), (b_amd, 240)],
    }
    checks = [
        (queries[name], [sample(value, **labels) for labels, value in rows])
        for name, rows in expected.items()
    ]
    evaluate(tmp_path, summary_cluster(), checks)
    assert set(summary_queries(readings={})) == {"gpus", "free", "util"}


def test_summary_queries_reduce_a_gpu_shared_by_pods_to_one(tmp_path):
    """With a.1's GPUs each seen through two pods: the shared form counts and sums each once
    (the plain one would count 8 GPUs there, and Prometheus refuses its memory match)."""
    a1 = {"Hostname": "a.1", "instance": "i1"}
    queries = summary_queries({"Hostname": {"aX1", "b"}, "hostname": {"b"}}, shared=True)
    evaluate(
        tmp_path,
        summary_cluster(pods=True),
        [
            (queries["gpus"], [sample(4, **a1), sample(1, instance="10.0.0.9:9400")]),
            (queries["free"], [sample(1, **a1)]),
            (queries["mem_used_mib"], [sample(750, **a1), sample(0, instance="10.0.0.9:9400")]),
        ],
    )


def test_holder_queries_count_each_jobs_gpus_per_node(tmp_path):
    """Who holds the summarised nodes' GPUs, per job and node: a.1's GPUs 0 and 3 (Slurm job 12
    as dcgm-exporter labels it; GPU 3's utilization "not supported", so unknown) and b's AMD
    GPU 2 (job 77, AMD's label, at 0 %: known); with a.1 skipped, only job 77; each GPU once
    though two pods see a.1's."""
    job12 = {"Hostname": "a.1", "hpc_job": "12", "instance": "i1"}
    job77 = {"hostname": "b", "instance": "i3", "job_id": "77"}
    queries = holder_queries()
    checks = [
        (queries["gpus"], [sample(2, **job12), sample(1, **job77)]),
        (queries["unknown"], [sample(1, **job12)]),
        (queries["util"], [sample(90, **job12), sample(0, **job77)]),
        (holder_queries({"Hostname": {"a.1"}})["gpus"], [sample(1, **job77)]),
    ]
    evaluate(tmp_path, summary_cluster(), checks)
    shared = holder_queries({"hostname": {"b"}}, shared=True)
    checks = [(shared["gpus"], [sample(2, **job12)]), (shared["unknown"], [sample(1, **job12)])]
    evaluate(tmp_path, summary_cluster(pods=True), checks)
