"""Mutation score of the modules the reliability claims rest on, with cosmic-ray (PyPI).

    pip install -e '.[mutation]'
    nice -n 10 python3 -m benchmarks.mutation                # all modules, --jobs 2
    nice -n 10 python3 -m benchmarks.mutation view validate  # some of them

Each module's mutants run against that module's own test files only (MODULES below), and at
most SAMPLE of them, drawn with a fixed seed from all the module's mutants (every one where there
are fewer), so a run finishes in reasonable time on two shared cores; the score says how well
those files guard the module. The same code gives the same sample, so before/after passes on an
unchanged module compare the same mutants.
The run happens in a copy of the tree (tracked and untracked-but-not-ignored files) under a
temporary directory, never in the working tree. The copy comes first on PYTHONPATH, so the
`moai-tui` that tests start in subprocesses imports the mutant too (checked before each run).

Operators: one replacement per site, as mutmut makes them (`+` -> `-`, `<` -> `<=`, `==` -> `!=`,
`and` -> `or`, `not` added or removed, True <-> False, numbers +-1, `break` <-> `continue`, a loop
run zero times, an `except` that catches nothing). Bit operators are left out: in this code they
appear in type hints (`int | None`), never evaluated, so every such mutant is equivalent.

pytest runs with plugin autoloading off (the textual snapshot plugin alone costs about 2 s a run
here); the test files named need none. A mutant counts as killed when the tests fail or time out
(cosmic-ray's rule). Raw results go
to benchmarks/raw/mutation-<module>.json (every mutant, its diff and outcome); the score table
goes into benchmarks/results.md (its own section) and is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import write_section

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "benchmarks" / "raw"
SAMPLE = 60
SEED = 14

# module -> (source file, its test files: the most direct first, since a run stops at the
# first failure)
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "view": ("moai_tui/view.py", ("tests/test_view.py", "tests/test_smi.py", "tests/test_nvml.py")),
    "validate": (
        "moai_tui/validate.py",
        ("tests/test_validate.py", "tests/test_properties.py", "tests/test_smi.py"),
    ),
    "smi": (
        "moai_tui/text/smi.py",
        ("tests/test_smi_text.py", "tests/test_smi.py", "tests/test_nvml.py"),
    ),
    "state": (
        "moai_tui/state.py",
        (
            "tests/test_state_rules.py",
            "tests/test_switch_device.py",
            "tests/test_properties.py",
            "tests/test_hardening.py",
            "--deselect=tests/test_hardening.py::test_reliability_table_names_only_tests_that_exist",
            "--deselect=tests/test_hardening.py::test_reliability_table_check_catches_wrong_names",
        ),
    ),
    "prometheus": ("moai_tui/backends/prometheus.py", ("tests/test_prometheus_unit.py",)),
    "launcher": ("moai_tui/launcher.py", ("tests/test_run.py",)),
}

KEPT_OPERATORS = {
    "core/ReplaceBinaryOperator_Add_Sub",
    "core/ReplaceBinaryOperator_Sub_Add",
    "core/ReplaceBinaryOperator_Mul_Div",
    "core/ReplaceBinaryOperator_Div_Mul",
    "core/ReplaceBinaryOperator_FloorDiv_Div",
    "core/ReplaceBinaryOperator_Mod_FloorDiv",
    "core/ReplaceBinaryOperator_Pow_Mul",
    "core/ReplaceComparisonOperator_Eq_NotEq",
    "core/ReplaceComparisonOperator_NotEq_Eq",
    "core/ReplaceComparisonOperator_Lt_LtE",
    "core/ReplaceComparisonOperator_LtE_Lt",
    "core/ReplaceComparisonOperator_Gt_GtE",
    "core/ReplaceComparisonOperator_GtE_Gt",
    "core/ReplaceComparisonOperator_Is_IsNot",
    "core/ReplaceComparisonOperator_IsNot_Is",
    "core/ReplaceUnaryOperator_USub_UAdd",
    "core/ReplaceUnaryOperator_Delete_Not",
    "core/AddNot",
    "core/ReplaceTrueWithFalse",
    "core/ReplaceFalseWithTrue",
    "core/ReplaceAndWithOr",
    "core/ReplaceOrWithAnd",
    "core/ReplaceBreakWithContinue",
    "core/ReplaceContinueWithBreak",
    "core/NumberReplacer",
    "core/ExceptionReplacer",
    "core/ZeroIterationForLoop",
}


def cosmic(*args: str, cwd: Path, env: dict) -> str:
    exe = Path(sys.executable).with_name("cosmic-ray")
    result = subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"cosmic-ray {args[0]} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def copy_tree(into: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = into / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def excluded_operators(env: dict, cwd: Path) -> list[str]:
    every = cosmic("operators", cwd=cwd, env=env).split()
    unknown = KEPT_OPERATORS - set(every)
    if unknown:
        raise RuntimeError(f"this cosmic-ray has no operator {sorted(unknown)}")
    return [f"^{name}$" for name in every if name not in KEPT_OPERATORS]


def test_command(tests: tuple[str, ...]) -> list[str]:
    # The plugin: hypothesis without its example database, so one mutant's failing examples
    # are not replayed against the next, and with a fixed seed.
    return [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "benchmarks.mutation_plugin",
        *tests,
    ]


def run_module(name: str, tree: Path) -> dict:
    source, tests = MODULES[name]
    work = Path(tempfile.mkdtemp(prefix=f"moai-mutation-{name}-"))
    try:
        shutil.copytree(tree, work, dirs_exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": str(work),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        # What the `moai-tui` console script on PATH imports, as the tests start it.
        script = shutil.which("moai-tui")
        if script is None:
            raise RuntimeError("moai-tui is not installed: pip install -e '.[mutation]'")
        probe = subprocess.run(
            [sys.executable, "-c", "import moai_tui; print(moai_tui.__file__)"],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not probe.startswith(str(work)):
            raise RuntimeError(f"the copy is not what python imports: {probe}")
        tests = tuple(t for t in tests if t.startswith("-") or (work / t).exists())
        command = test_command(tests)
        for _attempt in (1, 2):  # twice: a timing test may fail once on a loaded machine
            started = time.perf_counter()
            baseline = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
            baseline_s = time.perf_counter() - started
            if baseline.returncode == 0:
                break
        else:
            raise RuntimeError(f"{name}: the tests fail without any mutant:\n{baseline.stdout}")
        config = work / "mutation.toml"
        exclude = excluded_operators(env, work)
        config.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(source)}\n"
            f"timeout = {2 * baseline_s + 15:.0f}.0\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(' '.join(command))}\n"
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
            "[cosmic-ray.filters.operators-filter]\n"
            f"exclude-operators = {json.dumps(exclude)}\n"
        )
        session = work / "session.sqlite"
        cosmic("init", str(config), str(session), cwd=work, env=env)
        subprocess.run(
            [str(Path(sys.executable).with_name("cr-filter-operators")), str(session), str(config)],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        drawn = sample(session)
        started = time.perf_counter()
        cosmic("exec", str(config), str(session), cwd=work, env=env)
        elapsed = time.perf_counter() - started
        mutants = []
        for line in cosmic("dump", str(session), cwd=work, env=env).splitlines():
            item, result = json.loads(line)
            if result is None or result["worker_outcome"] == "skipped":
                continue
            (mutation,) = item["mutations"]
            mutants.append(
                {
                    "operator": mutation["operator_name"],
                    "occurrence": mutation["occurrence"],
                    "line": mutation["start_pos"][0],
                    "function": mutation["definition_name"],
                    "outcome": result["test_outcome"] or result["worker_outcome"],
                    "timeout": result["output"] == "timeout",
                    "diff": result["diff"],
                }
            )
        mutants.sort(key=lambda m: (m["line"], m["operator"], m["occurrence"]))
        killed = sum(m["outcome"] == "killed" for m in mutants)
        survived = sum(m["outcome"] == "survived" for m in mutants)
        return {
            "module": name,
            "source": source,
            "tests": list(tests),
            "mutants": len(mutants),
            "of": drawn,
            "killed": killed,
            "survived": survived,
            "other": len(mutants) - killed - survived,
            "timeouts": sum(m["timeout"] for m in mutants),
            "score": killed / (killed + survived) if killed + survived else None,
            "baseline_s": round(baseline_s, 1),
            "elapsed_s": round(elapsed),
            "results": mutants,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sample(session: Path) -> int:
    """Leave at most SAMPLE of the session's pending mutants, drawn with a fixed seed from the
    mutants sorted by place and operator; the others are marked skipped. Returns how many
    there were."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = sorted(
            db.pending_work_items,
            key=lambda item: [
                (str(m.module_path), m.start_pos, m.operator_name, m.occurrence)
                for m in item.mutations
            ],
        )
        keep = {
            item.job_id for item in random.Random(SEED).sample(pending, min(SAMPLE, len(pending)))
        }
        for item in pending:
            if item.job_id not in keep:
                db.set_result(
                    item.job_id,
                    WorkResult(output="not in the sample", worker_outcome=WorkerOutcome.SKIPPED),
                )
        return len(pending)


