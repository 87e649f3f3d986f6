"""The distillation study (studies/distill.py, distill_points.py, distill_report.py): its plans
are valid chains with the evaluations they claim, choices read selection records only, the
compute accounting counts the teacher's evaluations, and the whole study runs end to end on the
bundled demo chain at a toy size (slow)."""

from __future__ import annotations

import json
import shutil

import distill as study                    # studies/ is on pytest's path (pyproject.toml)
import distill_points as plans
import pytest

from relay_diffusion.evaluation import protocol
from relay_diffusion.models import read_config
from relay_diffusion.pipeline import bundled_demo_chain

from helpers.training import write_edm_zip


def test_every_selection_and_report_point_is_a_valid_spec(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "STORE", tmp_path / "store")           # nothing distilled, nothing kept
    sel = plans.selection_plan(tmp_path, ("demo", "rdm8", "single"))
    rep = plans.report_plan(tmp_path, tmp_path / "points", ("demo", "rdm8", "single"))
    assert all(s["seeds"] == "selection" for s in sel.values())
    assert all(s["seeds"] == "report" for s in rep.values())
    assert not set(sel) & set(rep) - {n for n in sel if "reference" in n}
    for name, spec in {**sel, **rep}.items():
        models = spec.get("stage_models") or []
        assert len(models) <= len(spec["stages"]), name
        if "-distilled-nfe" in name:
            steps = int(name.rsplit("nfe", 1)[1])
            assert steps < plans.TEACHER_STEPS["relay" if "relay" in name else "base"]
            assert "pending" in str([m for m in models if m][0])       # not distilled yet: the point waits
    # students at 8 exist for the base stage only (the relay's first teacher takes 8)
    assert "distill-sel-demo-base-distilled-nfe8" in sel and "distill-sel-demo-relay-distilled-nfe8" not in sel


def test_choices_refuse_report_records(tmp_path):
    points = tmp_path / "points"
    points.mkdir()
    (points / "distill-sel-demo-relay-ddim-rho2-nfe2.json").write_text(json.dumps(
        {"name": "distill-sel-demo-relay-ddim-rho2-nfe2", "seeds": "report", "fid": 1.0, "rmse": 0.1}))
    with pytest.raises(ValueError, match="only read selection-seed records"):
        plans.best_solver(points, "demo-relay", "relay", 2, "fid")


def test_teacher_evaluations_per_round_image(tmp_path):
    """Round 1 of the relay stage: dpmpp-2m-pc takes the corrected pair (2 or 3 calls), twice
    under classifier-free guidance; later rounds: two ddim calls, guidance as an input."""
    cfg = study.distill_config("demo-relay", tmp_path, tmp_path)
    assert cfg.rounds == 3 and cfg.teacher == str(bundled_demo_chain()[1])
    first, *later = (study.teacher_evaluations(cfg, k) for k in range(1, 4))
    assert 2 * 2 <= first <= 2 * 3 and later == [2.0, 2.0]
    flops = study.network_flops(bundled_demo_chain()[1])
    assert flops["train"] > 2 * flops["forward"] > 0
    from relay_diffusion.models import RelayModel, network_flops
    model = RelayModel.from_pretrained(bundled_demo_chain()[1])
    assert network_flops(model) == flops                                    # counted on a copy:
    assert not model.denoiser.net.training and not any(p.requires_grad for p in model.denoiser.parameters())
    total = study.distillation_flops(cfg, flops)
    assert total == pytest.approx(cfg.round_images * (3 * flops["train"] + (first + 4) * flops["forward"]))


def test_the_study_students_distil_no_guidance(tmp_path, monkeypatch):
    """The study's distillations keep guidance out of the student (docs/distillation.md §6): no
    scale input, and round 1's teacher runs once per step, not twice as under CFG."""
    monkeypatch.setattr(study, "teacher_dir", lambda name, s: bundled_demo_chain()[1])
    cfg = study.distill_config("rdm8-relay", tmp_path, tmp_path)
    assert cfg.guidance_range == ()
    guided = study.distill_config("demo-relay", tmp_path, tmp_path)
    assert study.teacher_evaluations(guided, 1) == 2 * study.teacher_evaluations(cfg, 1)


def test_round_statistics_from_status_lines(tmp_path):
    """Per round: CPU time is images ÷ rate per status line and a resume's re-logged lines (from its
    snapshot on) are counted once; the losses are the first, mid-way and last status lines'."""
    def line(nimg, loss, rate=100.0):
        return json.dumps({"nimg": nimg, "loss": loss, "img_per_s": rate})
    (tmp_path / "round-1").mkdir()
    (tmp_path / "round-1" / "stats.jsonl").write_text("\n".join([
        line(1000, 0.4), line(2000, 0.3), line(3000, 0.9),           # interrupted after 3,000 images
        line(3000, 0.2), line(4000, 0.1)]) + "\n")                  # resumed from the 2,000 snapshot
    (tmp_path / "round-2").mkdir()
    (tmp_path / "round-2" / "stats.jsonl").write_text(line(500, 0.05, rate=50.0) + "\n")
    assert study.round_losses(tmp_path) == [[0.4, 0.3, 0.1], [0.05, 0.05, 0.05]]
    assert study.cpu_hours(tmp_path) * 3600 == pytest.approx(3000 / 100 + 2000 / 100 + 500 / 50)   # 1k images done twice


