"""The run directory of `rdm train`: one training process writes it at a time (an exclusive lock
that the system drops when its holder dies, even by SIGKILL), and a run resumes only with the
same settings and the same data (however its path is spelled)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
import zipfile
from pathlib import Path

from ..files import check_output_dir, read_json, write_json
from .config import TrainConfig

LOCK_NAME = "run.lock"          # holds the lock; its text names the holder
DATA_NAME = "data.json"         # the data identity of the run (data_identity)


class RunInUseError(ValueError):
    """Another process holds the run directory's lock."""


class RunLock:
    """Exclusive lock on a run directory (created if missing), held while the block runs.

        with RunLock(outdir):
            ...train...

    A second process gets RunInUseError naming the holder. The lock is an flock on
    OUTDIR/run.lock: the kernel releases it when the holder exits or is killed, so a crash
    never leaves a stale lock. Where flock does not exist (Windows) there is no lock."""

    def __init__(self, outdir: str | os.PathLike):
        self.outdir = Path(outdir)
        self.file = None
        self.created = False

    def __enter__(self) -> "RunLock":
        check_output_dir(self.outdir)
        self.created = not self.outdir.exists()
        self.outdir.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:                                  # no flock on this system
            return self
        f = open(self.outdir / LOCK_NAME, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunInUseError(f"{self.outdir} is in use by another training process ({holder}); wait for it "
                                "to finish or choose another --outdir") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self.file = f
        return self

    def __exit__(self, exc_type, *exc) -> bool:
        if self.file is not None:
            self.file.close()                                # closing drops the flock
            self.file = None
        lock = self.outdir / LOCK_NAME
        if exc_type is not None and self.created and [p.name for p in self.outdir.iterdir()] in ([], [LOCK_NAME]):
            lock.unlink(missing_ok=True)                     # a run that failed before writing anything
            self.outdir.rmdir()                              # leaves nothing behind
        return False


def data_identity(data: str | os.PathLike) -> dict:
    """What makes a dataset the same one when its path is spelled or placed differently, cheap to
    compute: for a zip, a hash of its directory (every member's name, size and CRC-32, read
    without decompressing); for a folder, a hash of every file's relative name and size and of
    its dataset.json. Plus the resolved path."""
    path = Path(data)
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(f"{p.relative_to(path).as_posix()}\0{p.stat().st_size}\n".encode())
        if (path / "dataset.json").is_file():
            h.update((path / "dataset.json").read_bytes())
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as z:
                for info in sorted(z.infolist(), key=lambda i: i.filename):
                    h.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
        except zipfile.BadZipFile:
            h.update(str(path.stat().st_size).encode())
    else:
        raise ValueError(f"dataset not found: {data}")
    return {"path": str(path.resolve()), "content_sha256": h.hexdigest()}


def check_resume(cfg: TrainConfig, outdir: Path) -> str | None:
    """Refuse to continue a run of `outdir` with other settings or other data. Returns a note
    when the data was found under another path (the same files: data_identity)."""
    stored = outdir / "config.json"
    if not stored.exists():
        return None
    old = TrainConfig.from_dict(read_json(stored, "run config"))
    # the data is compared by identity below; outdir is this folder, however it was spelt
    diffs = [k for k in cfg.differences(old) if k not in ("data", "outdir")]
    if diffs:
        details = ", ".join(f"{k}: {getattr(old, k)!r} → {getattr(cfg, k)!r}" for k in diffs)
        raise ValueError(f"{outdir} holds a run with other settings ({details}); resume it with the same "
                         f"command or choose a new --outdir")
    new = data_identity(cfg.data)
    old_identity = read_json(outdir / DATA_NAME, "data identity") if (outdir / DATA_NAME).exists() else None
    old_path = old_identity["path"] if old_identity else str(Path(old.data).resolve())
    if new["path"] == old_path:
        return None
    if old_identity and {k: v for k, v in new.items() if k != "path"} == \
            {k: v for k, v in old_identity.items() if k != "path"}:
        return f"the dataset moved: {old_path} → {new['path']} (the same files)"
    raise ValueError(f"{outdir} was trained on {old_path}, not {new['path']}; resume it with that dataset "
                     "or choose a new --outdir")


def record_run(cfg: TrainConfig, outdir: Path) -> None:
    """Write the run's config.json and data identity (data.json)."""
    write_json(outdir / "config.json", dataclasses.asdict(cfg))
    write_json(outdir / DATA_NAME, data_identity(cfg.data))
