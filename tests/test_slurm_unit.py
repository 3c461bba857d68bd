"""The Slurm backend on recorded answers: several Slurm versions' shapes of one scene (see
tests/fixtures/slurm/README.md), hostlists and GRES strings, polling and failure rules."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FIXTURES

from moai_tui.backends import slurm_parse as parse
from moai_tui.backends.slurm import (
    REQUEST_KIND,
    TEXT_JOBS,
    TEXT_NODES,
    Allocation,
    Commands,
    SlurmBackend,
    build_snapshot,
    derive_catalog,
    join_readings,
    model_mib,
    parse_version,
    plan_for,
)
from moai_tui.config import SlurmSettings, load_config
from moai_tui.errors import BackendError, UsageError
from moai_tui.model import Flavor, Gpu, JobRequest
from moai_tui.overview import summarise
from moai_tui.view import fits_now, free_count

SLURM = FIXTURES / "slurm"
ANSWERS = {  # release -> (nodes answer, jobs answer)
    "22.05.8": ("22.05.8-sinfo.json", "22.05.8-squeue.json"),
    "22.05.8-text": ("22.05.8-nodes.txt", "22.05.8-jobs.txt"),
    "23.02.8": ("23.02.8-nodes.json", "23.02.8-squeue.json"),
    "23.11.11": ("23.11.11-nodes.json", "23.11.11-squeue.json"),
    "24.05.6": ("24.05.6-nodes.json", "24.05.6-squeue.json"),
    "25.11.0": ("25.11.0-nodes.json", "25.11.0-squeue.json"),
}
NODE_STATES = {
    "node00": ("mixed", True, ""),
    "node01": ("mixed", True, ""),
    "node02": ("mixed", True, ""),
    "node03": ("draining", True, "ECC errors on GPU 3"),
    "node04": ("drained", True, "maintenance"),
    "node05": ("completing", True, ""),
    "node06": ("down", False, "power supply"),
}
# job -> (user, state, reason, GPUs wanted, nodes wanted, GPUs held)
JOBS = {
    1: ("root", "RUNNING", "", 4, 1, [("node00", i) for i in range(4)]),
    3: ("root", "RUNNING", "", 16, 2, [(n, i) for n in ("node01", "node02") for i in range(8)]),
    4: ("nobody", "RUNNING", "", 2, 1, [("node03", 0), ("node03", 1)]),
    5: ("root", "COMPLETING", "", 8, 1, []),
    6: ("root", "PENDING", "Resources", 16, 2, []),
    7: ("nobody", "PENDING", "Priority", 8, 1, []),
}


def read(name: str) -> str:
    return (SLURM / name).read_text()


def parsed(release: str) -> tuple[list[parse.SlurmNode], list[parse.SlurmJob]]:
    nodes_file, jobs_file = ANSWERS[release]
    if release.endswith("-text"):
        return parse.nodes_from_text(read(nodes_file)), parse.jobs_from_text(read(jobs_file))
    return (
        parse.nodes_from_json(json.loads(read(nodes_file))),
        parse.jobs_from_json(json.loads(read(jobs_file))),
    )


# Every version's shape says the same thing -------------------------------------------------
@pytest.mark.parametrize("release", list(ANSWERS))
def test_every_shape_gives_the_same_nodes(release):
    nodes, _ = parsed(release)
    assert {n.name: (n.state, n.up, n.reason) for n in nodes} == NODE_STATES
    assert all(n.gpus == 8 and n.gpu_types == ("h100",) * 8 for n in nodes)
    used = {n.name: n.used for n in nodes}
    assert used["node00"] == (0, 1, 2, 3) and used["node03"] == (0, 1) and used["node04"] == ()


@pytest.mark.parametrize("release", list(ANSWERS))
def test_every_shape_gives_the_same_gpu_jobs(release):
    _, jobs = parsed(release)
    seen = {
        j.job_id: (j.user, j.state, j.reason, j.gpus_wanted, j.nodes_wanted, list(j.gpus))
        for j in jobs
    }
    assert seen == JOBS  # the CPU-only job 2 is left out, ended jobs too
    assert all(j.started > 1.7e9 and j.submitted > 1.7e9 for j in jobs)


def test_job_state_string_and_list_shapes():
    assert parse.job_state(parse.job_states("RUNNING")) == "RUNNING"
    assert parse.job_state(parse.job_states(["PENDING", "REQUEUED"])) == "PENDING"
    assert parse.job_state(parse.job_states(["CANCELLED", "COMPLETING"])) == "COMPLETING"
    assert parse.job_state(parse.job_states(None)) == ""


def test_numbers_plain_and_no_val():
    assert parse.number(3) == 3
    assert parse.number({"set": True, "infinite": False, "number": 7}) == 7
    assert parse.number({"set": False, "infinite": False, "number": 0}) is None
    assert parse.number({"set": True, "infinite": True, "number": 0}) is None
    assert parse.number(True) is None and parse.number("12") == 12


# Hostlists, GRES, TRES ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, hosts",
    [
        ("gpu[01-04,07]", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]),
        ("node1", ["node1"]),
        ("a,b[1-2]", ["a", "b1", "b2"]),
        ("rack[1-2]-n[08-09]", ["rack1-n08", "rack1-n09", "rack2-n08", "rack2-n09"]),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("", []),
        ("(null)", []),
    ],
)
def test_hostlist_expansion(text, hosts):
    assert parse.expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["gpu[01-", "gpu[3-1]", "gpu[a-b]"])
def test_bad_hostlists_are_parse_errors(text):
    with pytest.raises(parse.ParseError):
        parse.expand_hostlist(text)


def test_gres_strings():
    assert parse.parse_gres("gpu:h100:8(S:0-1),shard:h100:32") == [
        parse.Gres("gpu", "h100", 8, None),
        parse.Gres("shard", "h100", 32, None),
    ]
    assert parse.parse_gres("gpu:8") == [parse.Gres("gpu", "", 8, None)]
    assert parse.parse_gres("gpu(CNT:2)") == [parse.Gres("gpu", "", 2, None)]
    assert parse.parse_gres("gpu:h100:0(IDX:N/A)") == [parse.Gres("gpu", "h100", 0, ())]
    assert parse.gpu_indices("gpu:a100:2(IDX:0,2),gpu:v100:1(IDX:3)") == [0, 2, 3]
    assert parse.parse_gres("(null)") == [] and parse.parse_gres("N/A") == []


def test_node_of_two_gpu_types_numbers_them_in_order():
    line = "NodeName=mix1 Gres=gpu:a100:2(S:0),gpu:v100:1 GresUsed=gpu:a100:1(IDX:1),gpu:v100:0(IDX:N/A) State=MIXED"
    (node,) = parse.nodes_from_text(line)
    assert node.gpus == 3 and node.gpu_types == ("a100", "a100", "v100") and node.used == (1,)


@pytest.mark.parametrize(
    "text, gpus",
    [("gres:gpu:4", 4), ("gres/gpu:h100:8", 8), ("gres/gpu=2", 2), ("cpu=4,gres/gpu:1", 1)],
)
def test_tres_gpu_counts(text, gpus):
    assert parse.tres_gpus(text) == gpus


def test_gpus_per_task_count_every_task():
    data = {
        "jobs": [
            {
                "job_id": 9,
                "job_state": ["PENDING"],
                "tres_per_task": "gres/gpu:1",
                "tasks": {"set": True, "infinite": False, "number": 4},
                "node_count": {"set": True, "infinite": False, "number": 1},
            }
        ]
    }
    (job,) = parse.jobs_from_json(data)
    assert job.gpus_wanted == 4 and job.waiting


@pytest.mark.parametrize(
    "base, flags, word, up",
    [
        ("idle", ["DRAIN"], "drained", True),
        ("MIXED", ["DRAIN"], "draining", True),
        ("allocated", ["NOT_RESPONDING"], "down", False),
        ("future", [], "future", False),
        ("idle", ["POWERED_DOWN"], "powered down", True),
        ("idle", ["MAINTENANCE"], "maint", True),
        ("down", ["DRAIN"], "down", False),
    ],
)
def test_node_states(base, flags, word, up):
    assert parse.node_state(base, flags) == (word, up)


def test_text_state_with_star_is_not_responding():
    (node,) = parse.nodes_from_text("NodeName=n1 Gres=gpu:2 State=IDLE*")
    assert (node.state, node.up) == ("down", False)


# Which commands for which version ----------------------------------------------------------
@pytest.mark.parametrize(
    "version, nodes, jobs",
    [
        ((21, 8, 8), TEXT_NODES, TEXT_JOBS),
        ((22, 5, 8), ("sinfo", "--json"), ("squeue", "--json")),
        ((23, 2, 1), ("scontrol", "--json", "show", "nodes"), TEXT_JOBS),
        ((23, 2, 8), ("scontrol", "--json", "show", "nodes"), ("squeue", "--json")),
        (
            (23, 11, 4),
            ("scontrol", "--json=v0.0.40", "show", "nodes"),
            ("squeue", "--json=v0.0.40"),
        ),
        (
            (25, 11, 0),
            ("scontrol", "--json=v0.0.44", "show", "nodes"),
            ("squeue", "--json=v0.0.44"),
        ),
        (
            (27, 11, 0),
            ("scontrol", "--json=v0.0.45", "show", "nodes"),
            ("squeue", "--json=v0.0.45"),
        ),
        (None, TEXT_NODES, TEXT_JOBS),
    ],
)
def test_plan_for_version(version, nodes, jobs):
    plan = plan_for(version)
    assert plan.nodes == nodes
    assert plan.jobs[: len(jobs)] == jobs


def test_versions_as_printed():
    assert parse_version("slurm-wlm 22.05.8\n") == (22, 5, 8)
    assert parse_version("slurm 25.11.0") == (25, 11, 0)
    assert parse_version("garbage") is None


# The backend on recorded answers -----------------------------------------------------------
class Recorded(Commands):
    """Answers from files instead of a cluster; every call counted like the real runner."""

    def __init__(self, version: str, answers: dict[str, tuple[int, str, str]]):
        super().__init__(timeout=5.0)
        self.version = version
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def run(self, argvs: Sequence[Sequence[str]]) -> list[tuple[int, str, str]]:
        out = []
        for argv in argvs:
            self.count += 1
            self.calls.append(tuple(argv))
            key = " ".join(argv[:2])
            if argv == ("scontrol", "--version"):
                out.append((0, f"slurm {self.version}\n", ""))
            else:
                out.append(self.answers[key])
        return out


def recorded(version: str, nodes: str, jobs: str, node_key: str, job_key: str) -> Recorded:
    return Recorded(version, {node_key: (0, read(nodes), ""), job_key: (0, read(jobs), "")})


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend_for(commands: Recorded, clock=None, interval: float = 5.0) -> SlurmBackend:
    return SlurmBackend(SlurmSettings(interval=interval), commands=commands, clock=clock or Clock())


def backend_2205(clock=None) -> tuple[SlurmBackend, Recorded]:
    commands = recorded(
        "22.05.8", "22.05.8-sinfo.json", "22.05.8-squeue.json", "sinfo --json", "squeue --json"
    )
    return backend_for(commands, clock), commands


def test_snapshot_of_the_whole_cluster():
    backend, commands = backend_2205()
    request = JobRequest(3, 4242, 1, "torchrun train.py", 16, 2, 0.0, "root", REQUEST_KIND)
    snapshot = backend.sample([request])
    assert commands.count == 3  # scontrol --version once, then nodes and jobs
    assert snapshot.backend == "slurm" and snapshot.version_current == "22.05.8"
    nodes = {n.name: n for n in snapshot.nodes}
    assert not nodes["node06"].up and nodes["node06"].state == "down"
    assert nodes["node04"].up and not nodes["node04"].accepts_work
    holders = {g.location: g.job_id for n in snapshot.nodes for g in n.gpus}
    assert holders["node00:3"] == 1 and holders["node00:4"] is None
    assert holders["node02:7"] == 3 and holders["node03:1"] == 4 and holders["node05:0"] is None
    assert all(g.util is None and g.mem_used_mib is None for n in snapshot.nodes for g in n.gpus)
    jobs = {j.job_id: j for j in snapshot.jobs}
    assert set(jobs) == {1, 3, 4, 6, 7}  # the completing job 5 holds nothing any more
    mine = jobs[3]
    assert (mine.device, mine.pid, mine.command) == (1, 4242, "torchrun train.py")
    assert len(mine.gpus) == 16 and not mine.waiting
    assert jobs[4].device is None and jobs[4].user == "nobody"
    assert jobs[6].waiting and jobs[6].reason == "Resources" and jobs[6].gpus_wanted == 16
    assert jobs[7].reason == "Priority" and jobs[7].nodes_wanted == 1
    assert snapshot.job_on_device(1) is mine


def test_pinned_parser_on_a_recent_version():
    commands = recorded(
        "25.11.0",
        "25.11.0-nodes.json",
        "25.11.0-squeue.json",
        "scontrol --json=v0.0.44",
        "squeue --json=v0.0.44",
    )
    snapshot = backend_for(commands).sample()
    assert commands.calls[1] == ("scontrol", "--json=v0.0.44", "show", "nodes")
    assert commands.calls[2][:2] == ("squeue", "--json=v0.0.44")
    assert snapshot.host == "moaitest" and snapshot.version_current == "25.11.0"
    assert {j.job_id for j in snapshot.jobs} == {1, 3, 4, 6, 7}


def test_refused_parser_steps_down_to_plain_json_then_text():
    answers = {
        "scontrol --json=v0.0.45": (1, "", "scontrol: error: Unable to find data_parser v0.0.45"),
        "scontrol --json": (1, "", "scontrol: unrecognized option '--json'"),
        "squeue --json=v0.0.45": (1, "", "error"),
        "squeue --json": (0, read("22.05.8-squeue.json"), ""),
        "scontrol show": (0, read("22.05.8-nodes.txt"), ""),
        "scontrol -d": (0, read("22.05.8-jobs.txt"), ""),
    }
    commands = Recorded("27.11.0", answers)
    backend = backend_for(commands)
    snapshot = backend.sample()
    assert [c[:2] for c in commands.calls[1:]] == [
        ("scontrol", "--json=v0.0.45"),
        ("squeue", "--json=v0.0.45"),
        ("scontrol", "--json"),
        ("squeue", "--json"),
        ("scontrol", "show"),
        ("scontrol", "-d"),
    ]
    assert backend.plan.text and "text" in backend.notice
    assert {j.job_id for j in snapshot.jobs} == {1, 3, 4, 6, 7}


def test_unreadable_json_falls_back_to_text():
    answers = {
        "sinfo --json": (0, "{not json", ""),
        "squeue --json": (0, read("22.05.8-squeue.json"), ""),
        "scontrol show": (0, read("22.05.8-nodes.txt"), ""),
        "scontrol -d": (0, read("22.05.8-jobs.txt"), ""),
    }
    backend = backend_for(Recorded("22.05.8", answers))
    assert len(backend.sample().nodes) == 7 and backend.plan.text


def test_controller_down_is_a_backend_error_then_backs_off_then_recovers():
    clock = Clock()
    backend, commands = backend_2205(clock)
    good = dict(commands.answers)
    commands.answers["squeue --json"] = (0, read("22.05.8-squeue-down.json"), "")
    with pytest.raises(BackendError, match="slurm_load_jobs"):
        backend.sample()
    polls = commands.count
    clock.now += 1.0
    with pytest.raises(BackendError, match="retrying in 4 s"):
        backend.sample()
    assert commands.count == polls  # no command while backing off
    commands.answers = good
    clock.now += 4.0
    assert len(backend.sample().jobs) == 5


def test_controller_unreachable_text_error():
    down = read("22.05.8-nodes-down.txt").split("\n", 1)[1]
    commands = Recorded("21.08.8", {"scontrol show": (1, "", down), "scontrol -d": (1, "", down)})
    with pytest.raises(BackendError, match="Unable to contact slurm controller"):
        backend_for(commands).sample()


def test_polls_at_most_once_per_interval():
    clock = Clock()
    backend, commands = backend_2205(clock)
    backend.sample()
    for _ in range(10):
        clock.now += 0.4
        backend.sample()
    assert commands.count == 3  # version + one poll: 4 s is inside the 5 s interval
    clock.now += 1.5
    backend.sample()
    assert commands.count == 5


def test_a_new_job_of_the_users_is_looked_for_sooner():
    clock = Clock()
    backend, commands = backend_2205(clock)
    backend.sample()
    new = JobRequest(99, 1, 0, "x", 1, 1, 0.0, "root", REQUEST_KIND)
    clock.now += 0.5
    backend.sample([new])
    assert commands.count == 3  # not more than once a second
    clock.now += 0.6
    backend.sample([new])
    assert commands.count == 5


def test_hidden_jobs_gpus_are_held_by_job_zero():
    """PrivateData=jobs: squeue shows only the user's jobs, the node says what is in use."""
    nodes = parse.nodes_from_text(
        "NodeName=n1 Gres=gpu:h100:4 GresUsed=gpu:h100:2(IDX:1-2) State=MIXED"
    )
    snapshot = build_snapshot(Allocation(tuple(nodes), (), 0.0, "23.11.1", ""), (), {}, "me", 0.0)
    assert [g.job_id for g in snapshot.nodes[0].gpus] == [None, 0, 0, None]


