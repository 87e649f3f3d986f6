"""The distillation study (docs/distillation.md "Study"): distilled relay chains against the
best solvers at the same network evaluations, whether a relay stage distils more easily than a
single-stage model, and what distillation costs against the teachers' training.

    python studies/distill.py --workdir runs/distill --study runs/study-fmnist32 --phase distill
    python studies/distill.py --workdir runs/distill --points-dir runs/solvers --chains demo --phase select
    python studies/distill.py --workdir runs/distill --points-dir runs/solvers --chains demo --phase report
    python studies/distill.py --workdir runs/distill --points-dir runs/solvers --bundle
    python studies/distill.py --workdir runs/distill --points-dir runs/solvers,runs/study-fmnist32/search --write-docs

Phase distill runs `rdm distill`'s library call for each entry of DISTILLATIONS (resumable; one
process, give it OMP_NUM_THREADS=1 beside other jobs) and writes each teacher's one-step sampler
(the teacher's single denoise from the first σ of its grid: what one evaluation buys without
distillation). Each finished distillation's students (every round's) are kept in
studies/weights/distill/<name>/ (--weights; kept_weights.py) and used from there instead of
distilled again, so the study resumes on another machine. Phases select and report run the plans of
distill_points.py in the solver study's engine (studies/solvers.py: FID and precision/recall in two
feature spaces, the radial spectra, RMSE to each stage's converged ODE; on the report seeds KID and
a 95 % paired-bootstrap interval for each) into --points-dir, which should be the solver study's
folder of the same chains so that the converged references and the shared base samples are reused:
the demo chain's is the one of `studies/solvers.py`, the Fashion-MNIST study's models' is
<study>/search. Any number of single-thread processes (OMP_NUM_THREADS=1) may run the same select
or report command at once: each takes the next point no other is measuring. --write-docs writes
docs/distillation-study.md from the records: the tables, the issue's targets as met / not met /
not measurable, and the compute accounting (FLOPs counted per network evaluation; CPU hours from
the rounds' logs).

The single-stage model gets the same distillation compute as the RDM chain (base + relay) of the
same study, in FLOPs: its rounds' images are chosen so (`equal_compute_images`).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "distillation-study.md"
# finished distillations (every round's student, kept_weights.py) are kept here and used instead of
# the workdir's, so the study resumes on another machine; None: keep and use nothing (--weights)
DEFAULT_STORE = ROOT / "studies" / "weights" / "distill"
STORE: Path | None = DEFAULT_STORE

# what is distilled: the teacher (chain, stage index), the first teacher's evaluations (the fast
# preset's grid at that count) and the training images per round; every distillation ends at one
# evaluation, so each round's last snapshot is the student with half the previous round's steps
COMMON = dict(steps=1, preset="fast", batch=32, lr=1e-4, label_dropout=0.1, seed=0)
# The bundled demo students also distil guidance (the scale as an input, w ∈ [1, 3]). The study's
# students do not: guidance as an input cost the demo base student 4× the RMSE at w = 1 (0.123
# against 0.030 without; docs/distillation.md §6), and whether a relay stage distils more easily
# than a single-stage model is a question about the diffusion, not about guidance. They keep CFG
# through label dropout (two calls per step at w ≠ 1).
DEMO_GUIDANCE = (1.0, 3.0)
DISTILLATIONS = {
    "demo-relay": dict(teacher=("demo", 1), teacher_steps=8, round_images=20_000, guidance_range=DEMO_GUIDANCE),
    "demo-base": dict(teacher=("demo", 0), teacher_steps=16, round_images=20_000, guidance_range=DEMO_GUIDANCE),
    "rdm8-relay": dict(teacher=("rdm8", 1), teacher_steps=8, round_images=20_000),
    "rdm8-base": dict(teacher=("rdm8", 0), teacher_steps=16, round_images=20_000),
    # the same FLOPs as rdm8-relay + rdm8-base together
    "single": dict(teacher=("single", 0), teacher_steps=16, round_images=("equal", "rdm8-relay", "rdm8-base")),
    # the follow-up (docs/distillation.md §7): the demo relay distilled from the samples of the base
    # student it follows in the chosen chain (2 steps) instead of downsampled training images
    "demo-relay-from-b2": dict(teacher=("demo", 1), teacher_steps=8, round_images=20_000,
                               guidance_range=DEMO_GUIDANCE, relay_starts=("demo-base", 2)),
    # and the demo students distilled without guidance as an input, as the study's (whose chains compose)
    "demo-base-plain": dict(teacher=("demo", 0), teacher_steps=16, round_images=20_000),
    "demo-relay-plain": dict(teacher=("demo", 1), teacher_steps=8, round_images=20_000),
}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def teacher_dir(name: str, study: Path) -> Path | None:
    """The teacher's model directory (None: its study snapshot is not trained yet)."""
    from solvers import chain_dirs

    chain, index = DISTILLATIONS[name]["teacher"]
    dirs = chain_dirs(chain, study)
    return None if dirs is None else Path(dirs[index])


