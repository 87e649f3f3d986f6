"""Flag helpers shared by the verbs."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing


def positive_list(kind=int):
    """argparse type: a comma list of positive `kind` values, e.g. "8,32" or "0.1,0.5"."""
    noun = "integers" if kind is int else "numbers"

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or any(v <= 0 for v in values):       # NaN passes: the verb names it
            raise argparse.ArgumentTypeError(f"expected positive {noun} separated by commas, got {text!r}")
        return values
    return parse


def add_quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (a bar on a terminal, else a line per tenth of the images)")


def field_help(cls) -> dict:
    """The trailing `# comment` of every dataclass field (continued on following comment-only
    lines): the single source of the flag help texts."""
    helps, current = {}, None
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):[^#]*#\s?(.*)", line)
        if m:
            current = m.group(1)
            helps[current] = m.group(2).strip()
        elif current and re.match(r"\s+#", line):
            helps[current] += " " + line.strip()[1:].strip()
        else:
            current = None
    return helps


def print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the CLI: one line, no source location."""
    print(f"rdm: warning: {message}", file=sys.stderr)


def add_schedule_flags(p: argparse.ArgumentParser, names, prefix: str = "") -> None:
    """Flags --up-scale, --blur-sigma-max, … for these `RelaySchedule` fields, with the fields'
    own comments as help; each defaults to None (= keep the recipe's or the file's value)."""
    from ..relay import BLOCK_KINDS, NOISE_MIXTURES, RelaySchedule

    helps, hints = field_help(RelaySchedule), typing.get_type_hints(RelaySchedule)
    choices = {"noise_mixture": NOISE_MIXTURES, "block_kind": BLOCK_KINDS}
    fields = {f.name for f in dataclasses.fields(RelaySchedule)}
    for name in names:
        if name not in fields:
            raise ValueError(f"RelaySchedule has no field {name!r}")
        kw = ({"choices": choices[name]} if name in choices else
              {"type": hints[name], "metavar": "N" if hints[name] is int else "X"})
        p.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=prefix + helps.get(name, ""), **kw)


def given_fields(args: argparse.Namespace, cls) -> dict:
    """The flags of `args` that name fields of the dataclass `cls` and were given (not None)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
