"""Import the published RDM (`.pt`) and EDM (`.pkl`) checkpoints as model directories (docs/checkpoints.md).

The file is read with `safe_pickle` (nothing in it runs). Its 'ema' entry is EDM's `EDMPrecond`
around a `DhariwalUNet`; `ADMUNet` has exactly DhariwalUNet's state-dict keys, so the weights
are copied under their own names. The network config comes from the pickled constructor
arguments (EDM's persistence records them) and is checked against the weight shapes; plain
module pickles without recorded arguments get it from the shapes alone.

RDM's checkpoints do not say which stage they are (both stages use EDMPrecond + DhariwalUNet;
the stage-2 forward process lives in the loss, which the `.pt` files do not contain), so the
stage is the caller's choice: base unless a relay stage is asked for, a recipe or schedule flags are given,
or the file holds RDM's `BlurLoss` as 'loss_fn' (then its settings are the schedule).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import torch

from ..files import atomic_directory, read_json, sha256_file

from ..weights import MODEL_FORMAT, save_model_dir
from ..models import ModelConfig
from ..networks import NetworkConfig, count_parameters
from ..relay import RelaySchedule
from ..schedules import PUBLISHED_SCHEDULES
from ..stages import stage_kind
from .safe_pickle import CheckpointError, PickledObject, TensorRef, open_checkpoint

# EDM's DhariwalUNet / EDMPrecond signatures (NVlabs/edm training/networks.py): positional
# order and defaults, needed because EDM records only the arguments actually passed.
DHARIWAL_ARGS = ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim",
                 "model_channels", "channel_mult", "channel_mult_emb", "num_blocks", "attn_resolutions",
                 "dropout", "label_dropout")
DHARIWAL_DEFAULTS = dict(label_dim=0, augment_dim=0, model_channels=192, channel_mult=(1, 2, 3, 4),
                         channel_mult_emb=4, num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.10,
                         label_dropout=0)
EDMPRECOND_ARGS = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max",
                   "sigma_data", "model_type")
OTHER_PRECONDS = ("VPPrecond", "VEPrecond", "iDDPMPrecond")
# the official code's two stages as our stage kinds (stages.py): stage 1 (EDM, from noise) and
# stage 2 (RDM's BlurLoss, continuing a low-resolution image)
OFFICIAL_STAGES = {1: "base", 2: "relay"}
SCHEDULE_FLAGS = tuple(f.name for f in dataclasses.fields(RelaySchedule))
LOSS_SCHEDULE_FIELDS = ("up_scale", "prob_length", "blur_sigma_max", "min_scale", "block_scale", "P_mean", "P_std")
SECOND_STAGE_NAME = re.compile(r"second[_-]?stage|stage[_-]?2", re.IGNORECASE)
CHANNELS_PER_HEAD = 64


# --------------------------------------------------------------------------------------------
# Walking pickled modules.


def module_state_dict(module: PickledObject, prefix: str = "") -> dict[str, TensorRef]:
    """What `module.state_dict()` would return, from a pickled module's __dict__ (parameters,
    persistent buffers, then children, recursively)."""
    state = module.state
    out: dict[str, TensorRef] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    if not isinstance(skip, (set, frozenset, list, tuple)):
        raise CheckpointError(f"{prefix or 'the network'}: malformed module state")
    for kind in ("_parameters", "_buffers"):
        for name, t in _mapping(module, kind).items():
            if t is None or (kind == "_buffers" and name in skip):
                continue
            if not isinstance(t, TensorRef):
                raise CheckpointError(f"{prefix}{name} is a {type(t).__name__}, expected a tensor")
            out[prefix + name] = t
    for name, child in _mapping(module, "_modules").items():
        if child is None:
            continue
        if not isinstance(child, PickledObject):
            raise CheckpointError(f"{prefix}{name} is a {type(child).__name__}, expected a network module")
        out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def _mapping(module: PickledObject, name: str) -> dict:
    value = module.state.get(name) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CheckpointError(f"{module.class_name}.{name} is not a mapping of names")
    return value


def init_call(obj: PickledObject, arg_names: tuple[str, ...]) -> dict | None:
    """The constructor arguments EDM's persistence recorded (positional ones named), or None."""
    args, kwargs = obj.state.get("_init_args"), obj.state.get("_init_kwargs")
    if args is None and kwargs is None:
        return None
    if not isinstance(args or (), (tuple, list)) or not isinstance(kwargs or {}, dict):
        raise CheckpointError(f"{obj.class_name}: malformed recorded constructor arguments")
    args, kwargs = tuple(args or ()), dict(kwargs or {})
    if len(args) > len(arg_names) or set(arg_names[:len(args)]) & set(kwargs):
        raise CheckpointError(f"{obj.class_name}: recorded constructor arguments do not fit its signature")
    return {**dict(zip(arg_names, args)), **kwargs}


