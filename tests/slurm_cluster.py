"""A real one-node SLURM cluster in a temporary folder, for the cluster-path tests.

Debian's own daemons (munged, mariadbd, slurmdbd, slurmctld, slurmd; `.ci/setup` installs
them) run as this user from configurations generated here, on free loopback ports, with
accounting on (Snakemake's SLURM executor learns that a job ended through ``sacct``). Every
daemon is stopped when the context ends. The tools find the cluster through ``SLURM_CONF`` in
the environment :meth:`OneNodeCluster.env` returns and, where this machine has no SLURM of its
own, through the standard ``/etc/slurm/slurm.conf`` too (a link to the generated file, removed
afterwards): Snakemake's job-step executor runs srun with every SLURM_* variable removed, as on
a real cluster, where that is where srun finds its configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.serving import stop_process

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")
PARTITION = "debug"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


def missing_daemons() -> list[str]:
    return [d for d in DAEMONS if _daemon(d) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _daemon(name: str) -> str | None:
    """Where ``name`` is: on PATH, or in /usr/sbin (not on every user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


@dataclass
class OneNodeCluster:
    root: Path
    node: str = field(default_factory=socket.gethostname)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    system_conf: bool = False  # whether /etc/slurm/slurm.conf is this cluster's

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        """This process's environment pointed at the cluster (and out of any allocation)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        return env | {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, timeout: float = 60) -> str:
        done = subprocess.run(cmd, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert done.returncode == 0, f"{cmd}: {done.stderr}"
        return done.stdout

    def accounting(self, *fields: str, until: Callable[[list[str]], bool],
                   timeout: float = 30) -> list[str]:
        """``sacct -n -P`` rows (``fields``), once ``until`` holds: slurmctld reports a job's
        end to slurmdbd a moment after the job's client has seen it."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.run("sacct", "-n", "-P", *fields).split()
            if until(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.5)

    def _start(self, name: str, *args: str) -> None:
        log = (self.root / "log" / f"{name}.out").open("wb")
        self.procs.append(subprocess.Popen([str(_daemon(name)), *args], stdout=log,
                                           stderr=subprocess.STDOUT, env=self.env()))

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            assert not dead, f"{dead} exited; see {self.root / 'log'}"
            assert time.monotonic() < deadline, f"{what} not ready; see {self.root / 'log'}"
            time.sleep(0.2)

    def _ok(self, *cmd: str) -> bool:
        return subprocess.run(cmd, env=self.env(), capture_output=True,
                              check=False).returncode == 0

    def start(self) -> None:
        r = self.root
        for sub in ("log", "db", "state", "spool"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)  # munged wants its socket's folder reachable by all
        key = r / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        sock = r / "munge.sock"
        self._start("munged", "-F", "-f", f"--key-file={key}", f"--socket={sock}",
                    f"--pid-file={r / 'munged.pid'}", f"--log-file={r / 'log' / 'munged.log'}",
                    f"--seed-file={r / 'munged.seed'}")
        self._wait("munged", lambda: sock.exists())

        db_port, dbd_port = _free_port(), _free_port()
        subprocess.run([str(_daemon("mariadb-install-db")), f"--datadir={r / 'db'}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       capture_output=True, check=True, timeout=120)
        db_sock = r / "mysql.sock"
        self._start("mariadbd", "--no-defaults", f"--datadir={r / 'db'}", "--user=root",
                    f"--socket={db_sock}", f"--port={db_port}", "--bind-address=127.0.0.1",
                    f"--pid-file={r / 'mysql.pid'}", f"--log-error={r / 'log' / 'mysql.err'}")
        password = secrets.token_hex(8)
        grant = (f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}'; "
                 "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")
        self._wait("mariadbd", lambda: self._ok("mariadb", "-S", str(db_sock), "-uroot",
                                                "-e", "select 1"))
        subprocess.run(["mariadb", "-S", str(db_sock), "-uroot", "-e", grant], check=True,
                       capture_output=True)

        auth = f"AuthType=auth/munge\nAuthInfo=socket={sock}\n"
        dbd = r / "slurmdbd.conf"  # slurmdbd reads it beside SLURM_CONF
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"LogFile={r / 'log' / 'slurmdbd.log'}\nPidFile={r / 'slurmdbd.pid'}\n"
            "StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={db_port}\nStorageUser=slurm\nStoragePass={password}\n"
            "StorageLoc=slurm_acct_db\n")
        dbd.chmod(0o600)
        cpus = len(os.sched_getaffinity(0))
        self.conf.write_text(
            f"ClusterName=specedge\nSlurmctldHost={self.node}(127.0.0.1)\n"
            f"SlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
            f"SlurmUser=root\nSlurmdUser=root\n{auth}CredType=cred/munge\n"
            f"StateSaveLocation={r / 'state'}\nSlurmdSpoolDir={r / 'spool'}\n"
            f"SlurmctldPidFile={r / 'slurmctld.pid'}\nSlurmdPidFile={r / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}\n"
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "JobAcctGatherType=jobacct_gather/none\nJobCompType=jobcomp/none\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=localhost\nAccountingStoragePort={dbd_port}\n"
            f"AccountingStoragePass={sock}\n"  # the munge socket for slurmctld -> slurmdbd
            "SchedulerType=sched/backfill\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core\nReturnToService=2\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 "
            "State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=FORCE:8\n")
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # a link an interrupted test run left to its deleted folder
        if not SYSTEM_CONF.exists():
            SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
            SYSTEM_CONF.symlink_to(self.conf)
            self.system_conf = True
        self._start("slurmdbd", "-D")
        self._wait("slurmdbd", lambda: "started" in self._log("slurmdbd.log"))
        self._start("slurmctld", "-D", "-f", str(self.conf))
        self._start("slurmd", "-D", "-f", str(self.conf))
        self._wait("the node", lambda: self._ok("sinfo") and "idle" in subprocess.run(
            ["sinfo", "-h", "-o", "%T"], env=self.env(), capture_output=True,
            text=True, check=False).stdout)

    def _log(self, name: str) -> str:
        path = self.root / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env(),
                       capture_output=True, check=False, timeout=30)
        for proc in reversed(self.procs):
            stop_process(proc, 15)
        if self.system_conf and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            SYSTEM_CONF.unlink()


@contextmanager
def one_node_cluster(root: Path) -> Iterator[OneNodeCluster]:
    cluster = OneNodeCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