def test_the_release_is_the_current_version_and_no_latest_is_invented():
    nodes, _ = parsed("22.05.8")
    snapshot = build_snapshot(Allocation(tuple(nodes), (), 0.0, "23.11.1", ""), (), {}, "me", 0.0)
    assert (snapshot.platform, snapshot.version_current, snapshot.version_latest) == (
        "Slurm",
        "23.11.1",
        "-",
    )


def test_fits_now_counts_only_nodes_that_accept_work():
    nodes, jobs = parsed("22.05.8")
    snapshot = build_snapshot(Allocation(tuple(nodes), tuple(jobs), 0.0, "", ""), (), {}, "me", 0)
    one_node = Flavor("8xH100", 8, 1, 81559)
    two_nodes = Flavor("16xH100", 16, 2, 81559)
    assert fits_now(one_node, snapshot)  # node05: idle, all 8 free
    assert not fits_now(two_nodes, snapshot)  # node04 is drained, node06 down


# Readings from a metrics backend -----------------------------------------------------------
def reading(node: str, index: int, util: float) -> Gpu:
    return Gpu(node, index, "NVIDIA H100 80GB HBM3", util, None, 1000, 81559, 40.0, None, 300.0)


def test_readings_join_on_node_and_index():
    class Metrics:
        def sample(self, requests=()):
            from moai_tui.model import ClusterSnapshot, Node

            gpus = tuple(reading("node00.cluster", i, 10.0 * i) for i in range(8))
            return ClusterSnapshot(0.0, "prometheus", "me", (Node("node00.cluster", gpus),))

        def close(self):
            pass

    backend, _ = backend_2205()
    backend.metrics = Metrics()
    snapshot = backend.sample()
    node00 = snapshot.nodes[0]
    assert [g.util for g in node00.gpus] == [10.0 * i for i in range(8)]
    assert node00.gpus[0].model == "NVIDIA H100 80GB HBM3"
    assert all(g.util is None for g in snapshot.nodes[1].gpus)  # no series: unknown, not 0
    job = next(j for j in snapshot.jobs if j.job_id == 1)
    assert job.util == pytest.approx(15.0) and job.mem_used_mib == 4000