def _child(obj: PickledObject, name: str):
    return _mapping(obj, "_modules").get(name)


def _first_block_dropout(net: PickledObject):
    """The dropout of the first residual block (a plain attribute of EDM's UNetBlock)."""
    enc = _child(net, "enc")
    for block in (_mapping(enc, "_modules").values() if isinstance(enc, PickledObject) else ()):
        if isinstance(block, PickledObject) and isinstance(block.state.get("dropout"), (int, float)):
            return float(block.state["dropout"])
    return None


# --------------------------------------------------------------------------------------------
# Network config: from the weight shapes, checked against the recorded arguments.


def infer_adm_config(sd: dict[str, TensorRef]) -> dict:
    """DhariwalUNet arguments that the weight shapes determine (attention: where qkv exists)."""
    def shape(key):
        if key not in sd:
            raise CheckpointError(f"the weights are not an ADM U-Net's (no {key!r})")
        return sd[key].shape

    stems = [m for m in (re.fullmatch(r"enc\.(\d+)x\1_conv\.weight", k) for k in sd) if m]
    if len(stems) != 1:
        raise CheckpointError("the weights are not an ADM U-Net's (no single enc.<res>x<res>_conv stem)")
    res = int(stems[0].group(1))
    model_channels = shape("map_layer0.weight")[1]
    emb = shape("map_layer0.weight")[0]
    num_blocks = 0
    while f"enc.{res}x{res}_block{num_blocks}.conv1.weight" in sd:
        num_blocks += 1
    if num_blocks == 0:
        raise CheckpointError(f"the weights are not an ADM U-Net's (no enc.{res}x{res}_block0)")
    channel_mult, attn, r = [], [], res
    while r >= 1 and f"enc.{r}x{r}_block0.conv1.weight" in sd:
        ch = shape(f"enc.{r}x{r}_block{num_blocks - 1}.conv1.weight")[0]
        if ch % model_channels:
            raise CheckpointError(f"{ch} channels at {r}x{r} are not a multiple of model_channels {model_channels}")
        channel_mult.append(ch // model_channels)
        if f"enc.{r}x{r}_block0.qkv.weight" in sd or f"dec.{r}x{r}_block0.qkv.weight" in sd:
            attn.append(r)
        r //= 2
    if emb % model_channels:
        raise CheckpointError(f"embedding width {emb} is not a multiple of model_channels {model_channels}")
    return dict(img_resolution=res, in_channels=shape(f"enc.{res}x{res}_conv.weight")[1],
                out_channels=shape("out_conv.weight")[0],
                label_dim=sd["map_label.weight"].shape[1] if "map_label.weight" in sd else 0,
                augment_dim=sd["map_augment.weight"].shape[1] if "map_augment.weight" in sd else 0,
                model_channels=model_channels, channel_mult=tuple(channel_mult),
                channel_mult_emb=emb // model_channels, num_blocks=num_blocks, attn_resolutions=tuple(attn))


def _effective_attention(args: dict, inferred: dict) -> tuple[int, ...]:
    """Resolutions where EDM's DhariwalUNet really has attention: listed, a level of the
    network, and >= 64 channels there (EDM silently drops attention with 0 heads)."""
    levels = {inferred["img_resolution"] >> i: inferred["model_channels"] * m
              for i, m in enumerate(args["channel_mult"])}
    return tuple(sorted((r for r in set(args["attn_resolutions"]) if levels.get(r, 0) >= CHANNELS_PER_HEAD),
                        reverse=True))


def network_config(net: PickledObject, sd: dict[str, TensorRef]) -> tuple[NetworkConfig, dict]:
    """(NetworkConfig, notes) for a pickled DhariwalUNet. Raises CheckpointError when the
    recorded arguments disagree with the weights."""
    inferred = infer_adm_config(sd)
    call = init_call(net, DHARIWAL_ARGS)
    notes: dict = {"config_from": "init arguments + weight shapes" if call is not None else "weight shapes"}
    dropout = None
    if call is not None:
        args = {**DHARIWAL_DEFAULTS, **call}
        args["channel_mult"] = tuple(args["channel_mult"])
        for name in ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim",
                     "model_channels", "channel_mult", "channel_mult_emb", "num_blocks"):
            if args[name] != inferred[name]:
                raise CheckpointError(f"shape mismatch: the network was built with {name}={args[name]!r} "
                                      f"but its weights have {name}={inferred[name]!r}")
        attn = _effective_attention(args, inferred)
        if attn != inferred["attn_resolutions"]:
            raise CheckpointError(f"shape mismatch: attention at {list(attn)} by the arguments, at "
                                  f"{list(inferred['attn_resolutions'])} in the weights")
        dropout = args["dropout"]
        notes["label_dropout"] = args["label_dropout"]
        ignored = {k: v for k, v in call.items() if k not in DHARIWAL_ARGS}
        if ignored:                              # e.g. RDM's eff_attn (an attention kernel choice)
            notes["ignored_network_kwargs"] = ignored
    if dropout is None:
        dropout = _first_block_dropout(net)
    if dropout is None:
        dropout = DHARIWAL_DEFAULTS["dropout"]
    try:
        return NetworkConfig(arch="adm", dropout=float(dropout), **inferred), notes
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"unsupported network configuration: {e}") from None


