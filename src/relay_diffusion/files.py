"""Files written so that nothing is ever half there: atomic file and directory writes, output
folder checks, standard JSON, hashes, the cache folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

from safetensors.torch import save_file

TMP_MARK = ".tmp-"              # temporary siblings: <name>.tmp-<pid>…, never read as results


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike):
    """Yield a temporary sibling directory; on success fsync its files and rename it to `final`
    (replacing an older one). A crash leaves only `<final>.tmp-<pid>`, never a half-written
    `final`."""
    final = Path(final)
    tmp = final.with_name(f"{final.name}{TMP_MARK}{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        if final.exists():
            old = final.with_name(f"{final.name}{TMP_MARK}old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        fsync_path(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(path: str | os.PathLike, write) -> None:
    """write(tmp) to a temporary sibling, then rename it to `path`: readers see the old file or
    the complete new one, and a failure or Ctrl-C leaves no temporary file."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_dir(path: str | os.PathLike, flag: str = "--outdir") -> Path:
    """`path` as a Path after refusing one that exists and is not a folder (before any work)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} exists and is not a folder")
    return path


def check_replaceable_dir(path: str | os.PathLike, force: bool, holds, what: str, flag: str = "--outdir") -> Path:
    """`path` as a Path after refusing, before any work, an output folder whose replacement
    would lose data: a file, a folder with anything but `what` in it (`holds(path)` is False),
    or an earlier `what` without `force`. A missing or empty folder is fine."""
    path = check_output_dir(path, flag)
    if path.exists() and any(path.iterdir()):
        if not holds(path):
            raise ValueError(f"{flag} {path} is not empty and holds no {what}; choose a new folder")
        if not force:
            raise ValueError(f"{flag} {path} already holds a {what}; pass --force to replace it")
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where downloaded-by-hand weights and caches live: $RDM_CACHE, else
    $XDG_CACHE_HOME/relay_diffusion, else ~/.cache/relay_diffusion."""
    if os.environ.get("RDM_CACHE"):
        return Path(os.environ["RDM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "relay_diffusion"


def json_safe(obj):
    """`obj` with every non-finite float written as the string "inf", "-inf" or "nan", so that
    the JSON we write is standard JSON (json.dumps would emit the non-standard Infinity/NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_text(obj) -> str:
    """Standard JSON (non-finite floats as strings, json_safe), indented, with a final newline."""
    return json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json_text(obj))


def honour_umask(path: str | os.PathLike) -> None:
    """Give a file the mode a plain open() would (0666 less the umask): writers that go through
    a private temporary file, like safetensors' save_file, leave it 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_tensors(tensors: dict, path: str | os.PathLike) -> None:
    """safetensors save_file, with the file's mode following the umask (honour_umask)."""
    save_file(tensors, str(path))
    honour_umask(path)


def read_json(path: Path, what: str = "file"):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None
