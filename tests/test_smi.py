"""`moai-tui smi`: the reference outputs byte for byte, the awk contract, options, JSON."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import FIXTURES, run_cli


def reference_blocks() -> list[str]:
    text = (FIXTURES / "reference" / "moreh-cli.md").read_text()
    return [b for b in re.findall(r"```text\n(.*?)```", text, re.S)]


def test_idle_4xlarge_matches_reference_byte_for_byte(config_dir):
    assert run_cli("switch", "-M", "4xLarge.2048GB").returncode == 0
    result = run_cli("smi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == reference_blocks()[0]


def test_idle_xlarge_matches_reference_byte_for_byte(config_dir):
    assert run_cli("switch", "--model", "4").returncode == 0
    assert run_cli("smi").stdout == reference_blocks()[1]


def test_running_job_layout_follows_reference(config_dir):
    run_cli("switch", "-M", "xLarge.512GB")
    run_cli("sim", "start", "python tutorial/train_gpt.py")
    out = run_cli("smi", env={"MOAI_TUI_SIM_TIME": "1780000600"}).stdout
    lines = out.splitlines()
    ref = reference_blocks()[2].splitlines()
    # That release padded Model wider; only the idle blocks are pinned byte for byte.
    squeeze = lambda line: re.sub(r"-+|=+| +", " ", line)  # noqa: E731
    assert [squeeze(x) for x in lines[:5]] == [squeeze(x) for x in ref[:5]]
    row = lines[5].split("|")
    assert row[3] == "  xLarge.512GB  "
    assert re.fullmatch(r"  \d+ MiB +", row[4]) and row[5] == "  524160 MiB    "
    assert re.fullmatch(r"  [ \d]{3} % +", row[6]) and len(row[6]) == 15
    assert lines[7:9] == ["", "Processes:"]
    assert [squeeze(x) for x in lines[9:12]] == [squeeze(x) for x in ref[9:12]]
    process = lines[12].split("|")
    assert process[1] == "       0  " and process[4] == "  python tutorial/train_gpt.py  "
    assert squeeze(lines[-1]) == squeeze(ref[-1])


def awk_field(output: str, field: int) -> str:
    program = f'/\\*/ {{gsub(/[^0-9]/,"",${field}); print ${field}}}'
    return subprocess.run(
        ["awk", "-F", "|", program], input=output, capture_output=True, text=True, check=True
    ).stdout


def test_awk_contract_with_real_awk(config_dir):
    """The platform's training scripts cut smi's output like this; it must keep working."""
    run_cli("switch", "-M", "4xLarge.2048GB")
    assert run_cli("device", "--add", "Small.64GB").returncode == 0
    assert run_cli("device", "--add", "2").returncode == 0
    run_cli("sim", "start", "python train.py --files '*.pt' | tee log")
    run_cli("sim", "start", "python other.py", "--device", "2")
    at = {"MOAI_TUI_SIM_TIME": "1780000900"}
    data = json.loads(run_cli("smi", "--json", env=at).stdout)
    output = run_cli("smi", env=at).stdout
    assert len([line for line in output.splitlines() if "*" in line]) == 1
    current = data["devices"][0]
    assert awk_field(output, 5) == f"{current['memory_used_mib']}\n"
    assert awk_field(output, 6) == "2096640\n"
    assert current["memory_used_mib"] > 0


def test_awk_contract_when_idle_prints_empty_fields(config_dir):
    output = run_cli("smi").stdout
    assert awk_field(output, 5) == "\n" and awk_field(output, 6) == "\n"


def test_visible_device_moves_the_star(config_dir):
    run_cli("device", "--add", "Large.256GB")
    out = run_cli("smi", env={"MOREH_VISIBLE_DEVICE": "1"}).stdout
    star = [line for line in out.splitlines() if "*" in line]
    assert len(star) == 1 and "* 1" in star[0] and "Large.256GB" in star[0]


def test_per_gpu_table(config_dir):
    run_cli("switch", "-M", "Medium.128GB")
    run_cli("sim", "start", "python train.py")
    out = run_cli("smi", "-p", env={"MOAI_TUI_SIM_TIME": "1780000300"}).stdout.splitlines()
    assert (
        out[1]
        == "|  Dev  |  Location  |  Dev Temp  |  Mem Temp  |  Dev Util  |  Mem Util  |  Mem Usage  |"
    )
    rows = [line for line in out if re.match(r"\|\s+\d+  \|", line)]
    assert len(rows) == 2
    for number, row in enumerate(rows):
        cells = row.split("|")
        assert cells[1] == f"    {number}  "
        assert re.fullmatch(r"  node\d\d:\d  ", cells[2])
        assert all(re.fullmatch(r" +\d+ [C%] +", c) for c in cells[3:8])


def test_single_device_version_and_json_schema(config_dir):
    run_cli("device", "--add", "Small.64GB")
    one = run_cli("smi", "-i", "1").stdout
    assert "Small.64GB" in one and "xLarge.512GB" not in one
    assert run_cli("smi", "-v").stdout == "Moreh AI Platform 24.5.0\n"
    doc = json.loads(run_cli("smi", "--json").stdout)
    assert doc["schema"] == "moai-tui/smi-1" and doc["current_device"] == 0
    assert [d["flavor"] for d in doc["devices"]] == ["xLarge.512GB", "Small.64GB"]
    assert doc["devices"][0]["gpus"] == 8 and doc["devices"][0]["mib_per_gpu"] == 65520
    assert len(doc["cluster"]["nodes"]) == 64


def test_reset_stops_the_job_with_exact_messages(config_dir):
    first = run_cli("smi", "-r")
    assert first.returncode == 1 and first.stderr == "Device release failed. (Not running job.)\n"
    run_cli("sim", "start", "python train.py")
    assert "Processes:" in run_cli("smi").stdout
    second = run_cli("smi", "--reset")
    assert second.returncode == 0 and second.stdout == "Device release success.\n"
    assert "Processes:" not in run_cli("smi").stdout


def test_json_round_trips_through_snapshot_backend(config_dir, tmp_path):
    """A saved `smi --json` re-rendered elsewhere, later, with another state, prints what the
    live command printed when it was saved: the table, `-p`, and the document itself."""
    run_cli("switch", "-M", "3xLarge.1536GB")
    run_cli("device", "--add", "Small.64GB")
    run_cli("sim", "start", "python train.py")
    at = {"MOAI_TUI_SIM_TIME": "1780000450"}
    saved = tmp_path / "bug-report.json"
    saved.write_text(run_cli("smi", "--json", env=at).stdout)
    live = {flags: run_cli("smi", *flags, env=at).stdout for flags in ((), ("-p",))}
    assert "python train.py" in live[()] and len(live[("-p",)].splitlines()) == 4 + 24
    # Elsewhere, later, with another state: the saved file shows the same screens.
    run_cli("smi", "-r")
    run_cli("switch", "-M", "1")
    later = {"MOAI_TUI_SIM_TIME": "1780009999"}
    assert run_cli("smi", "-p", env=later).stdout != live[("-p",)]
    for flags, expected in live.items():
        again = run_cli("smi", *flags, "--backend", f"snapshot:{saved}", env=later)
        assert again.returncode == 0, again.stderr
        assert again.stdout == expected, flags
    again = run_cli("smi", "--json", "--backend", f"snapshot:{saved}", env=later)
    assert again.stdout == saved.read_text()


def test_smi_never_imports_textual(config_dir):
    probe = (
        "import sys; from moai_tui.cli import main; "
        "code = main(['smi']); main(['smi', '--json']); main(['switch', '-M', '2']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]; "
        "assert code == 0 and not bad, bad"
    )
    result = subprocess.run(["python3", "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
