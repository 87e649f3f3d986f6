"""Published RDM/EDM checkpoints: a restricted unpickler that executes nothing from the file
(`safe_pickle`) and the conversion into model directories (`official`, CLI verb `rdm import`)."""

from .official import import_checkpoint
from .safe_pickle import (Checkpoint, CheckpointError, PickledObject, TensorRef, UnsafeCheckpointError,
                          open_checkpoint, safe_loads)

__all__ = ["import_checkpoint", "open_checkpoint", "safe_loads", "Checkpoint", "CheckpointError",
           "UnsafeCheckpointError", "PickledObject", "TensorRef"]
