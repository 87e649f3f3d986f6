"""Sampler equivalences: the relay sampler against a literal DCT-space transcription of the
official algorithm (docs/method.md §5.3; relay_diffusion/reference.py, shared with the speed benchmark), its reduction to EDM's Heun sampler, and per-seed determinism."""

import pytest
import torch

from relay_diffusion.reference import reference_relay_sampler
from helpers.nets import tiny_denoiser
from relay_diffusion import (RelaySchedule, SeededNoise, classifier_free_guidance, edm_sampler, karras_sigmas,
                             relay_sampler, relay_sigmas, relay_stage, sde_heun_sampler, upsample_nearest)


@pytest.mark.parametrize("sch,trunc_t", [(RelaySchedule(), None),
                                         (RelaySchedule(blur_sigma_max=2.0, prob_length=0.89), 1.05),
                                         (RelaySchedule(up_scale=2, blur_sigma_max=1.5), None)])
def test_relay_sampler_equals_official_algorithm_step_by_step(sch, trunc_t):
    denoise = tiny_denoiser(dtype=torch.float64)
    x_up = upsample_nearest(torch.randn(3, 3, 4, 6, dtype=torch.float64), sch.up_scale)
    sigmas = relay_sigmas(num_steps=40)
    states = []
    ours = relay_sampler(denoise, x_up, schedule=sch, num_steps=40, truncation_t=trunc_t, s_noise=0.2,
                         randn_like=SeededNoise([1, 2, 3]), dtype=torch.float64,
                         callback=lambda d: states.append(d["x"]))
    ref = []
    reference_relay_sampler(lambda x, s: denoise(x, torch.full((x.shape[0],), s, dtype=x.dtype), None), x_up,
                            sigmas, sch.for_sampling(trunc_t), 0.2, sch.block_scale, SeededNoise([1, 2, 3]),
                            on_step=ref.append)
    assert len(states) == len(ref) == len(sigmas)
    for a, b in zip(states, ref):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)
    assert torch.equal(ours, states[-1])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_relay_reduces_to_edm_heun(dtype, tol):
    """Factors ≡ 1 (σ_B,max = 0), η = 0, α = 0: every state equals EDM's deterministic Heun."""
    denoise = tiny_denoiser(dtype=dtype)
    z = torch.randn(2, 3, 8, 8, dtype=dtype)
    grid = karras_sigmas(12, 0.002, 80.0, 7.0)
    edm, relay, sde = [], [], []
    edm_sampler(denoise, z, sigmas=grid, dtype=dtype, callback=lambda d: edm.append(d["x"]))
    relay_sampler(denoise, torch.zeros_like(z), schedule=RelaySchedule(blur_sigma_max=0.0, block_scale=0.0),
                  sigmas=grid, s_noise=0.0, randn_like=lambda t: z, dtype=dtype,
                  callback=lambda d: relay.append(d["x"]))
    sde_heun_sampler(denoise, z, sigmas=grid, sde_scale=0.0, dtype=dtype, callback=lambda d: sde.append(d["x"]))
    assert len(edm) == len(relay) == len(sde) == 12
    scale = max(float(x.abs().max()) for x in edm)
    for a, b, c in zip(edm, relay, sde):
        torch.testing.assert_close(b, a, atol=tol * scale, rtol=0)
        torch.testing.assert_close(c, a, atol=tol * scale, rtol=0)


