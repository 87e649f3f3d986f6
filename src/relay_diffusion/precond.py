"""EDM preconditioning (Karras et al. 2022, Table 1), shared by both stages.

D(x; σ, y) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x; c_noise(σ), y). The relay stage uses the same
wrapper: the network is told σ only, never the blur level.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .networks.runtime import RuntimeOptions, call_network, prepare_network


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 0.5):
    """(c_skip, c_out, c_in, c_noise) for noise level(s) σ (EDM Table 1)."""
    s2 = sigma ** 2 + sigma_data ** 2
    return sigma_data ** 2 / s2, sigma * sigma_data / s2.sqrt(), 1 / s2.sqrt(), sigma.log() / 4


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """λ(σ) = (σ² + σ_d²)/(σ·σ_d)² = 1/c_out²: unit effective loss weight at every σ (EDM Eq. 8)."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class EDMPrecond(nn.Module):
    """Wrap a raw network F(x, c_noise, labels, **kwargs) into a denoiser D(x, sigma, labels).

    Computation runs in float32 (float64 if x is float64); the output has that dtype. The network
    itself runs as `configure(RuntimeOptions(...))` says (default: plain float32 / float64).
    labels=None means "no label": a zero vector of length label_dim, the unconditional input
    used by classifier-free guidance.
    """

    def __init__(self,
                 net: nn.Module,
                 sigma_data: float = 0.5,     # σ_d: std of the training images in [−1, 1]
                 label_dim: int = 0,          # number of classes; 0 = unconditional
                 ):
        super().__init__()
        if sigma_data <= 0 or not math.isfinite(sigma_data):
            raise ValueError(f"sigma_data must be finite and > 0, got {sigma_data}")
        self.net = net
        self.sigma_data = float(sigma_data)
        self.label_dim = int(label_dim)
        self.configure(RuntimeOptions())

    def configure(self, options: RuntimeOptions) -> "EDMPrecond":
        """Run the network with these options from now on (precision, layout, compilation); the
        preconditioning and the weights' values are unchanged. Returns self."""
        if options.precision == "auto":                              # resolved on the network's device
            options = options.for_device(next(self.net.parameters()).device)
        self.runtime = options
        # kept out of the module tree: a compiled wrapper must not add keys to state_dict()
        object.__setattr__(self, "_call", prepare_network(self.net, options))
        return self

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, labels: torch.Tensor | None = None,
                **net_kwargs) -> torch.Tensor:
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        x = x.to(dtype)
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1, 1, 1, 1)
        if self.label_dim == 0:
            labels = None
        elif labels is None:
            labels = torch.zeros(x.shape[0], self.label_dim, dtype=dtype, device=x.device)
        else:
            labels = labels.to(dtype).reshape(-1, self.label_dim)
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.sigma_data)
        f = call_network(self._call, self.runtime, c_in * x, c_noise.flatten().expand(x.shape[0]), labels,
                         **net_kwargs)
        return c_skip * x + c_out * f.to(dtype)
