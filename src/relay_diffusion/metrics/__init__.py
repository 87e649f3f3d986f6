"""Sample-quality metrics: Fréchet distance, precision/recall, IS and KID on feature arrays
(features.py), weight-free image metrics — sliced Wasserstein distance on Laplacian-pyramid
patches and a radial power-spectrum distance (offline.py) — and the networks that make features:
the FID Inception-v3 (inception.py) and a small offline classifier (classifier.py)."""

from .features import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
    precision_recall,
    save_statistics,
)
from .classifier import FeatureNet, FeatureNetConfig, load_feature_net, train_feature_net
from .inception import InceptionV3FID, inception_weights_path, load_inception
from .offline import (high_frequency_power, radial_power_spectra, radial_power_spectrum,
                      sliced_wasserstein_distance, spectral_distance)

__all__ = [
    "FeatureNet",
    "FeatureNetConfig",
    "load_feature_net",
    "train_feature_net",
    "InceptionV3FID",
    "inception_weights_path",
    "load_inception",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_statistics",
    "precision_recall",
    "save_statistics",
    "radial_power_spectrum",
    "radial_power_spectra",
    "high_frequency_power",
    "sliced_wasserstein_distance",
    "spectral_distance",
]
