"""A throwaway single-node Slurm cluster on localhost, for tests.

`LocalSlurm(root).start()` writes a munge key, slurm.conf and cgroup.conf under `root`, starts
munged, slurmctld and slurmd in the foreground as children of the test process, and waits until
`sinfo` shows the node idle. Nothing outside `root` is touched: the daemons use their own ports,
munge socket, state, spool, pid and log files, and client commands find the cluster through
`SLURM_CONF` in `LocalSlurm.env`. Snakemake's job step drops every `SLURM_*` variable before it
calls `srun` inside a job, so `env` also puts a small `srun` wrapper first on PATH that points
`srun` back at this cluster's slurm.conf (a real cluster keeps it in /etc/slurm). `stop()`
cancels the jobs, stops the daemons and kills any leftover process that carries this cluster's
marker variable (job steps outlive slurmd).

It needs root (SlurmUser=root) and Debian's slurm-wlm and munge packages (`.ci/slurm-setup`).
When something is missing or a daemon does not come up, `start()` raises `SlurmUnavailable` with
the reason and the tail of the daemon logs, which the fixture turns into a skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PARTITION = "debug"
NODE = "localhost"
MARKER = "WEIGHTSELECT_TEST_SLURM"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")


class SlurmUnavailable(RuntimeError):
    """The local cluster cannot run here; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _find(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return f"  ({path.name}: no log written)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"  {path.name}: {line}" for line in text)


def slurm_conf(root: Path, *, cpus: int, memory_mb: int, ports: tuple[int, int]) -> str:
    """The slurm.conf of a one-node cluster whose files all live under `root`."""
    ctld_port, slurmd_port = ports
    return f"""\
ClusterName=weightselect-test
SlurmctldHost={NODE}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root / "munge.socket"}
CredType=cred/munge
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
MinJobAge=600
InactiveLimit=0
KillWait=5
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """A single-node Slurm cluster living in `root`; see the module docstring."""

    def __init__(self, root: Path, *, cpus: int | None = None, memory_mb: int = 4096):
        self.root = Path(root)
        self.cpus = cpus or max(2, os.cpu_count() or 2)
        self.memory_mb = memory_mb
        self.conf = self.root / "slurm.conf"
        self.partition = PARTITION
        self.bin = self.root / "bin"
        # Nothing from a surrounding Slurm job or the user's Slurm defaults leaks in.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))
        }
        self.env.update(
            SLURM_CONF=str(self.conf),
            PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            **{MARKER: str(self.root)},
        )
        self._daemons: dict[str, subprocess.Popen] = {}

    # -- starting ---------------------------------------------------------------------------
    def start(self) -> "LocalSlurm":
        self._check_prerequisites()
        try:
            self._write_files()
            self._start_munged()
            self._start("slurmctld", ["-D", "-c", "-f", str(self.conf)])
            self._wait(lambda: self._ok(["scontrol", "ping"]), "slurmctld to answer", 30)
            self._start("slurmd", ["-D", "-N", NODE, "-f", str(self.conf)])
            self._wait(self._node_idle, f"node {NODE} to become idle in sinfo", 60)
        except SlurmUnavailable:
            self.stop()
            raise
        return self

    def _check_prerequisites(self) -> None:
        missing = [p for p in DAEMONS + CLIENTS if _find(p) is None]
        if missing:
            raise SlurmUnavailable(
                f"not installed: {', '.join(missing)} (run .ci/slurm-setup as root)"
            )
        if os.geteuid() != 0:
            raise SlurmUnavailable("the local cluster runs its daemons as root; not root here")

    def _write_files(self) -> None:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ports = (_free_port(), _free_port())
        self.conf.write_text(
            slurm_conf(self.root, cpus=self.cpus, memory_mb=self.memory_mb, ports=ports)
        )
        self.bin.mkdir(exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{_find("srun")}" "$@"\n')
        srun.chmod(0o755)
        # Only read when a cgroup plugin is configured; present so that no system file is used.
        (self.root / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")

    def _start_munged(self) -> None:
        self._start(
            "munged",
            [
                "--foreground",
                "--force",
                f"--socket={self.root / 'munge.socket'}",
                f"--key-file={self.root / 'munge.key'}",
                f"--pid-file={self.root / 'munged.pid'}",
                f"--log-file={self.root / 'munged.log'}",
                f"--seed-file={self.root / 'munged.seed'}",
            ],
        )
        self._wait(lambda: (self.root / "munge.socket").exists(), "munged's socket", 15)

    def _start(self, daemon: str, args: list[str]) -> None:
        stderr = open(self.root / f"{daemon}.stderr", "wb")
        self._daemons[daemon] = subprocess.Popen(
            [_find(daemon), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stderr.close()

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in self._daemons.items() if proc.poll() is not None]
            if dead:
                raise SlurmUnavailable(
                    f"{', '.join(dead)} exited while waiting for {what}\n{self.logs()}"
                )
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(
            f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}"
        )

    def _ok(self, command: list[str]) -> bool:
        return self.run(command, check=False).returncode == 0

    def _node_idle(self) -> bool:
        out = self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.split()
        return out == ["idle"]

    # -- using ------------------------------------------------------------------------------
    def run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=30, check=check
        )

    def logs(self) -> str:
        """The tail of every daemon log, for failure messages."""
        logs = [self.root / f"{d}.log" for d in DAEMONS]
        logs = [log if log.exists() else log.with_suffix(".stderr") for log in logs]
        return "\n".join(_tail(log) for log in logs if log.exists())

    # -- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        if "slurmctld" in self._daemons and self._daemons["slurmctld"].poll() is None:
            self.run(["scancel", "--full", "--quiet", f"--partition={PARTITION}"], check=False)
        for daemon in ("slurmd", "slurmctld", "munged"):
            proc = self._daemons.pop(daemon, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._kill_marked()

    def _kill_marked(self) -> None:
        """Kill leftover processes (job steps and their children) started for this cluster."""
        needle = f"{MARKER}={self.root}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in environ:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "LocalSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
