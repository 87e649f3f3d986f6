"""Read torch.save files and pickles without executing anything from them.

A pickle is a small program: its GLOBAL opcodes name functions and classes that the loader
imports and calls. `pickle.load` and `torch.load(weights_only=False)` therefore run whatever a
file asks for, and EDM's persistent classes even carry Python source that EDM's loader `exec`s.
Here every global goes through an allow-list (`find_class`), and only these are accepted:

* our own re-implementations of torch's tensor/storage rebuild functions, which only record
  (storage, offset, size, stride, dtype) — tensor bytes are read later, on demand, from the
  file's storage records (`TensorRef.load`), never through torch.load;
* plain containers and values (OrderedDict, set, frozenset, slice, bytearray, complex, torch
  dtypes/devices/Size, numpy scalars and arrays of non-object dtypes);
* EDM/RDM classes (modules `training.networks`, `training.loss`, `training.augment`,
  `torch.nn.modules.*`, EDM's `torch_utils.persistence` records, `dnnlib` EasyDict): they are
  never imported; each becomes a `PickledObject` that keeps the class name, the arguments and
  the state as data. The module source stored by EDM's persistence is kept as a string only.

Anything else raises `UnsafeCheckpointError` before it is called. Objects produced by the
allowed functions have no behaviour a later opcode could exploit: BUILD on them either records
state (placeholders) or fails (tensor and storage records), and they have no item or append
methods.

Three containers are understood: torch's zip format (`<name>/data.pkl` + `<name>/data/<key>`),
torch's legacy format (magic number, header pickles, object pickle, storage keys, raw storages)
and plain pickles (EDM's `.pkl`), whose tensors embed their storage as legacy-format bytes
(`torch.storage._load_from_bytes`), parsed here with the same restricted machinery.
"""

from __future__ import annotations

import _compat_pickle
import collections
import functools
import io
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C   # first pickle of torch's legacy (non-zip) format
LEGACY_PROTOCOL_VERSION = 1001
ZIP_SIGNATURE = b"PK\x03\x04"


class CheckpointError(ValueError):
    """The file is not a checkpoint that can be read, or holds something unexpected."""


class UnsafeCheckpointError(CheckpointError):
    """The file asks for a global (function or class) outside the allow-list."""


# --------------------------------------------------------------------------------------------
# Foreign objects kept as data.


class PickledObject:
    """An instance of a class that is never imported: its class name plus everything the pickle
    gave it — constructor arguments (`args`, `kwargs`) and state (`state`, normally the
    object's `__dict__`: attributes, `_parameters`, `_buffers`, `_modules`, ...).

    For EDM persistent objects `persistent` is True, `module_src` holds the pickled module
    source (as text; it is never executed) and `persistence_version` EDM's format number.
    Each pickled class gets its own subclass (see `placeholder_class`)."""

    pickled_module: str | None = None
    pickled_name: str = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, {}
        obj.raw_state = None                    # a non-dict state, if the class pickled one
        obj.persistent, obj.module_src, obj.persistence_version = False, None, None
        return obj

    def __init__(self, *args, **kwargs):        # REDUCE calls the class; __new__ kept the arguments
        pass

    def __setstate__(self, state) -> None:      # BUILD
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            state = {**(state[0] or {}), **(state[1] or {})}   # (__dict__, __slots__ values)
        if isinstance(state, dict):
            self.state.update(state)
        elif state is not None:
            self.raw_state = state

    @property
    def class_name(self) -> str:
        return self.pickled_name

    @property
    def qualified_name(self) -> str:
        if self.persistent:
            return f"{self.pickled_name} (EDM persistent class)"
        return f"{self.pickled_module}.{self.pickled_name}"

    def __repr__(self) -> str:
        return f"<pickled {self.qualified_name}>"


_PLACEHOLDERS: dict[tuple[str | None, str], type] = {}


