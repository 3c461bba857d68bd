"""What Slurm's commands print, read into plain records: pure functions, no I/O.

Two sources, each tested on recorded answers of several Slurm versions:

- JSON (`squeue --json`, `scontrol --json show nodes`, `sinfo --json` up to 22.05). The shape
  drifts between data_parser versions, so every field is read tolerantly: `job_state` is a string
  up to v0.0.39 and a list from v0.0.40; numbers are plain up to v0.0.38 and
  `{"set", "infinite", "number"}` objects from v0.0.39; node states are a lowercase word plus
  `state_flags` in v0.0.38 and an uppercase list from v0.0.39; TRES requests read `gres:gpu:4`
  before 23.11 and `gres/gpu:4` after.
- Text (`scontrol show nodes -o -d`, `scontrol -d show job -o`), for versions without JSON or
  when JSON fails: one `Key=Value` line per record, times as epoch seconds (the caller sets
  SLURM_TIME_FORMAT=%s).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Job states that hold GPUs, and the one that waits for them; anything else has ended.
HOLDING = frozenset({"RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING", "STOPPED"})
WAITING = "PENDING"
# Node base states and flags that mean the node cannot run anything now.
DOWN_STATES = frozenset({"down", "error", "future", "unknown", "invalid"})
DOWN_FLAGS = frozenset({"NOT_RESPONDING", "POWERING_DOWN"})


class ParseError(ValueError):
    """An answer that is not what the version said it would be; the message says what."""


@dataclass(frozen=True)
class SlurmNode:
    name: str
    hostname: str
    gpus: int  # GPUs in the node's GRES (all types)
    gpu_types: tuple[str, ...]  # the type of each GPU index, "" where untyped
    state: str  # idle, mixed, allocated, completing, draining, drained, failing, down, ...
    up: bool  # False: the node cannot run anything now (down, not responding, future)
    reason: str
    used: tuple[int, ...] | None  # GPU indices in use (gres_used IDX), None where not said


@dataclass(frozen=True)
class SlurmJob:
    job_id: int
    name: str
    user: str
    state: str  # RUNNING, PENDING, COMPLETING, ... (the base state, or COMPLETING)
    reason: str  # why it waits ("Resources", "Priority", ...); "" when running
    gpus: tuple[tuple[str, int], ...]  # (node, GPU index) it holds
    gpus_wanted: int
    nodes_wanted: int
    submitted: float
    started: float
    command: str

    @property
    def waiting(self) -> bool:
        return self.state == WAITING


# Hostlists, GRES strings ----------------------------------------------------------------------
def split_top(text: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside brackets and parentheses: `a[1,2],b(IDX:0,1)`."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (part.strip() for part in parts) if p]


def _ranges(text: str) -> list[str]:
    """`01-03,7` -> ['01', '02', '03', '7'], keeping each range's zero padding."""
    out = []
    for item in text.split(","):
        low, dash, high = item.strip().partition("-")
        if not dash:
            out.append(low)
            continue
        if not (low.isdigit() and high.isdigit()) or int(high) < int(low):
            raise ParseError(f"bad hostlist range {item!r}")
        width = len(low)
        out.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return out


def expand_hostlist(text: str) -> list[str]:
    """Slurm's hostlist grammar: `gpu[01-04,07]`, `rack[1-2]-n[1-2]`, `a,b[1-2]`, in order."""
    if not text or text in ("(null)", "None", "N/A"):
        return []
    hosts: list[str] = []
    for item in split_top(text):
        expanded = [""]
        rest = item
        while rest:
            open_at = rest.find("[")
            if open_at < 0:
                expanded = [e + rest for e in expanded]
                break
            close_at = rest.find("]", open_at)
            if close_at < 0:
                raise ParseError(f"unbalanced hostlist {text!r}")
            prefix, inner, rest = rest[:open_at], rest[open_at + 1 : close_at], rest[close_at + 1 :]
            expanded = [e + prefix + r for e in expanded for r in _ranges(inner)]
        hosts.extend(expanded)
    return hosts


def index_list(text: str) -> list[int]:
    """`0-3,5` -> [0, 1, 2, 3, 5]; `N/A` or empty -> []."""
    if not text or text == "N/A":
        return []
    return [int(n) for n in _ranges(text)]


