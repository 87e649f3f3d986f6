"""Bad input gets a clear ValueError before any work is done."""

import pytest
import torch

from relay_diffusion import (RelaySchedule, blur, blur_factors, block_noise, edm_sampler, karras_sigmas,
                             patch_dct, patch_idct, relay_sampler, relay_stage, sde_heun_sampler,
                             truncate_sigmas, upsample_nearest)


def never_called(*args, **kwargs):
    raise AssertionError("the denoiser must not run on bad input")


x = torch.zeros(2, 3, 8, 8)


@pytest.mark.parametrize("call,match", [
    (lambda: patch_dct(torch.zeros(1, 1, 8, 6), 4), "divide"),
    (lambda: patch_dct(torch.zeros(1, 1, 6, 8), 4), "divide"),
    (lambda: patch_idct(torch.zeros(8, 8), 4), "4-D"),
    (lambda: patch_dct(torch.zeros(1, 8, 8), 4), "4-D"),
    (lambda: patch_dct(x, 0), "positive integer"),
    (lambda: patch_dct(x, 2.0), "positive integer"),
    (lambda: patch_dct(x.long(), 4), "floating-point"),
    (lambda: patch_dct(x.numpy(), 4), "torch.Tensor"),
    (lambda: blur(x, -1.0, 4), "blur_sigma"),
    (lambda: blur(x, torch.tensor([1.0, 2.0, 3.0]), 4), "shape"),
    (lambda: blur(x, 1.0, 3), "divide"),
    (lambda: blur(x, 1.0, 4, min_scale=2), "min_scale"),
    (lambda: blur_factors(-0.5, 4), "blur_sigma"),
    (lambda: block_noise(x, 3), "divide"),
    (lambda: block_noise(x, 4, kind="box"), "kind"),
    (lambda: upsample_nearest(torch.zeros(3, 4, 4), 2), "4-D"),
    (lambda: RelaySchedule().corrupt(x, 0.0), "sigma"),
    (lambda: RelaySchedule().corrupt(x, torch.tensor([0.5, -0.1])), "sigma"),
    (lambda: RelaySchedule().corrupt(x, float("nan")), "sigma"),
    (lambda: RelaySchedule(blur_sigma_max=-1), "blur_sigma_max"),
    (lambda: RelaySchedule(block_scale=-0.1), "block_scale"),
    (lambda: karras_sigmas(1, 0.002, 80, 7), "num_steps"),
    (lambda: karras_sigmas(10_001, 0.002, 80, 7), "num_steps must be an integer from 2 to 10,000, got 10001"),
    (lambda: karras_sigmas(10, 0.0, 80, 7), "sigma_min"),
    (lambda: karras_sigmas(10, 1.0, 0.5, 7), "sigma_min"),
    (lambda: karras_sigmas(10, 0.002, 80, 0), "rho"),
    (lambda: truncate_sigmas(karras_sigmas(10, 0.008, 80, 7), 0.005), "outside"),
    (lambda: truncate_sigmas(karras_sigmas(10, 0.008, 80, 7), 100.0), "outside"),
    # NaN and inf pass every `< 0` test: each is refused by name
    (lambda: blur(x, float("nan"), 4), "blur_sigma must be finite and >= 0"),
    (lambda: blur(x, float("inf"), 4), "blur_sigma must be finite and >= 0"),
    (lambda: blur(x, torch.tensor([1.0, float("nan")]), 4), "blur_sigma must be finite and >= 0"),
    (lambda: blur_factors(float("inf"), 4), "blur_sigma must be finite and >= 0"),
    (lambda: RelaySchedule(blur_sigma_max=float("nan")), "blur_sigma_max must be finite"),
    (lambda: RelaySchedule(block_scale=float("nan")), "block_scale must be finite"),
    (lambda: RelaySchedule(P_mean=float("inf")), "P_mean must be finite"),
    (lambda: karras_sigmas(10, 0.002, 80, float("inf")), "rho must be finite and > 0"),
    (lambda: karras_sigmas(10, 0.002, 80, float("nan")), "rho must be finite and > 0"),
])
def test_operator_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: relay_sampler(never_called, torch.zeros(1, 3, 10, 10)), "divide"),
    (lambda: relay_sampler(never_called, x, truncation_sigma=0.001), "outside"),
    (lambda: relay_sampler(never_called, x, truncation_sigma=81.0), "outside"),
    (lambda: relay_sampler(never_called, x, s_noise=1.5), "s_noise"),
    (lambda: relay_sampler(never_called, x, s_block=-1.0), "s_block"),
    (lambda: relay_sampler(never_called, x, corrector="midpoint"), "corrector"),
    (lambda: relay_sampler(never_called, x, sigmas=[0.5, 0.9]), "decreasing"),
    (lambda: relay_sampler(never_called, x, sigmas=[0.5, -0.1]), "> 0"),
    (lambda: relay_sampler(never_called, x, torch.zeros(3, 10)), "labels"),
    (lambda: relay_sampler(never_called, x, dtype=torch.float16), "dtype"),
    (lambda: relay_stage(never_called, torch.zeros(3, 4, 4)), "4-D"),
    (lambda: edm_sampler(never_called, torch.zeros(3, 8, 8)), "4-D"),
    (lambda: edm_sampler(never_called, x, num_steps=1), "num_steps"),
    (lambda: edm_sampler(never_called, x, S_churn=-1), "S_churn"),
    (lambda: sde_heun_sampler(never_called, x, sde_scale=2.0), "sde_scale"),
    (lambda: relay_sampler(never_called, x.clone().index_fill_(0, torch.tensor([1]), float("nan"))),
     "x_up contains NaN or inf"),
    (lambda: relay_sampler(never_called, x + float("inf")), "x_up contains NaN or inf"),
    (lambda: relay_sampler(never_called, x, s_block=float("nan")), r"block_scale \(official: s_block\) must be finite"),
    (lambda: relay_sampler(never_called, x, rho=float("inf"), sigma_grid="rho"), "rho must be finite"),
    (lambda: edm_sampler(never_called, x + float("nan")), "noise contains NaN or inf"),
    (lambda: edm_sampler(never_called, x, S_churn=float("nan")), "S_churn must be finite"),
    (lambda: sde_heun_sampler(never_called, x + float("inf")), "noise contains NaN or inf"),
])
def test_sampler_errors_before_any_evaluation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