def test_failing_metrics_leave_the_allocation_standing():
    class Broken:
        def sample(self, requests=()):
            raise BackendError("prometheus at http://x: connection refused")

        def close(self):
            pass

    backend, _ = backend_2205()
    backend.metrics = Broken()
    snapshot = backend.sample()
    assert len(snapshot.jobs) == 5 and "connection refused" in backend.metrics_error


def test_join_by_unique_hostname_only():
    nodes = parse.nodes_from_text(
        "NodeName=a NodeHostName=host-a Gres=gpu:1 State=IDLE\n"
        "NodeName=b NodeHostName=shared Gres=gpu:1 State=IDLE\n"
        "NodeName=c NodeHostName=shared Gres=gpu:1 State=IDLE\n"
    )
    readings = {"host-a": {0: reading("host-a", 0, 1.0)}, "shared": {0: reading("shared", 0, 2.0)}}
    assert set(join_readings(nodes, readings)) == {"a"}


# A catalog from the cluster ----------------------------------------------------------------
def test_catalog_from_the_cluster():
    nodes, _ = parsed("22.05.8")
    catalog = derive_catalog(nodes)
    names = [f.name for f in catalog.flavors]
    assert names[:4] == ["1xH100.79GB", "2xH100.159GB", "4xH100.318GB", "8xH100.637GB"]
    assert [(f.gpus, f.nodes) for f in catalog.flavors[4:]] == [
        (16, 2),
        (24, 3),
        (32, 4),
        (48, 6),
        (56, 7),
    ]
    assert catalog.gpus_per_node == 8 and "7 nodes" in catalog.source


