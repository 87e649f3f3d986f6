"""The `rdm` command line."""

import json
import subprocess
import sys

import pytest

from relay_diffusion.cli import VERBS, build_parser, main


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for verb, (_, help_text) in VERBS.items():
        assert verb in out and help_text.split()[0] in out


@pytest.mark.slow
def test_top_level_help_and_version_do_not_import_torch():
    # the package's names load on first use and only the named verb's module is imported
    code = ("import sys, contextlib, io\n"
            "from relay_diffusion.cli import main\n"
            "for argv in (['--help'], ['--version'], []):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try: main(argv)\n"
            "        except SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('numpy', 'PIL'))))\n"
            "import relay_diffusion\n"
            "relay_diffusion.RelayChain\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split("\n")[:2] == ["[]", "True"]


def test_every_verb_builds_its_full_parser():
    parser = build_parser("all")
    for verb in VERBS:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([verb, "--help"])
        assert e.value.code == 0


@pytest.mark.parametrize("preset,steps,sigma0,nfe,nfe_cfg", [
    ("imagenet256", 100, 0.86912, 199, 398),   # docs/method.md §5.5
    ("celebahq256", 54, 0.92191, 107, 107),
    ("default", 7, 0.89750, 13, 13),
])
def test_schedule_reproduces_official_step_counts(capsys, preset, steps, sigma0, nfe, nfe_cfg):
    assert main(["analyze", "schedule", "--recipe", preset, "--json"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["steps_kept"] == steps and len(t["steps"]) == steps
    assert abs(t["sigma_start"] - sigma0) < 5e-6
    assert t["nfe"] == nfe and t["nfe_with_guidance"] == nfe_cfg
    assert t["steps"][-1]["sigma"] == pytest.approx(0.008)


def test_schedule_table_and_overrides(capsys):
    assert main(["analyze", "schedule", "--recipe", "imagenet256", "--truncation-sigma", "0.5",
                 "--blur-sigma-max", "2.0"]) == 0
    out = capsys.readouterr().out
    assert "blur_sigma_max=2.0" in out and "start sigma: 0.4" in out
    # the ImageNet recipe's first row: σ₀ = 0.86912, u = 0.8725, σ_B = 2.881, α01 = 0.078
    assert main(["analyze", "schedule", "--recipe", "imagenet256"]) == 0
    first = capsys.readouterr().out.splitlines()[4].split()
    assert first[:5] == ["0", "0.86912", "0.8725", "2.8812", "0.0782"]


def test_bad_flags_give_a_clear_error(capsys):
    assert main(["analyze", "schedule", "--truncation-sigma", "100"]) == 2
    assert "outside the σ grid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", "schedule", "--recipe", "nope"])


@pytest.mark.slow
def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "relay_diffusion.cli", "analyze", "schedule"],
                       capture_output=True, text=True, check=True)
    assert "grid: truncated, 7 σ's (num_steps 18)" in r.stdout and "solver: heun   NFE: 13" in r.stdout
    r = subprocess.run([sys.executable, "-m", "relay_diffusion.cli", "analyze", "schedule", "--solver", "dpmpp-2m",
                        "--sigma-grid", "rho", "--steps", "6"], capture_output=True, text=True, check=True)
    assert "grid: rho, 6 σ's (num_steps 6)   start sigma: 0.90000   solver: dpmpp-2m   NFE: 6" in r.stdout


def _actions(parser, prefix=()):
    """(verb path, action) for every option of every (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, prefix + (name,))
        else:
            yield prefix, action


def test_json_means_the_same_in_every_verb(capsys, tmp_path):
    """--json alone prints the result as JSON instead of the text; --json FILE.json writes it
    beside the text; any other FILE is refused (it may be a positional argument)."""
    json_flags = [(verb, a) for verb, a in _actions(build_parser("all")) if "--json" in a.option_strings]
    assert {verb[0] for verb, _ in json_flags} >= {"analyze", "eval", "import"}
    assert all((a.nargs, a.const, a.type.__name__) == ("?", "-", "_json_file") for _, a in json_flags)
    assert main(["analyze", "schedule", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nfe"] == 13
    out = tmp_path / "sub" / "table.json"
    assert main(["analyze", "schedule", "--json", str(out)]) == 0
    assert "preset default" in capsys.readouterr().out and json.loads(out.read_text())["nfe"] == 13
    with pytest.raises(SystemExit):
        main(["analyze", "schedule", "--json", "table.txt"])
    assert "FILE must end in .json" in capsys.readouterr().err
