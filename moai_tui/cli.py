"""`moai-tui` and its plain-text commands. The Textual app is imported only by the dashboard."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import random
import sys
from pathlib import Path

from moai_tui import __version__, actions
from moai_tui.context import Context
from moai_tui.errors import MoaiError, RefusedError, ToolMessage, UsageError
from moai_tui.model import JobRequest
from moai_tui.parsing import is_number
from moai_tui.state import MAX_DEVICES, Device, State, prune_dead_jobs, visible_device
from moai_tui.text.messages import (
    CREATE_OK,
    CURRENT_OK,
    NO_RESOURCES,
    RELEASE_OK,
    REMOVE_OK,
    SWITCHED,
)

PROG = "moai-tui"
BACKEND_HELP = "auto (default), simulator, nvml, prometheus, replay:FILE[@SPEED], snapshot:FILE"
PROMETHEUS_HELP = "Prometheus server for --backend prometheus (or MOAI_TUI_PROMETHEUS_URL)"
CATALOG_HELP = "flavor catalog TOML replacing the built-in one"


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, as for every other bad input
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Watch and size a MoAI accelerator.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--backend", help=BACKEND_HELP)
    parser.add_argument("--catalog", type=Path, help=CATALOG_HELP)
    parser.add_argument("--prometheus-url", metavar="URL", help=PROMETHEUS_HELP)
    parser.add_argument("--interval", type=float, help="seconds between refreshes (>= 0.25)")
    parser.add_argument("--theme", help="theme name (see themes/)")
    # The same options after a subcommand; SUPPRESS keeps a value given before it.
    common = ArgumentParser(add_help=False)
    common.add_argument("--backend", default=argparse.SUPPRESS, help=BACKEND_HELP)
    common.add_argument("--catalog", type=Path, default=argparse.SUPPRESS, help=CATALOG_HELP)
    common.add_argument(
        "--prometheus-url", metavar="URL", default=argparse.SUPPRESS, help=PROMETHEUS_HELP
    )
    sub = parser.add_subparsers(dest="command", parser_class=ArgumentParser)

    smi = sub.add_parser("smi", parents=[common], help="status table, as moreh-smi prints it")
    smi.add_argument("-p", action="store_true", help="one row per physical GPU")
    smi.add_argument("-i", type=int, metavar="IDX", help="only device IDX")
    smi.add_argument("-r", "--reset", action="store_true", help="stop the job, release the GPUs")
    smi.add_argument("-v", "--version", action="store_true", help="print the platform version")
    smi.add_argument("--json", action="store_true", help="machine-readable (schema moai-tui/smi-1)")

    switch = sub.add_parser("switch", parents=[common], help="change the accelerator's flavor")
    switch.add_argument("-M", "--model", metavar="N|NAME", help="flavor number or name")

    device = sub.add_parser("device", parents=[common], help="the user's accelerators (0-4)")
    action = device.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list devices")
    action.add_argument("--add", nargs="?", const="", metavar="FLAVOR", help="create a device")
    action.add_argument("--rm", nargs="?", const=-1, type=int, metavar="ID", help="remove a device")
    action.add_argument(
        "--switch", nargs="?", const=-1, type=int, metavar="ID", help="make a device current"
    )

    run = sub.add_parser("run", parents=[common], help="run a command on the flavor's GPUs")
    run.add_argument("--no-wait", action="store_true", help="fail instead of waiting for GPUs")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")

    rec = sub.add_parser("record", parents=[common], help="record samples as JSON lines")
    rec.add_argument("--out", required=True, type=Path, help="file to write")
    rec.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    rec.add_argument("--interval", type=float, default=1.0, help="seconds between samples")

    exporter = sub.add_parser(
        "exporter", parents=[common], help="serve samples as dcgm-exporter metrics for Prometheus"
    )
    exporter.add_argument(
        "--listen",
        default="127.0.0.1:9400",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:9400, loopback only)",
    )
    exporter.add_argument("--node", help="serve only this node of the cluster")

    sim = sub.add_parser("sim", help="start or stop simulated jobs on your accelerator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, parser_class=ArgumentParser)
    start = sim_sub.add_parser("start", parents=[common], help="start a simulated job")
    start.add_argument("job_command", metavar="COMMAND", help='e.g. "python train.py"')
    start.add_argument("--device", type=int, help="device id (default: current)")
    stop = sim_sub.add_parser("stop", parents=[common], help="stop the simulated job")
    stop.add_argument("--device", type=int, help="device id (default: current)")
    return parser


# smi ---------------------------------------------------------------------------------------
def cmd_smi(ctx: Context, args, out) -> int:
    from moai_tui.text.smi import render_gpus, render_smi, smi_document
    from moai_tui.validate import clean_snapshot
    from moai_tui.view import device_views

    if args.reset:
        actions.release(ctx)
        out.write(RELEASE_OK + "\n")
        return 0
    backend = ctx.backend
    pinned = backend.pinned_state()
    if pinned is not None:
        state, flavors = pinned.state, pinned.flavors
        current = state.current
    else:
        state, flavors = prune_dead_jobs(ctx.store.load()), ctx.flavors
        current = visible_device(state)
    snapshot, _ = clean_snapshot(backend.sample(state.jobs))
    if args.version:
        out.write(f"{snapshot.platform} {snapshot.version_current}\n")
        return 0
    views = device_views(state.devices, current, flavors, snapshot)
    if args.i is not None:
        views = [v for v in views if v.device == args.i]
        if not views:
            raise UsageError(
                f"no device {args.i}: your devices are {[d.id for d in state.devices]}"
            )
    if args.json:
        json.dump(smi_document(views, snapshot, current), out, indent=1)
        out.write("\n")
    elif args.p:
        chosen = next((v for v in views if v.current), views[0])
        out.write(render_gpus(chosen))
    else:
        out.write(render_smi(views, snapshot))
    return 0


# switch ------------------------------------------------------------------------------------
def current_flavor(ctx: Context) -> str:
    state = ctx.store.load()
    return state.device(visible_device(state)).flavor


def cmd_switch(ctx: Context, args, out) -> int:
    from moai_tui.text.switch import numbered_protocol

    catalog = ctx.catalog
    current_flavor(ctx)  # a broken state file or a bad MOREH_VISIBLE_DEVICE fails before any I/O
    if args.model is not None:
        flavor = catalog.resolve(args.model)
        actions.switch_flavor(ctx, flavor.name)
        out.write(SWITCHED.format(name=flavor.name) + "\n")
        return 0
    if sys.stdin.isatty() and out.isatty():
        return switch_with_picker(ctx, out)
    numbered_protocol(
        catalog,
        lambda: current_flavor(ctx),
        lambda name: actions.switch_flavor(ctx, name),
        sys.stdin,
        out,
        echo=sys.stdin.isatty(),
    )
    return 0


def switch_with_picker(ctx: Context, out) -> int:
    """On a terminal: the picker screen instead of the numbered prompt; 0 on a switch or a
    cancel, 1 on a refusal (printed after the screen is gone)."""
    from moai_tui.tui.app import PickerApp, follow_terminal_size

    state = ctx.store.load()
    device = visible_device(state)
    try:  # "fits now" needs a sample; without one the picker still lists the catalog
        snapshot = ctx.backend.sample(())
    except MoaiError as error:
        print(f"{PROG}: {error}; showing the catalog without availability", file=sys.stderr)
        snapshot = None
    follow_terminal_size()
    chosen = PickerApp(ctx.catalog, device, state.device(device).flavor, snapshot).run()
    if chosen:
        actions.switch_flavor(ctx, chosen)
        out.write(SWITCHED.format(name=chosen) + "\n")
    return 0


# device ------------------------------------------------------------------------------------
def cmd_device(ctx: Context, args, out) -> int:
    if args.list:
        from moai_tui.text.smi import render_devices
        from moai_tui.view import device_views

        state = ctx.store.load()
        snapshot = ctx.backend.sample(state.jobs)
        views = device_views(state.devices, visible_device(state), ctx.flavors, snapshot)
        out.write("\n".join(render_devices(views, snapshot)) + "\n")
        return 0
    if args.add is not None:
        return add_device(ctx, args.add, out)
    if args.rm is not None:
        return remove_device(ctx, args.rm, out)
    return choose_current(ctx, args.switch, out)


def add_device(ctx: Context, flavor_text: str, out) -> int:
    def add(state: State) -> State:
        free = [i for i in range(MAX_DEVICES) if state.device(i) is None]
        if not free:
            raise RefusedError(
                f"cannot create a device: at most {MAX_DEVICES} per user (0-{MAX_DEVICES - 1}); "
                "remove one with 'moai-tui device --rm ID'"
            )
        name = (
            ctx.catalog.resolve(flavor_text).name
            if flavor_text
            else state.device(state.current).flavor
        )
        devices = tuple(sorted((*state.devices, Device(free[0], name)), key=lambda d: d.id))
        return State(devices, state.current, state.jobs, state.theme)

    ctx.store.update(add)
    out.write(CREATE_OK + "\n")
    return 0


def remove_device(ctx: Context, requested: int, out) -> int:
    def remove(state: State) -> State:
        device = actions.existing_device(state, requested)
        if len(state.devices) == 1:
            raise RefusedError(f"cannot remove device {device}: it is your only device")
        if state.job_on(device) is not None:
            raise RefusedError(
                f"cannot remove device {device}: a job runs on it; stop it with 'moai-tui smi -r'"
            )
        devices = tuple(d for d in state.devices if d.id != device)
        current = state.current if state.current != device else devices[0].id
        return State(devices, current, state.jobs, state.theme)

    ctx.store.update(remove)
    out.write(REMOVE_OK + "\n")
    return 0


def choose_current(ctx: Context, requested: int, out) -> int:
    if requested < 0:
        state = ctx.store.load()
        out.write(f"Devices: {', '.join(str(d.id) for d in state.devices)}\nDevice ID: ")
        out.flush()
        line = sys.stdin.readline().strip()
        if not is_number(line):
            raise UsageError(f"invalid device id {line!r}: type one of the numbers listed")
        requested = int(line)
    actions.make_current(ctx, requested)
    out.write(CURRENT_OK + "\n")
    return 0


# sim ---------------------------------------------------------------------------------------
def cmd_sim(ctx: Context, args, out) -> int:
    if args.sim_command == "stop":
        actions.release(ctx, args.device)
        out.write(RELEASE_OK + "\n")
        return 0
    from moai_tui.backends.simulator import sim_clock

    rng = random.SystemRandom()
    started: list[JobRequest] = []

    def start(state: State) -> State:
        device = actions.existing_device(state, args.device)
        holder = state.job_on(device)
        if holder is not None:
            raise RefusedError(
                f"device {device} is in use by job {holder.job_id} ({holder.command}); "
                f"stop it first with 'moai-tui sim stop --device {device}'"
            )
        flavor = ctx.catalog.get(state.device(device).flavor)
        if flavor is None:
            raise UsageError(f"device {device}'s flavor is not in the catalog: switch it first")
        taken = {j.job_id for j in state.jobs}
        job_id = rng.choice([n for n in rng.sample(range(100000, 1000000), 8) if n not in taken])
        job = JobRequest(
            job_id,
            rng.randrange(10000, 4000000),
            device,
            args.job_command,
            flavor.gpus,
            flavor.nodes,
            sim_clock(),
            getpass.getuser(),
            "sim",
        )
        started.append(job)
        return State(state.devices, state.current, (*state.jobs, job), state.theme)

    state = ctx.store.update(start)
    job = started[0]
    out.write(f"Job {job.job_id} (PID {job.pid}) submitted on device {job.device}: {job.command}\n")
    placed = ctx.backend.sample(state.jobs).job_on_device(job.device)
    if placed is not None and placed.waiting:
        out.write(NO_RESOURCES + "\n")
    return 0


# run, record -------------------------------------------------------------------------------
def cmd_run(ctx: Context, args, out) -> int:
    from moai_tui.launcher import run_command

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    return run_command(ctx, argv, wait=not args.no_wait)


def cmd_record(ctx: Context, args, out) -> int:
    from moai_tui.backends.replay import record

    if not args.seconds > 0 or not args.interval > 0:
        raise UsageError("--seconds and --interval must be positive numbers")
    try:
        handle = args.out.open("w", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {args.out}: {error.strerror}") from None
    with handle:
        count = record(
            ctx.backend,
            lambda: prune_dead_jobs(ctx.store.load()).jobs,
            handle,
            args.seconds,
            args.interval,
        )
    out.write(f"Recorded {count} samples of the {ctx.backend.name} backend to {args.out}.\n")
    return 0


def cmd_exporter(ctx: Context, args, out) -> int:
    from moai_tui.exporter import serve

    def sample():
        return ctx.backend.sample(prune_dead_jobs(ctx.store.load()).jobs)

    def announce(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return serve(sample, args.listen, args.node, announce)


# entry -------------------------------------------------------------------------------------
def run_dashboard(ctx: Context, args) -> int:
    """Check the options, start the first sample, and only then import the UI: the sample
    runs while Textual loads, so the first frame already shows data."""
    from moai_tui.config import MIN_INTERVAL
    from moai_tui.sampling import HostProbe, Sampler

    interval = args.interval if args.interval is not None else ctx.config.interval
    if not interval >= MIN_INTERVAL:
        raise UsageError(f"--interval must be at least {MIN_INTERVAL} seconds")
    ctx.catalog  # a bad catalog is reported before the screen changes  # noqa: B018
    sampler = Sampler(ctx, HostProbe())
    first = sampler.first(history_s=600.0, step=interval)
    from moai_tui.tui.app import run_app

    return run_app(ctx, interval, args.theme, sampler, first)


COMMANDS = {
    "smi": cmd_smi,
    "switch": cmd_switch,
    "device": cmd_device,
    "sim": cmd_sim,
    "run": cmd_run,
    "record": cmd_record,
    "exporter": cmd_exporter,
}


def main(argv: list[str] | None = None) -> int:
    out = sys.stdout
    try:
        args = build_parser().parse_args(argv)
        ctx = Context(
            backend_spec=args.backend, catalog_path=args.catalog, prometheus_url=args.prometheus_url
        )
        if args.command is None:
            # Not closed on the way out: the poller thread may still be inside the backend.
            return run_dashboard(ctx, args)
        try:
            return COMMANDS[args.command](ctx, args, out)
        finally:
            ctx.close()
    except ToolMessage as error:
        print(error, file=sys.stderr)
        return error.exit_code
    except MoaiError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`moai-tui smi | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
