"""Reading MULAN multi-label sets: ARFF (dense or sparse rows, plain or gzipped) plus
the XML list of labels, which are the last q attributes.

The data folder comes from an argument or the ``D2ACE_DATA_DIR`` environment variable;
a missing folder or file raises ``FileNotFoundError`` naming what was expected.
"""
from __future__ import annotations

import glob
import gzip
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

DATA_DIR_ENV = "D2ACE_DATA_DIR"


def data_dir(path: str | None = None) -> str:
    """The MULAN data folder: ``path``, else ``$D2ACE_DATA_DIR``."""
    folder = path or os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise FileNotFoundError(f"no data folder: pass one or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder {folder!r} does not exist")
    return folder


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8", errors="replace") if path.endswith(".gz") else open(
        path, encoding="utf-8", errors="replace")


def _attribute(line: str) -> tuple[str, list[str] | None]:
    body = line.split(None, 1)[1].strip()
    if body.startswith(("'", '"')):
        quote = body[0]
        end = body.index(quote, 1)
        name, kind = body[1:end], body[end + 1:].strip()
    else:
        name, kind = (body.split(None, 1) + [""])[:2]
    if kind.startswith("{"):
        return name, [v.strip().strip("'\"") for v in kind.strip("{} ").split(",")]
    return name, None


def _value(text: str, nominal: list[str] | None) -> float:
    text = text.strip().strip("'\"")
    if text in ("?", ""):
        return 0.0
    if nominal is not None:
        if text in nominal:
            return float(int(text)) if nominal in (["0", "1"], ["1", "0"]) else float(nominal.index(text))
        return 0.0
    return float(text)


def read_arff(path: str) -> tuple[list[str], np.ndarray]:
    """(attribute names, data (rows, attributes) float64) of one ARFF file."""
    names: list[str] = []
    nominal: list[list[str] | None] = []
    rows: list[np.ndarray] = []
    in_data = False
    with _open(path) as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                head = line.lower()
                if head.startswith("@attribute"):
                    name, values = _attribute(line)
                    names.append(name)
                    nominal.append(values)
                elif head.startswith("@data"):
                    in_data = True
                continue
            row = np.zeros(len(names))
            if line.startswith("{"):
                for item in line.strip("{}").split(","):
                    if item.strip():
                        key, value = item.strip().split(None, 1)
                        row[int(key)] = _value(value, nominal[int(key)])
            else:
                for j, value in enumerate(line.split(",")):
                    row[j] = _value(value, nominal[j])
            rows.append(row)
    if not in_data:
        raise ValueError(f"{path}: no @data section")
    return names, np.vstack(rows) if rows else np.zeros((0, len(names)))


def label_names(xml_path: str) -> list[str]:
    """Label names listed in a MULAN XML file."""
    root = ElementTree.parse(xml_path).getroot()
    return [el.attrib["name"] for el in root.iter() if el.tag.endswith("label") and "name" in el.attrib]


def load_mulan(name: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d) float64, labels (n, q) int64) of MULAN set ``name``.

    A ``*-train.arff`` / ``*-test.arff`` pair is joined into one set; otherwise the one
    ARFF file of the folder is read (``.arff`` before ``.arff.gz``).
    """
    base = os.path.join(data_dir(folder), name)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"no folder {base!r}: expected {name}/<file>.arff and {name}/<file>.xml")
    xmls = sorted(glob.glob(os.path.join(base, "*.xml")))
    pair = sorted(glob.glob(os.path.join(base, "*-train.arff"))) + sorted(glob.glob(os.path.join(base, "*-test.arff")))
    single = sorted(glob.glob(os.path.join(base, "*.arff"))) or sorted(glob.glob(os.path.join(base, "*.arff.gz")))
    files = pair if len(pair) == 2 else single[:1]
    if not xmls or not files:
        raise FileNotFoundError(f"{base!r} must hold an ARFF file (or a -train/-test pair) and its XML label list")
    labels = label_names(xmls[0])
    parts = [read_arff(path) for path in files]
    data = np.vstack([part[1] for part in parts])
    q = len(labels)
    return data[:, :-q], data[:, -q:].astype(np.int64)
