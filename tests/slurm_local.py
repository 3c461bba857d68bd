"""A real Slurm cluster on loopback, for the tests and the benchmark: Debian's slurmctld and
slurmd (several `slurmd -N NODE` on this host), a private munged, fake GPUs as character devices
(or symlinks to /dev/null where mknod is not allowed). Everything lives in one directory; ports
are chosen at run time; nothing in /etc is touched; everything is stopped by pid.

    cluster = LocalSlurm(directory, nodes=4, gpus=8)
    cluster.start()            # about 0.2 s until every node is idle
    cluster.env                # SLURM_CONF for the clients
    cluster.stop()

Extra nodes may be declared that no slurmd serves (`absent=60`): Slurm lists them, and once
they miss their registration they are down, like a rack switched off.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "squeue", "scontrol", "srun", "sinfo")


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def free_ports(count: int) -> list[int]:
    """Ports free now on 127.0.0.1, all different (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalSlurm:
    def __init__(
        self,
        directory: Path,
        nodes: int = 4,
        gpus: int = 8,
        gpu_type: str = "h100",
        absent: int = 0,
        cpus: int = 8,
    ):
        self.dir = Path(directory)
        # Named as the simulator names its nodes, so a simulated exporter can stand for a node.
        self.node_names = [f"node{i:02d}" for i in range(nodes)]
        self.absent_names = [f"node{i:02d}" for i in range(nodes, nodes + absent)]
        self.gpus = gpus
        self.gpu_type = gpu_type
        self.cpus = cpus
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "etc" / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.ctld_port = 0
        self.node_ports: dict[str, int] = {}

    # configuration -------------------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.dir
        for sub in ("etc", "state", "run", "log", "munge", "dev"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for name in self.node_names:
            (d / "spool" / name).mkdir(parents=True, exist_ok=True)
        # munged insists that every directory above its socket is searchable by all: the
        # directory is made so (a tempfile.mkdtemp under /tmp), its parents must be already.
        d.chmod(0o755)
        (d / "munge").chmod(0o755)
        closed = [p for p in d.parents if not p.stat().st_mode & 0o001]
        if closed:
            raise RuntimeError(f"munged needs {closed[0]} searchable by all (o+x)")
        ports = free_ports(1 + len(self.node_names) + len(self.absent_names))
        self.ctld_port = ports[0]
        names = self.node_names + self.absent_names
        self.node_ports = dict(zip(names, ports[1:], strict=True))
        gres = f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"
        lines = [
            "ClusterName=moaitest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={d}/munge/munge.socket.2",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/run/slurmctld.pid",
            f"SlurmdPidFile={d}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log",
            f"SlurmdLogFile={d}/log/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "MailProg=/bin/true",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "MpiDefault=none",
            "KillWait=2",
            "MinJobAge=300",
            # Nodes never started are marked down after this long (the minimum Slurm allows).
            "SlurmdTimeout=5",
            "MessageTimeout=5",
            "GresTypes=gpu",
        ]
        for name in names:
            lines.append(
                f"NodeName={name} NodeHostname={self.host} NodeAddr=127.0.0.1 "
                f"Port={self.node_ports[name]} CPUs={self.cpus} RealMemory=16000 Gres={gres} "
                "State=UNKNOWN"
            )
        lines.append(
            f"PartitionName=gpu Nodes={','.join(names)} Default=YES MaxTime=INFINITE State=UP"
        )
        self.conf.write_text("\n".join(lines) + "\n")
        devices = self._fake_gpus()
        typed = f"Type={self.gpu_type} " if self.gpu_type else ""
        (d / "etc" / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={','.join(names)} Name=gpu {typed}File={devices}\n"
        )

    def _fake_gpus(self) -> str:
        """Character devices where mknod is allowed, else symlinks to /dev/null: Slurm wants a
        device file per GPU, and sets CUDA_VISIBLE_DEVICES only for device files."""
        dev = self.dir / "dev"
        for i in range(self.gpus):
            path = dev / f"nvidia{i}"
            if path.exists() or path.is_symlink():
                continue
            try:
                os.mknod(path, 0o666 | 0o020000, os.makedev(195, i))
            except PermissionError:
                path.symlink_to("/dev/null")
        return f"{dev}/nvidia[0-{self.gpus - 1}]" if self.gpus > 1 else f"{dev}/nvidia0"

    # start / stop --------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        self._write_config()
        d = self.dir
        key = d / "munge" / "munge.key"
        if not key.exists():
            subprocess.run(
                ["mungekey", "--create", f"--keyfile={key}", "--bits=1024"],
                check=True,
                capture_output=True,
            )
            key.chmod(0o600)
        self._daemon(
            [
                "munged",
                f"--key-file={key}",
                f"--socket={d}/munge/munge.socket.2",
                f"--pid-file={d}/munge/munged.pid",
                f"--log-file={d}/log/munged.log",
                f"--seed-file={d}/munge/munged.seed",
            ]
        )
        self.start_controller()
        self.wait_for(lambda: self._answers(), timeout, "slurmctld never answered")
        for name in self.node_names:
            self._daemon(["slurmd", "-f", str(self.conf), "-N", name])
        self.wait_until_idle(timeout)

    def start_controller(self) -> None:
        self._daemon(["slurmctld", "-f", str(self.conf)])

    def _daemon(self, argv: list[str]) -> None:
        """Start a daemon that forks into the background and writes its pid file."""
        done = subprocess.run(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def _answers(self) -> bool:
        done = self.client(["scontrol", "ping"], timeout=10)
        return done.returncode == 0 and "UP" in done.stdout

    def client(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)

    def wait_for(self, predicate, timeout: float, what: str):
        return wait_for(predicate, timeout, f"{what} (logs in {self.dir / 'log'})")

    def idle_nodes(self) -> set[str]:
        done = self.client(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], timeout=10)
        return set(done.stdout.split()) if done.returncode == 0 else set()

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        self.wait_for(
            lambda: set(self.node_names) <= self.idle_nodes(),
            timeout,
            "the nodes never became idle",
        )

    def jobs(self) -> list[str]:
        """`id state reason` of every job not ended yet."""
        done = self.client(["squeue", "-h", "-o", "%i %T %r"], timeout=10)
        return done.stdout.split("\n")[:-1] if done.returncode == 0 else []

    def clear(self, timeout: float = 30.0) -> None:
        """No job left, every node idle and open again: the state a test starts from."""
        if not self._answers_quickly():
            self.start_controller()
            self.wait_for(self._answers_quickly, timeout, "slurmctld never answered")
        self.client(["scancel", "--full", "--partition=gpu"], timeout=10)
        self.wait_for(lambda: not self.jobs(), timeout, "jobs never ended")
        closed = self.client(["sinfo", "-h", "-N", "-t", "drain,drng,down", "-o", "%N"]).stdout
        for node in set(closed.split()) & set(self.node_names):
            self.client(["scontrol", "update", f"nodename={node}", "state=resume"])
        self.wait_until_idle(timeout)

    def pid(self, name: str) -> int | None:
        path = {
            "slurmctld": self.dir / "run" / "slurmctld.pid",
            "munged": self.dir / "munge" / "munged.pid",
        }.get(name, self.dir / "run" / f"slurmd-{name}.pid")
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop_controller(self) -> None:
        pid = self.pid("slurmctld")
        if pid is not None:
            _terminate([pid])

    def stop(self) -> None:
        if self._answers_quickly():
            self.client(["scancel", "--full", "--partition=gpu"], timeout=10)
        pids = [self.pid(name) for name in self.node_names]
        pids += [self.pid("slurmctld"), self.pid("munged")]
        _terminate([p for p in pids if p is not None])
        _terminate(self._strays())

    def _answers_quickly(self) -> bool:
        try:
            return self._answers()
        except subprocess.TimeoutExpired:
            return False

    def _strays(self) -> list[int]:
        """Job steps and tasks left behind: processes whose environment names this cluster's
        config, or that hold a file under its directory open (slurmstepd rewrites its own
        environment with its title)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        root = str(self.dir)
        found = []
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
                    continue
                for fd in (entry / "fd").iterdir():
                    if os.readlink(fd).startswith(root):
                        found.append(int(entry.name))
                        break
            except OSError:
                continue
        return found


def wait_for(predicate, timeout: float = 30.0, what: str = "a condition"):
    """predicate()'s first true value, polled; fails loudly when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"no {what} within {timeout:g} s")


def _alive(pid: int) -> bool:
    """Running and not a zombie (kill -0 succeeds on a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _terminate(pids: list[int], grace: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