def distill_config(name: str, work: Path, study: Path, round_images: int | None = None):
    from relay_diffusion.distillation.run import DistillConfig

    spec = DISTILLATIONS[name]
    teacher = teacher_dir(name, study)
    if teacher is None:
        return None
    images = spec["round_images"] if round_images is None else round_images
    if not isinstance(images, int):
        images = equal_compute_images(name, work, study)
    starts = spec.get("relay_starts")
    return DistillConfig(teacher=str(teacher), data=str(study / "fmnist32-train.zip"), outdir=str(work / name),
                         teacher_steps=spec["teacher_steps"], round_images=images,
                         guidance_range=spec.get("guidance_range", ()),
                         relay_starts=str(student_dir(work, *starts)) if starts else "", **COMMON).validate()


@functools.cache
def _verified(folder: Path) -> Path:
    from kept_weights import read_checked

    read_checked(folder, "rounds")  # refuses weights that do not match their SHA-256
    return folder


def kept(name: str) -> Path | None:
    """The store's folder of distillation `name` if it is kept there (whole: every round), once
    every round's weights have matched their SHA-256 (checked once per folder)."""
    from kept_weights import is_kept

    return _verified(STORE / name) if STORE is not None and is_kept(STORE / name) else None


def distillation_dir(work: Path, name: str) -> Path:
    """Where distillation `name`'s rounds are (round-K/stats.jsonl and students): the store's
    copy when it is kept, else the workdir's own (one distillation's rounds are never mixed)."""
    return kept(name) or Path(work) / name


