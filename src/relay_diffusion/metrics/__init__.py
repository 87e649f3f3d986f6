"""Sample-quality metrics: Fréchet distance, precision/recall, IS and KID on feature arrays
(features.py), and weight-free image metrics — sliced Wasserstein distance on Laplacian-pyramid
patches and a radial power-spectrum distance (offline.py)."""

from .features import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
    precision_recall,
    save_statistics,
)
from .offline import radial_power_spectrum, sliced_wasserstein_distance, spectral_distance

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_statistics",
    "precision_recall",
    "save_statistics",
    "radial_power_spectrum",
    "sliced_wasserstein_distance",
    "spectral_distance",
]
