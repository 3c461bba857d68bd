"""view.py, the figures `smi` and the dashboard both show: exact values at the edges, so a
changed bound, rounding or aggregate fails here (these kill the mutants benchmarks/mutation.py
found surviving the CLI tests)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from moai_tui.model import ClusterSnapshot, Flavor, Gpu, Job, Node, NodeSummary
from moai_tui.state import Device
from moai_tui.view import (
    DETAIL_GPUS,
    detail_nodes,
    device_views,
    fits_now,
    fmt_bytes,
    fmt_mib,
    fmt_number,
    fmt_percent,
    fmt_runtime,
    has_readings,
    mean,
    reading_nodes,
    temperature_band,
    unavailable_reason,
)

ME = "me"


def gpu(node: str, index: int, **readings) -> Gpu:
    return Gpu(node, index, "H100", **readings)


def snapshot(*nodes: Node, jobs: tuple[Job, ...] = (), **flags) -> ClusterSnapshot:
    return ClusterSnapshot(0.0, "test", ME, tuple(nodes), jobs, **flags)


def node(name: str, count: int, up: bool = True, **readings) -> Node:
    return Node(name, tuple(gpu(name, i, **readings) for i in range(count)), up)


@pytest.mark.parametrize(
    ("temp", "band"),
    [
        (None, None),
        (85.9, None),
        (86, "caution"),
        (93.9, "caution"),
        (94, "warning"),
        (97.9, "warning"),
        (98, "act"),
        (150, "act"),
    ],
)
def test_temperature_bands_at_their_edges(temp, band):
    assert temperature_band(temp) == band


def test_cell_formats():
    assert [fmt_mib(None), fmt_mib(0), fmt_mib(65520)] == ["-", "0 MiB", "65520 MiB"]
    assert [fmt_percent(v) for v in (None, 0, 7.4, 7.6, 100)] == [
        "-",
        "  0 %",
        "  7 %",
        "  8 %",
        "100 %",
    ]
    assert [fmt_number(None, "C"), fmt_number(41.6, "C"), fmt_number(0, "%")] == [
        "-",
        "42 C",
        "0 %",
    ]


def test_mean_leaves_unknowns_out():
    assert mean([]) is None and mean([None, None]) is None
    assert mean([10.0, None, 30.0]) == 20.0 and mean([0.0]) == 0.0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<1m"),
        (59.9, "<1m"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h00m"),
        (3660, "1h01m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (90000, "1d01h"),
        (10 * 86400 + 23 * 3600, "10d23h"),
    ],
)
def test_runtime_to_the_minute(seconds, shown):
    assert fmt_runtime(seconds) == shown


def test_bytes():
    assert [fmt_bytes(v) for v in (None, 0, 1023, 1024, 1536, 1024**2, 5 * 1024**3)] == [
        "-",
        "0B",
        "1023B",
        "1.0K",
        "1.5K",
        "1.0M",
        "5.0G",
    ]
    assert fmt_bytes(1024**5) == "1024.0T"  # no unit past T


def test_unavailable_reason_counts_up_nodes_only():
    cluster = snapshot(node("a", 8), node("b", 8), node("c", 8, up=False))
    assert unavailable_reason(Flavor("16", 16, 2, 1), cluster) is None  # exactly what is up
    assert unavailable_reason(Flavor("17", 17, 3, 1), cluster) == (
        "needs 17 GPUs, the cluster has 16"
    )
    assert unavailable_reason(Flavor("3n", 3, 3, 1), cluster) == (
        "needs 3 nodes, the cluster has 2"
    )
    local = snapshot(node("here", 2), local=True)
    assert unavailable_reason(Flavor("4", 4, 1, 1), local) == "needs 4 GPUs, this machine has 2"


def test_fits_now_needs_enough_free_gpus_on_enough_up_nodes():
    two_per_node = Flavor("4x", 4, 2, 1)  # 2 GPUs on each of 2 nodes
    free = node("a", 2)
    half_taken = Node("b", (gpu("b", 0), gpu("b", 1, job_id=7)))
    half_lost = Node("c", (gpu("c", 0), gpu("c", 1, lost=True)))
    assert fits_now(two_per_node, snapshot(free, node("d", 2)))
    assert not fits_now(two_per_node, snapshot(free, half_taken))
    assert not fits_now(two_per_node, snapshot(free, half_lost))
    assert not fits_now(two_per_node, snapshot(free, node("d", 2, up=False)))
    assert fits_now(two_per_node, snapshot(free, half_taken, node("d", 3)))
    assert fits_now(Flavor("1", 1, 1, 1), snapshot(half_taken))


def test_device_views_from_a_running_job():
    gpus = (
        gpu("a", 0, util=10.0, mem_used_mib=100, mem_total_mib=1000),
        gpu("a", 1, util=30.0, mem_used_mib=None, mem_total_mib=1000),
        gpu("a", 2, lost=True),
    )
    job = Job(5, 50, ME, "train", device=1, gpus=("a:1", "a:0", "b:9"))
    cluster = snapshot(Node("a", gpus), jobs=(job,))
    flavors = {"f": Flavor("f", 2, 1, 500)}
    views = device_views([Device(1, "f"), Device(0, "f")], 1, flavors, cluster)
    idle, busy = views  # sorted by id
    assert (idle.device, idle.current, idle.job, idle.gpus, idle.active) == (
        0,
        False,
        None,
        (),
        False,
    )
    assert (idle.memory_used_mib, idle.memory_total_mib, idle.utilization) == (None, None, None)
    assert busy.current and busy.job == job and busy.active
    assert busy.gpus == (gpus[1], gpus[0])  # the job's order; b:9 is not in the snapshot
    assert (busy.memory_used_mib, busy.memory_total_mib, busy.utilization) == (100, 2000, 20.0)


def test_device_views_unknown_totals_fall_back_to_the_flavor():
    # A lost GPU's last reading is left out of the device's utilization.
    gpus = (gpu("a", 0, util=50.0, mem_total_mib=None), gpu("a", 1, util=99.0, lost=True))
    job = Job(5, 50, ME, "train", device=0, gpus=("a:0", "a:1"))
    cluster = snapshot(Node("a", gpus), jobs=(job,))
    (view,) = device_views([Device(0, "f")], 0, {"f": Flavor("f", 2, 1, 500)}, cluster)
    assert (view.memory_used_mib, view.memory_total_mib, view.utilization) == (None, 1000, 50.0)
    (unknown,) = device_views([Device(0, "g")], 0, {}, cluster)  # a flavor not in the catalog
    assert unknown.flavor is None and unknown.memory_total_mib is None


def test_device_views_waiting_job_holds_nothing():
    job = Job(5, 50, ME, "train", device=0, gpus=("a:0",), waiting=True)
    cluster = snapshot(node("a", 1, util=90.0), jobs=(job,))
    (view,) = device_views([Device(0, "f")], 0, {"f": Flavor("f", 1, 1, 1)}, cluster)
    assert view.job == job and view.gpus == () and view.utilization is None


def test_device_views_other_users_jobs_are_not_mine():
    theirs = Job(5, 50, "someone", "train", device=0, gpus=("a:0",))
    cluster = snapshot(node("a", 1, util=90.0), jobs=(theirs,))
    (view,) = device_views([Device(0, "f")], 0, {"f": Flavor("f", 1, 1, 1)}, cluster)
    assert view.job is None and view.gpus == ()


def test_attached_device_views_its_flavors_first_nodes():
    """Prometheus: a device is a view onto the cluster's first nodes, job or not."""
    cluster = snapshot(
        node("a", 4, util=10.0, mem_used_mib=1, mem_total_mib=8),
        node("b", 4, util=30.0, mem_used_mib=2, mem_total_mib=8),
        node("c", 4, util=99.0),
        attached=True,
    )
    flavors = {"6": Flavor("6", 6, 2, 8), "2": Flavor("2", 2, 1, 8)}
    six, two = device_views([Device(0, "6"), Device(1, "2")], 0, flavors, cluster)
    assert [g.location for g in six.gpus] == ["a:0", "a:1", "a:2", "a:3", "b:0", "b:1"]
    assert (six.memory_used_mib, six.memory_total_mib) == (8, 48)
    assert six.utilization == pytest.approx((4 * 10 + 2 * 30) / 6)
    assert [g.location for g in two.gpus] == ["a:0", "a:1"]
    (unknown,) = device_views([Device(0, "x")], 0, flavors, cluster)
    assert unknown.gpus == ()