def build_checked(cfg: NetworkConfig, sd: dict[str, TensorRef]) -> torch.nn.Module:
    """ADMUNet of `cfg` holding the checkpoint's weights (float32), loaded strictly: same keys,
    same shapes. Built on the meta device first, so nothing is initialised twice."""
    try:
        with torch.device("meta"):
            net = cfg.build()
    except ValueError as e:
        raise CheckpointError(f"unsupported network configuration: {e}") from None
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    wrong = [f"{k}: checkpoint {list(sd[k].shape)} vs ADMUNet {list(expected[k].shape)}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape mismatch", wrong)) if items]
        raise CheckpointError("the weights do not fit the ADM U-Net they describe: " + "; ".join(parts))
    weights = {}
    for k, ref in sd.items():
        if not ref.dtype.is_floating_point:
            raise CheckpointError(f"{k} has dtype {ref.dtype}; network weights must be floating point")
        weights[k] = ref.load().to(torch.float32)
    net.load_state_dict(weights, strict=True, assign=True)
    if any(t.is_meta for t in list(net.parameters()) + list(net.buffers())):
        raise CheckpointError("internal error: some network tensors were not loaded")
    return net


# --------------------------------------------------------------------------------------------
# Precond, stage and schedule.


def find_network(entry, key: str) -> tuple[PickledObject | None, PickledObject]:
    """(EDMPrecond or None, DhariwalUNet) of the chosen entry, or a clear error."""
    if not isinstance(entry, PickledObject):
        kind = "a state dict" if isinstance(entry, dict) else f"a {type(entry).__name__}"
        raise CheckpointError(f"'{key}' is {kind}, not a pickled EDM/RDM network (EDMPrecond)")
    precond, name = None, entry.class_name
    if name in OTHER_PRECONDS:
        raise CheckpointError(f"'{key}' uses EDM's {name}; only EDMPrecond (the preconditioning RDM "
                              f"uses) is supported")
    if name == "EDMPrecond":
        precond, net = entry, _child(entry, "model")
        if not isinstance(net, PickledObject):
            raise CheckpointError(f"'{key}' is an EDMPrecond without a 'model' network")
    elif name == "DhariwalUNet":
        net = entry
    else:
        raise CheckpointError(f"'{key}' is a {entry.qualified_name}, not EDM's EDMPrecond or DhariwalUNet")
    if net.class_name != "DhariwalUNet":
        raise CheckpointError(f"unsupported network class {net.class_name!r} in '{key}': only the ADM U-Net "
                              f"(EDM's DhariwalUNet, used by RDM) is supported, not EDM's DDPM++/NCSN++ "
                              f"(SongUNet) or other networks")
    return precond, net


def precond_settings(precond: PickledObject | None) -> dict:
    """EDMPrecond's attributes (sigma_data, label_dim, ...); EDM's defaults for a bare network."""
    s = dict(label_dim=None, img_resolution=None, img_channels=None, use_fp16=False, sigma_min=0.0,
             sigma_max=math.inf, sigma_data=0.5)
    if precond is not None:   # attributes first; recorded constructor arguments as a fallback
        recorded = init_call(precond, EDMPRECOND_ARGS) or {}
        for name in s:
            if name in precond.state:
                s[name] = precond.state[name]
            elif name in recorded:
                s[name] = recorded[name]
    sd = s["sigma_data"]
    if isinstance(sd, bool) or not isinstance(sd, (int, float)) or not math.isfinite(sd) or sd <= 0:
        raise CheckpointError(f"EDMPrecond has an invalid sigma_data {sd!r}")
    return s