@dataclass(frozen=True)
class Gres:
    name: str
    type: str
    count: int
    indices: tuple[int, ...] | None  # from `(IDX:...)`, where given


def parse_gres(text: str | None) -> list[Gres]:
    """`gpu:h100:8(S:0-1),shard:h100:32` / `gpu:h100:4(IDX:0-3)` / `gpu:8` / `gpu(CNT:2)`."""
    if not text or text in ("(null)", "N/A"):
        return []
    out = []
    for item in split_top(text):
        head, _, paren = item.partition("(")
        paren = paren.rstrip(")")
        parts = head.split(":")
        name, count, kind = parts[0], None, ""
        if len(parts) > 1 and parts[-1].isdigit():
            count = int(parts[-1])
            kind = ":".join(parts[1:-1])
        else:
            kind = ":".join(parts[1:])
        indices = None
        if paren.startswith("IDX:"):
            indices = tuple(index_list(paren[4:]))
        elif paren.startswith("CNT:") and paren[4:].isdigit():
            count = int(paren[4:])
        if count is None:
            count = len(indices) if indices is not None else 1
        out.append(Gres(name, kind, count, indices))
    return out


def gpu_indices(text: str | None) -> list[int]:
    """The GPU indices a `gres_detail` / `GRES=` entry names."""
    indices: list[int] = []
    for gres in parse_gres(text):
        if gres.name == "gpu" and gres.indices:
            indices.extend(gres.indices)
    return indices


_TRES_GPU = re.compile(r"gres[:/]gpu(?::[^:,=]+)?[:=](\d+)")


def tres_gpus(text: str | None) -> int:
    """GPUs in a TRES request: `gres:gpu:4`, `gres/gpu:h100:8`, `gres/gpu=2`, summed."""
    return sum(int(n) for n in _TRES_GPU.findall(text or ""))


# Numbers and states ---------------------------------------------------------------------------
def number(value) -> int | None:
    """A plain number, or v0.0.39+'s {"set": true, "infinite": false, "number": N}."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        return number(value.get("number"))
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def job_states(value) -> list[str]:
    """`"RUNNING"` (v0.0.38/39) or `["PENDING", "REQUEUED"]` (v0.0.40+) -> upper-case words."""
    if isinstance(value, str):
        return [value.upper()] if value else []
    if isinstance(value, list):
        return [str(v).upper() for v in value]
    return []


def job_state(states: list[str]) -> str:
    """COMPLETING wins (the job still holds its GPUs), then the base state."""
    if "COMPLETING" in states:
        return "COMPLETING"
    return states[0] if states else ""


def node_state(base: str, flags: Iterable[str]) -> tuple[str, bool]:
    """(a word for the node, whether it can run anything now) from Slurm's base state and flags.

    Drain on an idle node is `drained`, on a busy one `draining` (jobs still run there);
    not responding is `down` whatever the base state says."""
    base = base.lower()
    flags = {f.upper() for f in flags}
    if base in DOWN_STATES or flags & DOWN_FLAGS:
        return ("down" if base != "future" else "future"), False
    if "DRAIN" in flags:
        return ("drained" if base == "idle" else "draining"), True
    if "FAIL" in flags:
        return "failing", True
    if "MAINTENANCE" in flags:
        return "maint", True
    if "COMPLETING" in flags and base == "idle":
        return "completing", True
    if "POWERED_DOWN" in flags:
        return "powered down", True
    return base, True


def _split_state_text(text: str) -> tuple[str, list[str]]:
    """`MIXED+DRAIN`, `IDLE*` (not responding), `DOWN+NOT_RESPONDING` -> base, flags."""
    flags = []
    if text.endswith("*"):
        text = text[:-1]
        flags.append("NOT_RESPONDING")
    base, *rest = text.split("+")
    return base, flags + rest


# JSON -----------------------------------------------------------------------------------------
def json_errors(data: dict) -> str | None:
    """The first error a JSON answer reports (slurmctld unreachable gives rc 0 and an error)."""
    errors = data.get("errors") or []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            text = error.get("description") or error.get("error") or ""
            source = error.get("source")
            return f"{source}: {text}" if source else str(text)
    return None


def json_release(data: dict) -> str:
    meta = data.get("meta") or {}
    slurm = meta.get("slurm") or meta.get("Slurm") or {}
    return str(slurm.get("release") or "")


def json_cluster(data: dict) -> str:
    slurm = (data.get("meta") or {}).get("slurm") or {}
    return str(slurm.get("cluster") or "")


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _gpu_layout(gres: str) -> tuple[int, tuple[str, ...]]:
    """(count, type of each index) of a node's GPU GRES, types in the order Slurm numbers them."""
    types: list[str] = []
    for entry in parse_gres(gres):
        if entry.name == "gpu":
            types.extend([entry.type] * entry.count)
    return len(types), tuple(types)