def _chunks(seeds, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(seeds[i:i + n])
        i += n
    return out


def _one_by_one(denoise):
    """Evaluate a network sample by sample, so that its own kernels cannot depend on the batch."""
    def run(x, sigma, labels=None):
        return torch.cat([denoise(x[i:i + 1], sigma[i:i + 1], labels) for i in range(x.shape[0])])
    return run


@pytest.mark.parametrize("sizes", [[7], [1] * 7, [3, 4], [2, 5]])
@pytest.mark.parametrize("batched_net", [False, True])
def test_images_depend_only_on_their_seed(sizes, batched_net):
    """Batch size 1 and 7 (and any split) give bit-identical images through a two-stage chain.
    With a batched conv net, oneDNN may pick other kernels for other batch sizes: the images then
    agree to float32 rounding of the network, not bit for bit."""
    seeds = [0, 5, 17, 42, 1000, 2 ** 33 + 1, 7]
    base, relay = tiny_denoiser(), tiny_denoiser(seed=1)
    if not batched_net:
        base, relay = _one_by_one(base), _one_by_one(relay)
    sch = RelaySchedule(up_scale=2)

    def chain(batch):
        rnd = SeededNoise(batch)
        low = edm_sampler(base, rnd.randn(3, 4, 4), num_steps=6, S_churn=10, randn_like=rnd)
        return relay_stage(relay, low, schedule=sch, num_steps=12, randn_like=rnd)

    ref = chain(seeds)
    got = torch.cat([chain(b) for b in _chunks(seeds, sizes)])
    if batched_net:
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    else:
        assert torch.equal(got, ref)
    assert not torch.equal(ref[0], ref[1])


def test_seeded_noise_rows_follow_their_seed():
    rnd = SeededNoise([3, 9])
    x = rnd.randn(2, 5)
    assert torch.equal(x[1], torch.randn(2, 5, generator=torch.Generator().manual_seed(9)))
    assert torch.equal(SeededNoise([9]).randn(2, 5)[0], x[1])
    with pytest.raises(ValueError, match="seeds"):
        rnd.randn_like(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="seed"):
        SeededNoise([])


def test_classifier_free_guidance_wrapper():
    denoise = tiny_denoiser(label_dim=4, dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    sigma = torch.full((2,), 0.7, dtype=torch.float64)
    y = torch.eye(4, dtype=torch.float64)[[1, 3]]
    cond, uncond = denoise(x, sigma, y), denoise(x, sigma, None)
    guided = classifier_free_guidance(denoise, 3.5)(x, sigma, y)
    torch.testing.assert_close(guided, 3.5 * cond - 2.5 * uncond, atol=1e-12, rtol=0)
    assert classifier_free_guidance(denoise, 1.0) is denoise
    torch.testing.assert_close(classifier_free_guidance(denoise, 0.0)(x, sigma, y), uncond, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="labels"):
        classifier_free_guidance(denoise, 2.0)(x, sigma, None)
    # one scale per sample: each row as if guided alone at its own w
    per_row = classifier_free_guidance(denoise, torch.tensor([3.5, 1.0], dtype=torch.float64))(x, sigma, y)
    torch.testing.assert_close(per_row, torch.stack([guided[0], cond[1]]), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="3 guidance scales for a batch of 2"):
        classifier_free_guidance(denoise, torch.ones(3, dtype=torch.float64))(x, sigma, y)
    with pytest.raises(ValueError, match="scales >= 0"):
        classifier_free_guidance(denoise, torch.tensor([1.0, -1.0]))
    # the wrapper slots into any sampler
    out = relay_sampler(classifier_free_guidance(denoise, 2.0), upsample_nearest(x[:, :, :2, :2], 4), y,
                        num_steps=10, dtype=torch.float64)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_relay_stage_upsamples_and_keeps_the_patch_means_roughly():
    denoise = tiny_denoiser()
    low = torch.randn(2, 3, 4, 4)
    out = relay_stage(denoise, low, schedule=RelaySchedule(up_scale=4), num_steps=18, s_noise=0.0)
    assert out.shape == (2, 3, 16, 16)


def test_sampler_dtype_and_step_counts():
    calls = []

    def denoise(x, sigma, labels=None):
        calls.append((x.dtype, sigma.dtype, sigma.shape))
        return torch.zeros_like(x)

    x_up = torch.zeros(2, 1, 8, 8)
    out = relay_sampler(denoise, x_up, num_steps=18)                    # generate.py defaults
    assert out.dtype == torch.float32 and len(calls) == 13              # 7 kept steps → 2·7 − 1 NFE
    assert calls[0] == (torch.float32, torch.float32, (2,))
    calls.clear()
    relay_sampler(denoise, x_up, num_steps=200, rho=100.0, dtype=torch.float64)   # ImageNet grid
    assert len(calls) == 199 and calls[0][0] == torch.float64