def commit_id() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True).stdout
    return head + ("+changes" if dirty else "")


def table() -> str:
    """Every recorded pass (benchmarks/raw/mutation-*.json), each row with its own commit."""
    passes = [json.loads(f.read_text()) for f in sorted(RAW.glob("mutation-*.json"))]
    order = list(MODULES)
    passes.sort(key=lambda r: (order.index(r["module"]), r["label"] != "before", r["label"]))
    lines = [
        "## Mutation score",
        "",
        "`nice -n 10 python3 -m benchmarks.mutation [--label L] [MODULE ...]` (cosmic-ray): each "
        f"module's mutants against its own test files, a seeded sample of at most {SAMPLE} of "
        "them; score = killed / (killed + survived). Every mutant run, with its diff and "
        "outcome: `benchmarks/raw/mutation-<module>-<label>.json`. Time: wall time of the run "
        "on this 2-core machine under `nice -n 10`, shared with other work.",
        "",
        "| module | pass | commit | test files | mutants run (of) | killed | survived | score | time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in passes:
        score = "-" if r["score"] is None else f"{100 * r['score']:.1f} %"
        files = ", ".join(Path(t).name for t in r["tests"] if not t.startswith("-"))
        lines.append(
            f"| {r['source']} | {r['label']} | {r['commit']} | {files} | "
            f"{r['mutants']} ({r['of']}) | "
            f"{r['killed']} | {r['survived']} | {score} | {r['elapsed_s'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (default all)")
    parser.add_argument("--jobs", type=int, default=2, help="modules run side by side")
    parser.add_argument("--label", default="latest", help="name of this pass, e.g. before")
    parser.add_argument(
        "--table", action="store_true", help="only rewrite the table from benchmarks/raw"
    )
    args = parser.parse_args()
    if args.table:
        write_section(ROOT / "benchmarks" / "results.md", "mutation", table())
        return 0
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"no module {', '.join(sorted(unknown))}; choose from {', '.join(MODULES)}")
    commit = commit_id()
    failed = []

    def run_and_keep(name: str) -> None:
        """One module, its results written as soon as it is done: a module that fails leaves
        the others' results."""
        try:
            r = run_module(name, tree)
        except Exception as error:  # noqa: BLE001 - reported, and the run exits 1
            failed.append(f"{name}: {error}")
            return
        print(f"{r['source']}: {r['killed']}/{r['killed'] + r['survived']} killed", flush=True)
        RAW.mkdir(exist_ok=True)
        (RAW / f"mutation-{name}-{args.label}.json").write_text(
            json.dumps({"label": args.label, "commit": commit, **r}, indent=1) + "\n"
        )

    tree = Path(tempfile.mkdtemp(prefix="moai-mutation-tree-"))
    try:
        copy_tree(tree)  # once: the tree as it is now, whatever changes while this runs
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(run_and_keep, args.modules or list(MODULES)))
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    for line in failed:
        print(line, file=sys.stderr)
    text = table()
    print(text)
    write_section(ROOT / "benchmarks" / "results.md", "mutation", text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