def test_catalog_memory_from_metrics_or_unknown():
    nodes = parse.nodes_from_text("NodeName=g1 Gres=gpu:2 State=IDLE")
    plain = derive_catalog(nodes)
    assert [f.name for f in plain.flavors] == ["1xGPU", "2xGPU"] and plain.flavors[
        0
    ].mib_per_gpu == 0
    measured = derive_catalog(nodes, {"g1": {0: reading("g1", 0, 0.0)}})
    assert measured.flavors[1].name == "2xGPU.159GB"


def test_catalog_of_a_cluster_without_gpus_is_an_error():
    with pytest.raises(BackendError, match="no node"):
        derive_catalog(parse.nodes_from_text("NodeName=c1 State=IDLE"))


@pytest.mark.parametrize(
    "kind, mib",
    [("h100", 81559), ("nvidia_h200", 143771), ("a100_40gb", 40960), ("rtx6000", None)],
)
def test_memory_from_the_gpu_type(kind, mib):
    assert model_mib(kind) == mib


# Commands and config -----------------------------------------------------------------------
def test_a_command_that_hangs_is_stopped_at_the_timeout():
    commands = Commands(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BackendError, match="did not answer within 0.3 s"):
        commands.run([(sys.executable, "-c", "import time; time.sleep(30)")])
    assert time.monotonic() - started < 10


