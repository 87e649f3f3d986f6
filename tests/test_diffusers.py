"""The diffusers interop (relay_diffusion.integrations.diffusers): the exported pipeline gives
`RelayChain`'s / `rdm sample`'s images, the scheduler's steps are the relay sampler's, and a model
directory survives the round trip through a diffusers folder bit for bit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the optional extra relay-diffusion[diffusers] is not installed")

from diffusers import DiffusionPipeline  # noqa: E402

from relay_diffusion import RelaySchedule, SeededNoise, relay_sampler, upsample_nearest  # noqa: E402
from relay_diffusion.cli import main  # noqa: E402
from relay_diffusion.integrations.diffusers import (RelayDiffusionPipeline, RelayScheduler, export_diffusers,  # noqa: E402
                                                    import_diffusers)
from relay_diffusion.weights import load_weights, read_model_config  # noqa: E402
from relay_diffusion.pipeline import RelayChain, bundled_demo_chain  # noqa: E402

SEEDS = [0, 1, 2, 13]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusers") / "demo"
    export_diffusers(bundled_demo_chain(), out)
    return out


@pytest.fixture(scope="module")
def pipe(exported):
    p = RelayDiffusionPipeline.from_pretrained(exported)
    p.set_progress_bar_config(disable=True)
    return p


def test_pipeline_images_are_the_chain_images(pipe):
    chain = RelayChain.from_pretrained(bundled_demo_chain(), channels_last=False)
    for labels in ("balanced", 3):
        ours = chain(SEEDS, labels)
        theirs = pipe(seeds=SEEDS, class_labels=labels, output_type="pt").images
        assert torch.equal(ours, theirs)
    guided = chain.__class__(chain.models, [s.with_overrides({"cfg_scale": 2.0}) for s in chain.settings])
    assert torch.equal(guided(SEEDS), pipe(seeds=SEEDS, guidance_scale=2.0, output_type="pt").images)


def test_pipeline_images_equal_rdm_sample(pipe, tmp_path):
    assert main(["sample", "--seeds", ",".join(map(str, SEEDS)), "--npz", str(tmp_path / "s.npz"), "--quiet"]) == 0
    ours = np.load(tmp_path / "s.npz")["images"].astype(int)
    theirs = pipe(seeds=SEEDS, output_type="np").images.astype(int)
    assert np.abs(ours - theirs).max() <= 1                       # within 1/255 (channels-last rounding)


def test_super_resolution_and_generator_lists(pipe):
    chain = RelayChain.from_pretrained(bundled_demo_chain(), channels_last=False)
    low = chain.models[:1]
    base = RelayChain(low)(SEEDS)
    relay_only = RelayChain(chain.models[1:])(SEEDS, "balanced", low_res=base)
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    out = pipe(generator=gens, image=base, class_labels=[s % 10 for s in SEEDS], output_type="pt").images
    assert torch.equal(out, relay_only)
    with pytest.raises(ValueError, match="give seeds"):
        pipe()
    with pytest.raises(ValueError, match="output_type"):
        pipe(seeds=[0], output_type="jpg")


def test_generic_diffusers_loader(exported):
    p = DiffusionPipeline.from_pretrained(exported, custom_pipeline=str(exported), trust_remote_code=True)
    assert isinstance(p, RelayDiffusionPipeline)
    assert json.loads((exported / "model_index.json").read_text())["relay_unet"][1] == "RelayUNet"


def test_round_trip_is_bit_identical(exported, tmp_path):
    dirs = import_diffusers(exported, [tmp_path / "base", tmp_path / "relay"])
    for original, back in zip(bundled_demo_chain(), dirs):
        a, b = load_weights(original, "ema"), load_weights(back, "model")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        keep = ("stage", "resolution", "channels", "label_dim", "sigma_data", "network", "schedule")
        ca, cb = read_model_config(original), read_model_config(back)
        assert {k: ca.get(k) for k in keep} == {k: cb.get(k) for k in keep}
    with pytest.raises(ValueError, match="holds 2 stage"):
        import_diffusers(exported, [tmp_path / "x"])


def shrink(x, sigma, labels=None):
    return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


@pytest.mark.parametrize("corrector,eta", [("noise", 0.2), ("denoised", 0.5), ("noise", 0.0)])
def test_scheduler_steps_are_the_relay_samplers_steps(corrector, eta):
    sch = RelaySchedule(up_scale=2, blur_sigma_max=2.0)
    x_up = upsample_nearest(torch.rand(2, 1, 4, 4) * 2 - 1, 2)
    states = []
    ours = relay_sampler(shrink, x_up, schedule=sch, num_steps=20, eta=eta, corrector=corrector,
                         randn_like=SeededNoise([5, 6]), callback=lambda d: states.append(d["x"]))
    scheduler = RelayScheduler("relay", eta=eta, corrector=corrector, schedule=dataclasses.asdict(sch))
    scheduler.set_timesteps(20)
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    x = x_up + scheduler.init_noise_sigma * scheduler.noise_like(x_up, gens)
    theirs = []
    for k, t in enumerate(scheduler.timesteps):
        den = shrink(x, torch.full((2,), float(t)))
        x = scheduler.step(den, t, x, generator=gens).prev_sample
        if k % 2 == 1 or k == len(scheduler.timesteps) - 1:     # after each corrector, and the end
            theirs.append(x)
    assert len(theirs) == len(states) and all(torch.equal(a, b) for a, b in zip(states, theirs))
    assert torch.equal(ours, x)
    with pytest.raises(ValueError, match="finished"):
        scheduler.step(den, 0.1, x)


def test_scheduler_add_noise_is_the_forward_process():
    sch = RelaySchedule(up_scale=2)
    scheduler = RelayScheduler("relay", schedule=dataclasses.asdict(sch))
    x0, sigma = torch.rand(2, 1, 4, 4), torch.tensor([0.3, 0.7])
    noise = scheduler.noise_like(x0, [torch.Generator().manual_seed(s) for s in (1, 2)])
    torch.testing.assert_close(scheduler.add_noise(x0, noise, sigma), sch.corrupt(x0, sigma, SeededNoise([1, 2])))


def test_cli_export_and_import(tmp_path, capsys):
    demo = [str(d) for d in bundled_demo_chain()]
    out = tmp_path / "export"
    assert main(["export-diffusers", *demo, str(out)]) == 0
    assert (out / "model_index.json").is_file() and (out / "pipeline.py").is_file()
    assert main(["export-diffusers", *demo, str(out)]) == 2
    assert "already holds a diffusers export; pass --force" in capsys.readouterr().err
    assert main(["export-diffusers", *demo, str(out), "--force"]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("keep")
    assert main(["export-diffusers", *demo, str(tmp_path / "other")]) == 2
    assert (tmp_path / "other" / "keep.txt").read_text() == "keep"
    assert main(["import-diffusers", str(out), str(tmp_path / "b"), str(tmp_path / "r")]) == 0
    a, b = load_weights(tmp_path / "r", "model"), load_weights(demo[1], "ema")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert main(["import-diffusers", str(out), str(tmp_path / "r")]) == 2


@pytest.mark.parametrize("solver", ["ddim", "dpmpp-2m", "dpmpp-2m-pc", "dpmpp-3m-pc"])
def test_scheduler_runs_the_solvers_like_the_relay_sampler(solver):
    sch = RelaySchedule(up_scale=2, blur_sigma_max=2.0)
    x_up = upsample_nearest(torch.rand(2, 1, 4, 4) * 2 - 1, 2)
    kw = dict(num_steps=7, eta=0.2, solver=solver, sigma_grid="rho", rho=2.0)
    ours = relay_sampler(shrink, x_up, schedule=sch, randn_like=SeededNoise([5, 6]), **kw)
    scheduler = RelayScheduler("relay", schedule=dataclasses.asdict(sch), **{k: v for k, v in kw.items()
                                                                           if k != "num_steps"})
    scheduler.set_timesteps(7)
    assert len(scheduler.timesteps) == 7                                 # one evaluation per σ
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    x = x_up + scheduler.init_noise_sigma * scheduler.noise_like(x_up, gens)
    for t in scheduler.timesteps:
        x = scheduler.step(shrink(x, torch.full((2,), float(t))), t, x, generator=gens).prev_sample
    assert torch.equal(ours, x)


@pytest.mark.parametrize("recipe", [dict(S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.003),
                                    dict(method="sde", eta=0.05), dict(method="sde", eta=0.3, corrector="denoised"),
                                    dict(solver="dpmpp-3m-pc", rho=20.0), dict(method="sde", solver="dpmpp-2m", eta=0.1)])
def test_base_scheduler_runs_every_base_recipe_like_the_samplers(recipe):
    """Churn, the "sde" Heun and the integrators: the scheduler (start + steps) gives the base
    sampler's image bit for bit, and its timesteps are the σ's the sampler evaluates at."""
    from relay_diffusion import BaseSamplerSettings, edm_sampler, sde_heun_sampler
    st = BaseSamplerSettings(num_steps=9, **recipe)
    sampler = sde_heun_sampler if st.method == "sde" else edm_sampler
    noise = SeededNoise([5, 6])(torch.empty(2, 1, 4, 4))
    seen = []
    ours = sampler(lambda x, s, l: seen.append(float(s[0])) or shrink(x, s), noise, settings=st,
                   randn_like=SeededNoise([7, 8]))
    scheduler = RelayScheduler("base", **{k: v for k, v in dataclasses.asdict(st).items() if k != "cfg_scale"})
    scheduler.set_timesteps()                                              # the config's num_steps
    torch.testing.assert_close(scheduler.timesteps.float(), torch.tensor(seen))   # the sampler's σ in float32
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    x = scheduler.start(noise, generator=gens)
    for t in scheduler.timesteps:
        den = shrink(x, torch.full((2,), float(t)))
        out = scheduler.step(den, t, x, generator=gens)
        if st.method == "edm":                           # EDM's x̂₀ is each evaluation's own D
            assert out.pred_original_sample is den
        x = out.prev_sample
    assert torch.equal(ours, x)


def test_scheduler_config_names_and_older_exports():
    import inspect

    from relay_diffusion.stages import STAGE_KINDS
    params = set(inspect.signature(RelayScheduler.__init__).parameters)
    assert params >= {f.name for cls in (k.settings for k in STAGE_KINDS.values()) for f in dataclasses.fields(cls)} - {"cfg_scale"}
    with pytest.raises(TypeError, match="no setting 'sigma_mx'"):
        RelayScheduler("base", sigma_mx=3.0)
    with pytest.raises(ValueError, match="truncation_sigma is not a setting of a base stage"):
        RelayScheduler("base", truncation_sigma=0.5)
    with pytest.raises(ValueError, match="S_churn is not a setting of a relay stage"):
        RelayScheduler("relay", schedule=dataclasses.asdict(RelaySchedule()), S_churn=1.0)
    with pytest.raises(ValueError, match="eta"):
        RelayScheduler("base", eta=2.0)                                   # validated by the settings class
    # a base scheduler written before the settings table stored the relay fields at their defaults
    old = RelayScheduler("base", sigma_min=None, sigma_max=80.0, rho=7.0, truncation_sigma=0.9, prob_length=None,
                         eta=0.2, block_scale=None, corrector="noise", solver="heun", sigma_grid="truncated",
                         lambda_frequency=0.0)
    old.set_timesteps(18)
    assert len(old.timesteps) == 35 and old.timesteps[0] == 80.0


@pytest.mark.parametrize("preset", ["celebahq256", "imagenet256"])
def test_official_presets_export_and_reload(preset, tmp_path):
    """Every base recipe exports (churn, "sde"): the reloaded schedulers carry the recipe's settings."""
    from relay_diffusion.sampling.presets import chain_recipe
    assert main(["export-diffusers", *map(str, bundled_demo_chain()), str(tmp_path / preset), "--preset", preset]) == 0
    p = RelayDiffusionPipeline.from_pretrained(tmp_path / preset)
    base, relay = chain_recipe(preset)
    assert p.base_scheduler.settings == dataclasses.replace(base, cfg_scale=1.0)
    assert p.relay_scheduler.settings == dataclasses.replace(relay, cfg_scale=1.0)