def placeholder_class(module: str | None, name: str) -> type:
    """The PickledObject subclass standing for class `module.name` (one per name, so that
    NEWOBJ/REDUCE of the same class give instances of the same type)."""
    key = (module, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(name, (PickledObject,), {
            "pickled_module": module, "pickled_name": name, "__module__": __name__,
            "__qualname__": f"PickledObject[{module or 'persistent'}.{name}]"})
    return _PLACEHOLDERS[key]


class PickledDict(dict):
    """dnnlib.EasyDict (a dict with attribute access) as a plain dict."""

    def __setstate__(self, state) -> None:      # EasyDict keeps its data in the items
        pass


# --------------------------------------------------------------------------------------------
# Tensors and storages, read lazily.


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class _NoBuild:
    """Objects the pickle cannot modify: a BUILD opcode on them (or on their class) fails
    instead of overwriting attributes."""

    def __setstate__(self, state) -> None:
        raise CheckpointError(f"the checkpoint tries to modify a {type(self).__name__}")


class StorageRef(_NoBuild):
    """One storage of the file: `numel` elements of `dtype`, whose bytes `reader()` returns."""

    def __init__(self, dtype: torch.dtype, numel: int, reader: Callable[[], bytes] | None = None,
                 byteswap: bool = False, source: str = "?"):
        self.dtype, self.numel, self.reader, self.byteswap, self.source = dtype, numel, reader, byteswap, source
        self.nbytes = numel * element_size(dtype)

    def elements(self, dtype: torch.dtype) -> torch.Tensor:
        """The storage as a flat CPU tensor of `dtype` (a copy)."""
        if self.reader is None:
            raise CheckpointError(f"{self.source}: a tensor's data record was never found")
        raw = self.reader()
        if len(raw) != self.nbytes:
            raise CheckpointError(f"{self.source}: storage holds {len(raw)} bytes, expected {self.nbytes} "
                                  f"(truncated file?)")
        size = element_size(dtype)
        if len(raw) % size:
            raise CheckpointError(f"{self.source}: storage of {len(raw)} bytes cannot hold {dtype} elements")
        if not raw:
            return torch.empty(0, dtype=dtype)
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        if self.byteswap and size > 1:
            if dtype.is_complex:
                raise CheckpointError(f"{self.source}: big-endian complex tensors are not supported")
            flat = flat.view(-1, size).flip(1).reshape(-1)
        return flat.view(dtype)


class TensorRef(_NoBuild):
    """A tensor of the checkpoint that has not been read yet: storage + offset/size/stride."""

    def __init__(self, storage: StorageRef, offset, size, stride, dtype: torch.dtype, requires_grad=False):
        if not isinstance(storage, StorageRef):
            raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, expected a storage")
        size, stride = _int_tuple(size, "tensor size"), _int_tuple(stride, "tensor stride")
        if len(size) != len(stride) or any(v < 0 for v in size + stride) or not _is_int(offset) or offset < 0:
            raise CheckpointError(f"invalid tensor layout: size {size}, stride {stride}, offset {offset!r}")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype, self.requires_grad = dtype, bool(requires_grad)
        self.is_parameter = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    def load(self) -> torch.Tensor:
        """Read the tensor from the file: a new contiguous CPU tensor."""
        flat = self.storage.elements(self.dtype)
        if 0 in self.size:
            return torch.empty(self.size, dtype=self.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= flat.numel():
            raise CheckpointError(f"{self.storage.source}: tensor of size {self.size} reaches element {last} "
                                  f"of a storage with {flat.numel()}")
        return flat.as_strided(self.size, self.stride, self.offset).clone()

    def __repr__(self) -> str:
        return f"TensorRef({self.dtype}, {list(self.size)})"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(_is_int(i) for i in v):
        raise CheckpointError(f"{what} must be a tuple of integers, got {v!r}")
    return tuple(v)


# Our stand-ins for torch._utils / torch._tensor rebuild functions: same arguments, but they
# only build TensorRefs.

def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride, getattr(storage, "dtype", None))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    _check_metadata(metadata)
    return TensorRef(storage, storage_offset, size, stride, getattr(storage, "dtype", None), requires_grad)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    _check_metadata(metadata)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"tensor dtype must be a torch dtype, got {dtype!r}")
    return TensorRef(storage, storage_offset, size, stride, dtype, requires_grad)


def _check_metadata(metadata) -> None:
    if metadata and any(metadata.values()):   # conj / neg bits: never set on network weights
        raise CheckpointError(f"tensors with metadata {metadata!r} are not supported")


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    if not isinstance(data, TensorRef):
        raise CheckpointError(f"parameter rebuilt from a {type(data).__name__}, expected a tensor")
    data.requires_grad, data.is_parameter = bool(requires_grad), True
    return data


_REBUILD_FUNCTIONS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)
_TENSOR_TYPE = object()   # stands for torch.Tensor / torch.nn.Parameter in _rebuild_from_type_v2


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _REBUILD_FUNCTIONS or new_type is not _TENSOR_TYPE or not isinstance(args, tuple):
        raise CheckpointError("unsupported tensor subclass reconstruction")
    return func(*args)


