"""The study driver (studies/fmnist32.py): snapshot lookup, the plan's consistency, the same
search for every model, choices made on selection seeds only, and the verdict's wording."""

from __future__ import annotations

import json

import fmnist32 as study                 # studies/ is on pytest's path (pyproject.toml)
import fmnist32_choose as choose
import fmnist32_evals as evals
import fmnist32_report as report
import numpy as np
import pytest
import solvers_points as points

from relay_diffusion.evaluation import protocol


def test_snapshot_dir_picks_the_nearest_written_snapshot(tmp_path):
    run = tmp_path / "runs" / "r"
    for images in (50_048, 100_096, 150_144):
        (run / f"snapshot-{images:012d}").mkdir(parents=True)
    assert study.snapshot_dir(tmp_path, "r", 100_000).name == "snapshot-000000100096"
    assert study.snapshot_dir(tmp_path, "r", 200_000) is None          # not trained that far yet
    assert study.snapshot_dir(tmp_path, "missing", 100_000) is None


def test_train_commands_carry_the_ablated_settings(tmp_path):
    cmd = study.train_command("relay32-alpha0", tmp_path)
    assert cmd[cmd.index("--block-scale") + 1] == "0.0"
    assert cmd[cmd.index("--config") + 1] == "fmnist-relay-8to32"
    assert "--noise-mixture" in study.train_command("relay32-paper", tmp_path)
    cmd = study.train_command("relay16to32", tmp_path)
    assert cmd[cmd.index("--up-scale") + 1] == "2"
    cmd = study.train_command("base16", tmp_path)
    assert (cmd[cmd.index("--network") + 1], cmd[cmd.index("--resolution") + 1]) == ("tiny-16", "16")


def test_every_evaluation_uses_trained_runs_and_enough_samples():
    for name, spec in evals.EVALS.items():
        assert spec["n"] >= 10_000, name
        for run, images, _ in spec.get("stages", []):
            assert run in study.RUNS, (name, run)
            assert images <= study.RUNS[run]["duration"], (name, run)  # a snapshot that will exist
    lanes = [r for lane in study.LANES for r in lane]
    assert sorted(lanes) == sorted(study.RUNS)                          # every run trained once


def test_every_table_row_is_measured_on_the_report_seeds_with_the_right_reference():
    pts = points.PLANS["study-evals"]()
    assert set(pts) == {n for n, s in evals.EVALS.items() if "real" not in s}
    assert all(p["seeds"] == "report" and p["n"] == 10_000 for p in pts.values())
    # RMSE only where it is defined: deterministic samplers of the final models
    assert pts["single@300k-dpm8"]["reference"] == "single-reference-report"
    assert pts["rdm@150k-dpm20"]["reference"] == "rdm8-chain-reference-report"
    assert pts["rdm@150k"]["reference"] is None                          # relay η = 0.2
    assert pts["rdm@100k-dpm20"]["reference"] is None                    # not the final model
    assert pts["single-seed1@300k"]["reference"] is None                 # another training


def test_the_search_is_the_same_for_every_model():
    pts = points.PLANS["study-search"]()
    def sampled(prefix, stage):
        return {(s["stages"][stage].get("solver"), s["stages"][stage]["num_steps"])
                for n, s in pts.items() if n.startswith(prefix)}
    single, base = sampled("single-search-", 0), sampled("rdm8-base-search-", 0)
    assert single == base                                                # identical settings
    relay_nfes = {int(n.rsplit("nfe", 1)[1]) for n in pts if n.startswith("rdm8-relay-search-")}
    single_nfes = {int(n.rsplit("nfe", 1)[1]) for n in pts if n.startswith("single-search-")}
    assert relay_nfes == single_nfes and min(single_nfes) == 3 and max(single_nfes) == 35
    assert all(s["seeds"] == "selection" for s in pts.values())
    refs = points.PLANS["study-reference"]()
    assert all(s["save"] for s in refs.values())
    assert {s["reference"] for s in pts.values()} <= set(refs)


def record(name, chain, nfe, rmse, fid, seeds="selection", n=1000):
    start = 0 if seeds == "selection" else 1_000_000
    settings = [dict(solver="dpmpp-2m", num_steps=k) for k in nfe]
    return dict(name=name, chain=chain, nfe=nfe, rmse=rmse, fid=fid, seeds=seeds, n=n,
                seed_range=[start, start + n - 1], settings=settings)


