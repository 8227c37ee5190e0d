"""What an image run reads besides its settings, named for the protocol digest.

Two runs with the same settings but other data must never share a results record, so
the digest of an image run also names (``ImageProtocol.inputs``):

* a features file (``--features`` or ``--dataset PATH.pt/.npz``) and a model's weights
  or label-embedding file (``checkpoint=``, ``embeddings=``) by the SHA-256 of their
  content. Content, not size and modification time: a copy or a move (``cp``, ``rsync``
  without ``-t``, unpacking an archive) changes the time but not what is trained, and a
  file rewritten in place within one clock tick at the same size would slip past a
  size + time check. The cost is one more sequential read of each file per command
  (about a second per GB; the features file is read whole anyway);
* an image folder (VOC2007, MS-COCO) by its resolved absolute path, with the rules
  that shape its labels and images: VOC's difficult-object rule, MS-COCO's empty-image
  rule, the transform (``hst`` or ``mlgcn``).
  Hashing tens of thousands of images per command is too slow, so images changed in
  place under the same folder are *not* detected: use another ``--results-dir``.

The embedded digits-mosaic is named by its options alone (already in the settings), so
its inputs are empty and its digests stay those of the committed evidence.
"""

from __future__ import annotations

import hashlib
import os

#: Model options that name a file whose content shapes the run.
MODEL_FILE_OPTIONS = ("checkpoint", "embeddings", "graph")


def file_sha256(path: str, what: str) -> str:
    """The SHA-256 hex digest of the file's content; FileNotFoundError naming ``what``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def features_path(dataset: str, features: str | None) -> str | None:
    """The features file a data set name reads (the name itself when it is a path), or None."""
    if dataset.endswith((".pt", ".npz")):
        return dataset
    if dataset == "features":
        if not features:
            raise FileNotFoundError("the features set needs a file: pass --features PATH (.pt or .npz)")
        return features
    return None


def model_files(model_options: dict) -> dict:
    """{"model.option": content SHA-256} for every existing file a model option names
    (a missing one is left to the model, which names it when it is built)."""
    found = {}
    for model, options in sorted(model_options.items()):
        for option in MODEL_FILE_OPTIONS:
            path = options.get(option)
            if isinstance(path, str) and os.path.isfile(path):
                found[f"{model}.{option}"] = file_sha256(path, f"--model-opt {option}")
    return found


def run_inputs(
    dataset: str,
    *,
    data_dir: str | None,
    features: str | None,
    difficult: str,
    keep_empty: bool,
    files: dict,
    transform: str | None = None,
) -> dict:
    """The inputs of runs on ``dataset`` (see the module docstring); ``files``: the
    :func:`model_files` of the command. {} for digits-mosaic without model files.
    Raises FileNotFoundError naming a missing features file or folder."""
    from ..datasets.images.registry import image_data_dir

    inputs = {}
    path = features_path(dataset, features)
    if path is not None:
        inputs["features_sha256"] = file_sha256(path, "features file")
    elif dataset in ("voc2007", "coco2014"):
        inputs["folder"] = os.path.realpath(image_data_dir(data_dir, dataset))
        if dataset == "voc2007":
            inputs["difficult"] = difficult
        else:
            inputs["keep_empty"] = bool(keep_empty)
        if transform is not None:
            inputs["transform"] = transform
    if files:
        inputs["files_sha256"] = dict(files)
    return inputs