def test_the_script_runs_as_the_module_the_plans_read(monkeypatch):
    """`python studies/distill.py --weights W`: --weights must reach the `distill` module that
    distill_points.stage_dir reads, not a second copy of it in __main__."""
    import runpy
    import sys

    import distill_report

    monkeypatch.setattr(sys, "argv", ["distill.py", "--weights", "elsewhere", "--write-docs"])
    monkeypatch.setattr(study, "accounting", lambda *a: {})              # --write-docs without a study
    monkeypatch.setattr(distill_report, "write_report", lambda *a: None)
    monkeypatch.setattr(study, "STORE", study.STORE)                    # restored after the test
    with pytest.raises(SystemExit) as done:
        runpy.run_path(study.__file__, run_name="__main__")
    assert done.value.code == 0 and str(study.STORE) == "elsewhere"


def test_a_fresh_points_dir_reads_kept_selection_records_before_the_report_plan(tmp_path, monkeypatch):
    """`--phase report --keep K` on a new machine: the plan's chosen rows (here the guidance rows
    of the chain chosen on the selection seeds) come from records kept in K, so they must be in
    the points dir before the plan is built, not only before it runs."""
    keep = tmp_path / "keep"
    keep.mkdir()
    for (b, r), fid in zip(plans.SMALL_CHAINS, (3.0, 2.0, 1.0, 4.0)):
        name = f"distill-sel-demo-chain-b{b}r{r}"
        (keep / f"{name}.json").write_text(json.dumps({"name": name, "seeds": "selection", "fid": fid}))
    planned = {}
    monkeypatch.setattr(study, "run_plan", lambda plan, *a, **k: planned.update(plan))
    monkeypatch.setattr(study, "STORE", tmp_path / "store")
    study.main(["--workdir", str(tmp_path / "work"), "--study", str(tmp_path / "study"), "--phase", "report",
                "--points-dir", str(tmp_path / "fresh"), "--chains", "demo", "--keep", str(keep)])
    b, r = plans.SMALL_CHAINS[2]
    assert f"distill-rep-demo-chain-b{b}r{r}-w2" in planned
    assert not [n for n in planned if "-w" in n and "chain-b" in n and f"b{b}r{r}" not in n]


def test_single_stage_rows_state_flops_per_image_from_the_evaluations_made():
    """The single-stage comparison's GFLOP column counts each stage's evaluations of the record
    (not the row's label) at that stage's forward cost; a row not measured says so."""
    from distill_report import single_section

    acc = {"single": {"forward_gflop": 0.5}, "rdm8-base": {"forward_gflop": 0.1}, "rdm8-relay": {"forward_gflop": 0.4}}
    recs = {"distill-rep-rdm8-chain-b1r2": {"nfe": [1, 2], "fid": 2.0},
            "distill-rep-single-distilled-nfe2": {"nfe": [2], "fid": 3.0}}

    class Recs(dict):                                                 # no intervals: nothing to compare
        all = recs

        def estimate(self, name, metric):
            return None
    text = "\n".join(single_section(Recs(recs), acc))
    assert "| RDM 8→32, distilled 1 + 2 | 1 + 2 | 0.90 | 2.000* |" in text
    assert "| single, distilled 2 | 2 | 1.00 | 3.000* |" in text
    assert "| single, distilled 1 | not measured yet |" in text
    assert "at about equal FLOPs (1 + 2 against 2; RDM adds one 8×8 evaluation): not measured yet" in text


def test_targets_and_rankings_are_stated_in_both_feature_spaces():
    """A target met in the first feature space but not in the second says so for each; a
    difference whose interval covers 0 is 'no measurable difference'."""
    import numpy as np
    from distill_report import against, difference

    boot = protocol.Bootstrap(n=10, resamples=200)
    jitter = np.random.default_rng(0).normal(size=200)

    def est(value, spread):                                      # replicates centred on the value
        return protocol.Estimate(value, value + spread * jitter, boot)
    table = {("a", "fid"): est(1.02, 0.001), ("b", "fid"): est(1.0, 0.0),
             ("a", "fid@fmnist-b"): est(1.3, 0.001), ("b", "fid@fmnist-b"): est(1.0, 0.0)}

    class Recs:
        def estimate(self, name, metric):
            return table.get((name, metric))
    text = against(Recs(), "a", "b")
    first, second = text.split("; 2nd space: ")
    assert first.startswith("+2.0 %") and first.endswith("— met")
    assert second.startswith("+30.0 %") and second.endswith("— not met ⇒ **the feature spaces disagree: not claimed as met**")
    assert "—" not in against(Recs(), "a", "b", verdict=False)
    assert against(Recs(), "a", "c") == "not measured yet; 2nd space: not measured yet"
    table[("a", "fid@fmnist-b")] = est(1.01, 0.001)
    assert against(Recs(), "a", "b").endswith("— met ⇒ **met**")
    table[("a", "fid")] = est(1.0, 0.05)
    assert difference(Recs(), ("a", "b")).startswith("no measurable difference (")


