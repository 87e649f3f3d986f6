"""`rdm import`: published RDM/EDM checkpoints → model directories, without executing the file.

Synthetic checkpoints are written by a subprocess that has throw-away `training` and
`torch_utils` packages (stand-ins for EDM/RDM's, written below: a minimal persistent-class
mechanism, EDMPrecond as in EDM, DhariwalUNet = our ADMUNet with EDM's constructor). The import
runs in this process, where those packages do not exist, and the imported model must reproduce
the outputs the original modules recorded.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from relay_diffusion.checkpoints import (CheckpointError, TensorRef, UnsafeCheckpointError, import_checkpoint,
                                         open_checkpoint, safe_loads)
from relay_diffusion.cli import build_parser
from relay_diffusion.weights import load_weights, read_model_config
from relay_diffusion.models import RelayModel
from relay_diffusion.networks import NetworkConfig
from relay_diffusion.precond import EDMPrecond
from relay_diffusion.sampling.presets import RELAY_RECIPES

PERSISTENCE_PY = '''
"""Test stand-in for EDM's torch_utils.persistence: an instance pickles as a call to
_reconstruct_persistent_obj(meta), meta = class name + module source + init args + state."""
import copy
import inspect
import os
import sys

PLAIN = os.environ.get("RDM_TEST_PLAIN") == "1"   # write ordinary module pickles instead


def _reconstruct_persistent_obj(meta):
    raise RuntimeError("the tests only write these checkpoints")


def persistent_class(cls):
    if PLAIN:
        return cls
    src = inspect.getsource(sys.modules[cls.__module__])

    class Persistent(cls):
        _orig_module_src, _orig_class_name = src, cls.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args, self._init_kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)

        def __reduce__(self):
            fields = list(super().__reduce__()) + [None, None, None]
            meta = dict(type="class", version=6, module_src=self._orig_module_src,
                        class_name=self._orig_class_name, state=fields[2])
            return _reconstruct_persistent_obj, (meta,)

    Persistent.__name__ = Persistent.__qualname__ = cls.__name__
    Persistent.__module__ = cls.__module__
    return Persistent
'''

NETWORKS_PY = '''
"""Test stand-in for EDM/RDM's training/networks.py."""
import numpy as np
import torch
from torch_utils import persistence
from relay_diffusion.networks import ADMUNet
from relay_diffusion.networks import layers as _layers

# Our layers re-labelled as training.networks classes (EDM's names), so that they pickle like
# EDM's (persistent records, or GLOBAL training.networks.<name> for plain pickles).
_EDM_NAMES = {"Linear": "Linear", "Conv2d": "Conv2d", "Resample": "Resample", "GroupNorm": "GroupNorm",
              "ResBlock": "UNetBlock", "PositionalEmbedding": "PositionalEmbedding"}
INIT = dict(init_mode="kaiming_uniform", init_weight=np.sqrt(1 / 3), init_bias=np.sqrt(1 / 3))


def _relabel(ours):
    cls = persistence.persistent_class(type(_EDM_NAMES[ours.__name__], (ours,), {"__module__": __name__}))
    globals()[cls.__name__] = cls
    return cls


_LAYERS = {getattr(_layers, name): _relabel(getattr(_layers, name)) for name in _EDM_NAMES}


@persistence.persistent_class
class DhariwalUNet(ADMUNet):
    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, augment_dim=0,
                 model_channels=192, channel_mult=[1, 2, 3, 4], channel_mult_emb=4, num_blocks=3,
                 attn_resolutions=[32, 16, 8], dropout=0.10, label_dropout=0, eff_attn=False):
        super().__init__(img_resolution, in_channels, out_channels, label_dim, augment_dim, model_channels,
                         channel_mult, channel_mult_emb, num_blocks, attn_resolutions, dropout)
        self.label_dropout = label_dropout
        for m in self.modules():
            if type(m) in _LAYERS:
                m.__class__ = _LAYERS[type(m)]
                if not persistence.PLAIN:      # EDM records every layer's arguments (numpy floats included)
                    m._init_args, m._init_kwargs = (), dict(init=dict(INIT))


