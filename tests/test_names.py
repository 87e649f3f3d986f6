"""One name per meaning (docs/method.md §11): the official names stay accepted as aliases, with
the same results, in sampler keywords, stored settings, run configs and CLI flags."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from relay_diffusion import RelaySchedule
from relay_diffusion.cli import build_parser, main
from relay_diffusion.cli.train import resolve_config
from relay_diffusion.sampling import (BaseSamplerSettings, RelaySamplerSettings, edm_sampler, relay_sampler,
                                      sde_heun_sampler)
from relay_diffusion.seeds import SeededNoise
from relay_diffusion.training.config import TrainConfig
from relay_diffusion.training.rundir import check_resume, record_run


def shrink(x, sigma, labels=None):
    return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


def run_relay(**kw):
    x_up = torch.zeros(2, 1, 8, 8)
    return relay_sampler(shrink, x_up, schedule=RelaySchedule(up_scale=2), randn_like=SeededNoise([3, 4]), **kw)


def test_official_sampler_names_are_aliases_with_the_same_result():
    ours = run_relay(eta=0.3, block_scale=0.05, prob_length=1.05, num_steps=10)
    official = run_relay(s_noise=0.3, s_block=0.05, truncation_t=1.05, num_steps=10)
    settings = RelaySamplerSettings(eta=0.3, block_scale=0.05, prob_length=1.05, num_steps=10)
    assert torch.equal(ours, official) and torch.equal(ours, run_relay(settings=settings))
    assert not torch.equal(ours, run_relay(num_steps=10))             # the settings do act
    z = SeededNoise([1]).randn(1, 4, 4)
    assert torch.equal(sde_heun_sampler(shrink, z, sde_scale=0.2, num_steps=6, randn_like=SeededNoise([1])),
                       sde_heun_sampler(shrink, z, eta=0.2, num_steps=6, randn_like=SeededNoise([1])))


@pytest.mark.parametrize("call,error,match", [
    (lambda: run_relay(eta=0.1, s_noise=0.1), TypeError, "'s_noise' is another name for 'eta'; give it once"),
    (lambda: run_relay(noise=0.1), TypeError, "RelaySamplerSettings has no setting 'noise'.*official aliases: .*s_noise"),
    (lambda: run_relay(cfg_scale=2.0), TypeError, "does not apply guidance; wrap the denoiser"),
    (lambda: run_relay(settings=BaseSamplerSettings()), TypeError, "relay_sampler takes RelaySamplerSettings"),
    (lambda: edm_sampler(shrink, torch.zeros(1, 1, 4, 4), method="sde"), ValueError, "use sde_heun_sampler"),
    (lambda: edm_sampler(shrink, torch.zeros(1, 1, 4, 4), corrector="denoised"), ValueError, "method 'sde' only"),
    (lambda: run_relay(truncation_t=3.0), ValueError, r"prob_length \(the sampler's L; official: truncation_t\)"),
])
def test_bad_names_and_mixed_settings_are_refused(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_stored_settings_with_official_names_load():
    old = {"num_steps": 8, "s_noise": 0.0, "s_block": 0.1, "truncation_t": 0.9, "cfg_scale": 2.0}
    assert RelaySamplerSettings.from_dict(old) == RelaySamplerSettings(num_steps=8, eta=0.0, block_scale=0.1,
                                                                         prob_length=0.9, cfg_scale=2.0)
    assert BaseSamplerSettings.from_dict({"method": "sde", "sde_scale": 0.1}).eta == 0.1


def flat_run_config(tmp_path) -> dict:
    """A run config.json as written before TrainConfig embedded the RelaySchedule."""
    return {"stage": "relay", "data": str(tmp_path / "d.zip"), "outdir": str(tmp_path / "run"), "up_scale": 2,
            "block_scale": 0.1, "prob_length": 0.89, "blur_sigma_max": 2.0, "min_scale": 1e-3,
            "noise_mixture": "paper", "truncate_sigma": 0.007, "workers": 2, "P_mean": -1.0}


def test_older_flat_run_configs_read_into_the_schedule(tmp_path):
    cfg = TrainConfig.from_dict(flat_run_config(tmp_path))
    assert cfg.schedule == RelaySchedule(up_scale=2, block_scale=0.1, prob_length=0.89, blur_sigma_max=2.0,
                                         noise_mixture="paper", P_mean=-1.0)
    assert cfg.train_sigma_min == 0.007
    with pytest.raises(ValueError, match="truncate_sigma is another name for train_sigma_min"):
        TrainConfig.from_dict({**flat_run_config(tmp_path), "train_sigma_min": 0.007})
    # a run recorded in the old format resumes under the new one
    (tmp_path / "run").mkdir()
    (tmp_path / "d.zip").write_bytes(b"x")
    (tmp_path / "run" / "config.json").write_text(json.dumps(flat_run_config(tmp_path)))
    assert check_resume(cfg, tmp_path / "run") is None
    record_run(cfg, tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["schedule"]["up_scale"] == 2 and "up_scale" not in stored and "workers" not in stored
    assert TrainConfig.from_dict(stored) == cfg


def test_train_flags_set_the_schedule_and_keep_the_official_names():
    args = build_parser("train").parse_args([
        "train", "--config", "fmnist-relay-8to32", "--data", "d", "--outdir", "o", "--block-kind", "nearest",
        "--up-scale", "2", "--truncate-sigma", "0.008"])
    cfg = resolve_config(args)
    assert (cfg.schedule.block_kind, cfg.schedule.up_scale, cfg.train_sigma_min) == ("nearest", 2, 0.008)
    assert cfg.schedule.blur_sigma_max == 3.0                              # the preset's, kept
    assert dataclasses.asdict(cfg)["schedule"]["block_kind"] == "nearest"


def test_sample_flag_aliases_record_the_new_names(tmp_path, capsys):
    out = {}
    for tag, flags in (("new", ["--eta=-,0.1", "--cfg-scale", "2"]),
                       ("old", ["--s-noise=-,0.1", "--cfg", "2"])):
        assert main(["sample", "--seeds", "0", "--steps", "4", "--grid", str(tmp_path / f"{tag}.png"),
                     "--settings", str(tmp_path / f"{tag}.json"), "--quiet", *flags]) == 0
        out[tag] = json.loads((tmp_path / f"{tag}.json").read_text())["stages"]
    assert out["new"] == out["old"]
    assert out["new"][1]["sampler"]["eta"] == 0.1 and out["new"][0]["sampler"]["cfg_scale"] == 2.0
    assert (tmp_path / "new.png").read_bytes() == (tmp_path / "old.png").read_bytes()


def test_every_setting_is_a_flag_an_alias_and_a_scheduler_field_from_one_table(capsys):
    """The settings' field table makes the aliases, the per-stage flags (official spellings
    included) and the analyze flags: a field added to a settings class appears everywhere."""
    from relay_diffusion.cli.chain_flags import STAGE_FLAGS, add_chain_arguments, stage_settings
    from relay_diffusion.models import read_config
    from relay_diffusion.pipeline import bundled_demo_chain
    from relay_diffusion.stages import STAGE_KINDS

    flagged = {field for field, *_ in STAGE_FLAGS.values()}
    for cls in (k.settings for k in STAGE_KINDS.values()):
        for f in dataclasses.fields(cls):
            assert f.name in flagged and f.metadata["help"]
            for official in f.metadata["official"]:
                assert cls.ALIASES[official] == f.name
    import argparse
    p = argparse.ArgumentParser()
    add_chain_arguments(p, "0-3")
    args = p.parse_args(["--s-noise=-,0.3", "--churn", "2,-", "--truncation-t", "1.05", "--cfg", "2",
                         "--steps", "9,5"])
    base, relay = stage_settings([read_config(d) for d in bundled_demo_chain()], None, args)
    assert (relay.eta, base.eta, base.S_churn, relay.prob_length) == (0.3, BaseSamplerSettings().eta, 2.0, 1.05)
    assert (base.cfg_scale, relay.cfg_scale, base.num_steps, relay.num_steps) == (2.0, 2.0, 9, 5)
    capsys.readouterr()
    assert main(["analyze", "schedule", "--s-noise", "0.4", "--solver", "ddim", "--json"]) == 0
    sampler = json.loads(capsys.readouterr().out)["sampler"]
    assert (sampler["eta"], sampler["solver"]) == (0.4, "ddim")
    with pytest.raises(SystemExit):                                       # choices come from the table
        main(["analyze", "schedule", "--solver", "rk4"])