def test_commands_run_side_by_side():
    commands = Commands(timeout=20)
    sleeper = (sys.executable, "-c", "import time; time.sleep(1); print('ok')")
    started = time.monotonic()
    results = commands.run([sleeper, sleeper])
    assert [r[1].strip() for r in results] == ["ok", "ok"] and commands.count == 2
    assert time.monotonic() - started < 1.9  # not one after the other


def test_missing_slurm_commands_are_a_backend_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BackendError, match="cannot run scontrol"):
        SlurmBackend(SlurmSettings())


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_slurm_table(tmp_path):
    path = write_config(
        tmp_path,
        '[slurm]\ninterval = 10\npartition = "gpu"\naccount = "proj"\ntime = "1:00:00"\n'
        'srun_options = ["--exclusive"]\n',
    )
    settings = load_config(path).slurm
    assert settings.interval == 10.0
    assert settings.srun_arguments() == [
        "--partition=gpu",
        "--account=proj",
        "--time=1:00:00",
        "--exclusive",
    ]


@pytest.mark.parametrize(
    "body, key",
    [
        ("interval = 0.1", "'slurm.interval'"),
        ('timeout = "5"', "'slurm.timeout'"),
        ("partition = 3", "'slurm.partition'"),
        ('account = "--all"', "'slurm.account'"),
        ('srun_options = "--exclusive"', "'slurm.srun_options'"),
        ('srun_options = ["exclusive"]', "'slurm.srun_options'"),
        ('partiton = "gpu"', "'slurm.partiton'"),
    ],
)
def test_slurm_table_errors_name_the_key(tmp_path, body, key):
    path = write_config(tmp_path, f"[slurm]\n{body}\n")
    with pytest.raises(UsageError, match=key) as error:
        load_config(path)
    assert "\n" not in str(error.value)