@persistence.persistent_class
class SongUNet(torch.nn.Module):
    def __init__(self, img_resolution, in_channels, out_channels, label_dim=0, model_channels=16):
        super().__init__()
        self.map_noise = torch.nn.Linear(2, model_channels)


@persistence.persistent_class
class EDMPrecond(torch.nn.Module):
    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0,
                 sigma_max=float("inf"), sigma_data=0.5, model_type="DhariwalUNet", **model_kwargs):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
        self.use_fp16, self.sigma_min, self.sigma_max, self.sigma_data = use_fp16, sigma_min, sigma_max, sigma_data
        self.model = globals()[model_type](img_resolution=img_resolution, in_channels=img_channels,
                                           out_channels=img_channels, label_dim=label_dim, **model_kwargs)

    def forward(self, x, sigma, class_labels=None, **model_kwargs):   # EDM Table 1, written out
        x, sigma = x.to(torch.float32), sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        labels = None if self.label_dim == 0 else class_labels.to(torch.float32).reshape(-1, self.label_dim)
        s2 = sigma ** 2 + self.sigma_data ** 2
        f = self.model(x / s2.sqrt(), (sigma.log() / 4).flatten(), labels, **model_kwargs)
        return self.sigma_data ** 2 / s2 * x + sigma * self.sigma_data / s2.sqrt() * f.to(torch.float32)
'''

LOSS_PY = '''
from torch_utils import persistence


