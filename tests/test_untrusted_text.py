"""Untrusted text (commands, user names, node, model and version labels) through `smi`,
`smi -p` and `smi --json`: escaped, never raw on the terminal, columns still aligned."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from conftest import run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moai_tui.backends.snapshot import SCHEMA
from moai_tui.cli import main
from moai_tui.text.safe import cell_width, printable
from moai_tui.text.table import Column, Table

# Anything a terminal would act on: C0 but newline, DEL, C1, bidi controls, separators,
# surrogates (which would not even encode to UTF-8).
RAW_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)


def test_printable_escapes_controls_and_keeps_unicode():
    assert printable("py\x1b[31mRED\x1b[2J\x07x") == "py\\x1b[31mRED\\x1b[2J\\x07x"
    assert printable("a\tb\nc\rd\x00\x7f\x9b") == "a\\tb\\nc\\rd\\x00\\x7f\\x9b"
    assert printable("evil\u202etxt.exe\u2028") == "evil\\u202etxt.exe\\u2028"
    assert printable("bad byte \udcff") == "bad byte \\xff"  # surrogateescape'd 0xFF
    kept = "학습 train_数据.py --name=café [/data] [b] trainer.devices=[0,1] \\x1b 🚀"
    assert printable(kept) is kept  # nothing to escape: the very same string back
    once = printable("\x1b]0;title\x07")
    assert printable(once) == once and not RAW_CONTROL.search(once)


def test_cell_width_counts_terminal_cells():
    assert cell_width("python train.py") == 15
    assert cell_width("数据") == 4  # East Asian wide: two cells each
    assert cell_width("ｆｕｌｌ") == 8  # fullwidth forms
    assert cell_width("e\u0301") == 1  # a combining accent takes none
    assert cell_width("한") == 2 and cell_width("\u1112\u1161\u11ab") == 2  # jamo join
    assert cell_width("👩\u200d💻") == 4  # the joiner itself takes none


def test_table_aligns_wide_and_combining_text():
    rows = [["1", "python 训练.py"], ["22", "cafe\u0301"], ["3", "plain"]]
    table = Table((Column("N", align="right"), Column("Process")), rows)
    lines = [table.rule(), table.header(), table.rule("="), *map(table.row, rows), table.rule()]
    assert len({cell_width(line) for line in lines}) == 1, "\n".join(lines)
    assert table.row(rows[0]) == "|   1  |  python 训练.py  |"


def test_control_characters_in_a_command_never_reach_the_terminal(config_dir):
    command = "py\x1b[31mRED\x1b[2J\x07x | tee *.log"
    started = run_cli("sim", "start", command)
    assert started.returncode == 0 and not RAW_CONTROL.search(started.stdout)
    assert started.stdout.endswith(": py\\x1b[31mRED\\x1b[2J\\x07x | tee *.log\n")
    table = run_cli("smi").stdout
    assert not RAW_CONTROL.search(table)
    assert "|  py\\x1b[31mRED\\x1b[2J\\x07x \u2502 tee \u2217.log  |" in table
    assert [line for line in table.splitlines() if "*" in line][0].startswith("|  * 0")
    document = run_cli("smi", "--json").stdout
    # What a consumer prints: jq -r decodes the JSON string escapes.
    shown = subprocess.run(
        ["jq", "-r", ".processes[0].command, .cluster.jobs[0].command"],
        input=document,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == "py\\x1b[31mRED\\x1b[2J\\x07x | tee *.log\n" * 2


def test_wide_command_keeps_the_process_table_aligned(config_dir):
    run_cli("sim", "start", "python 학습_데이터.py --모델 큰")
    lines = run_cli("smi").stdout.splitlines()
    process_table = lines[lines.index("Processes:") + 1 :]
    assert len(process_table) == 5
    assert len({cell_width(line) for line in process_table}) == 1, "\n".join(process_table)


# The property: random untrusted text everywhere a backend hands us text -------------------
NASTY = [
    "\x1b[2J",
    "\x1b]0;pwned\x07",
    "\x9b31m",
    "[/data]",
    "[b]bold[/b]",
    "trainer.devices=[0,1]",
    "数据集",
    "e\u0301",
    "\u202egnp.exe",
    "\udc80",
    "*",
    "|",
    "\n",
    "\r",
    "\t",
    "\\x1b",
]
untrusted = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=6), max_size=8).map("".join),
    st.builds(lambda s, n: s * n, st.sampled_from(NASTY[:9]), st.integers(100, 400)),
)
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def smi_document_with(command, user, node, model, flavor, version) -> dict:
    gpus = [
        {"index": i, "model": model, "util": 50.0, "mem_used_mib": 100, "mem_total_mib": 1000}
        for i in range(2)
    ]
    return {
        "schema": SCHEMA,
        "current_device": 0,
        "devices": [
            {"id": 0, "flavor": flavor, "gpus": 2, "nodes": 1, "mib_per_gpu": 1000},
            {"id": 1, "flavor": "Small.64GB", "gpus": 1, "nodes": 1, "mib_per_gpu": 1000},
        ],
        "processes": [],
        "cluster": {
            "time": 1780000000.0,
            "backend": "simulator",
            "user": user,
            "host": node,
            "platform": model,
            "version": {"current": version, "latest": version},
            "nodes": [{"name": node, "up": True, "gpus": gpus}],
            "jobs": [
                {
                    "job_id": 7,
                    "pid": 70,
                    "user": user,
                    "command": command,
                    "device": 0,
                    "gpus": [f"{node}:0", f"{node}:1"],
                    "started": 1779999000.0,
                }
            ],
        },
    }


def smi(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["smi", *args])
    assert code == 0 and err.getvalue() == "", err.getvalue()
    return out.getvalue()


def assert_tables_aligned(output: str) -> None:
    tables, block = [], []
    for line in [*output.splitlines(), ""]:
        if line[:1] in ("+", "|"):
            block.append(line)
        elif block:
            tables.append(block)
            block = []
    assert tables
    for table in tables:
        assert len({cell_width(line) for line in table}) == 1, "\n".join(table)
        rows = [line for line in table if line.startswith("|")]
        # awk -F'|' finds the header's fields on every row (the banner is one cell).
        fields = rows[-1].count("|")
        assert all(line.count("|") in (2, fields) for line in rows), "\n".join(rows)


def strings_in(data) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for value in data.values() for s in strings_in(value)]
    if isinstance(data, list):
        return [s for value in data for s in strings_in(value)]
    return []


@PROPERTY
@given(untrusted, untrusted, untrusted, untrusted, untrusted, untrusted)
@example("py\x1b[2J", "ro\x07ot", "node.01", "H200\x9b", "数据.64GB", "580\n*|")
def test_untrusted_text_through_smi(config_dir, command, user, node, model, flavor, version):
    if not node or not flavor:
        return  # a node and a flavor need a name
    with tempfile.TemporaryDirectory() as directory:
        saved = Path(directory) / "snapshot.json"
        document = smi_document_with(command, user, node, model, flavor, version)
        saved.write_text(json.dumps(document))
        backend = f"--backend=snapshot:{saved}"
        table, per_gpu, as_json = smi(backend), smi(backend, "-p"), smi(backend, "--json")
        version = smi(backend, "-v")
        assert version.count("\n") == 1
        for output in (table, per_gpu, as_json, version):
            assert not RAW_CONTROL.search(output)
        assert_tables_aligned(table)
        assert_tables_aligned(per_gpu)
        assert [line for line in table.splitlines() if "*" in line] == [table.splitlines()[5]]
        assert table.splitlines()[5].startswith("|  * 0  ")
        assert "*" not in per_gpu
        decoded = json.loads(as_json)
        assert not any(RAW_CONTROL.search(s) for s in strings_in(decoded))
        assert decoded["processes"][0]["command"] == printable(command)
        # Escaped once, read back, shown the same: a saved --json is a faithful bug report.
        saved.write_text(as_json)
        assert smi(backend, "--json") == as_json and smi(backend) == table