def _used(gres_used: str) -> tuple[int, ...] | None:
    entries = [g for g in parse_gres(gres_used) if g.name == "gpu"]
    if not entries or any(g.indices is None for g in entries):
        return None  # untyped GPUs give a count, not indices
    return tuple(i for g in entries for i in g.indices or ())


def nodes_from_json(data: dict) -> list[SlurmNode]:
    """`sinfo --json` (<= 22.05) or `scontrol --json show nodes` (23.02+)."""
    raw = data.get("nodes")
    if not isinstance(raw, list):
        raise ParseError("the answer has no 'nodes' list")
    out = []
    for node in raw:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            raise ParseError(f"a node without a name: {node!r:.80}")
        state = node.get("state")
        if isinstance(state, list):  # v0.0.39+: ["MIXED", "DRAIN"]
            base = next((s for s in state if s.lower() in BASE_NODE_STATES), "unknown")
            flags = [s for s in state if s != base]
        else:  # v0.0.38: "mixed" and state_flags ["DRAIN"]
            base, flags = _text(state) or "unknown", node.get("state_flags") or []
        out.append(
            _node(
                node["name"],
                _text(node.get("hostname")),
                base,
                flags,
                _text(node.get("gres")),
                _text(node.get("gres_used")),
                _text(node.get("reason")),
            )
        )
    return out


def _node(
    name: str, hostname: str, base: str, flags, gres: str, gres_used: str, reason: str
) -> SlurmNode:
    word, up = node_state(base, flags)
    count, types = _gpu_layout(gres)
    return SlurmNode(name, hostname, count, types, word, up, reason, _used(gres_used))


BASE_NODE_STATES = frozenset(
    {"unknown", "down", "idle", "allocated", "error", "mixed", "future", "invalid"}
)


def jobs_from_json(data: dict) -> list[SlurmJob]:
    """`squeue --json`, any data_parser from v0.0.38: jobs that hold or wait for GPUs."""
    raw = data.get("jobs")
    if not isinstance(raw, list):
        raise ParseError("the answer has no 'jobs' list")
    out = []
    for job in raw:
        if not isinstance(job, dict) or number(job.get("job_id")) is None:
            raise ParseError(f"a job without a job_id: {job!r:.80}")
        state = job_state(job_states(job.get("job_state")))
        if state not in HOLDING and state != WAITING:
            continue  # squeue --json lists ended jobs until MinJobAge
        nodes = expand_hostlist(_text(job.get("nodes"))) if state != WAITING else []
        details = job.get("gres_detail") or []
        held = tuple(
            (node, index)
            for node, detail in zip(nodes, details, strict=False)  # one entry per node, in order
            for index in gpu_indices(_text(detail))
        )
        node_count = number(job.get("node_count")) or len(nodes) or 1
        built = _job(
            number(job["job_id"]),
            _text(job.get("name")),
            _text(job.get("user_name")) or str(job.get("user_id", "-")),
            state,
            _text(job.get("state_description")) or _text(job.get("state_reason")),
            held,
            (job.get("tres_per_job"), job.get("tres_per_node"), job.get("tres_per_task")),
            node_count,
            number(job.get("tasks")) or node_count,
            number(job.get("submit_time")),
            number(job.get("start_time")),
            _text(job.get("command")),
        )
        if built is not None:
            out.append(built)
    return out


