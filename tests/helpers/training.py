"""Training test helpers: a small EDM-format dataset, a tiny fast TrainConfig, and a run in one
and in two processes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from relay_diffusion.training import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def write_edm_zip(path: Path, n: int, res: int, channels: int = 1, classes: int = 0, seed: int = 0) -> Path:
    """A small EDM-format dataset: smooth random images (+ labels)."""
    rng = np.random.default_rng(seed)
    labels = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            base = rng.normal(size=(4, 4, channels))
            img = np.kron(base, np.ones((res // 4, res // 4, 1))) + 0.3 * rng.normal(size=(res, res, channels))
            arr = np.clip(127.5 + 60 * img, 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(buf, format="PNG")
            name = f"00000/img{i:08d}.png"
            z.writestr(name, buf.getvalue())
            labels.append([name, i % classes] if classes else None)
        z.writestr("dataset.json", json.dumps({"labels": labels if classes else None}))
    return path


def small(**kw) -> TrainConfig:
    base = dict(network="tiny-8", batch=8, lr=2e-3, lr_rampup=0, duration=64, status_every=32,
                snapshot_every=32, sample_every=0, ema_halflife=100, device="cpu")
    base.update(kw)
    return TrainConfig.from_dict(base)                  # flat relay fields (up_scale=…) go into schedule


def train_in_one_and_two_processes(args: list[str], tmp_path: Path, env: dict) -> tuple[Path, Path]:
    """`rdm train *args` in one process, then under torchrun in two; the two run directories."""
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "relay_diffusion", "train", *args, "--outdir", str(one)],
                   check=True, capture_output=True, cwd=ROOT, env=env)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "relay_diffusion", "train", *args, "--outdir", str(two)],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in (two / "log.txt").read_text()
    return one, two