def student_dir(work: Path, name: str, steps: int) -> Path:
    """The `steps`-evaluation student: the kept one, or the last snapshot of the workdir's round
    that made it once that round is complete (else a path that does not exist: points that need
    it wait)."""
    from relay_diffusion.training.checkpoint import list_snapshots

    k = (DISTILLATIONS[name]["teacher_steps"] // steps).bit_length() - 1
    if (store := kept(name)) is not None:
        return store / f"round-{k}"
    round_dir = Path(work) / name / f"round-{k}"
    done = Path(work) / name / "pending" / f"round-{k}"
    if not (round_dir / "config.json").exists():
        return done
    duration = json.loads((round_dir / "config.json").read_text())["duration"]
    snaps = list_snapshots(round_dir)
    if not snaps or int(snaps[-1].name.split("-")[1]) < duration:
        return done
    return snaps[-1]


# ---- compute ------------------------------------------------------------------------------------

def network_flops(model_dir: Path) -> dict:
    from relay_diffusion.models import RelayModel
    from relay_diffusion.models import network_flops as count

    return count(RelayModel.from_pretrained(model_dir))


def teacher_evaluations(cfg, k: int) -> float:
    """Network evaluations of the teacher per training image in round k (1-based), averaged over
    the student's steps (each drawn with equal probability): its solver's calls for two steps,
    twice under classifier-free guidance (round 1 with --guidance-range; later teachers take the
    scale as input)."""
    import torch

    from relay_diffusion.distillation import StepFrame, teacher_steps
    from relay_diffusion.distillation.run import round_config, teacher_grid
    from relay_diffusion.models import read_config

    grid, solver = teacher_grid(cfg)
    rc = round_config(cfg, k, cfg.teacher, grid, solver)
    teacher = read_config(cfg.teacher)
    frame = StepFrame.of_teacher(teacher, rc.teacher_solver)                 # as the round's loss
    g = rc.teacher_grid
    state = torch.zeros(1, teacher.channels, teacher.resolution, teacher.resolution, dtype=torch.float64)
    calls = []
    for j in range(len(g) // 2):
        t = g[2 * j + 2] if 2 * j + 2 < len(g) else 0.0            # as DistillationLoss pairs them
        calls.append(teacher_steps(frame, lambda x, sigma: torch.zeros_like(x), state, g[2 * j], g[2 * j + 1], t)[1])
    guided = 2 if (k == 1 and cfg.guidance_range) else 1
    return guided * sum(calls) / len(calls)


def start_flops(cfg) -> float:
    """FLOPs per round image of sampling the relay's starts from a base stage (--relay-starts): its
    sampler's evaluations at its forward cost (the whole batch is sampled, DistillationLoss._restart)."""
    if not cfg.relay_starts:
        return 0.0
    from relay_diffusion.models import read_config

    base = read_config(cfg.relay_starts)
    return base.nfe(base.default_settings()) * network_flops(Path(cfg.relay_starts))["forward"]


def distillation_flops(cfg, flops: dict, round_images: int | None = None) -> float:
    """Σ over rounds of images × (student forward + backward + the teacher's evaluations + the
    relay starts' sampling)."""
    images = cfg.round_images if round_images is None else round_images
    starts = start_flops(cfg)
    return sum(images * (flops["train"] + teacher_evaluations(cfg, k) * flops["forward"] + starts)
               for k in range(1, cfg.rounds + 1))


def equal_compute_images(name: str, work: Path, study: Path) -> int:
    """Round images that give distillation `name` the FLOPs of the distillations it is matched with."""
    _, *others = DISTILLATIONS[name]["round_images"]
    target = sum(distillation_flops(distill_config(o, work, study), network_flops(teacher_dir(o, study)))
                 for o in others)
    cfg = distill_config(name, work, study, round_images=COMMON["batch"])
    per_image = distillation_flops(cfg, network_flops(teacher_dir(name, study)), round_images=1)
    return int(target / per_image) // COMMON["batch"] * COMMON["batch"]


def teacher_training(teacher: Path) -> int | None:
    """Training images of a teacher: its snapshot's count, or a bundled model's training record."""
    if teacher.name.startswith("snapshot-"):
        return int(teacher.name.split("-")[1])
    config = json.loads((teacher / "config.json").read_text())
    return (config.get("training") or {}).get("images")


def round_status_lines(outdir: Path) -> list[list[dict]]:
    """Each round's status lines (round-K/stats.jsonl), rounds in order."""
    return [[json.loads(line) for line in stats.read_text().splitlines()]
            for stats in sorted(outdir.glob("round-*/stats.jsonl"))]


def cpu_hours(outdir: Path) -> float:
    """Hours of training in every round: per status line, its images ÷ its rate, the images counted
    from the previous line — or, after a resume (a count not above the last), from the highest
    count logged below it (where the resumed snapshot most likely was); interrupted work counts."""
    total = 0.0
    for lines in round_status_lines(outdir):
        last, seen = 0, {0}
        for r in lines:
            since = last if r["nimg"] > last else max(n for n in seen if n < r["nimg"])
            total += (r["nimg"] - since) / max(r["img_per_s"], 1e-9)
            last = r["nimg"]
            seen.add(last)
    return total / 3600


def round_losses(outdir: Path) -> list[list[float]]:
    """Per round: the training loss of its first status line, at half its images and at its end —
    whether a round's images sufficed (a loss still falling in the second half: not converged)."""
    out = []
    for lines in round_status_lines(outdir):
        loss = {r["nimg"]: r["loss"] for r in lines}               # a resume re-logs: the later line wins
        if loss:
            seen = sorted(loss)
            half = min(seen, key=lambda n: abs(n - seen[-1] / 2))
            out.append([loss[seen[0]], loss[half], loss[seen[-1]]])
    return out


def accounting(work: Path, study: Path) -> dict:
    """Per distillation: FLOPs of distilling, of the teacher's training, their ratio, CPU hours."""
    out = {}
    for name in DISTILLATIONS:
        cfg = distill_config(name, work, study)
        if cfg is None:
            continue
        flops = network_flops(Path(cfg.teacher))
        trained = teacher_training(Path(cfg.teacher))
        distil = distillation_flops(cfg, flops)
        out[name] = {"round_images": cfg.round_images, "rounds": cfg.rounds,
                     "teacher_evaluations_per_image": [teacher_evaluations(cfg, k) for k in range(1, cfg.rounds + 1)],
                     "distill_pflop": distil / 1e15, "teacher_train_pflop": trained * flops["train"] / 1e15 if trained
                     else None, "teacher_images": trained, "cpu_hours": cpu_hours(distillation_dir(work, name)),
                     "round_losses": round_losses(distillation_dir(work, name)),
                     "forward_gflop": flops["forward"] / 1e9}
        if trained:
            out[name]["fraction_of_teacher"] = distil / (trained * flops["train"])
    return out


# ---- phases ---------------------------------------------------------------------------------------

def one_step_teacher(cfg, work: Path, name: str) -> None:
    """WORK/one-step/NAME: the teacher's weights with a config that samples one evaluation from the
    first σ of the teacher's grid (x̂₀ = D(x; σ₀)), through the distilled-stage path."""
    from relay_diffusion.distillation.run import MODEL_FILES, teacher_grid
    from relay_diffusion.files import atomic_directory

    out = work / "one-step" / name
    if out.exists():
        return
    grid, _ = teacher_grid(cfg)
    config = json.loads((Path(cfg.teacher) / "config.json").read_text())
    config["distilled"] = {"grid": [grid[0]], "solver": "ddim", "one_step_of": str(Path(cfg.teacher).resolve())}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as tmp:
        for f in MODEL_FILES[1:]:
            if (Path(cfg.teacher) / f).exists():
                shutil.copy2(Path(cfg.teacher) / f, tmp / f)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def keep_distillation(cfg, work: Path, name: str) -> Path:
    """Copy a finished distillation into the store: each round's student (its last snapshot's EMA
    weights + config) with the round's status lines, the teacher's SHA-256, the command."""
    from kept_weights import code_version, keep_models, weights_sha256
    from relay_diffusion.training.checkpoint import list_snapshots

    rounds = {f"round-{k}": list_snapshots(work / name / f"round-{k}")[-1] for k in range(1, cfg.rounds + 1)}
    what = {"distillation": name, "teacher_sha256": weights_sha256(Path(cfg.teacher)),
            "round_images": cfg.round_images,
            "student_steps": {r: cfg.teacher_steps >> k for k, r in enumerate(rounds, 1)}}
    if cfg.relay_starts:
        what["relay_starts_sha256"] = weights_sha256(Path(cfg.relay_starts))
    commit, dirty = code_version()
    command = f"python studies/distill.py --workdir WORKDIR --study STUDY --phase distill --only {name}"
    return keep_models(STORE / name, rounds, "rounds", what,
                       {"commit": commit, "local_changes": dirty, "command": command},
                       {r: [work / name / r / "stats.jsonl"] for r in rounds})


def phase_distill(work: Path, study: Path, names: list[str]) -> None:
    """Distil each of `names` unless the store keeps it; keep each one finished here."""
    from relay_diffusion.distillation.run import distill

    for name in names:
        cfg = distill_config(name, work, study)
        if cfg is None:
            log(f"{name}: its teacher is not trained yet (python studies/fmnist32.py --phase train)")
            continue
        if cfg.relay_starts and not Path(cfg.relay_starts).exists():
            log(f"{name}: the base student it starts from is not distilled yet ({cfg.relay_starts})")
            continue
        one_step_teacher(cfg, work, name)
        if (store := kept(name)) is not None:
            log(f"{name}: kept in {store}; not distilled again")
            continue
        log(f"{name}: {cfg.rounds} rounds of {cfg.round_images:,} images, {cfg.teacher_steps} → {cfg.steps} steps")
        distill(cfg, echo=lambda s: log(f"{name}: {s}"))
        if STORE is not None:
            log(f"{name}: students kept in {keep_distillation(cfg, work, name)}")


BUNDLE = {"base": "fmnist-base-8-distilled", "relay": "fmnist-relay-8to32-distilled"}   # package dirs per stage


def bundle(work: Path, points_dir: Path, dest: Path = ROOT / "src" / "relay_diffusion" / "demo") -> tuple[int, int]:
    """Copy the demo chain's students chosen on the selection seeds (distill_points.bundled_chain:
    the lowest FID among the chains of ≤ 4 evaluations of the first students and of each follow-up
    variant) into the package as the bundled distilled demo chain: EMA weights, config.json with
    the distillation recorded without this machine's paths. Returns (base steps, relay steps)."""
    import dataclasses

    from distill_points import bundled_chain
    from relay_diffusion.models import RelayModel, read_config

    chosen = bundled_chain(points_dir / "points", "demo")
    if chosen is None:
        raise SystemExit("the demo chain's selection points are not complete (--phase select)")
    pick, _, *parts = chosen
    log(f"bundling {pick[0]} + {pick[1]} of {' and '.join(parts)} (lowest selection FID)")
    for stage, name, steps in zip(("base", "relay"), parts, pick):
        src = student_dir(work, name, steps)
        model = RelayModel.from_pretrained(src, "ema")
        spec = DISTILLATIONS[name]
        teacher = Path(teacher_dir(name, Path("."))).name
        rounds = (spec["teacher_steps"] // steps).bit_length() - 1
        record = {k: v for k, v in model.config.distilled.items() if k != "relay_starts"}
        record["teacher"] = f"{teacher} (bundled), distilled in {rounds} round(s)"
        flags = {**COMMON, **({"guidance_range": spec["guidance_range"]} if spec.get("guidance_range") else {})}
        if spec.get("relay_starts"):                 # the base student's round (its own command's --outdir)
            start_name, start_steps = spec["relay_starts"]
            k = (DISTILLATIONS[start_name]["teacher_steps"] // start_steps).bit_length() - 1
            flags["relay_starts"] = f"{start_name}/round-{k}/snapshot-…"
            record["relay_starts"] = f"{start_name}, its {start_steps}-step student"
        options = " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
                           for k, v in flags.items() if k != "steps")
        training = {"command": f"rdm distill --teacher {teacher} --data fmnist.zip --outdir {name} --steps {steps} "
                               f"--teacher-steps {spec['teacher_steps']} --round-images {spec['round_images']} {options}",
                    "images": rounds * spec["round_images"], "study": "studies/distill.py " + name}
        names = model.config.class_names or read_config(teacher_dir(name, Path("."))).class_names   # the teacher's
        model.config = dataclasses.replace(model.config, distilled=record, training=training, class_names=names)
        model.save_pretrained(dest / BUNDLE[stage])
        log(f"bundled {src} as {dest / BUNDLE[stage]} ({steps} evaluation(s))")
    return pick


def run_plan(points: dict, work: Path, study: Path, points_dir: Path, batch: int,
             only: str | None = None, keep: Path | None = None) -> None:
    """Run the points not done yet, the saved references first; any number of processes may run
    the same plan at once (solvers.measure_points: each takes the next point no other has, and a
    point waits for the worker making its reference). A point whose student is not there yet
    waits for a later run. Finished points are also kept in `keep` (solvers.keep_point); the
    points kept there were brought into `points_dir` before the plan was built (main)."""
    from solvers import Reference, measure_points

    import fnmatch

    if only:                                            # these points only (comma list of shell patterns)
        points = {n: p for n, p in points.items() if any(fnmatch.fnmatch(n, pat) for pat in only.split(","))}
    ordered = sorted(points.items(), key=lambda item: not item[1].get("save"))     # stable: references first
    waiting = measure_points(points_dir, study, [(n, dict(p, plan="distill")) for n, p in ordered],
                             Reference(study, points_dir), batch, keep)
    if waiting:
        log(f"not run yet (their references, students or snapshots are not there): {', '.join(waiting)}")


def docs_points_dirs(given: str | None, study: Path) -> dict[str, Path]:
    """Where each chain's points are: --points-dir DEMO_DIR[,STUDY_DIR] (default runs/solvers and
    <study>/search)."""
    parts = (given or "").split(",")
    demo = Path(parts[0]) if parts[0] else Path("runs/solvers")
    studied = Path(parts[1]) if len(parts) > 1 else study / "search"
    return {"demo": demo, "rdm8": studied, "single": studied}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/distill", help="the distillations (one folder each) and one-step teachers")
    ap.add_argument("--study", default="runs/study-fmnist32", help="the Fashion-MNIST study's workdir (data, models)")
    ap.add_argument("--points-dir", help="the solver study's workdir of these chains (points, references, caches); "
                                         "--write-docs: DEMO_DIR[,STUDY_DIR]")
    ap.add_argument("--phase", choices=("distill", "select", "report"), help="what to run")
    ap.add_argument("--only", help="distill: these DISTILLATIONS (comma list; default all); select/report: "
                                   "these points (comma list of shell patterns)")
    ap.add_argument("--chains", default="demo", help="select/report: comma list of demo, rdm8, single")
    ap.add_argument("--batch", type=int, default=500, help="images per sampling batch")
    ap.add_argument("--keep", default=str(ROOT / "studies" / "results" / "distill"),
                    help="select/report: also keep every finished point's record here, and take the ones "
                         "found here instead of measuring them again ('none': keep nothing)")
    ap.add_argument("--weights", default=str(DEFAULT_STORE),
                    help="store of finished distillations: those kept there are used instead of distilled "
                         "again, and each one finished here is added ('none': use and keep nothing)")
    ap.add_argument("--write-docs", action="store_true", help="write docs/distillation-study.md")
    ap.add_argument("--bundle", action="store_true",
                    help="copy the demo chain's chosen students into the package (rdm sample --preset distilled)")
    args = ap.parse_args(argv)
    global STORE
    STORE = None if args.weights == "none" else Path(args.weights)
    work, study = Path(args.workdir), Path(args.study)
    chains = tuple(args.chains.split(","))
    if set(chains) - {"demo", "rdm8", "single"}:
        raise SystemExit(f"--chains takes demo, rdm8, single; got {args.chains!r}")
    if args.phase == "distill":
        names = args.only.split(",") if args.only else list(DISTILLATIONS)
        unknown = sorted(set(names) - set(DISTILLATIONS))
        if unknown:
            raise SystemExit(f"unknown distillation(s) {unknown}; choose from {list(DISTILLATIONS)}")
        phase_distill(work, study, names)
    elif args.phase in ("select", "report"):
        if not args.points_dir:
            raise SystemExit("--points-dir is needed: the solver study's folder of these chains")
        from distill_points import report_plan, selection_plan

        points_dir = Path(args.points_dir)
        keep = None if args.keep == "none" else Path(args.keep)
        if keep is not None:            # first: the report plan's chosen rows are read from the selection's records
            from solvers import import_kept_points

            if count := import_kept_points(points_dir, keep):
                log(f"{count} finished points taken from {keep}")
        plan = selection_plan(work, chains) if args.phase == "select" else \
            report_plan(work, points_dir / "points", chains)
        run_plan(plan, work, study, points_dir, args.batch, args.only, keep)
    if args.bundle:
        bundle(work, Path((args.points_dir or "runs/solvers").split(",")[0]))
    if args.write_docs:
        from distill_report import write_report

        write_report(docs_points_dirs(args.points_dir, study), DOC, accounting(work, study))
    if not (args.phase or args.write_docs or args.bundle):
        ap.error("nothing to do: give --phase, --bundle and/or --write-docs")
    return 0


if __name__ == "__main__":
    from relay_diffusion.cpu_allocator import tune_cpu_allocator

    tune_cpu_allocator()     # reuse freed activations, as `rdm` does (docs/speed.md): same numbers, faster
    # run as the module `distill`, the one distill_points imports: a script's own globals live in
    # __main__, so STORE set from --weights would not reach the plans' student_dir
    import distill

    sys.exit(distill.main())