class TorchStorageType(_NoBuild):
    """torch.FloatStorage etc.: only the element type matters."""

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}
_STORAGE_TYPES = {name: TorchStorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}
# A fixed list: getattr(torch, name) with an arbitrary name could trigger torch's lazy imports.
_TORCH_DTYPES = {name: getattr(torch, name) for name in (
    "float64", "double", "float32", "float", "float16", "half", "bfloat16", "int64", "long", "int32",
    "int", "int16", "short", "int8", "uint8", "bool", "complex64", "cfloat", "complex128", "cdouble")}


def _torch_size(dims=()):
    return _int_tuple(tuple(dims), "torch.Size")


def _torch_device(kind, index=None):
    if not isinstance(kind, str) or not (index is None or _is_int(index)):
        raise CheckpointError(f"invalid torch.device({kind!r}, {index!r})")
    return torch.device(kind) if index is None else torch.device(kind, index)


# --------------------------------------------------------------------------------------------
# Plain Python and numpy values.


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as _codecs.encode(<latin-1 text>, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"unsupported _codecs.encode call with encoding {encoding!r}")
    return text.encode("latin1")


def _bytearray(data=b""):
    if not isinstance(data, (bytes, bytearray)):   # bytearray(<huge int>) would allocate it
        raise CheckpointError("bytearray is only accepted from bytes")
    return bytearray(data)


def _reconstructor(cls, base, state):
    # copyreg._reconstructor(cls, object, None): how protocol 0/1 pickles create instances.
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)) or base is not object or state is not None:
        raise CheckpointError("copyreg._reconstructor is only accepted for EDM/torch module classes")
    return cls.__new__(cls)


def _newobj(cls, *args):
    if not (isinstance(cls, type) and issubclass(cls, (PickledObject, PickledDict))):
        raise CheckpointError("copyreg.__newobj__ is only accepted for EDM/torch module classes")
    return cls.__new__(cls, *args)


class NumpyDType:
    """numpy.dtype(spec) + its pickled state; turned into a real dtype only for simple specs."""

    def __init__(self, spec, align=False, copy=False):
        if not isinstance(spec, str):
            raise CheckpointError(f"unsupported numpy dtype spec {spec!r}")
        self.spec, self.byteorder, self.structured = spec, None, False

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]
        if isinstance(state, tuple) and len(state) >= 4 and state[3] is not None:
            self.structured = True                      # named fields: not supported

    def to_numpy(self):
        import numpy as np

        try:
            dt = np.dtype(self.spec)
        except TypeError as e:
            raise CheckpointError(f"unsupported numpy dtype {self.spec!r}: {e}") from None
        if self.structured or dt.hasobject or dt.fields:
            raise CheckpointError(f"numpy dtype {self.spec!r} with fields or Python objects is not supported")
        return dt.newbyteorder(self.byteorder) if self.byteorder in ("<", ">") else dt


def _numpy_scalar(dtype, data=None):
    import numpy as np

    if not isinstance(dtype, NumpyDType) or not isinstance(data, bytes):
        raise CheckpointError("only numpy scalars of plain numeric dtypes are supported")
    return np.frombuffer(data, dtype=dtype.to_numpy(), count=1)[0].item()