def _job(
    job_id: int,
    name: str,
    user: str,
    state: str,
    reason: str,
    held: tuple[tuple[str, int], ...],
    tres: tuple,
    node_count: int,
    tasks: int,
    submitted: int | None,
    started: int | None,
    command: str,
) -> SlurmJob | None:
    """A job from what either source says; None for a job without GPUs (not in the picture).
    `tres`: its GPU requests per job, per node and per task."""
    per_job, per_node, per_task = (tres_gpus(_text(t)) for t in tres)
    wanted = per_job + per_node * node_count + per_task * tasks or len(held)
    if not wanted:
        return None
    submitted = submitted or 0
    return SlurmJob(
        job_id=job_id,
        name=name,
        user=user,
        state=state,
        reason="" if reason == "None" or state != WAITING else reason,
        gpus=held,
        gpus_wanted=wanted,
        nodes_wanted=node_count,
        submitted=float(submitted),
        started=float(submitted if state == WAITING else started or submitted),
        command=command or name,
    )


# Text -----------------------------------------------------------------------------------------
_KEY = re.compile(r"\s+(?=[A-Z][A-Za-z0-9_:/]*=)")


def key_values(line: str) -> list[tuple[str, str]]:
    """`Key=Value Key2=a b` pairs in order; a value runs until the next `Capitalized=`."""
    pairs = []
    for token in _KEY.split(line.strip()):
        key, equals, value = token.partition("=")
        if equals:
            pairs.append((key, value.strip()))
    return pairs


def nodes_from_text(text: str) -> list[SlurmNode]:
    """`scontrol show nodes -o -d`: one node per line."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = dict(key_values(line))
        if "NodeName" not in fields:
            raise ParseError(f"a node line without NodeName: {line!r:.80}")
        base, flags = _split_state_text(fields.get("State", "UNKNOWN"))
        reason = re.sub(r"\s*\[[^\]]*@[^\]]*\]$", "", fields.get("Reason", ""))  # [user@time]
        out.append(
            _node(
                fields["NodeName"],
                fields.get("NodeHostName", ""),
                base,
                flags,
                fields.get("Gres", ""),
                fields.get("GresUsed", ""),
                reason,
            )
        )
    return out


def _first_int(text: str) -> int | None:
    match = re.match(r"\d+", text or "")
    return int(match.group()) if match else None


def _epoch(text: str) -> int | None:
    """A time under SLURM_TIME_FORMAT=%s; anything else (Unknown, None) is not known."""
    return int(text) if text.isdigit() else None


def jobs_from_text(text: str) -> list[SlurmJob]:
    """`scontrol -d show job -o` with SLURM_TIME_FORMAT=%s: one job per line; each group of
    nodes with the same allocation is a `Nodes=... GRES=gpu:...(IDX:...)` run of keys."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("No jobs"):
            continue
        pairs = key_values(line)
        fields = dict(pairs)
        job_id = _first_int(fields.get("JobId", ""))
        if job_id is None:
            raise ParseError(f"a job line without JobId: {line!r:.80}")
        state = fields.get("JobState", "")
        if state not in HOLDING and state != WAITING:
            continue
        held: list[tuple[str, int]] = []
        group_nodes: list[str] = []
        for key, value in pairs:
            if key == "Nodes":
                group_nodes = expand_hostlist(value)
            elif key == "GRES" and group_nodes and state != WAITING:
                indices = gpu_indices(value)
                held.extend((node, index) for node in group_nodes for index in indices)
                group_nodes = []
        node_count = _first_int(fields.get("NumNodes", "")) or 1
        command = fields.get("Command", "")
        built = _job(
            job_id,
            fields.get("JobName", ""),
            fields.get("UserId", "-").split("(")[0],
            state,
            fields.get("Reason", ""),
            tuple(held),
            (fields.get("TresPerJob"), fields.get("TresPerNode"), fields.get("TresPerTask")),
            node_count,
            _first_int(fields.get("NumTasks", "")) or node_count,
            _epoch(fields.get("SubmitTime", "")),
            _epoch(fields.get("StartTime", "")),
            "" if command == "(null)" else command,
        )
        if built is not None:
            out.append(built)
    return out
