"""Training of base and relay stages: config, presets, the loop, snapshots."""

from .config import TrainConfig, parse_images
from .presets import TRAIN_PRESETS

__all__ = ["TrainConfig", "parse_images", "TRAIN_PRESETS", "train"]


def train(cfg: TrainConfig, echo=print) -> dict:
    """Train (or resume) the run described by `cfg` (see training.loop.train)."""
    from .loop import train as _train

    return _train(cfg, echo)
