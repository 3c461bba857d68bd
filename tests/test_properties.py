"""Property-based tests for every parser: no input crashes with an unexpected exception, and
errors name the input and the problem."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from moai_tui.backends.prometheus import parse_vector
from moai_tui.backends.replay import load_recording
from moai_tui.backends.simulator import SimulatorBackend
from moai_tui.backends.snapshot import pinned_from_dict
from moai_tui.catalog import load_catalog, parse_catalog
from moai_tui.codec import DecodeError, snapshot_from_dict, snapshot_to_dict
from moai_tui.errors import BackendError, UsageError
from moai_tui.exporter import SnapshotCollector
from moai_tui.model import Gpu
from moai_tui.state import dump_state, parse_state
from moai_tui.validate import clean_snapshot

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
toml_values = st.recursive(
    st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FAST
@given(st.text(max_size=300))
def test_catalog_text(text):
    try:
        parse_catalog(text, "cat.toml")
    except UsageError as error:
        assert "cat.toml" in str(error)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["mib_per_gpu", "gpus_per_node", "flavors", "x"]), toml_values, max_size=4
    ),
    st.lists(
        st.dictionaries(
            st.sampled_from(["name", "gpus", "nodes", "mib_per_gpu"]), toml_values, max_size=4
        ),
        max_size=4,
    ),
)
def test_catalog_structures(top, flavors):
    document = {**top, "flavors": flavors} if flavors else top
    try:
        catalog = parse_catalog(tomli_w.dumps(document), "cat.toml")
    except UsageError as error:
        assert "cat.toml" in str(error)
    else:
        assert all(f.gpus > 0 and f.nodes > 0 for f in catalog.flavors)


@FAST
@given(st.text(max_size=30))
def test_flavor_names(text):
    catalog = load_catalog()
    try:
        assert catalog.resolve(text) in catalog.flavors
    except UsageError as error:
        assert "flavor" in str(error)


@FAST
@given(st.text(max_size=300))
def test_state_text(text):
    try:
        state = parse_state(text)
    except ValueError:
        return
    assert parse_state(dump_state(state)) == state  # what parses, round-trips


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["version", "current", "devices", "jobs", "theme"]), toml_values, max_size=5
    )
)
def test_state_structures(document):
    try:
        parse_state(tomli_w.dumps(document))
    except ValueError as error:
        assert str(error)


def valid_smi_document() -> dict:
    from moai_tui.backends.snapshot import SCHEMA

    snapshot = SimulatorBackend(nodes=2, clock=lambda: 1780000000.0, user="me").sample()
    return {
        "schema": SCHEMA,
        "current_device": 0,
        "devices": [{"id": 0, "flavor": "Small.64GB", "gpus": 1, "nodes": 1, "mib_per_gpu": 65520}],
        "processes": [],
        "cluster": snapshot_to_dict(snapshot),
    }


VALID = valid_smi_document()


@FAST
@given(json_values)
def test_snapshot_files_arbitrary(data):
    try:
        pinned_from_dict(data)
    except DecodeError as error:
        assert str(error)


def mutate(document, path: list, value):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def paths(node, prefix=()):
    yield list(prefix)
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list) and node:
        yield from paths(node[0], (*prefix, 0))


PATHS = [p for p in paths(VALID) if p]


@FAST
@given(st.sampled_from(PATHS), json_values)
def test_snapshot_files_one_field_wrong(path, value):
    document = json.loads(json.dumps(VALID))
    mutate(document, path, value)
    try:
        pinned = pinned_from_dict(document)
    except DecodeError as error:
        assert str(error)
    else:
        clean_snapshot(pinned.snapshot)  # whatever decoded is safe to show


@FAST
@given(st.lists(json_values, min_size=1, max_size=4))
def test_recordings(lines):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rec.jsonl"
        path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        try:
            load_recording(path)
        except UsageError as error:
            assert str(path) in str(error)


@FAST
@given(json_values)
def test_prometheus_answers(data):
    try:
        parse_vector(json.dumps(data).encode(), "GPU metrics")
    except BackendError as error:
        assert "GPU metrics" in str(error)


@FAST
@given(st.binary(max_size=200))
def test_prometheus_bytes(body):
    try:
        parse_vector(body, "up")
    except BackendError as error:
        assert "up" in str(error)


readings = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**7), 10**7)
)


class Serving(SimulatorBackend):
    """The simulator's interface, answering with whatever snapshot the test sets."""

    snapshot = None

    def sample(self, requests=()):
        return self.snapshot


@FAST
@given(st.lists(st.tuples(readings, readings, readings), min_size=1, max_size=8))
def test_exposition_text_parses_back(config_dir, values):
    """Whatever the backend gave (NaN, negatives), what the exporter serves on its shipped
    path (cmd_exporter: take_sample, then the collector) is valid exposition text carrying
    exactly the readings cleaning kept."""
    from dataclasses import replace

    from moai_tui.context import Context
    from moai_tui.model import Node
    from moai_tui.pipeline import take_sample

    snapshot = SimulatorBackend(nodes=1, clock=lambda: 1780000000.0, user="me").sample()
    node = snapshot.nodes[0]
    gpus = tuple(
        Gpu(node.name, i, "m", util=u, temp_c=t, power_w=p, mem_used_mib=None)
        for i, (u, t, p) in enumerate(values)
    )
    dirty = replace(snapshot, nodes=(Node(node.name, gpus),), jobs=())
    clean, _ = clean_snapshot(dirty)
    ctx = Context(backend_spec="simulator")
    ctx.backend = backend = Serving()
    backend.snapshot = dirty
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: take_sample(ctx).snapshot, None))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    utils = {s.labels["gpu"]: s.value for s in families["DCGM_FI_DEV_GPU_UTIL"].samples}
    assert utils == {str(g.index): float(g.util) for g in clean.nodes[0].gpus if g.util is not None}


@FAST
@given(json_values)
def test_snapshot_dict(data):
    try:
        snapshot_from_dict(data)
    except DecodeError as error:
        assert str(error)
