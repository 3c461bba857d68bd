"""text/smi.py on hand-made views: every cell of `smi -p` and every field of `--json`, exactly
(the CLI tests pin the layout; these pin the values, and kill the mutants
benchmarks/mutation.py found surviving them)."""

from __future__ import annotations

from moai_tui.model import ClusterSnapshot, Flavor, Gpu, Job, Node
from moai_tui.state import Device
from moai_tui.text.smi import render_gpus, render_processes, smi_document
from moai_tui.view import device_views

ME = "me"


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("|")[1:-1]]


def test_per_gpu_rows_exact_and_lost_anywhere():
    gpus = (
        Gpu("a", 0, util=59.6, mem_util=0.4, mem_used_mib=48, mem_total_mib=80, temp_c=41.5),
        Gpu("a", 1, lost=True),
        Gpu("a", 2, util=None, mem_used_mib=10, mem_total_mib=None, mem_temp_c=70.2),
        Gpu("a", 3, util=100.0, mem_used_mib=0, mem_total_mib=0),  # no total: no usage
    )
    job = Job(9, 90, ME, "train", device=0, gpus=tuple(g.location for g in gpus))
    snapshot = ClusterSnapshot(0.0, "test", ME, (Node("a", gpus),), (job,))
    (view,) = device_views([Device(0, "f")], 0, {"f": Flavor("f", 4, 1, 80)}, snapshot)
    lines = render_gpus(view).splitlines()
    assert cells(lines[1]) == [
        "Dev",
        "Location",
        "Dev Temp",
        "Mem Temp",
        "Dev Util",
        "Mem Util",
        "Mem Usage",
    ]
    assert [cells(line) for line in lines[3:-1]] == [
        ["0", "a:0", "42 C", "-", "60 %", "0 %", "60 %"],
        ["1", "a:1", "lost", "lost", "lost", "lost", "lost"],
        ["2", "a:2", "-", "70 C", "-", "-", "-"],
        ["3", "a:3", "-", "-", "100 %", "-", "-"],
    ]
    assert len(lines) == 3 + 4 + 1 and lines[0] == lines[-1] and set(lines[2]) == {"+", "="}


def test_json_document_every_field():
    gpus = (Gpu("a", 0, util=33.34, mem_used_mib=10, mem_total_mib=80),)
    mine = Job(9, 90, ME, "python train.py", device=1, gpus=("a:0",), mem_used_mib=7)
    theirs = Job(8, 80, "other", "x", device=1, gpus=("a:0",))
    snapshot = ClusterSnapshot(0.0, "test", ME, (Node("a", gpus),), (theirs, mine))
    flavors = {"one": Flavor("one", 1, 1, 80)}
    devices = [Device(0, "gone"), Device(1, "one")]
    views = device_views(devices, 1, flavors, snapshot)
    doc = smi_document(views, snapshot, 1)
    assert doc["schema"] == "moai-tui/smi-1" and doc["current_device"] == 1
    assert doc["devices"] == [
        {
            "id": 0,
            "current": False,
            "name": "MoAI Accelerator",
            "flavor": "gone",
            "gpus": None,
            "nodes": None,
            "mib_per_gpu": None,
            "memory_used_mib": None,
            "memory_total_mib": None,
            "utilization": None,
            "job_id": None,
        },
        {
            "id": 1,
            "current": True,
            "name": "MoAI Accelerator",
            "flavor": "one",
            "gpus": 1,
            "nodes": 1,
            "mib_per_gpu": 80,
            "memory_used_mib": 10,
            "memory_total_mib": 80,
            "utilization": 33.3,
            "job_id": 9,
        },
    ]
    assert doc["processes"] == [
        {
            "device": 1,
            "job_id": 9,
            "pid": 90,
            "user": ME,
            "command": "python train.py",
            "memory_used_mib": 7,  # the job's own; the device's GPUs hold 10
            "waiting": False,
        }
    ]
    assert doc["cluster"]["nodes"][0]["gpus"][0]["util"] == 33.34  # the cluster as sampled


def test_processes_table_only_devices_with_a_job():
    job = Job(9, 90, ME, "a|b*c\nd", device=1, mem_used_mib=3)  # one line, escaped (printable)
    snapshot = ClusterSnapshot(0.0, "test", ME, (), (job,))
    views = device_views([Device(0, "f"), Device(1, "f")], 0, {}, snapshot)
    lines = render_processes(views)
    assert lines[:2] == ["", "Processes:"]
    assert [cells(line) for line in lines[5:-1]] == [
        ["1", "9", "90", "a\u2502b\u2217c\\nd", "3 MiB"]
    ]
    assert render_processes(views[:1]) == []


def test_json_strings_are_printable_at_any_depth():
    job = Job(9, 90, ME, "x\x1b[2Jy", device=0, gpus=("a:0",))
    snapshot = ClusterSnapshot(0.0, "test", ME, (Node("a", (Gpu("a", 0),)),), (job,))
    views = device_views([Device(0, "f\x07")], 0, {}, snapshot)
    doc = smi_document(views, snapshot, 0)
    assert doc["processes"][0]["command"] == "x\\x1b[2Jy"
    assert doc["cluster"]["jobs"][0]["command"] == "x\\x1b[2Jy"  # inside a list inside a dict
    assert doc["devices"][0]["flavor"] == "f\\x07"