def test_the_fast_preset_exports(tmp_path):
    from relay_diffusion.sampling.presets import chain_recipe
    assert main(["export-diffusers", *map(str, bundled_demo_chain()), str(tmp_path / "fast"), "--preset", "fast"]) == 0
    p = RelayDiffusionPipeline.from_pretrained(tmp_path / "fast")
    p.set_progress_bar_config(disable=True)
    chain = RelayChain.from_pretrained(bundled_demo_chain(), channels_last=False)
    fast = RelayChain(chain.models, chain_recipe("fast"))
    assert torch.equal(fast(SEEDS), p(seeds=SEEDS, output_type="pt").images)   # the recipe's step counts


def test_distilled_stages_export_and_sample_like_the_chain(tmp_path):
    """A distilled base (guidance distilled) + distilled relay chain exports; the pipeline runs
    their own ddim steps and the guidance input, and its images are the chain's."""
    from relay_diffusion.distillation.run import DistillConfig, distill
    from relay_diffusion.training import train
    from relay_diffusion.training.checkpoint import list_snapshots

    from helpers.training import small, write_edm_zip

    data = write_edm_zip(tmp_path / "d.zip", 16, 16, 1, classes=2)
    quiet = dict(echo=lambda s: None)
    train(small(data=str(data), outdir=str(tmp_path / "b"), resolution=8, duration=16, cond=True), **quiet)
    train(small(stage="relay", network="tiny-16", up_scale=2, data=str(data), outdir=str(tmp_path / "r"),
                duration=16, cond=True), **quiet)
    common = dict(data=str(data), steps=1, teacher_steps=2, round_images=8, batch=8, device="cpu")
    base = distill(DistillConfig(teacher=str(list_snapshots(tmp_path / "b")[-1]), outdir=str(tmp_path / "db"),
                                 guidance_range=(1.0, 3.0), **common), **quiet)
    relay = distill(DistillConfig(teacher=str(list_snapshots(tmp_path / "r")[-1]), outdir=str(tmp_path / "dr"),
                                  **common), **quiet)
    export_diffusers([base, relay], tmp_path / "x")
    pipe = RelayDiffusionPipeline.from_pretrained(tmp_path / "x")
    chain = RelayChain.from_pretrained([base, relay], channels_last=False)
    assert torch.equal(pipe(seeds=SEEDS, output_type="pt").images, chain(SEEDS))
    guided = RelayChain(chain.models, [s.with_overrides({"cfg_scale": 2.0}) for s in chain.settings])
    assert torch.equal(pipe(seeds=SEEDS, guidance_scale=2.0, output_type="pt").images, guided(SEEDS))
    assert guided.nfe() == [1, 2]                          # the base takes w as input, the relay stage CFG
    with pytest.raises(ValueError, match="distilled for guidance scales 1 to 3"):
        pipe(seeds=SEEDS, guidance_scale=5.0, output_type="pt")
    assert list(pipe.base_scheduler.config.sigmas) == read_model_config(base)["distilled"]["grid"]
    with pytest.raises(ValueError, match="distilled for 1 steps"):
        pipe(seeds=SEEDS, num_inference_steps=(4, 4), output_type="pt")
