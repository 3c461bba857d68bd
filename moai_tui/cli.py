"""`moai-tui` and its plain-text commands. The Textual app is imported only by the dashboard."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

from moai_tui import __version__, actions
from moai_tui.context import Context
from moai_tui.errors import MoaiError, ToolMessage, UsageError
from moai_tui.parsing import is_number
from moai_tui.state import MAX_DEVICES, prune_dead_jobs, visible_device
from moai_tui.text.messages import (
    CREATE_OK,
    CURRENT_OK,
    NO_RESOURCES,
    RELEASE_OK,
    REMOVE_OK,
    SWITCHED,
)

PROG = "moai-tui"
BACKEND_HELP = (
    "auto (default), simulator, nvml, amdsmi, prometheus, slurm, replay:FILE[@SPEED], snapshot:FILE"
)
PROMETHEUS_HELP = (
    "Prometheus server for --backend prometheus, or the GPU readings of --backend slurm "
    "(or MOAI_TUI_PROMETHEUS_URL)"
)
CATALOG_HELP = "flavor catalog TOML replacing the built-in one"
READ_ONLY_HELP = "show everything, change nothing: no flavor switch, device change or job stop"


# `device --add` / `--rm` / `--switch` given without a value: ask for one. Not a string, so
# argparse never converts it, and nothing a user types can be it.
ASK = object()
CANCELLED = object()  # q at a menu: nothing done, nothing to report


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, as for every other bad input
        raise UsageError(f"{message} (see '{self.prog} --help')")


def device_id(text: str) -> int:
    """A device id as typed: a number (whether it exists is the state's to say), never a
    negative one."""
    if not is_number(text.strip()):
        raise argparse.ArgumentTypeError(f"invalid device id {text!r}: one of 0-{MAX_DEVICES - 1}")
    return int(text)


def is_terminal() -> bool:
    return sys.stdin.isatty()


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Watch and size a MoAI accelerator.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--backend", help=BACKEND_HELP)
    parser.add_argument("--catalog", type=Path, help=CATALOG_HELP)
    parser.add_argument("--prometheus-url", metavar="URL", help=PROMETHEUS_HELP)
    parser.add_argument("--interval", type=float, help="seconds between refreshes (0.25-10)")
    parser.add_argument("--theme", help="theme name (see themes/)")
    parser.add_argument("--read-only", action="store_true", help=READ_ONLY_HELP)
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
    smi.add_argument("-i", type=int, metavar="IDX", help="only device IDX (-r: stop its job)")
    smi.add_argument("-r", "--reset", action="store_true", help="stop the job, release the GPUs")
    smi.add_argument("-v", "--version", action="store_true", help="print the platform version")
    smi.add_argument("--json", action="store_true", help="machine-readable (schema moai-tui/smi-1)")

    switch = sub.add_parser("switch", parents=[common], help="change the accelerator's flavor")
    chosen = switch.add_mutually_exclusive_group()
    chosen.add_argument("-M", "--model", metavar="N|NAME", help="flavor number or name")
    chosen.add_argument("--list", action="store_true", help="print the numbered flavors")

    device = sub.add_parser("device", parents=[common], help="the user's accelerators (0-4)")
    action = device.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list devices")
    action.add_argument(
        "--add",
        nargs="?",
        const=ASK,
        metavar="FLAVOR",
        help="create a device (no FLAVOR: a menu on a terminal, else the current device's)",
    )
    action.add_argument(
        "--rm",
        nargs="?",
        const=ASK,
        type=device_id,
        metavar="ID",
        help="remove a device (no ID: asks, on a terminal only)",
    )
    action.add_argument(
        "--switch",
        nargs="?",
        const=ASK,
        type=device_id,
        metavar="ID",
        help="make a device current (no ID: asks)",
    )

    run = sub.add_parser("run", parents=[common], help="run a command on the flavor's GPUs")
    run.add_argument("--no-wait", action="store_true", help="fail instead of waiting for GPUs")
    for option, what in (
        ("--partition", "Slurm partition"),
        ("--account", "Slurm account"),
        ("--time", "Slurm time limit, e.g. 2:00:00"),
        ("--qos", "Slurm quality of service"),
    ):
        run.add_argument(option, metavar=option[2:].upper(), help=f"{what} (srun {option})")
    run.add_argument(
        "--srun-option",
        action="append",
        default=[],
        metavar="OPT",
        help="any other srun option, e.g. --srun-option=--exclusive (repeatable)",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")

    rec = sub.add_parser("record", parents=[common], help="record samples as JSON lines")
    rec.add_argument("--out", required=True, type=Path, help="file to write")
    rec.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    rec.add_argument("--interval", type=float, default=1.0, help="seconds between samples")

    exporter = sub.add_parser(
        "exporter",
        parents=[common],
        help="serve samples as dcgm-exporter (or AMD exporter) metrics for Prometheus",
    )
    exporter.add_argument(
        "--listen",
        default="127.0.0.1:9400",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:9400, loopback only)",
    )
    exporter.add_argument("--node", help="serve only this node of the cluster")
    exporter.add_argument(
        "--names",
        choices=("dcgm", "amd"),
        help="metric names: dcgm-exporter's, or AMD device-metrics-exporter's "
        "(default: amd on the amdsmi backend, dcgm elsewhere)",
    )

    sim = sub.add_parser("sim", help="start or stop simulated jobs on your accelerator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, parser_class=ArgumentParser)
    start = sim_sub.add_parser("start", parents=[common], help="start a simulated job")
    start.add_argument("job_command", metavar="COMMAND", help='e.g. "python train.py"')
    start.add_argument("--device", type=device_id, help="device id (default: current)")
    stop = sim_sub.add_parser("stop", parents=[common], help="stop the simulated job")
    stop.add_argument("--device", type=device_id, help="device id (default: current)")

    # serve: the dashboard in a browser (moai_tui/serve.py, the `web` extra)
    serve = sub.add_parser(
        "serve", parents=[common], help="the dashboard in a browser (pip install 'moai-tui[web]')"
    )
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8000, loopback only; port 0: any free one)",
    )
    serve.add_argument(
        "--token",
        nargs="?",
        const="",
        metavar="T",
        help="require this token in the URL (--token alone: generate one and print it); "
        "needed on a non-loopback address",
    )
    serve.add_argument(
        "--read-only", action="store_true", default=argparse.SUPPRESS, help=READ_ONLY_HELP
    )
    serve.add_argument(
        "--interval", type=float, default=argparse.SUPPRESS, help="the dashboards' refresh (s)"
    )
    serve.add_argument("--theme", default=argparse.SUPPRESS, help="the dashboards' theme")
    return parser


# smi ---------------------------------------------------------------------------------------
def cmd_smi(ctx: Context, args, out) -> int:
    from moai_tui.pipeline import take_sample
    from moai_tui.text.safe import printable
    from moai_tui.text.smi import render_gpus, render_smi, smi_document

    if args.reset:
        actions.release(ctx, args.i)
        out.write(RELEASE_OK + "\n")
        return 0
    sample = take_sample(ctx)
    snapshot = sample.snapshot
    if args.version:
        # The version is a backend's label (Prometheus's, a recording's): never raw.
        out.write(printable(f"{snapshot.platform} {snapshot.version_current}") + "\n")
        return 0
    views = list(sample.views)
    if args.i is not None:
        views = [v for v in views if v.device == args.i]
        if not views:
            raise UsageError(
                f"no device {args.i}: your devices are {[d.id for d in sample.state.devices]}"
            )
    if args.json:
        json.dump(smi_document(views, snapshot, sample.current), out, indent=1)
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
    from moai_tui.text.switch import numbered_protocol, render_menu

    catalog = ctx.catalog
    current = current_flavor(ctx)  # a broken state file or MOREH_VISIBLE_DEVICE fails first
    if args.list:
        out.write(render_menu(catalog, current))
        return 0
    if args.model is not None:
        flavor = catalog.resolve(args.model)
        actions.switch_flavor(ctx, flavor.name)
        out.write(SWITCHED.format(name=flavor.name) + "\n")
        return 0
    if is_terminal() and out.isatty():
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
    from moai_tui.tui.themes import load_themes

    state = ctx.store.load()
    device = visible_device(state)
    try:  # "fits now" needs a sample; without one the picker still lists the catalog
        snapshot = ctx.sample(())
    except MoaiError as error:
        print(f"{PROG}: {error}; showing the catalog without availability", file=sys.stderr)
        snapshot = None
    themes = load_themes()  # a bad theme file is one line here, not a traceback in the UI
    holder = state.job_on(device)
    busy = (holder.job_id, holder.command) if holder is not None else None
    follow_terminal_size()
    chosen = PickerApp(
        ctx.catalog, device, state.device(device).flavor, snapshot, themes, busy
    ).run()
    if chosen:
        actions.switch_flavor(ctx, chosen)
        out.write(SWITCHED.format(name=chosen) + "\n")
    return 0


# device ------------------------------------------------------------------------------------
def cmd_device(ctx: Context, args, out) -> int:
    if args.list:
        from moai_tui.pipeline import take_sample
        from moai_tui.text.smi import render_devices

        sample = take_sample(ctx)
        out.write("\n".join(render_devices(sample.views, sample.snapshot)) + "\n")
        return 0
    if args.add is not None:
        flavor = chosen_flavor(ctx, args.add, out)
        if flavor is CANCELLED:
            return 0
        actions.add_device(ctx, flavor)
        out.write(CREATE_OK + "\n")
        return 0
    if args.rm is not None:
        if args.rm is ASK and not is_terminal():
            raise UsageError(
                "device --rm without an ID asks which device on a terminal only: "
                "name it, e.g. moai-tui device --rm 1 (moai-tui device --list shows them)"
            )
        actions.remove_device(ctx, ask_device(ctx, out) if args.rm is ASK else args.rm)
        out.write(REMOVE_OK + "\n")
        return 0
    actions.make_current(ctx, ask_device(ctx, out) if args.switch is ASK else args.switch)
    out.write(CURRENT_OK + "\n")
    return 0


def chosen_flavor(ctx: Context, typed: object, out) -> str | object | None:
    """The flavor for `device --add`: the one typed; with none, the numbered menu on a terminal
    (as moreh-smi does: q leaves, CANCELLED), else None: the visible device's flavor."""
    if typed is not ASK:
        return ctx.catalog.resolve(typed).name
    if not is_terminal():
        return None
    from moai_tui.text.switch import prompt, render_menu

    catalog = ctx.catalog
    out.write(render_menu(catalog, current_flavor(ctx)) + "\n" + prompt(catalog))
    out.flush()
    line = sys.stdin.readline().strip()
    if line in ("q", "Q", ""):
        return CANCELLED
    if not is_number(line) or not 1 <= int(line) <= len(catalog):
        raise UsageError(f"invalid selection {line!r}: type a number from 1 to {len(catalog)}")
    return catalog.flavors[int(line) - 1].name


def ask_device(ctx: Context, out) -> int:
    """moreh-smi's prompt for a device id."""
    state = ctx.store.load()
    out.write(f"Devices: {', '.join(str(d.id) for d in state.devices)}\nDevice ID: ")
    out.flush()
    line = sys.stdin.readline().strip()
    if not is_number(line):
        raise UsageError(f"invalid device id {line!r}: type one of the numbers listed")
    return int(line)


# sim ---------------------------------------------------------------------------------------
def cmd_sim(ctx: Context, args, out) -> int:
    from moai_tui.text.safe import printable

    if args.sim_command == "stop":
        actions.release(ctx, args.device)
        out.write(RELEASE_OK + "\n")
        return 0
    job = actions.start_sim_job(ctx, args.job_command, args.device)
    shown = printable(job.command)  # ESC[2J in a command must not clear the terminal
    out.write(f"Job {job.job_id} (PID {job.pid}) submitted on device {job.device}: {shown}\n")
    placed = ctx.sample(ctx.store.load().jobs).job_on_device(job.device)
    if placed is not None and placed.waiting:
        out.write(NO_RESOURCES + "\n")
    return 0


# run, record -------------------------------------------------------------------------------
def cmd_run(ctx: Context, args, out) -> int:
    from moai_tui.launcher import run_command

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    return run_command(ctx, argv, wait=not args.no_wait, slurm=slurm_flags(ctx, args))


def slurm_flags(ctx: Context, args):
    """config.toml's [slurm] with run's srun flags on top, or None when none was given."""
    named = {k: getattr(args, k) for k in ("partition", "account", "time", "qos")}
    given = {k: v for k, v in named.items() if v is not None}
    if not given and not args.srun_option:
        return None
    for key, value in given.items():
        if not value.strip() or value.startswith("-"):
            raise UsageError(f"--{key} needs a value, got {value!r}")
    bad = [o for o in args.srun_option if not o.startswith("-")]
    if bad:
        raise UsageError(
            f"--srun-option takes an option like --srun-option=--exclusive, got {bad[0]!r}"
        )
    settings = ctx.config.slurm
    options = settings.srun_options + tuple(args.srun_option)
    return replace(settings, **given, srun_options=options)


def cmd_record(ctx: Context, args, out) -> int:
    from moai_tui.backends.replay import record

    if not 0 < args.seconds < math.inf or not 0 < args.interval < math.inf:
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
    from moai_tui.pipeline import take_sample

    def sample():  # cleaned, as smi and the dashboard show it: impossible values left out
        return take_sample(ctx).snapshot

    def announce(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    names = args.names or ("amd" if ctx.backend.name == "amdsmi" else "dcgm")
    return serve(sample, args.listen, args.node, announce, names)


def cmd_serve(ctx: Context, args, out) -> int:
    from moai_tui.serve import serve  # one line naming the extra if it is missing

    interval = dashboard_interval(ctx, args)
    if args.theme is not None:
        from moai_tui.tui.themes import load_themes

        themes = load_themes()
        if args.theme not in themes:
            raise UsageError(
                f"unknown theme {args.theme!r}: choose one of {', '.join(sorted(themes))}"
            )
    # A bad catalog or backend is reported here, not in every browser.
    ctx.backend  # noqa: B018
    ctx.catalog  # noqa: B018
    argv = [sys.executable, "-m", "moai_tui", "--interval", str(interval)]
    for option, value in (
        ("--backend", args.backend),
        ("--catalog", args.catalog and args.catalog.resolve()),
        ("--prometheus-url", args.prometheus_url),
        ("--theme", args.theme),
    ):
        if value is not None:
            argv += [option, str(value)]
    if args.read_only:
        argv.append("--read-only")

    def announce(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return serve(argv, args.listen, args.token, announce)


# entry -------------------------------------------------------------------------------------
def dashboard_interval(ctx: Context, args) -> float:
    from moai_tui.config import check_interval

    if args.interval is None:
        return ctx.config.interval
    return check_interval(args.interval, "--interval")


def run_dashboard(ctx: Context, args) -> int:
    """Check the options, start the first sample, and only then import the UI: the sample
    runs while Textual loads, so the first frame already shows data."""
    from moai_tui.sampling import HostProbe, Sampler
    from moai_tui.tui.lifecycle import require_terminal

    interval = dashboard_interval(ctx, args)
    ctx.catalog  # a bad catalog is reported before the screen changes  # noqa: B018
    require_terminal()  # after the options: a bad one is named even on a pipe
    sampler = Sampler(ctx, HostProbe())
    # The first sample fetches GPU by GPU only the devices' nodes (a large cluster's first frame
    # is then quick); the grid names the nodes it shows as soon as it has drawn.
    ctx.set_detail(())
    first = sampler.first(history_s=600.0, step=interval)
    from moai_tui.tui.app import run_app

    return run_app(ctx, interval, args.theme, sampler, first, args.read_only)


COMMANDS = {
    "smi": cmd_smi,
    "switch": cmd_switch,
    "device": cmd_device,
    "sim": cmd_sim,
    "run": cmd_run,
    "record": cmd_record,
    "exporter": cmd_exporter,
    "serve": cmd_serve,
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