@persistence.persistent_class
class EDMLoss:
    def __init__(self, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
        self.P_mean, self.P_std, self.sigma_data = P_mean, P_std, sigma_data


@persistence.persistent_class
class BlurLoss:
    def __init__(self, P_mean=-1.2, P_std=1.2, sigma_data=0.5, up_scale=4, prob_length=0.93,
                 blur_sigma_max=3, min_scale=0.001, block_scale=0):
        self.P_mean, self.P_std, self.sigma_data = P_mean, P_std, sigma_data
        self.up_scale, self.prob_length, self.blur_sigma_max = up_scale, prob_length, blur_sigma_max
        self.min_scale, self.block_scale = min_scale, block_scale
'''

MAKE_PY = '''
import os
import pickle
import sys

import numpy as np
import torch
from training.loss import BlurLoss, EDMLoss
from training.networks import EDMPrecond

out, marker = sys.argv[1], sys.argv[2]
plain = os.environ.get("RDM_TEST_PLAIN") == "1"
ADM = dict(model_type="DhariwalUNet", model_channels=32, channel_mult=[1, 2], num_blocks=1, dropout=0.0)


class Evil:
    def __reduce__(self):
        return os.system, ("touch " + marker,)


def make(name, res, label_dim, augment_dim, sigma_data, attn, seed):
    torch.manual_seed(seed)
    extra = dict(augment_dim=augment_dim) if augment_dim else {}
    net = EDMPrecond(img_resolution=res, img_channels=3, label_dim=label_dim, sigma_data=sigma_data,
                     attn_resolutions=attn, eff_attn=True, **extra, **ADM)
    with torch.no_grad():                    # make the zero-initialised layers matter too
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    net.eval()
    n = 4
    x, sigma = torch.randn(n, 3, res, res), torch.tensor([0.02, 0.4, 2.5, 60.0])
    labels = torch.eye(label_dim)[torch.arange(n) % label_dim] if label_dim else torch.zeros(n, 0)
    aug = 0.5 * torch.randn(n, augment_dim) if augment_dim else torch.zeros(n, 0)
    with torch.no_grad():
        d = net(x, sigma, labels if label_dim else None, **({"augment_labels": aug} if augment_dim else {}))
    np.savez(f"{out}/{name}.npz", x=x.numpy(), sigma=sigma.numpy(), labels=labels.numpy(), aug=aug.numpy(),
             d=d.numpy())
    return net


def dump(obj, name):
    with open(f"{out}/{name}", "wb") as f:
        pickle.dump(obj, f)


prefix = "plain-" if plain else ""
cond = make(prefix + "cond8", 8, 10, 0, 0.5, [16, 4], seed=1)       # 16 is not a level: ignored
uncond = make(prefix + "uncond16aug", 16, 0, 9, 0.6, [8], seed=2)
torch.save({"ema": cond, "net": cond, "step": 1000,
            "optimizer_state": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                                "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}},
           f"{out}/{prefix}cond8.pt")
torch.save({"ema": cond}, f"{out}/{prefix}cond8-legacy.pt", _use_new_zipfile_serialization=False)
dataset_kwargs = {"class_name": "training.dataset.ImageFolderDataset", "path": "data.zip", "resolution": 16}
dump({"ema": uncond, "loss_fn": EDMLoss(sigma_data=0.6), "augment_pipe": None, "dataset_kwargs": dataset_kwargs},
     prefix + "uncond16aug.pkl")
if not plain:
    torch.save({"ema": uncond}, f"{out}/uncond16aug_second_stage.pt")
    dump({"ema": uncond, "loss_fn": BlurLoss(sigma_data=0.6, up_scale=2, prob_length=0.89, blur_sigma_max=2.0,
                                              block_scale=0.15)}, "uncond16aug-relay.pkl")
    torch.save({"ema": EDMPrecond(img_resolution=8, img_channels=3, model_type="SongUNet")}, f"{out}/songunet.pt")
    cond.model._init_kwargs["model_channels"] = 64
    torch.save({"ema": cond}, f"{out}/mismatch.pt")
    cond.model._init_kwargs["model_channels"] = 32
    cond.payload = Evil()                    # hidden inside a persistent record's state
    dump({"ema": cond}, "evil-state.pkl")
'''


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The networks are tiny: one thread avoids OpenMP spin-waits on busy cores (30x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Directory with the synthetic checkpoints (+ <case>.npz: inputs and original outputs)."""
    root = tmp_path_factory.mktemp("official")
    pkgs, out = root / "pkgs", root / "out"
    for rel, text in (("torch_utils/__init__.py", ""), ("torch_utils/persistence.py", PERSISTENCE_PY),
                      ("training/__init__.py", ""), ("training/networks.py", NETWORKS_PY),
                      ("training/loss.py", LOSS_PY)):
        (pkgs / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkgs / rel).write_text(text)
    (root / "make.py").write_text(MAKE_PY)
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(pkgs), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(root / "make.py"), str(out), str(root / "MARKER")],
                              env={**env, "RDM_TEST_PLAIN": plain}, cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for plain in ("0", "1")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    # The import side must not be able to use the original classes.
    assert "training" not in sys.modules and "torch_utils" not in sys.modules
    assert str(pkgs) not in sys.path and str(root) not in sys.path
    return out


def check_outputs(dest: Path, npz: Path) -> dict:
    """Load the model directory the way the project does and compare with the recorded outputs."""
    cfg = read_model_config(dest)
    net = NetworkConfig.from_dict(cfg["network"]).build()
    net.load_state_dict(load_weights(dest), strict=True)
    denoiser = EDMPrecond(net, cfg["sigma_data"], cfg["label_dim"]).eval()
    data = {k: torch.from_numpy(v) for k, v in np.load(npz).items()}
    labels = data["labels"] if data["labels"].shape[1] else None
    kwargs = {"augment_labels": data["aug"]} if data["aug"].shape[1] else {}
    with torch.no_grad():
        out = denoiser(data["x"], data["sigma"], labels, **kwargs)
    torch.testing.assert_close(out, data["d"], rtol=1e-5, atol=1e-5)
    return cfg


def test_rdm_pt_conditional(made, tmp_path):
    src = made / "cond8.pt"
    result = import_checkpoint(src, tmp_path / "m")
    cfg = check_outputs(tmp_path / "m", made / "cond8.npz")
    assert cfg["stage"] == "base" and cfg["schedule"] is None and result["warnings"] == []
    assert (cfg["resolution"], cfg["channels"], cfg["label_dim"], cfg["sigma_data"]) == (8, 3, 10, 0.5)
    net = cfg["network"]
    assert (net["augment_dim"], net["model_channels"], net["channel_mult"]) == (0, 32, [1, 2])
    assert net["attn_resolutions"] == [4]                   # 16 was listed but is not a level
    source = cfg["source"]
    assert source["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (source["file"], source["format"], source["container"]) == ("cond8.pt", "rdm-pt", "torch-zip")
    assert (source["precond_class"], source["network_class"]) == ("EDMPrecond", "DhariwalUNet")
    assert source["persistent"] is True and source["config_from"] == "init arguments + weight shapes"
    assert source["sigma_max"] == "inf" and source["ignored_network_kwargs"] == {"eff_attn": True}
    assert (tmp_path / "m" / "model.safetensors").exists() and not (tmp_path / "m" / "ema.safetensors").exists()


def test_legacy_torch_save(made, tmp_path):
    import_checkpoint(made / "cond8-legacy.pt", tmp_path / "m")
    assert check_outputs(tmp_path / "m", made / "cond8.npz")["source"]["container"] == "torch-legacy"


def test_edm_pkl_unconditional_with_augment(made, tmp_path):
    import_checkpoint(made / "uncond16aug.pkl", tmp_path / "m")
    cfg = check_outputs(tmp_path / "m", made / "uncond16aug.npz")
    assert (cfg["label_dim"], cfg["network"]["augment_dim"], cfg["sigma_data"]) == (0, 9, 0.6)
    assert (cfg["source"]["format"], cfg["source"]["container"]) == ("edm-pkl", "pickle")


@pytest.mark.parametrize("name", ["plain-cond8.pt", "plain-cond8-legacy.pt", "plain-uncond16aug.pkl"])
def test_plain_module_pickles(made, tmp_path, name):
    import_checkpoint(made / name, tmp_path / "m")
    cfg = check_outputs(tmp_path / "m", made / (name.split(".")[0].replace("-legacy", "") + ".npz"))
    assert cfg["source"]["persistent"] is False and cfg["source"]["config_from"] == "weight shapes"


def test_relay_with_recipe(made, tmp_path):
    src = made / "uncond16aug_second_stage.pt"
    result = import_checkpoint(src, tmp_path / "m", stage="relay", recipe="imagenet256")
    cfg = check_outputs(tmp_path / "m", made / "uncond16aug.npz")
    assert cfg["stage"] == "relay" and result["warnings"] == []
    assert cfg["schedule"] == dataclasses.asdict(RELAY_RECIPES["imagenet256"].schedule)
    model = RelayModel.from_pretrained(tmp_path / "m")          # the project's own loader
    assert model.stage == "relay" and model.schedule == RELAY_RECIPES["imagenet256"].schedule
    # Without --stage, the file name hints at a second stage: imported as base, with a warning.
    result = import_checkpoint(src, tmp_path / "b")
    assert result["config"]["stage"] == "base" and "second-stage" in result["warnings"][0]
    with pytest.raises(ValueError, match="recipe"):
        import_checkpoint(src, tmp_path / "r", stage="relay")
    with pytest.raises(ValueError, match="relay stage"):
        import_checkpoint(src, tmp_path / "r", stage="base", recipe="imagenet256")


def test_relay_detected_from_blur_loss(made, tmp_path):
    result = import_checkpoint(made / "uncond16aug-relay.pkl", tmp_path / "m", schedule_overrides={"block_scale": 0.1})
    cfg = check_outputs(tmp_path / "m", made / "uncond16aug.npz")
    s = cfg["schedule"]
    assert cfg["stage"] == "relay" and result["warnings"] == []
    assert (s["up_scale"], s["prob_length"], s["blur_sigma_max"], s["block_scale"]) == (2, 0.89, 2.0, 0.1)
    with pytest.raises(ValueError, match="BlurLoss"):
        import_checkpoint(made / "uncond16aug-relay.pkl", tmp_path / "b", stage="base")


def run_cli(argv) -> int:
    args = build_parser(argv[0]).parse_args(argv)
    return args.func(args)


def test_cli(made, tmp_path, capsys):
    src, dest = str(made / "uncond16aug_second_stage.pt"), str(tmp_path / "m")
    assert run_cli(["import", src, dest, "--recipe", "celebahq256", "--block-scale", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "relay schedule: up_scale=4 blur_sigma_max=2.0 prob_length=0.89 block_scale=0.2" in out
    cfg = check_outputs(Path(dest), made / "uncond16aug.npz")
    assert cfg["stage"] == "relay" and cfg["schedule"]["block_scale"] == 0.2
    assert run_cli(["import", src, dest]) == 2
    assert "rdm: error:" in capsys.readouterr().err
    assert run_cli(["import", str(made / "cond8.pt"), dest, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label_dim"] == 10
    assert run_cli(["import", str(made / "cond8.pt"), str(tmp_path / "x"), "--key", "model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdm: error:") and "'ema'" in err and "'net'" in err
    assert not (tmp_path / "x").exists()


class Reduces:
    """Pickles as a call fn(*args): what a malicious checkpoint contains."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payloads(marker: Path):
    return {"posix.system": Reduces(os.system, f"touch {marker}"),
            "builtins.eval": Reduces(eval, f"__import__('os').system('touch {marker}')"),
            "subprocess.call": Reduces(subprocess.call, ["touch", str(marker)])}


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "subprocess.call"])
@pytest.mark.parametrize("container", ["pickle", "torch-zip"])
def test_malicious_globals_are_refused(tmp_path, name, container):
    marker = tmp_path / "MARKER"
    src = tmp_path / "evil.pt"
    payload = {"ema": payloads(marker)[name]}
    if container == "pickle":
        src.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, src)
    with pytest.raises(UnsafeCheckpointError, match=f"refusing to load global '{name}'"):
        import_checkpoint(src, tmp_path / "m")
    assert not marker.exists() and not (tmp_path / "m").exists()


def test_malicious_inside_persistent_record(made, tmp_path):
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        import_checkpoint(made / "evil-state.pkl", tmp_path / "m")
    assert not (made.parent / "MARKER").exists()


def test_malicious_inside_embedded_storage_bytes(tmp_path):
    """A plain pickle's tensors embed torch.save bytes; those are parsed with the same rules."""
    marker = tmp_path / "MARKER"
    inner = b"".join(pickle.dumps(v, protocol=2) for v in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    inner += pickle.dumps(Reduces(os.system, f"touch {marker}"), protocol=2)
    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps({"ema": Reduces(torch.storage._load_from_bytes, inner)}))
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'.*embedded storage"):
        import_checkpoint(src, tmp_path / "m")
    assert not marker.exists()


def test_unsupported_network_and_mismatch(made, tmp_path):
    with pytest.raises(CheckpointError, match="SongUNet.*DhariwalUNet"):
        import_checkpoint(made / "songunet.pt", tmp_path / "m")
    with pytest.raises(CheckpointError, match="shape mismatch.*model_channels=64.*model_channels=32"):
        import_checkpoint(made / "mismatch.pt", tmp_path / "m")


def test_not_a_checkpoint(tmp_path):
    cases = {"random.pt": bytes(range(256)), "text.pkl": b"hello, this is text\n",
             "list.pkl": pickle.dumps([1, 2, 3]), "noema.pkl": pickle.dumps({"model": 1, "step": 2})}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "no pickle here")
    cases["other.zip"] = buf.getvalue()
    messages = {"random.pt": "not a readable checkpoint", "text.pkl": "not a readable checkpoint",
                "list.pkl": "holds a list", "noema.pkl": "no 'ema' entry.*'model', 'step'",
                "other.zip": "not a torch.save checkpoint"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=messages[name]):
            import_checkpoint(tmp_path / name, tmp_path / "m")
    with pytest.raises(ValueError, match="no such file"):
        import_checkpoint(tmp_path / "missing.pt", tmp_path / "m")


@pytest.mark.parametrize("protocol", [2, 4])
def test_safe_loads_plain_values(protocol):
    t = torch.arange(12.0).reshape(3, 4)[:, 1:]             # a strided view of a larger storage
    obj = {"t": t, "p": torch.nn.Parameter(torch.ones(2)), "bf": torch.full((2,), 1.5, dtype=torch.bfloat16),
           "set": {1, 2}, "frozen": frozenset({3}), "od": collections.OrderedDict(a=1), "bytes": b"\x00\xff",
           "np": np.float64(0.25), "arr": np.arange(3, dtype=np.int16), "inf": float("inf"),
           "dtype": torch.float16, "size": torch.Size([2, 3])}
    got = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert isinstance(got["t"], TensorRef) and torch.equal(got["t"].load(), t)
    assert got["p"].is_parameter and torch.equal(got["p"].load(), torch.ones(2))
    assert torch.equal(got["bf"].load(), obj["bf"])
    assert (got["set"], got["frozen"], got["od"], got["bytes"]) == ({1, 2}, frozenset({3}), {"a": 1}, b"\x00\xff")
    assert got["np"] == 0.25 and got["arr"].array.tolist() == [0, 1, 2] and got["inf"] == float("inf")
    assert got["dtype"] is torch.float16 and got["size"] == (2, 3)


def test_open_checkpoint_reads_lazily(made):
    with open_checkpoint(made / "cond8.pt") as ckpt:
        root = ckpt.root
        assert ckpt.container == "torch-zip" and root["step"] == 1000
        assert root["ema"].class_name == "EDMPrecond" and root["ema"].persistent
        assert "class EDMPrecond" in root["ema"].module_src          # kept as text, never run
        assert torch.equal(root["optimizer_state"]["state"][0]["step"].load(), torch.tensor(3.0))


def test_pickle_cannot_modify_tensor_records():
    """BUILD on a rebuilt tensor (e.g. to change its size after the bounds were known) fails."""
    data = pickle.dumps(torch.ones(2), protocol=2)
    with pytest.raises(CheckpointError, match="modify a TensorRef"):
        safe_loads(data[:-1] + b"}b.")


@pytest.mark.parametrize("args,message", [
    (["--recipe", "imagenet256", "--blur-sigma-max", "nan"], "blur_sigma_max must be finite"),
    (["--stage", "relay", "--up-scale", "0"], "up_scale"),
    (["--stage", "relay", "--prob-length", "3"], "prob_length must be in (0, 2], got 3.0"),
    (["--stage", "relay", "--block-scale", "-1"], "block_scale must be >= 0, got -1.0"),
    (["--stage", "relay", "--min-scale", "inf"], "min_scale must be finite"),
    (["--stage", "base", "--up-scale", "4"], "describe a relay stage"),
    (["--stage", "relay", "--up-scale", "3"], "resolution 16 is not divisible by up_scale 3"),
])
def test_cli_refuses_bad_schedules_and_writes_nothing(made, tmp_path, capsys, args, message):
    dest = tmp_path / "m"
    assert run_cli(["import", str(made / "uncond16aug_second_stage.pt"), str(dest), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdm: error:") and message in err and "Traceback" not in err
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_cli_refuses_a_folder_source_and_a_destination_under_a_file(made, tmp_path, capsys):
    assert run_cli(["import", str(tmp_path), str(tmp_path / "m")]) == 2
    assert f"{tmp_path} is a folder; give the checkpoint file" in capsys.readouterr().err
    (tmp_path / "f").write_text("keep")
    assert run_cli(["import", str(made / "cond8.pt"), str(tmp_path / "f" / "m")]) == 2
    assert f"{tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err
    assert run_cli(["import", str(made / "cond8.pt"), str(tmp_path / "f")]) == 2   # an existing file
    assert "already exists; pass --force" in capsys.readouterr().err
    assert run_cli(["import", str(made / "cond8.pt"), str(tmp_path / "f"), "--force"]) == 2
    assert "not a relay-diffusion model directory" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "keep"