def schedule_from_loss(root) -> RelaySchedule | None:
    """RDM's BlurLoss (as 'loss_fn' of an EDM-style snapshot) holds the relay forward process."""
    loss = root.get("loss_fn") if isinstance(root, dict) else None
    if not (isinstance(loss, PickledObject) and loss.class_name == "BlurLoss"):
        return None
    values = {k: loss.state[k] for k in LOSS_SCHEDULE_FIELDS if k in loss.state}
    if "up_scale" in values:
        values["up_scale"] = int(values["up_scale"])
    try:
        return RelaySchedule(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint's BlurLoss has unusable settings: {e}") from None


def resolve_stage(stage, recipe, overrides: dict, detected: RelaySchedule | None):
    """(stage, schedule, warnings) from the caller's choices and what the file revealed."""
    warnings = []
    if stage is not None and stage not in OFFICIAL_STAGES.values():
        raise ValueError(f"stage must be one of {', '.join(OFFICIAL_STAGES.values())}, got {stage!r}")
    if recipe is not None and recipe not in PUBLISHED_SCHEDULES:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(sorted(PUBLISHED_SCHEDULES))}")
    unknown = sorted(set(overrides) - set(SCHEDULE_FLAGS))
    if unknown:
        raise ValueError(f"unknown schedule settings {unknown}; known: {', '.join(SCHEDULE_FLAGS)}")
    if stage is None:
        stage = OFFICIAL_STAGES[2 if (recipe or overrides or detected) else 1]
    if not stage_kind(stage).continues:
        if recipe or overrides:
            raise ValueError("--recipe and the schedule flags describe a relay stage; drop them or use --stage relay")
        if detected:
            raise ValueError("the checkpoint's loss_fn is RDM's BlurLoss, so it is a relay (second-stage) "
                             "model; use --stage relay (or leave --stage out)")
        return stage, None, warnings
    if recipe:
        base = PUBLISHED_SCHEDULES[recipe]
        if detected and detected != base:
            warnings.append(f"recipe {recipe} differs from the checkpoint's BlurLoss settings "
                            f"({dataclasses.asdict(detected)}); using the recipe")
    elif detected:
        base = detected
    elif overrides:
        base = RelaySchedule()
        missing = [k for k in ("up_scale", "blur_sigma_max", "prob_length") if k not in overrides]
        if missing:
            warnings.append(f"no --recipe: {', '.join(missing)} take the defaults "
                            f"({', '.join(f'{k}={getattr(base, k)}' for k in missing)})")
    else:
        raise ValueError("a relay import needs the forward schedule the model was trained with, which RDM "
                         "checkpoints do not store: pass --recipe imagenet256|celebahq256 or the schedule "
                         "flags (--up-scale, --blur-sigma-max, --prob-length, ...)")
    try:
        return stage, dataclasses.replace(base, **overrides), warnings
    except (TypeError, ValueError) as e:
        raise ValueError(f"invalid relay schedule: {e}") from None


def analyse_entry(entry, key: str):
    """(precond, network, precond settings, weight refs, NetworkConfig, notes) of one entry."""
    precond, net_obj = find_network(entry, key)
    pre = precond_settings(precond)
    refs = module_state_dict(net_obj)
    cfg, notes = network_config(net_obj, refs)
    for name, value in (("img_resolution", cfg.img_resolution), ("img_channels", cfg.in_channels),
                        ("label_dim", cfg.label_dim)):
        if pre[name] is not None and pre[name] != value:
            raise CheckpointError(f"EDMPrecond says {name}={pre[name]!r} but its network has {value!r}")
    if cfg.in_channels != cfg.out_channels:
        raise CheckpointError(f"in_channels {cfg.in_channels} != out_channels {cfg.out_channels}: "
                              f"not an EDM denoiser")
    return precond, net_obj, pre, refs, cfg, notes