def write(tmp_path, *recs):
    (tmp_path / "points").mkdir(exist_ok=True)
    for r in recs:
        (tmp_path / "points" / f"{r['name']}.json").write_text(json.dumps(r))


def test_choices_take_the_best_within_each_budget_by_each_criterion(tmp_path):
    write(tmp_path, record("single-search-a-nfe4", "single", [4], rmse=0.10, fid=2.0),
          record("single-search-b-nfe8", "single", [8], rmse=0.05, fid=2.5),
          record("single-search-c-nfe35", "single", [35], rmse=0.01, fid=2.2),
          record("rdm8-chain-fid-b12-r3", "rdm8", [12, 3], rmse=0.08, fid=1.5),
          record("rdm8-chain-accuracy-b12-r8", "rdm8", [12, 8], rmse=0.03, fid=1.9),
          # the converged references share the prefix but are no sampler to choose (and one is
          # on the report seeds): cheap and perfect here, so picking one would show
          record("rdm8-chain-reference", "rdm8", [1, 1], rmse=0.0, fid=0.1),
          record("rdm8-chain-reference-report", "rdm8", [1, 1], rmse=0.0, fid=0.1, seeds="report"),
          record("single-reference-report", "single", [1], rmse=0.0, fid=0.1, seeds="report"))
    acc, fid = choose.budget_choices("accuracy", tmp_path), choose.budget_choices("fid", tmp_path)
    assert acc["single"][1.87]["name"] == "single-search-b-nfe8"         # 8 × 0.233 GFLOP
    assert fid["single"][1.87]["name"] == "single-search-a-nfe4"
    assert acc["single"][8.17]["name"] == "single-search-c-nfe35"
    assert 0.70 not in acc["rdm8"]                                       # no chain that cheap
    assert acc["rdm8"][2.8]["name"] == "rdm8-chain-accuracy-b12-r8"
    assert fid["rdm8"][2.8]["name"] == "rdm8-chain-fid-b12-r3"
    claim = choose.claim_choices("accuracy", tmp_path)                   # most accurate single: 35 NFE
    assert claim["single"]["name"] == "single-search-c-nfe35"
    assert claim["rdm_half_cost"]["name"] == "rdm8-chain-accuracy-b12-r8"    # within 8.17 / 2
    claim = choose.claim_choices("fid", tmp_path)                        # lowest single FID: 4 NFE, 0.93
    assert claim["rdm_half_cost"] is None and claim["rdm_same_cost"] is None


def test_choices_refuse_report_seed_records(tmp_path):
    write(tmp_path, record("single-search-a-nfe4", "single", [4], 0.1, 2.0, seeds="report"))
    with pytest.raises(ValueError, match="only read selection-seed records"):
        choose.budget_choices("fid", tmp_path)
    chosen = [record("x", "single", [4], 0.1, 2.0, n=1000)]
    choose.check_choices_unseen(chosen, 10_000)
    chosen[0]["seed_range"] = [1_000_000, 1_000_999]                     # chosen on report seeds
    with pytest.raises(ValueError, match="chosen on 1,000 of the seeds"):
        choose.check_choices_unseen(chosen, 10_000)


def test_the_same_cost_chain_is_the_one_chosen_at_the_single_stage_settings_own_budget(tmp_path):
    """6 single-stage evaluations cost 1.3999 GFLOP, inside the budget labelled 1.40: the chain
    RDM chose within 1.40 is the same-cost one, not the one chosen within the budget below."""
    write(tmp_path, record("single-search-a-nfe6", "single", [6], rmse=0.05, fid=1.0),
          record("single-search-b-nfe35", "single", [35], rmse=0.01, fid=2.0),
          record("rdm8-chain-fid-b6-r3", "rdm8", [6, 3], rmse=0.08, fid=2.5),      # 0.93 GFLOP
          record("rdm8-chain-fid-b4-r4", "rdm8", [4, 4], rmse=0.07, fid=1.5))      # 1.08 GFLOP
    claim = choose.claim_choices("fid", tmp_path)
    assert claim["single"]["name"] == "single-search-a-nfe6" and claim["cost"] == 1.40
    assert claim["rdm_same_cost"]["name"] == "rdm8-chain-fid-b4-r4"
    assert claim["rdm_half_cost"] is None                                # nothing within 0.70


