"""`moai-tui smi`: moreh-smi's tables, byte for byte where the reference pins them."""

from __future__ import annotations

from collections.abc import Sequence

from moai_tui.codec import snapshot_to_dict
from moai_tui.model import MOAI_PLATFORM, ClusterSnapshot
from moai_tui.text.safe import printable
from moai_tui.text.table import Column, Table
from moai_tui.view import ACCELERATOR_NAME, DeviceView, fmt_mib, fmt_number, fmt_percent

DEVICE_COLUMNS = (
    Column("Device"),
    # The real tool's Name column is 17 wide with an off-centre header: reproduced as it is.
    Column("Name", align="center", header_align="center_floor", min_width=17),
    Column("Model"),
    Column("Memory Usage"),
    Column("Total Memory"),
    Column("Utilization"),
)
PROCESS_COLUMNS = (
    Column("Device", align="right"),
    Column("Job ID", align="right"),
    Column("PID", align="right"),
    Column("Process"),
    Column("Memory Usage"),
)
GPU_COLUMNS = (
    Column("Dev", align="right"),
    Column("Location"),
    *(
        Column(h, align="center")
        for h in ("Dev Temp", "Mem Temp", "Dev Util", "Mem Util", "Mem Usage")
    ),
)


def banner_text(snapshot: ClusterSnapshot) -> str:
    """moreh-smi's version line on a MoAI platform; elsewhere, what the version is of (the
    NVIDIA driver is not a MoAI release, and nothing knows its latest)."""
    current, latest = safe_command(snapshot.version_current), safe_command(snapshot.version_latest)
    if snapshot.platform == MOAI_PLATFORM:
        return f"Current Version: {current}  Latest Version: {latest}"
    return safe_command(snapshot.platform) + ("" if current == "-" else f" {current}")


def device_cells(view: DeviceView) -> list[str]:
    return [
        f"{'*' if view.current else ' '} {view.device}",
        ACCELERATOR_NAME,
        safe_command(view.flavor_name),
        fmt_mib(view.memory_used_mib),
        fmt_mib(view.memory_total_mib),
        fmt_percent(view.utilization),
    ]


def safe_command(command: str) -> str:
    """Untrusted text (a command line, a node or flavor name) for a table cell. Scripts find
    the current device as the only line holding '*' (awk '/\\*/') and cut fields at '|', and a
    table line must stay one line (a newline shows as `\\n`, as every control character
    shows as its escape): all three hold whatever the text contains."""
    return printable(command).replace("*", "\u2217").replace("|", "\u2502")


def render_devices(views: Sequence[DeviceView], snapshot: ClusterSnapshot) -> list[str]:
    table = Table(DEVICE_COLUMNS, [device_cells(v) for v in views])
    lines = [
        table.rule(),
        table.banner(banner_text(snapshot)),
        table.rule(),
        table.header(),
        table.rule("="),
    ]
    for view in views:
        lines += [table.row(device_cells(view)), table.rule()]
    return lines


def render_processes(views: Sequence[DeviceView]) -> list[str]:
    rows = [
        [
            str(v.device),
            str(v.job.job_id),
            str(v.job.pid),
            safe_command(v.job.command),
            fmt_mib(v.job.mem_used_mib),  # the job's own, as the dashboard shows it
        ]
        for v in views
        if v.job is not None
    ]
    if not rows:
        return []
    table = Table(PROCESS_COLUMNS, rows)
    return [
        "",
        "Processes:",
        table.rule(),
        table.header(),
        table.rule("="),
        *(table.row(r) for r in rows),
        table.rule(),
    ]


def render_smi(views: Sequence[DeviceView], snapshot: ClusterSnapshot) -> str:
    return "\n".join(render_devices(views, snapshot) + render_processes(views)) + "\n"


def render_gpus(view: DeviceView) -> str:
    """`smi -p`: one row per physical GPU of the device's running job."""
    rows = []
    for number, gpu in enumerate(view.gpus):
        location = safe_command(gpu.location)
        if gpu.lost:
            rows.append([str(number), location, "lost", "lost", "lost", "lost", "lost"])
            continue
        usage = None
        if gpu.mem_used_mib is not None and gpu.mem_total_mib:
            usage = 100.0 * gpu.mem_used_mib / gpu.mem_total_mib
        rows.append(
            [
                str(number),
                location,
                fmt_number(gpu.temp_c, "C"),
                fmt_number(gpu.mem_temp_c, "C"),
                fmt_number(gpu.util, "%"),
                fmt_number(gpu.mem_util, "%"),
                fmt_number(usage, "%"),
            ]
        )
    table = Table(GPU_COLUMNS, rows)
    return (
        "\n".join(
            [
                table.rule(),
                table.header(),
                table.rule("="),
                *(table.row(r) for r in rows),
                table.rule(),
            ]
        )
        + "\n"
    )


def printable_strings(data):
    """`data` (JSON-able) with `printable` applied to every string in it."""
    if isinstance(data, str):
        return printable(data)
    if isinstance(data, dict):
        return {key: printable_strings(value) for key, value in data.items()}
    if isinstance(data, list):
        return [printable_strings(value) for value in data]
    return data


def smi_document(views: Sequence[DeviceView], snapshot: ClusterSnapshot, current: int) -> dict:
    """The `--json` schema (moai-tui/smi-1); `--backend snapshot:FILE` reads it back.

    Every string is `printable`: the JSON text is safe anyway, but `jq -r .processes[0].command`
    decodes it, and what a consumer prints must not hold a raw escape sequence either."""
    from moai_tui.backends.snapshot import SCHEMA

    devices = []
    for v in views:
        flavor = v.flavor
        devices.append(
            {
                "id": v.device,
                "current": v.current,
                "name": ACCELERATOR_NAME,
                "flavor": v.flavor_name,
                "gpus": flavor.gpus if flavor else None,
                "nodes": flavor.nodes if flavor else None,
                "mib_per_gpu": flavor.mib_per_gpu if flavor else None,
                "memory_used_mib": v.memory_used_mib,
                "memory_total_mib": v.memory_total_mib,
                "utilization": None if v.utilization is None else round(v.utilization, 1),
                "job_id": v.job.job_id if v.job else None,
            }
        )
    processes = [
        {
            "device": v.device,
            "job_id": v.job.job_id,
            "pid": v.job.pid,
            "user": v.job.user,
            "command": v.job.command,
            "memory_used_mib": v.job.mem_used_mib,
            "waiting": v.job.waiting,
        }
        for v in views
        if v.job is not None
    ]
    return printable_strings(
        {
            "schema": SCHEMA,
            "current_device": current,
            "devices": devices,
            "processes": processes,
            "cluster": snapshot_to_dict(snapshot),
        }
    )
