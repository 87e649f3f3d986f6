import sys
from pathlib import Path

import pytest
import torch

# the official algorithms' transcriptions (benchmarks/official.py) serve the equivalence tests too
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
