import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def roll_block_noise(eps: torch.Tensor, s: int) -> torch.Tensor:
    """The official definition, written out: sum of s² circular shifts, divided by s."""
    out = torch.zeros_like(eps)
    for i in range(s):
        for j in range(s):
            out += torch.roll(eps, shifts=(i, j), dims=(2, 3))
    return out / s
