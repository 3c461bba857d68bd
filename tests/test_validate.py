"""validate.py: what counts as an impossible reading, at the exact bounds, and the line that
says what was dropped (these kill the mutants benchmarks/mutation.py found surviving the
property tests)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from moai_tui.model import ClusterSnapshot, Gpu, Node
from moai_tui.validate import clean_gpu, clean_snapshot, plausible

TIB_IN_MIB = 16 * 1024 * 1024
GOOD = Gpu(
    "n",
    0,
    "H100",
    util=50.0,
    mem_util=20.0,
    mem_used_mib=1000,
    mem_total_mib=80000,
    temp_c=40.0,
    mem_temp_c=45.0,
    edge_temp_c=38.0,
    power_w=300.0,
)

# field -> values just inside its bounds, values just outside
EDGES = {
    "util": ((0.0, 100.0), (-0.01, 100.01)),
    "mem_util": ((0.0, 100.0), (-0.01, 100.01)),
    "temp_c": ((-40.0, 150.0), (-40.01, 150.01)),
    "mem_temp_c": ((-40.0, 150.0), (-40.01, 150.01)),
    "edge_temp_c": ((-40.0, 150.0), (-40.01, 150.01)),
    "power_w": ((0.0, 5000.0), (-0.01, 5000.01)),
    "mem_total_mib": ((1, TIB_IN_MIB), (0, TIB_IN_MIB + 1)),
    "mem_used_mib": ((0, 80000), (-1, 80001)),  # up to the total
}


@pytest.mark.parametrize("name", EDGES)
def test_bounds_are_inclusive_and_exact(name):
    inside, outside = EDGES[name]
    base = replace(GOOD, mem_used_mib=0) if name == "mem_total_mib" else GOOD
    for value in inside:
        gpu = replace(base, **{name: value})
        assert plausible(gpu), (name, value)
        assert clean_gpu(gpu) == (gpu, 0)
        # The careful path, taken when another reading is wrong, keeps this one too.
        other = "power_w" if name != "power_w" else "util"
        cleaned, bad = clean_gpu(replace(gpu, **{other: math.nan}))
        assert bad == 1 and getattr(cleaned, name) == value, (name, value)
    for value in outside:
        gpu = replace(base, **{name: value})
        assert not plausible(gpu), (name, value)
        cleaned, bad = clean_gpu(gpu)
        assert bad == 1 and getattr(cleaned, name) is None, (name, value)
        assert cleaned == replace(gpu, **{name: None})  # every other reading kept


def test_unknown_readings_are_plausible():
    empty = Gpu("n", 0)
    assert plausible(empty) and clean_gpu(empty) == (empty, 0)
    no_total = replace(GOOD, mem_total_mib=None, mem_used_mib=TIB_IN_MIB)
    assert plausible(no_total)  # bounded by the largest total there is
    assert clean_gpu(replace(no_total, power_w=math.nan)) == (replace(no_total, power_w=None), 1)
    assert clean_gpu(replace(no_total, mem_used_mib=TIB_IN_MIB + 1))[1] == 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "50", [50]])
def test_not_a_finite_number_is_dropped(value):
    cleaned, bad = clean_gpu(replace(GOOD, util=value, temp_c=value))
    assert bad == 2 and cleaned.util is None and cleaned.temp_c is None
    assert cleaned.power_w == GOOD.power_w and cleaned.mem_used_mib == GOOD.mem_used_mib


def test_used_above_total_drops_used_once():
    cleaned, bad = clean_gpu(replace(GOOD, mem_used_mib=90000, util=math.nan))
    assert bad == 2 and cleaned.mem_used_mib is None and cleaned.mem_total_mib == 80000
    negative = clean_gpu(replace(GOOD, mem_used_mib=-5, util=math.nan))  # bad once, not twice
    assert negative[1] == 2 and negative[0].mem_used_mib is None


def snapshot(*nodes: Node) -> ClusterSnapshot:
    return ClusterSnapshot(0.0, "dcgm", "me", nodes)


def gpus(node: str, count: int, **readings) -> tuple[Gpu, ...]:
    return tuple(replace(GOOD, node=node, index=i, **readings) for i in range(count))


def test_clean_snapshot_is_returned_as_it_is():
    clean = snapshot(Node("a", gpus("a", 2)), Node("b", gpus("b", 2)))
    result, message = clean_snapshot(clean)
    assert result is clean and message is None


def test_impossible_readings_counted_and_replaced():
    a, b = (
        Node("a", gpus("a", 2)),
        Node("b", (*gpus("b", 1), replace(GOOD, node="b", index=1, util=-1.0))),
    )
    result, message = clean_snapshot(snapshot(a, b))
    assert message == "invalid data from dcgm: 1 impossible reading shown as -"
    assert result.nodes[0] is a  # untouched nodes are kept as they were
    assert result.nodes[1].gpus[1].util is None and result.nodes[1].gpus[0] == b.gpus[0]
    two = clean_snapshot(snapshot(Node("a", gpus("a", 2, temp_c=900.0))))[1]
    assert two == "invalid data from dcgm: 2 impossible readings shown as -"


def test_duplicated_gpus_and_nodes_ignored_first_kept():
    first, second = replace(GOOD, node="a", util=10.0), replace(GOOD, node="a", util=90.0)
    result, message = clean_snapshot(snapshot(Node("a", (first, second))))
    assert result.nodes[0].gpus == (first,)
    assert message == "invalid data from dcgm: 1 duplicated GPU ignored"
    node = Node("a", gpus("a", 3))
    result, message = clean_snapshot(snapshot(node, Node("a", gpus("a", 3, util=1.0))))
    assert result.nodes == (node,)
    assert message == "invalid data from dcgm: 3 duplicated GPUs ignored"
    twice = clean_snapshot(snapshot(Node("a", (first, second, second))))[1]
    assert twice == "invalid data from dcgm: 2 duplicated GPUs ignored"


def test_both_kinds_in_one_line():
    bad = Node("a", (replace(GOOD, node="a", power_w=-1.0), replace(GOOD, node="a")))
    message = clean_snapshot(snapshot(bad, Node("b", gpus("b", 1, util=math.nan))))[1]
    assert message == (
        "invalid data from dcgm: 2 impossible readings shown as -, 1 duplicated GPU ignored"
    )