class NumpyArray:
    """numpy.ndarray (non-object dtypes): `.array` after BUILD."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state) -> None:
        import numpy as np

        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("unsupported numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, NumpyDType) or not isinstance(raw, (bytes, bytearray)):
            raise CheckpointError("only numpy arrays of plain numeric dtypes are supported")
        arr = np.frombuffer(raw, dtype=dtype.to_numpy())
        self.array = arr.reshape(_int_tuple(shape, "numpy shape"), order="F" if fortran else "C").copy()


_NDARRAY_TYPE = object()


def _numpy_reconstruct(subtype, shape, typecode):
    if subtype is not _NDARRAY_TYPE:
        raise CheckpointError("only plain numpy arrays are supported")
    return NumpyArray()


# --------------------------------------------------------------------------------------------
# The allow-list.

# Classes of these modules become PickledObject placeholders (never imported).
PLACEHOLDER_MODULES = ("training.networks", "training.loss", "training.augment")
PLACEHOLDER_MODULE_PREFIXES = ("torch.nn.modules.",)

_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("builtins", "bytearray"): _bytearray, ("builtins", "complex"): complex, ("builtins", "object"): object,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): _newobj,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE, ("torch._tensor", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
    ("dnnlib", "EasyDict"): PickledDict, ("dnnlib.util", "EasyDict"): PickledDict,
    ("numpy", "dtype"): NumpyDType, ("numpy", "ndarray"): _NDARRAY_TYPE,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar, ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol ≤ 2 pickles written by Python 3 name builtins the Python 2 way (__builtin__.set,
    copy_reg._reconstructor); translate with the stdlib's own mapping tables (data only)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def resolve_global(module: str, name: str, source: str) -> Any:
    """What GLOBAL `module.name` means here; UnsafeCheckpointError if it is not allowed."""
    module, name = _python3_name(module, name)
    if (module, name) in _SAFE_GLOBALS:
        return _SAFE_GLOBALS[(module, name)]
    if module == "torch" and name in _STORAGE_TYPES:
        return _STORAGE_TYPES[name]
    if module == "torch" and name in _TORCH_DTYPES:
        return _TORCH_DTYPES[name]
    if (module, name) == ("torch.storage", "_load_from_bytes"):
        return functools.partial(_load_storage_bytes, source=source)
    if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
        return _reconstruct_persistent_obj
    if name.isidentifier() and not name.startswith("_") and (
            module in PLACEHOLDER_MODULES or module.startswith(PLACEHOLDER_MODULE_PREFIXES)):
        return placeholder_class(module, name)
    raise UnsafeCheckpointError(
        f"refusing to load global '{module}.{name}' from {source}: only tensors, plain containers and "
        f"EDM/RDM network classes (kept as data) are allowed; nothing from the file was executed")


def _reconstruct_persistent_obj(meta):
    """EDM's persistent-object record → PickledObject (the module source is kept, not run)."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        kind = meta.get("type") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"unsupported EDM persistent record (type {kind!r})")
    name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src")
    if not isinstance(name, str) or not name.isidentifier():
        raise CheckpointError(f"EDM persistent record with an invalid class name {name!r}")
    if state is not None and not isinstance(state, dict):
        raise CheckpointError(f"EDM persistent record of {name} has a {type(state).__name__} state")
    obj = PickledObject.__new__(placeholder_class(None, name))
    obj.__setstate__(state or {})
    obj.persistent = True
    obj.module_src = src if isinstance(src, str) else None
    obj.persistence_version = meta.get("version")
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose globals come from `resolve_global` and whose persistent ids
    (torch's storage references) go to `persistent` (refused when None)."""

    def __init__(self, file, source: str, persistent: Callable[[Any], Any] | None = None):
        super().__init__(file)
        self._source, self._persistent = source, persistent

    def find_class(self, module, name):
        return resolve_global(module, name, self._source)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointError(f"{self._source}: unexpected persistent reference in a plain pickle")
        return self._persistent(pid)


def _unpickle(file, source: str, persistent=None):
    try:
        return RestrictedUnpickler(file, source, persistent).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, KeyError, TypeError, ValueError,
            struct.error, UnicodeDecodeError) as e:
        raise CheckpointError(f"{source} is not a readable checkpoint ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------
# Containers.


def _storage_pid(pid, source: str):
    """('storage', storage_type, key, location, numel[, view_metadata]) → (dtype, key, numel, view)."""
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
        raise CheckpointError(f"{source}: unexpected persistent reference ({kind!r})")
    stype, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(stype, TorchStorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
        raise CheckpointError(f"{source}: malformed storage reference")
    view = pid[5] if len(pid) > 5 else None
    return stype.dtype, key, numel, view


def _load_zip(zf: zipfile.ZipFile, source: str):
    names = zf.namelist()
    pickles = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
    if len(pickles) != 1:
        raise CheckpointError(f"{source} is a zip file but not a torch.save checkpoint (no single data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    byteswap = False
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise CheckpointError(f"{source}: unknown byte order {order!r}")
        byteswap = order != sys.byteorder
    storages: dict[str, StorageRef] = {}

    def persistent(pid):
        dtype, key, numel, _ = _storage_pid(pid, source)
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{source}: missing tensor data record {record}")
            storages[key] = StorageRef(dtype, numel, functools.partial(zf.read, record), byteswap, source)
        return storages[key]

    return _unpickle(io.BytesIO(zf.read(pickles[0])), source, persistent)


class _FileSlice:
    """Reads bytes [offset, offset + n) of an open file when called."""

    def __init__(self, f, offset: int, n: int):
        self.f, self.offset, self.n = f, offset, n

    def __call__(self) -> bytes:
        self.f.seek(self.offset)
        return self.f.read(self.n)


def _load_legacy(f, source: str):
    """torch's legacy format, after its magic-number pickle: protocol, system info, the object
    (storages as persistent ids), the list of storage keys, then each storage as an element count
    (8 bytes) followed by its raw bytes."""
    if _unpickle(f, source) != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"{source}: unsupported legacy torch.save protocol")
    info = _unpickle(f, source)
    little = info.get("little_endian", True) if isinstance(info, dict) else True
    byteswap = little != (sys.byteorder == "little")
    roots: dict[str, StorageRef] = {}
    views: list[tuple[StorageRef, str, int]] = []

    def persistent(pid):
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            if not (isinstance(pid[1], type) and issubclass(pid[1], PickledObject)):
                raise CheckpointError(f"{source}: unexpected module reference")
            return pid[1]                      # legacy format records module classes; source is ignored
        dtype, key, numel, view = _storage_pid(pid, source)
        root = roots.setdefault(key, StorageRef(dtype, numel, None, byteswap, source))
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1]) and _is_int(view[2])):
            raise CheckpointError(f"{source}: malformed storage view")
        sub = StorageRef(dtype, view[2], None, byteswap, source)   # filled in below
        views.append((sub, key, view[1]))
        return sub

    obj = _unpickle(f, source, persistent)
    keys = _unpickle(f, source)
    if not isinstance(keys, list) or set(keys) != set(roots):
        raise CheckpointError(f"{source}: storage list does not match the stored object")
    offsets = {}
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointError(f"{source}: truncated legacy checkpoint")
        numel = struct.unpack("<q" if little else ">q", header)[0]
        root = roots[key]
        if numel != root.numel:
            raise CheckpointError(f"{source}: storage {key} has {numel} elements, expected {root.numel}")
        offsets[key] = f.tell()
        root.reader = _FileSlice(f, offsets[key], root.nbytes)
        f.seek(root.nbytes, io.SEEK_CUR)
    for sub, key, start in views:
        begin = start * element_size(sub.dtype)
        if start < 0 or start + sub.numel > roots[key].numel:
            raise CheckpointError(f"{source}: storage view out of range")
        sub.reader = _FileSlice(f, offsets[key] + begin, sub.nbytes)
    return obj