def _jsonable(v):
    """Values for config.json: non-finite floats as strings, tuples as lists, unknown objects
    by their type name."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return f"<{type(v).__name__}>"


def _check_dest(dest: Path, overwrite: bool) -> None:
    if not dest.exists():
        if dest.parent.exists() and not dest.parent.is_dir():
            raise ValueError(f"cannot write {dest}: {dest.parent} is a file, not a folder")
        return
    if not overwrite:
        raise ValueError(f"{dest} already exists; pass --force to replace it")
    if dest.is_dir() and not any(dest.iterdir()):
        return
    cfg_path = dest / "config.json"
    if not (dest.is_dir() and cfg_path.exists() and read_json(cfg_path, "model config").get("format") == MODEL_FORMAT):
        raise ValueError(f"refusing to replace {dest}: it is not a relay-diffusion model directory")


# --------------------------------------------------------------------------------------------
# The import.


def import_checkpoint(src, dest, *, stage: str | None = None, recipe: str | None = None, key: str = "ema",
                      schedule_overrides: dict | None = None, overwrite: bool = False) -> dict:
    """Convert an RDM `.pt` / EDM `.pkl` checkpoint into the model directory `dest`.

    stage: a value of OFFICIAL_STAGES; None = base, unless a recipe/override is given or the file holds
    RDM's BlurLoss. recipe: a key of PUBLISHED_SCHEDULES, the schedule the relay model was trained
    with. schedule_overrides: RelaySchedule fields to set. key: the checkpoint entry to import.
    overwrite: replace `dest` if it is a model directory.

    Writes config.json (with a "source" record: file name, sha256, format, classes) and
    model.safetensors holding the imported weights; no ema.safetensors is written (loaders
    asking for EMA weights fall back to model.safetensors). Returns a summary dict with
    "dest", "config", "parameters" and "warnings". Raises ValueError (CheckpointError /
    UnsafeCheckpointError) with a readable message on any problem.
    """
    src, dest = Path(src), Path(dest)
    stage_given = stage
    if not src.exists():
        raise ValueError(f"no such file: {src}")
    if src.is_dir():
        raise ValueError(f"{src} is a folder; give the checkpoint file (.pt or .pkl)")
    _check_dest(dest, overwrite)
    overrides = {k: v for k, v in (schedule_overrides or {}).items() if v is not None}
    with open_checkpoint(src) as ckpt:
        root = ckpt.root
        if not isinstance(root, dict):
            raise CheckpointError(f"{src.name} is not an RDM/EDM checkpoint: it holds a {type(root).__name__}, "
                                  f"expected a dict with an 'ema' entry")
        if key not in root:
            keys = ", ".join(repr(k) for k in root) or "none"
            raise CheckpointError(f"{src.name} has no {key!r} entry (entries: {keys})")
        try:
            precond, net_obj, pre, refs, cfg, notes = analyse_entry(root[key], key)
        except (TypeError, AttributeError, KeyError, IndexError) as e:   # odd values where numbers/dicts belong
            raise CheckpointError(f"{src.name}: unexpected content in {key!r} ({type(e).__name__}: {e})") from None
        stage, schedule, warnings = resolve_stage(stage, recipe, overrides, schedule_from_loss(root))
        if schedule is not None and cfg.img_resolution % schedule.up_scale:
            raise ValueError(f"resolution {cfg.img_resolution} is not divisible by up_scale {schedule.up_scale}")
        net = build_checked(cfg, refs)
        container = ckpt.container
    if stage_given is None and schedule is None and SECOND_STAGE_NAME.search(src.name):
        warnings.append(f"{src.name} looks like an RDM second-stage (relay) model but is imported as a base "
                        f"model; re-run with --stage relay --recipe imagenet256|celebahq256 if it is one")
    source = {"file": src.name, "sha256": sha256_file(src),
              "format": "edm-pkl" if container == "pickle" else "rdm-pt", "container": container,
              "key": key, "precond_class": precond.class_name if precond is not None else None,
              "network_class": net_obj.class_name, "persistent": net_obj.persistent,
              "use_fp16": pre["use_fp16"], "sigma_min": pre["sigma_min"], "sigma_max": pre["sigma_max"], **notes}
    config = ModelConfig(stage, cfg.img_resolution, cfg.in_channels, cfg, cfg.label_dim, float(pre["sigma_data"]),
                         schedule, source=_jsonable(source)).to_dict()
    if precond is None:
        warnings.append(f"'{key}' is a bare DhariwalUNet without EDMPrecond; assuming sigma_data 0.5")
    with atomic_directory(dest) as tmp:
        save_model_dir(tmp, config, net)
    return {"dest": str(dest), "config": config, "parameters": count_parameters(net), "warnings": warnings}
