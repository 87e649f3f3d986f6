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


def _json_file(text: str) -> str:
    from pathlib import Path

    if text == "-":                                 # --json without FILE: stdout
        return text
    if not text.endswith(".json"):
        raise argparse.ArgumentTypeError(f"FILE must end in .json, got {text!r} (put --json after the positional "
                                         "arguments, or write --json=FILE.json)")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    return text


def add_json_flag(p: argparse.ArgumentParser, what: str) -> None:
    """`--json [FILE]`, the same in every verb: `what` as JSON on stdout instead of the text, or
    written to FILE (which must end in .json, so that a positional argument is never taken for
    it) beside the text."""
    p.add_argument("--json", nargs="?", const="-", type=_json_file, metavar="FILE",
                   help=f"{what} as JSON: on stdout instead of the text (--json), or also written to FILE "
                        "(--json FILE.json)")


def emit_json(args, obj) -> bool:
    """Carry out --json for `obj`; True when it went to stdout (then the verb prints no text)."""
    from ..files import atomic_write, json_text

    if not getattr(args, "json", None):
        return False
    text = json_text(obj)
    if args.json == "-":
        print(text, end="")
        return True
    from pathlib import Path

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(args.json), lambda tmp: Path(tmp).write_text(text))
    return False


def add_quiet_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (a bar on a terminal, else a line per tenth of the images)")


def field_help(cls) -> dict:
    """The trailing `# comment` of every dataclass field (continued on following comment-only
    lines): the single source of the flag help texts."""
    helps, current, indent = {}, None, 0
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"(\s+)(\w+):[^#]*#\s?(.*)", line)
        if m:
            current, indent = m.group(2), len(m.group(1))
            helps[current] = m.group(3).strip()
        elif current and re.match(r"\s+#", line) and len(line) - len(line.lstrip()) > indent:
            helps[current] += " " + line.strip()[1:].strip()     # a continuation, not a section title
        else:
            current = None
    return helps


def print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the CLI: one line, no source location."""
    print(f"rdm: warning: {message}", file=sys.stderr)


def add_schedule_flags(p: argparse.ArgumentParser, names, prefix: str = "", flag_prefix: str = "",
                       show_defaults: bool = False) -> None:
    """Flags --up-scale, --blur-sigma-max, … for these `RelaySchedule` fields, with the fields'
    own comments as help; each defaults to None (= keep the recipe's or the file's value).
    flag_prefix "model" makes --model-up-scale (dest model_up_scale) where a verb also has
    sampler flags of the same name; the unprefixed flag stays an alias when it is not taken."""
    from ..relay import BLOCK_KINDS, NOISE_MIXTURES, RelaySchedule

    helps, hints = field_help(RelaySchedule), typing.get_type_hints(RelaySchedule)
    choices = {"noise_mixture": NOISE_MIXTURES, "block_kind": BLOCK_KINDS}
    fields = {f.name: f for f in dataclasses.fields(RelaySchedule)}
    for name in names:
        if name not in fields:
            raise ValueError(f"RelaySchedule has no field {name!r}")
        kw = ({"choices": choices[name]} if name in choices else
              {"type": hints[name], "metavar": "N" if hints[name] is int else "X"})
        flag = "--" + name.replace("_", "-")
        flags = [flag]
        if flag_prefix:
            flags = [f"--{flag_prefix}-{flag[2:]}"] + ([flag] if flag not in p._option_string_actions else [])
        dest = f"{flag_prefix}_{name}" if flag_prefix else name
        text = prefix + helps.get(name, "") + (f" [default: {fields[name].default}]" if show_defaults else "")
        p.add_argument(*flags, dest=dest, default=None, help=text, **kw)


def given_fields(args: argparse.Namespace, cls, prefix: str = "") -> dict:
    """The flags of `args` (dests `prefix` + field name) that set fields of the dataclass `cls`
    and were given (not None), keyed by field name."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k[len(prefix):]: v for k, v in vars(args).items()
            if k.startswith(prefix) and k[len(prefix):] in names and v is not None}


def _flag_type(annotation: str):
    return {"int": int, "str": str}.get(annotation.split(" ")[0], float)


def setting_flags(classes=None) -> dict:
    """flag → (settings field, type, help, aliases), made from the settings classes' field table
    (sampling/settings.py): the flag is the field's `flag` (or its name), the aliases its official
    names and `flag_aliases`; a field of one stage only says so in its help."""
    from ..stages import STAGE_KINDS

    classes = tuple((name, kind.settings) for name, kind in STAGE_KINDS.items()) if classes is None else classes
    table: dict = {}
    for stage, cls in classes:
        for f in dataclasses.fields(cls):
            flag = f.metadata.get("flag") or f.name
            aliases = tuple("--" + o.replace("_", "-") for o in f.metadata.get("official", ())) + f.metadata["flag_aliases"]
            entry = table.setdefault(flag, [f.name, _flag_type(str(f.type)), {}, ()])
            entry[2][stage] = f.metadata["help"]
            entry[3] = tuple(dict.fromkeys(entry[3] + aliases))
    out = {}
    for flag, (field, typ, helps, aliases) in table.items():
        texts = set(helps.values())
        text = (next(iter(texts)) if len(texts) == 1 and len(helps) == len(classes)
                else "; ".join(f"{stage}: {h}" for stage, h in helps.items()))
        out[flag] = (field, typ, text, aliases)
    return out


def add_setting_flags(p, cls) -> None:
    """One flag per field of a settings class (single values, dest = the field), from its table."""
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(cls)}
    for flag, (field, typ, text, aliases) in setting_flags(((None, cls),)).items():
        p.add_argument("--" + flag.replace("_", "-"), *aliases, dest=field, type=typ, choices=choices[field],
                       help=text)