def test_detail_nodes_are_those_on_screen_up_to_detail_gpus_else_the_cursors():
    few = [node(f"n{i}", 8) for i in range(DETAIL_GPUS // 8)]
    assert detail_nodes(few, few[3]) == {n.name for n in few}
    assert detail_nodes(few[:2], few[5]) == {"n0", "n1", "n5"}  # the cursor's, scrolled away
    summarised = Node("s", (), summary=NodeSummary(8, 8, 0, None, None, None, None, None))
    many = [*few, summarised]
    assert detail_nodes(many, few[3]) == {"n3"}  # counted by its summary too


def test_reading_nodes_are_those_whose_figures_are_drawn_or_every_node_when_sorted_by_one():
    shown = [node(f"n{i}", 8) for i in range(3)]
    cursor = node("n9", 8)  # scrolled away: its panel still shows its figures
    assert reading_nodes(shown, cursor, figures_drawn=True, sort="name") == {"n0", "n1", "n2", "n9"}
    assert reading_nodes(shown, cursor, figures_drawn=False, sort="util") == {"n9"}
    assert reading_nodes(shown, cursor, figures_drawn=False, sort="memory") is None
    assert reading_nodes(shown, cursor, figures_drawn=True, sort="temperature") is None
    counts = NodeSummary(8, 8, 0, 5.0, None, None, None, None)
    assert not has_readings(counts)
    assert has_readings(replace(counts, power_w=0.0))