def test_claim_verdict_words_follow_the_interval():
    boot = protocol.Bootstrap(10, 50)
    def est(value, spread):
        return protocol.Estimate(value, value + spread * np.linspace(-1, 1, 50), boot)
    better, worse, tied = est(-0.5, 0.1), est(0.5, 0.1), est(0.05, 0.2)
    assert report.claim_verdict([better, better]).startswith("met: ")
    assert report.claim_verdict([worse, worse]).startswith("not met: ")
    assert report.claim_verdict([tied, tied]).startswith("not measurable (no measurable difference)")
    # stated only where both feature spaces agree
    assert report.claim_verdict([better, worse]).startswith("not measurable (the feature spaces disagree: met, not met)")
    assert report.claim_verdict([better, None]) == "not measured yet"


def test_the_report_states_each_verdict_from_report_seed_records(tmp_path):
    """Selection records choose, report records (with replicates) decide: the verdict table and
    the claim lines are written from them; the sampling half is 'met' when RDM's FID interval
    lies below the single-stage model's."""
    from relay_diffusion.pipeline import bundled_demo_chain

    base_dir, relay_dir = (str(d) for d in bundled_demo_chain())
    pts = tmp_path / "search" / "points"
    pts.mkdir(parents=True)
    single = dict(record("single-search-a-nfe8", "single", [8], rmse=0.05, fid=2.0), models=[relay_dir])
    chain = dict(record("rdm8-chain-accuracy-b6-r3", "rdm8", [6, 3], rmse=0.04, fid=1.5), models=[base_dir, relay_dir])
    boot = protocol.Bootstrap(1000, 200)
    rng = np.random.default_rng(0)
    for r, fid in ((single, 2.0), (chain, 1.5)):
        (pts / f"{r['name']}.json").write_text(json.dumps(r))
        rep = dict(r, name=f"report-{r['name']}", seeds="report", n=1000, seed_range=[1_000_000, 1_000_999],
                   rmse_seeds=1000)
        reps = {}
        for metric, v in (("fid", fid), ("fid@fmnist-b", fid * 3), ("rmse", r["rmse"])):
            reps[metric] = v + 0.05 * rng.standard_normal(200)
            rep[metric] = v
            rep[metric + "_ci95"] = [v - 0.1, v + 0.1]
        (pts / f"{rep['name']}.json").write_text(json.dumps(rep))
        np.savez(pts / f"{rep['name']}-replicates.npz", **reps, bootstrap=np.array(json.dumps(boot.key())))
    (tmp_path / "provenance.jsonl").write_text(
        '{"time": "t0", "phase": "train", "commit": "0123456789abcdef", "dirty": false}\n'
        '{"time": "t1", "phase": "search", "commit": "0123456789abcdef", "dirty": false}\n'
        '{"time": "t2", "phase": "eval", "commit": "fedcba9876543210", "dirty": true}\n')
    report.write_report(tmp_path, tmp_path / "study.md", tmp_path / "fig")
    text = (tmp_path / "study.md").read_text()
    assert "- Code: `0123456789ab`, `fedcba987654` (local changes)" in text
    assert text.count("| real-test |") == 1 and text.count("| single@300k |") == 2   # all rows; seed spread
    assert "### Verdict at matched accuracy" in text and "### Verdict at matched FID-selected sampler" in text
    assert "| 1.87 | single-search-a-nfe8 (8) | rdm8-chain-accuracy-b6-r3 (6+3) | 2.000 [1.900, 2.100] |" in text
    assert "**Sampling cost ≤ 50 %**: RDM within 0.935 GFLOP/img (`rdm8-chain-accuracy-b6-r3`): met: " in text
    assert "Training compute ≤ 50 %" in text and "not measured yet" in text    # the 75k point is missing
    results = json.loads((tmp_path / "fig" / "results.json").read_text())["results"]
    assert results["report-rdm8-chain-accuracy-b6-r3"]["sample_gflop"] == pytest.approx(6 * 0.0376 + 3 * 0.2333, rel=0.01)