def test_chain_compute_sums_the_stages_against_their_teachers():
    """The demo chain's target is on base + relay together (≤ 50 % of their training FLOPs); a
    chain whose teacher's training is unknown is left out rather than guessed."""
    from distill_report import chain_compute

    def entry(distil, trained, hours=1.0):
        return {"distill_pflop": distil, "teacher_train_pflop": trained, "cpu_hours": hours}
    acc = {"demo-base": entry(0.1, 0.2), "demo-relay": entry(0.3, 0.6), "rdm8-base": entry(0.2, 0.2),
           "rdm8-relay": entry(0.2, None), "single": entry(0.4, 0.5)}
    lines = chain_compute(acc)
    assert len(lines) == 2 and "0.400 PFLOP, 2.00 CPU h, against 0.800 PFLOP" in lines[0]
    assert lines[0].endswith(": 50 % — target ≤ 50 %: met")            # 0.4 of 0.8: met at the limit
    assert lines[1].startswith("- single-stage 32×32: 0.400 PFLOP against RDM 8→32's 0.400")
    acc["demo-relay"] = entry(0.5, 0.6)
    assert chain_compute(acc)[0].endswith("75 % — target ≤ 50 %: not met")


@pytest.mark.slow
def test_the_study_runs_end_to_end_at_a_toy_size(tmp_path, monkeypatch):
    """Distil the bundled demo chain for a few images per round, run the selection and report
    plans on a handful of seeds, write the report: every target line and table is there."""
    work, points_dir, data_dir = tmp_path / "distill", tmp_path / "points", tmp_path / "study"
    data_dir.mkdir()
    write_edm_zip(data_dir / "fmnist32-train.zip", 64, 32, 1, classes=10)
    for name in ("demo-relay", "demo-base", "demo-relay-from-b2"):
        monkeypatch.setitem(study.DISTILLATIONS, name, dict(study.DISTILLATIONS[name], round_images=16))
    monkeypatch.setitem(study.COMMON, "batch", 8)
    for name, value in (("SAMPLES_QUICK", 6), ("SAMPLES_FULL", 8), ("REFERENCE_SAMPLES", 4),
                        ("MULTISTEP", ("ddim", "dpmpp-2m-pc")), ("SOLVER_NFES", (2,)),
                        ("CHAIN_STEPS", [(1, 1), (2, 1)]), ("SMALL_CHAINS", [(1, 1), (2, 1)]), ("GUIDANCE", (2.0,))):
        monkeypatch.setattr(plans, name, value)
    monkeypatch.setattr(plans, "CONVERGED_RELAY", dict(plans.CONVERGED_RELAY, num_steps=6))
    monkeypatch.setattr(plans, "CONVERGED_BASE", dict(plans.CONVERGED_BASE, num_steps=6))
    store = tmp_path / "weights"
    monkeypatch.setattr(study, "STORE", study.STORE)                # main() sets it from --weights
    args = ["--workdir", str(work), "--study", str(data_dir), "--points-dir", str(points_dir), "--batch", "4",
            "--keep", str(tmp_path / "kept"), "--weights", str(store)]
    assert study.main(args + ["--phase", "distill", "--only", "demo-relay,demo-base,demo-relay-from-b2"]) == 0
    final = read_config(work / "demo-relay" / "model")
    assert len(final.distilled_grid) == 1 and final.guidance_range == (1.0, 3.0)
    assert read_config(work / "demo-relay-from-b2" / "model").distilled["relay_starts"] == str(
        study.student_dir(work, "demo-base", 2)) == str(store / "demo-base" / "round-3")     # the kept 2-step base
    assert read_config(work / "one-step" / "demo-base").distilled_grid == [pytest.approx(80.0)]
    # every round's student is kept with its hash and status lines; a new workdir uses the kept ones
    from kept_weights import read_checked, weights_sha256
    record = read_checked(store / "demo-relay", "rounds")
    assert record["student_steps"] == {"round-1": 4, "round-2": 2, "round-3": 1}
    assert record["teacher_sha256"] == weights_sha256(bundled_demo_chain()[1]) and "WORKDIR" in record["command"]
    from relay_diffusion.training.checkpoint import list_snapshots
    own = list_snapshots(work / "demo-relay" / "round-3")[-1]
    assert record["rounds"]["round-3"] == weights_sha256(own) == weights_sha256(work / "demo-relay" / "model")
    hours = study.cpu_hours(work / "demo-relay")
    elsewhere = tmp_path / "elsewhere"
    assert study.main([*args[:1], str(elsewhere), *args[2:], "--phase", "distill", "--only", "demo-relay"]) == 0
    assert not (elsewhere / "demo-relay").exists() and (elsewhere / "one-step" / "demo-relay").exists()
    assert study.student_dir(elsewhere, "demo-relay", 1) == store / "demo-relay" / "round-3"
    assert study.cpu_hours(study.distillation_dir(elsewhere, "demo-relay")) == hours > 0
    tampered = tmp_path / "tampered"                                 # a kept student that is not what was kept
    shutil.copytree(store / "demo-relay", tampered / "demo-relay")
    weights = tampered / "demo-relay" / "round-2" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    monkeypatch.setattr(study, "STORE", tampered)
    with pytest.raises(SystemExit, match="do not match the SHA-256"):
        study.student_dir(elsewhere, "demo-relay", 1)
    monkeypatch.setattr(study, "STORE", store)
    assert study.main(args + ["--phase", "select"]) == 0
    chosen = plans.chosen_chain(points_dir / "points", "demo")
    assert chosen in [(1, 1), (2, 1)]
    sel = json.loads((points_dir / "points" / "distill-sel-demo-relay-distilled-nfe1.json").read_text())
    assert sel["nfe"] == [35, 1] and sel["seeds"] == "selection" and "rmse" in sel
    assert sel["models"][1] == str(study.student_dir(work, "demo-relay", 1)) == str(store / "demo-relay" / "round-3")
    assert study.main(args + ["--phase", "report"]) == 0
    rep = json.loads((points_dir / "points" / "distill-rep-demo-relay-distilled-nfe1.json").read_text())
    assert rep["seeds"] == "report" and "fid_ci95" in rep and rep["seed_range"][0] == protocol.REPORT.start
    kept = tmp_path / "kept" / "distill-rep-demo-relay-distilled-nfe1.json"             # kept beside the workdir
    assert json.loads(kept.read_text()) == rep
    assert (tmp_path / "kept" / "distill-rep-demo-relay-distilled-nfe1-replicates.npz").exists()
    guided = json.loads((points_dir / "points" / f"distill-rep-demo-chain-b{chosen[0]}r{chosen[1]}-w2.json")
                        .read_text())
    assert guided["nfe"] == list(chosen)                                     # guidance as an input: no extra calls
    bundled, suffix, base, relay = plans.bundled_chain(points_dir / "points")    # the first students or -from-b2's
    assert suffix in ("", "-from-b2") and relay == {"": "demo-relay", "-from-b2": "demo-relay-from-b2"}[suffix]
    assert study.bundle(work, points_dir, tmp_path / "pkg") == bundled
    dirs = [tmp_path / "pkg" / study.BUNDLE[n] for n in ("base", "relay")]
    assert str(tmp_path) not in "".join((d / "config.json").read_text() for d in dirs)   # no machine paths
    assert "--guidance-range 1.0,3.0" in read_config(dirs[1]).training["command"]        # as distilled
    from relay_diffusion.pipeline import RelayChain
    assert RelayChain.from_pretrained(dirs).nfe() == list(bundled)
    assert read_config(dirs[1]).class_names == read_config(bundled_demo_chain()[1]).class_names   # the teacher's
    monkeypatch.setattr(study, "DOC", tmp_path / "report.md")
    assert study.main(args[:4] + ["--points-dir", str(points_dir), "--write-docs"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "relay stage at 1 evaluation vs the 8-evaluation dpmpp-2m-pc" in text
    assert "| fast base (12) + distilled relay 1 | 12 + 1 |" in text          # the cross rows were measured
    interaction = next(line for line in text.splitlines() if line.startswith("- interaction, distilled relay 1 "))
    assert "not measured yet" not in interaction
    assert "| demo-relay | 3 × 16 | 5.5, 2, 2 |" in text and "### demo-base: the base stage of demo" in text
    assert "Does a relay chain distil" not in text                  # the study's models: not distilled here
    restarted = text.split("the relay distilled from the base student's samples (from-b2)")[1]
    pick = plans.chosen_chain(points_dir / "points", "demo", "-from-b2")
    line = next(x for x in restarted.splitlines() if x.startswith(f"- whole chain at {sum(pick)} evaluations"))
    assert "not measured yet" not in line and "interaction, this relay 1 on this base 2" in restarted
    assert "| demo-relay-from-b2 | 3 × 16 |" in text
