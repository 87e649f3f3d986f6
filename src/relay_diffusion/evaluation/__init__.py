"""Evaluation: features of image sets and model chains, and the ADM/RDM metrics between them
(`rdm eval`), plus the offline feature net's training (`rdm eval train-features`)."""

from .evaluate import (METRICS, MIN_IMAGES, chain_features, compute_metrics, extract_features,
                       image_set_features, open_reference)
from .extractors import Extractor, load_extractor
from .sets import FeatureSet, ImageSet, is_feature_file, load_feature_file

__all__ = ["METRICS", "MIN_IMAGES", "chain_features", "compute_metrics", "extract_features",
           "image_set_features", "open_reference", "Extractor", "load_extractor", "FeatureSet",
           "ImageSet", "is_feature_file", "load_feature_file"]