def test_unknown_flavor_memory_is_shown_unknown_not_zero():
    from moai_tui.state import Device
    from moai_tui.view import device_views

    nodes, jobs = parsed("22.05.8")
    mine = JobRequest(1, 7, 0, "train", 4, 1, 0.0, "root", REQUEST_KIND)
    snapshot = build_snapshot(
        Allocation(tuple(nodes), tuple(jobs), 0.0, "", ""), [mine], {}, "root", 0
    )
    unknown = {"4xGPU": Flavor("4xGPU", 4, 1, 0), "4xH100": Flavor("4xH100", 4, 1, 81559)}
    (view,) = device_views([Device(0, "4xGPU")], 0, unknown, snapshot)
    assert len(view.gpus) == 4 and view.memory_total_mib is None
    (view,) = device_views([Device(0, "4xH100")], 0, unknown, snapshot)
    assert view.memory_total_mib == 4 * 81559


def test_slurm_backend_declares_every_capability():
    from moai_tui.backends import Backend

    backend, _ = backend_2205()
    declared = {n for n in vars(Backend) if not n.startswith("_")} | set(Backend.__annotations__)
    own = set().union(*(vars(k) for k in type(backend).__mro__ if k is not object))
    assert not declared - own - set(vars(backend))
    assert (backend.visible_devices_env, backend.scheduler) == (None, "slurm")
    assert backend.pinned_state() is None and backend.replay_status() is None
    assert backend.history([Gpu("node00", 0)], 60.0, 1.0) is None  # no metrics, no history
    assert backend.local_catalog().gpus_per_node == 8


