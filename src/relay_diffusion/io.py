"""Files: atomic writes, safetensors weights, and model directories.

A model directory holds `config.json` (what to build: network, stage, diffusion settings) and
`model.safetensors` (+ `ema.safetensors`). Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

COLOUR_EDITS = ("contrast", "brightness", "color")   # PIL ImageEnhance, in the official CelebA-HQ order
MODEL_FORMAT = "relay-diffusion-model"
MODEL_FORMAT_VERSION = 1
TMP_MARK = ".tmp-"


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


def state_dict_cpu(module: torch.nn.Module) -> dict:
    """Contiguous CPU copies of a module's tensors (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_model_dir(directory: Path, config: dict, model: torch.nn.Module,
                   ema: torch.nn.Module | None = None) -> None:
    """Write config.json + model.safetensors (+ ema.safetensors) into an existing directory."""
    directory = Path(directory)
    write_json(directory / "config.json", {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, **config})
    save_tensors(state_dict_cpu(model), directory / "model.safetensors")
    if ema is not None:
        save_tensors(state_dict_cpu(ema), directory / "ema.safetensors")


def read_model_config(directory: Path) -> dict:
    cfg = read_json(Path(directory) / "config.json", "model config")
    if cfg.get("format") != MODEL_FORMAT:
        raise ValueError(f"{directory} is not a relay-diffusion model directory (config.json format "
                         f"{cfg.get('format')!r})")
    if cfg.get("version", 0) > MODEL_FORMAT_VERSION:
        raise ValueError(f"{directory} was written by a newer relay-diffusion (format version "
                         f"{cfg['version']}); please upgrade")
    return cfg


def weights_path(directory: Path, which: str = "ema") -> Path:
    """`ema.safetensors` (which="ema", falling back to the raw weights when the directory has no
    EMA) or `model.safetensors` (which="model")."""
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
    directory = Path(directory)
    path = directory / ("ema.safetensors" if which == "ema" else "model.safetensors")
    if which == "ema" and not path.exists():
        path = directory / "model.safetensors"
    if not path.exists():
        raise ValueError(f"no weights in {directory} (expected {path.name})")
    return path


def weight_shapes(path: Path) -> dict:
    """{name: shape} from a safetensors file's header, without reading the tensors."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it may be truncated or empty") from None


def load_weights(directory: Path, which: str = "ema", device: str | torch.device = "cpu") -> dict:
    """State dict of a model directory's weights (weights_path)."""
    from safetensors import SafetensorError
    path = weights_path(directory, which)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it may be truncated or empty") from None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images → uint8, the official rounding: clip(x·127.5 + 128), as the official sampling scripts save images."""
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_pil(image_u8: torch.Tensor):
    """One uint8 [C, H, W] image (C = 1 or 3) → a PIL image ("L" or "RGB")."""
    from PIL import Image

    a = image_u8.detach().cpu().permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0], "L") if a.shape[2] == 1 else Image.fromarray(a, "RGB")


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, ncol: int, pad: int = 1) -> None:
    """Save [N, C, H, W] images in [-1, 1] as one PNG grid with `ncol` columns (atomically)."""
    n, c, h, w = images.shape
    nrow = -(-n // ncol)
    grid = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    pix = to_uint8(images.cpu())
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = pix[i]
    img = to_pil(grid)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def enhance(images_u8: torch.Tensor, edits: dict) -> list:
    """PIL images after explicit colour edits (`COLOUR_EDITS` name → ImageEnhance factor, 1 =
    unchanged): the official reproduction scripts' brightness/contrast/colour post-processing."""
    from PIL import ImageEnhance

    pil = []
    for u8 in images_u8:
        im = to_pil(u8)
        for name in COLOUR_EDITS:
            if edits.get(name) is not None:
                im = getattr(ImageEnhance, name.capitalize())(im).enhance(edits[name])
        pil.append(im)
    return pil


def read_images(files, channels: int, size: int, what: str = "the model") -> torch.Tensor:
    """Image files as one float tensor [N, channels, size, size] in [−1, 1] (the data layer's
    mode rules: 16-bit and float files are refused, not clipped; a wrong size names `what`)."""
    from .data.images import read_image

    images = [torch.tensor(read_image(f, channels, size, what)) for f in files]
    return torch.stack(images).permute(0, 3, 1, 2).float() / 127.5 - 1
