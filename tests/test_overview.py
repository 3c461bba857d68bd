"""The cluster line, where a flavor fits and where it would land, over nodes a backend only
summarised (Prometheus at scale): the same counts as over the same nodes GPU by GPU."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import as_summary

from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.catalog import load_catalog
from moai_tui.model import JobRequest
from moai_tui.overview import landing, summarise
from moai_tui.view import fits_now, free_count, unavailable_reason

T = 1_780_000_000.0
FLAVORS = load_catalog(None).flavors


def cluster(nodes: int = 24):
    """A busy simulated cluster with a drained node, a down one and a whole free one."""
    simulator = SimulatorBackend(nodes=nodes, load=0.6, clock=lambda: T, user="me")
    snapshot = simulator.sample((JobRequest(1, 1, 0, "train", 16, 2, T - 600, "me"),))
    shaped = list(snapshot.nodes)
    shaped[3] = replace(shaped[3], state="drained", reason="maintenance")
    shaped[5] = replace(
        shaped[5], up=False, gpus=tuple(replace(g, lost=True) for g in shaped[5].gpus)
    )
    shaped[7] = replace(
        shaped[7],
        gpus=tuple(replace(g, util=0.0, mem_used_mib=0, job_id=None) for g in shaped[7].gpus),
    )
    return replace(snapshot, nodes=tuple(shaped))


def summarised(snapshot, which):
    return replace(
        snapshot,
        nodes=tuple(as_summary(n) if i in which else n for i, n in enumerate(snapshot.nodes)),
    )


@pytest.mark.parametrize("which", [range(0, 24, 2), range(24), range(3, 8)])
def test_the_cluster_line_counts_summaries_as_their_gpus(which):
    truth = cluster()
    mixed = summarised(truth, set(which))
    expected, got = summarise(truth, (), FLAVORS), summarise(mixed, (), FLAVORS)
    assert got.whole_free_nodes >= 1 and got.down_nodes == 1 and got.free > 0  # a real scene
    assert replace(got, mean_util=None) == replace(expected, mean_util=None)
    assert got.mean_util == pytest.approx(expected.mean_util, rel=1e-12)
    for flavor in FLAVORS:
        assert fits_now(flavor, mixed) == fits_now(flavor, truth), flavor.name
        assert unavailable_reason(flavor, mixed) == unavailable_reason(flavor, truth)
        where, there = landing(flavor, mixed), landing(flavor, truth)
        assert (where.nodes, where.wait_reason) == (there.nodes, there.wait_reason), flavor.name
        # Which GPUs are free is known on the nodes listed GPU by GPU only.
        listed = {n.name for n in mixed.nodes if n.summary is None}
        assert where.gpus == tuple(g for g in there.gpus if g.rsplit(":", 1)[0] in listed)


def test_a_drained_summary_offers_no_free_gpus_and_a_whole_free_one_is_whole():
    truth = cluster()
    mixed = summarised(truth, {3, 7})
    drained, whole = mixed.nodes[3], mixed.nodes[7]
    assert drained.summary.free > 0 and not drained.accepts_work
    assert whole.summary.free == whole.summary.gpus == free_count(whole) == 8
    line = summarise(mixed, (), FLAVORS)
    assert line.free == sum(free_count(n) for n in mixed.nodes if n.accepts_work)