def test_every_run_is_sampled_and_its_weights_travel_whole_with_their_hashes(tmp_path):
    """The weights store (studies/fmnist32_weights.py): a finished run's sampled snapshots go in
    with their SHA-256, come back out into another workdir bit-identical, corrupt weights are
    refused, and a workdir's own other training of a stored run is moved aside, not mixed in."""
    import shutil

    import fmnist32_weights as store
    import solvers

    from relay_diffusion.pipeline import bundled_demo_chain

    used = store.used_snapshots()
    assert set(used) == set(study.RUNS)                               # nothing trained for nothing
    assert used["relay32"] == [50_000, 75_000, 100_000, 150_000] and used["base8"] == [400_000]
    run, images = "relay32-paper", used["relay32-paper"]
    assert images == [100_000]
    relay_dir = bundled_demo_chain()[1]
    snap = tmp_path / "a" / "runs" / run / "snapshot-000000100096"
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(relay_dir / f, snap / f)
    shutil.copyfile(relay_dir / "model.safetensors", snap / "ema.safetensors")   # the EMA is what is kept
    weights = tmp_path / "store"
    assert store.export_run(tmp_path / "a", "relay32", weights) is None          # not trained yet
    kept = store.export_run(tmp_path / "a", run, weights, "abc", False, study.training_command_line(run))
    record = json.loads((kept / "weights.json").read_text())
    assert record["snapshots"] == {snap.name: solvers.weights_sha256(snap)}
    assert record["commit"] == "abc" and record["trained_on"]["cpu"]
    assert record["command"].startswith("rdm train --config fmnist-relay-8to32 --data WORKDIR/")
    assert "--noise-mixture paper" in record["command"] and str(tmp_path) not in record["command"]

    assert store.import_runs(tmp_path / "b", weights) == [run]
    copy = tmp_path / "b" / "runs" / run / snap.name
    assert store.run_complete(tmp_path / "b", run) and solvers.weights_sha256(copy) == solvers.weights_sha256(snap)
    assert store.import_runs(tmp_path / "b", weights) == []                      # already there
    assert store.import_runs(tmp_path / "a", weights) == []                      # where it was trained

    other = tmp_path / "c" / "runs" / run / "snapshot-000000050048"             # a partial other training
    other.mkdir(parents=True)
    assert store.import_runs(tmp_path / "c", weights) == [run]
    assert [p.name.split(".")[1][:8] for p in (tmp_path / "c" / "runs").glob(f"{run}.*")] == ["replaced"]
    assert not (tmp_path / "c" / "runs" / run / other.name).exists()

    (kept / snap.name / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(SystemExit, match="do not match the SHA-256"):
        store.import_runs(tmp_path / "d", weights)


def test_finished_points_are_kept_and_resume_elsewhere_but_references_are_resampled(tmp_path):
    """solvers.keep_point / import_kept_points: a point's record and replicates outlive the
    workdir; a kept reference solution counts as unfinished until its images are there again."""
    import solvers

    a, keep, b = tmp_path / "a", tmp_path / "kept", tmp_path / "b"
    (a / "points").mkdir(parents=True)
    spec = {"n": 1000, "seeds": "report"}
    (a / "points" / "p.json").write_text(json.dumps({"name": "p", **spec}))
    np.savez(a / "points" / "p-replicates.npz", fid=np.arange(3.0))
    (a / "points" / "ref.json").write_text(json.dumps({"name": "ref", "n": 1000, "seeds": "selection"}))
    for name in ("p", "ref"):
        solvers.keep_point(a, name, keep)
    assert sorted(f.name for f in keep.iterdir()) == ["p-replicates.npz", "p.json", "ref.json"]
    assert solvers.import_kept_points(b, keep) == 2 and solvers.import_kept_points(b, keep) == 0
    assert np.load(b / "points" / "p-replicates.npz")["fid"].tolist() == [0.0, 1.0, 2.0]
    assert solvers.finished(b / "points" / "p.json", spec)
    assert not solvers.finished(b / "points" / "p.json", dict(spec, n=10_000))     # another count
    ref_spec = {"n": 1000, "seeds": "selection", "save": True}
    assert not solvers.finished(b / "points" / "ref.json", ref_spec)               # no images here
    (b / "images").mkdir()
    (b / "images" / "ref.pt").write_bytes(b"")
    assert solvers.finished(b / "points" / "ref.json", ref_spec)


def test_the_pipeline_from_search_records_to_the_report(tmp_path, monkeypatch):
    """The real plans end to end on made-up measurements: references and search records choose
    chains, the chosen chains and the table rows become report-seed points, and the report states
    every row and both verdicts from them (records stand in for sampling; nothing is sampled)."""
    import re

    from relay_diffusion.pipeline import bundled_demo_chain

    models = [str(d) for d in bundled_demo_chain()]
    pts = tmp_path / "search" / "points"
    pts.mkdir(parents=True)
    monkeypatch.setattr(choose, "SEARCH_DIR", tmp_path / "search")
    rng = np.random.default_rng(0)
    boot = protocol.Bootstrap(1000, 200)

    def measured(name, spec, nfe):
        report_seeds = spec.get("seeds") == "report"
        start = protocol.REPORT.start if report_seeds else 0
        r = dict(name=name, chain="single" if spec["chain"] == "single" else "rdm8", models=models[-len(nfe):],
                 seeds="report" if report_seeds else "selection", n=spec["n"], nfe=nfe, rmse_seeds=1000,
                 seed_range=[start, start + spec["n"] - 1], settings=spec["stages"])
        reps = {}
        for metric in ("fid", "fid@fmnist-b", "rmse", "recall"):
            r[metric] = float(rng.uniform(0.02, 3.0))
            reps[metric] = r[metric] + 0.05 * rng.standard_normal(200)
            if report_seeds:
                r[metric + "_ci95"] = [float(np.quantile(reps[metric], q)) for q in (0.025, 0.975)]
        if report_seeds:
            np.savez(pts / f"{name}-replicates.npz", **reps, bootstrap=np.array(json.dumps(boot.key())))
        (pts / f"{name}.json").write_text(json.dumps(r))

    def count(name):
        return int(re.search(r"nfe(\d+)", name).group(1))

    for name, spec in points.PLANS["study-reference"]().items():
        measured(name, spec, [100] if spec["chain"] == "single" else [100, 150])
    for name, spec in points.PLANS["study-search"]().items():
        k = count(name)
        measured(name, spec, [k] if name.startswith("single") else [k, 8] if "-base-" in name else [35, k])
    chains = points.PLANS["study-chains"]()
    assert chains and all(n.startswith(("rdm8-chain-accuracy-", "rdm8-chain-fid-")) for n in chains)
    for name, spec in chains.items():
        measured(name, spec, [int(v) for v in re.search(r"-b(\d+)-r(\d+)", name).groups()])
    verdicts = points.PLANS["study-verdicts"]()
    for criterion in choose.CRITERIA:                   # every budget's choice is measured on report seeds
        for chosen in choose.budget_choices(criterion).values():
            assert {f"report-{r['name']}" for r in chosen.values()} <= set(verdicts)
    assert any(n.startswith("report-half-training-") for n in verdicts)
    assert any(n.startswith("report-seed1-") for n in verdicts)
    evaluations = points.PLANS["study-evals"]()
    for name, spec in {**evaluations, **verdicts}.items():
        assert spec["seeds"] == "report"
        measured(name, spec, [s.get("num_steps", 18) for s in spec["stages"]])
    measured("real-test", dict(chain="single", n=10_000, stages=[{}], seeds="report"), [0])
    report.write_report(tmp_path, tmp_path / "study.md", tmp_path / "fig")
    text = (tmp_path / "study.md").read_text()
    assert "not measured yet" not in text                                   # every row and verdict
    for name in evals.EVALS:
        assert text.count(f"| {name} |") >= 1
    assert text.count("| real-test |") == 1
    assert text.count("with the second training seed's models") == 2             # one per verdict
    assert len(re.findall(r"\*\*Sampling cost ≤ 50 %\*\*: RDM within [0-9.]+ GFLOP/img.*(met|not met|not measurable)",
                          text)) == 2
    assert len(re.findall(r"\*\*Training compute ≤ 50 %\*\*.*: (met|not met|not measurable)", text)) == 2
    assert (tmp_path / "fig" / "fid_vs_sampling.png").stat().st_size > 0


def test_a_run_that_ends_in_the_report_is_refused_up_front_without_matplotlib(tmp_path, monkeypatch):
    real = study.importlib.util.find_spec
    monkeypatch.setattr(study.importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a))
    for phase in ("report", "all"):
        with pytest.raises(SystemExit, match=r"\[plot\]"):
            study.main(["--workdir", str(tmp_path / "w"), "--phase", phase, "--results", "none", "--weights", "none"])
    assert not (tmp_path / "w").exists()                 # refused before anything is written