def _load_storage_bytes(data, source: str):
    """torch.storage._load_from_bytes: a storage pickled inside a plain pickle, as the bytes of a
    (legacy) torch.save of that storage. Parsed here; torch.load is never called."""
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"{source}: storage bytes expected, got {type(data).__name__}")
    inner = f"{source} (embedded storage)"
    f = io.BytesIO(bytes(data))
    if data[:4] == ZIP_SIGNATURE:
        storage = _load_zip(zipfile.ZipFile(f), inner)
    else:
        if _unpickle(f, inner) != LEGACY_MAGIC_NUMBER:
            raise CheckpointError(f"{inner}: not a torch.save byte string")
        storage = _load_legacy(f, inner)
    if not isinstance(storage, StorageRef):
        raise CheckpointError(f"{inner}: expected a storage, got {type(storage).__name__}")
    return storage


class Checkpoint:
    """An opened checkpoint. `root` is the unpickled object: tensors are `TensorRef`s (read with
    `.load()` while the checkpoint is open), foreign classes `PickledObject`s. `container` is
    "torch-zip", "torch-legacy" or "pickle". Use as a context manager."""

    def __init__(self, root, container: str, closers: list):
        self.root, self.container, self._closers = root, container, closers

    def close(self) -> None:
        for c in reversed(self._closers):
            c.close()
        self._closers = []

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open a torch.save file (zip or legacy) or a plain pickle with the restricted unpickler."""
    path = Path(path)
    source = path.name
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    f = open(path, "rb")
    try:
        if f.read(4) == ZIP_SIGNATURE:
            f.seek(0)
            try:
                zf = zipfile.ZipFile(f)
            except zipfile.BadZipFile as e:
                raise CheckpointError(f"{source} is a damaged zip file: {e}") from None
            return Checkpoint(_load_zip(zf, source), "torch-zip", [f, zf])
        f.seek(0)
        first = _unpickle(f, source)
        if _is_int(first) and first == LEGACY_MAGIC_NUMBER:
            return Checkpoint(_load_legacy(f, source), "torch-legacy", [f])
        f.close()                              # a plain pickle holds its tensors' bytes itself
        return Checkpoint(first, "pickle", [])
    except BaseException:
        f.close()
        raise


def safe_loads(data: bytes, source: str = "<bytes>"):
    """Unpickle a plain pickle held in memory with the restricted unpickler."""
    return _unpickle(io.BytesIO(data), source)