@pytest.mark.parametrize(
    "flavor, expected",
    [
        (Flavor("2x", 2, 1, 0), ["--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=2"]),
        (Flavor("16x", 16, 2, 0), ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8"]),
        (Flavor("3x", 3, 2, 0), ["--nodes=2", "--ntasks-per-node=1", "--gpus=3"]),
    ],
)
def test_a_flavor_as_an_srun_request(flavor, expected):
    from moai_tui.slurm_run import srun_argv

    settings = SlurmSettings(partition="gpu", time="1:00:00", srun_options=("--exclusive",))
    argv = srun_argv(flavor, "moai-1", settings, ["python", "train.py", "--lr", "1"], True)
    assert argv[:4] == ["srun", "--quiet", "--quit-on-interrupt", "--job-name=moai-1"]
    assert argv[4:7] == expected
    assert argv[7:] == [
        "--partition=gpu",
        "--time=1:00:00",
        "--exclusive",
        "python",
        "train.py",
        "--lr",
        "1",
    ]
    assert "--immediate" in srun_argv(flavor, "moai-1", SlurmSettings(), ["x"], wait=False)


def test_srun_flags_need_the_slurm_backend(config_dir):
    from conftest import run_cli

    done = run_cli("run", "--backend", "simulator", "--partition", "gpu", "--", "true")
    assert done.returncode == 2 and "need the slurm backend" in done.stderr
    assert done.stderr.count("\n") == 1


def test_history_is_asked_under_the_metrics_names_for_the_nodes():
    asked = []

    class Metrics:
        def sample(self, requests=()):
            from moai_tui.model import ClusterSnapshot, Node

            gpus = tuple(reading("node00.cluster", i, 1.0) for i in range(8))
            return ClusterSnapshot(0.0, "prometheus", "me", (Node("node00.cluster", gpus),))

        def history(self, gpus, seconds, step):
            asked.extend(gpus)
            return [(50.0, 10.0)]

        def close(self):
            pass

    backend, _ = backend_2205()
    backend.metrics = Metrics()
    snapshot = backend.sample()
    device_gpus = snapshot.nodes[0].gpus[:2]
    assert backend.history(device_gpus, 600.0, 1.0) == [(50.0, 10.0)]
    assert [(g.node, g.index) for g in asked] == [("node00.cluster", 0), ("node00.cluster", 1)]


def test_nodes_outside_the_detail_are_summaries_of_slurms_counts_and_the_metrics_readings():
    """The dashboard shows node00 GPU by GPU and node01's readings: the metrics are asked for
    them under their names for them; every other node is a summary: its GPUs and those no job
    holds as Slurm says, its readings as the metrics summarised them."""
    told = []

    class Metrics:
        def set_detail(self, nodes, readings=None):
            told.append((nodes, readings))

        def sample(self, requests=()):
            from moai_tui.model import ClusterSnapshot, Job, Node, NodeSummary

            gpus = tuple(reading("node00.cluster", i, 10.0 * i) for i in range(8))
            summary = NodeSummary(8, 3, 0, 35.0, 8000, 652472, 41.0, 2400.0)
            # Job 3 (node01 and node02) as the metrics' job labels say: their mean over it.
            job = Job(3, 0, "root", "job 3", summarised=(("node01.cluster", 8),), util=61.0)
            return ClusterSnapshot(
                0.0,
                "prometheus",
                "me",
                (Node("node00.cluster", gpus), Node("node01.cluster", (), summary=summary)),
                jobs=(job,),
            )

        def close(self):
            pass

    backend, _ = backend_2205()
    backend.metrics = Metrics()
    full = backend.sample()  # learns the metrics' names
    every, every_jobs = {n.name: n for n in full.nodes}, {j.job_id: j for j in full.jobs}
    backend.set_detail({"node00"}, {"node01"})
    backend._last = replace(backend._last, taken=-1e9)  # poll again
    snapshot = backend.sample()
    assert told == [({"node00.cluster"}, {"node01.cluster"})]
    nodes = {n.name: n for n in snapshot.nodes}
    assert nodes["node00"] == every["node00"] and nodes["node00"].summary is None
    node01 = nodes["node01"]
    assert node01.gpus == () and node01.summary.gpus == len(every["node01"].gpus)
    assert node01.summary.free == free_count(every["node01"])  # Slurm's, not the metrics' 3
    assert (node01.summary.util, node01.summary.temp_c) == (35.0, 41.0)
    assert nodes["node02"].summary.util is None  # the metrics know nothing of it
    jobs = {j.job_id: j for j in snapshot.jobs}
    assert (jobs[3].util, jobs[3].mem_used_mib) == (61.0, None)  # not node00's part for all
    assert jobs[1].util == every_jobs[1].util and jobs[1].mem_used_mib is not None
    assert (
        summarise(snapshot, (), ()).free
        == summarise(replace(snapshot, nodes=tuple(every.values())), (), ()).free
    )
