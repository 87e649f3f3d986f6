"""Class labels of a folder or zip of images, by EDM's rules:

1. a `dataset.json` at its root, {"labels": [["dir/file.png", 3], ...]} or {"labels": null},
   must label exactly the images present, with non-negative integers; else
2. if the images sit in more than one top-level group (each sub-folder is a group, and images
   at the root form the group ""), the sorted group names give the labels 0, 1, ...; else
3. no labels.
"""

from __future__ import annotations

import json

from .errors import DatasetError

DATASET_JSON = "dataset.json"
# The most classes a dataset may have: a conditional network holds a label_dim-wide embedding
# layer and every batch a label_dim-wide one-hot matrix (ImageNet-21k has 21,841 classes).
MAX_CLASSES = 100_000


def one_hot(labels, label_dim: int):
    """Class indices [N] → float32 one-hot rows [N, label_dim] on the indices' device (no
    label_dim × label_dim identity matrix in between)."""
    import torch
    return torch.nn.functional.one_hot(labels.long(), label_dim).float()


def parse_dataset_json(raw: bytes, where: str) -> dict[str, int] | None:
    """Parse the bytes of a dataset.json into {file name: label}, or None for "labels": null.
    `where` names the file in errors (e.g. "data.zip: dataset.json")."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{where}: not valid JSON ({e})", path=where) from e
    if not isinstance(meta, dict) or "labels" not in meta:
        raise DatasetError(f'{where}: expected an object with a "labels" key, '
                           f'{{"labels": [["file.png", 0], ...]}} or {{"labels": null}}', path=where)
    entries = meta["labels"]
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise DatasetError(f'{where}: "labels" must be a list of ["file name", label] pairs or '
                           f"null, got {type(entries).__name__}", path=where)
    table: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f'{where}: labels[{i}] must be a ["file name", label] pair, '
                               f"got {str(entry)[:80]}", path=where)
        fname, label = entry[0].replace("\\", "/"), entry[1]
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise DatasetError(f"{where}: the label of {fname} must be a non-negative integer, "
                               f"got {label!r}", path=where)
        if label >= MAX_CLASSES:
            raise DatasetError(f"{where}: the label of {fname} is {label:,}; labels must be below "
                               f"{MAX_CLASSES:,} (the number of classes is the largest label + 1)", path=where)
        if fname in table:
            raise DatasetError(f"{where}: {fname} is labelled twice", path=where)
        table[fname] = label
    return table


def labels_from_table(names: list[str], table: dict[str, int], where: str) -> list[int]:
    """Look up every image name in a parsed dataset.json; both sides must match exactly."""
    present = set(names)
    for fname in table:
        if fname not in present:
            raise DatasetError(f"{where}: labels {fname}, which is not an image of the dataset",
                               path=where)
    for fname in names:
        if fname not in table:
            raise DatasetError(f"{where}: has no label for image {fname}", path=where)
    return [table[fname] for fname in names]


def labels_from_folders(names: list[str]) -> tuple[list[int] | None, list[str] | None]:
    """EDM's sub-folder rule: (labels, sorted class names), or (None, None) for one group."""
    groups = [n.split("/", 1)[0] if "/" in n else "" for n in names]
    classes = sorted(set(groups))
    if len(classes) <= 1:
        return None, None
    index = {c: i for i, c in enumerate(classes)}
    return [index[g] for g in groups], classes


def resolve_labels(names: list[str], dataset_json: bytes | None, where: str
                   ) -> tuple[list[int] | None, list[str] | None]:
    """Labels of the images `names` (relative "/" paths, sorted) by the module's rules.

    dataset_json: the bytes of the root dataset.json, or None when there is none.
    where: how to name that dataset.json in errors. Returns (labels, class names or None)."""
    if dataset_json is not None:
        table = parse_dataset_json(dataset_json, where)
        if table is None:
            return None, None
        return labels_from_table(names, table, where), None
    return labels_from_folders(names)
