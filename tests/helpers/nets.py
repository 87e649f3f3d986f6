"""Small deterministic networks for sampler tests (test helper)."""

import torch
from torch import nn

from relay_diffusion import EDMPrecond


class TinyNet(nn.Module):
    """F(x, c_noise, labels): a nonlinear conv net conditioned on c_noise and optional labels."""

    def __init__(self, channels=3, label_dim=0, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, channels, 3, padding=1)
        self.emb = nn.Linear(1 + label_dim, 16)

    def forward(self, x, c_noise, labels=None):
        cond = c_noise[:, None].to(x.dtype)
        if labels is not None:
            cond = torch.cat([cond, labels.to(x.dtype)], 1)
        h = torch.nn.functional.silu(self.conv1(x) + self.emb(cond)[:, :, None, None])
        return self.conv2(h)


def tiny_denoiser(channels=3, label_dim=0, dtype=torch.float32, seed=0):
    return EDMPrecond(TinyNet(channels, label_dim, seed), label_dim=label_dim).to(dtype).eval()
