"""Reading the multi-label benchmark sets of the shared data folder.

Formats
-------
* MULAN: an ARFF file (dense rows or sparse ``{index value, ...}`` rows, plain or
  ``.arff.gz``) plus an XML file listing the label attributes by name (in the shared
  sets, the LAST q attributes), returned in the file's order (the XML may list them in
  another order). A listed name that is no attribute of the ARFF, or a name listed
  twice, is refused: labels are never guessed by position. A ``<x>-train.arff`` /
  ``<x>-test.arff`` pair is joined (train rows first); a folder whose ARFF files leave
  the choice open (two train files, a train file without its test file, two ARFF
  files) is refused. docs/inputs.md lists every refusal.
* MATLAB v5 ``.mat`` with variables ``data`` (instances x features) and ``target``
  (instances x labels); stored the other way round (features x instances) they are
  transposed, sparse matrices are densified and -1/1 targets become 0/1. Label names
  come from the folder's ARFF header when its XML lists q labels, else ``label<j>``.

Set names
---------
A set is named by its folder in the data folder (``yeast``, ``Corel5k``, ...). A folder
that holds a ``.mat`` file is read from it: ``rcv1subset1`` gives the 6000 x 944 x 101
matrices of ``rcv1subset1_top944.mat`` (the paper's d = 944; its labels equal the ARFF's,
row for row) and raises ``FileNotFoundError`` if that file is missing rather than fall
back to other features. The same folder's gzipped ARFF (d = 500) is read under the name
``rcv1subset1-arff``: the suffix ``-arff`` reads the ARFF files of the folder named
before it.

Encoding
--------
Numeric attributes are read as float64; nominal attributes with the categories
{0, 1} as their value; other nominal attributes as the index of the category in the
declared list (Weka's encoding): birds' ``location`` {2,10,1,...} gives 0..11, flags'
``landmass`` {1..6} gives 0..5, genbase's {YES, NO} gives YES = 0, NO = 1. Missing
values ``?`` are 0, and so are the entries a sparse row omits (the first category of a
nominal attribute, as in Weka: 1 for an attribute declared ``{1,0}``). Label attributes
are read by category name, not position: ``{0,1}`` in any order, ``{no,yes}`` and
``{false,true}`` (any case) give 0/1; other categories are refused. Attributes that
are identifiers, not features, are dropped (genbase's ``protein``, ``DROPPED_FEATURES``).
nan and inf features are refused (ARFF and .mat), naming the file and column.

The data folder comes from an argument or the ``D2ACE_DATA_DIR`` environment variable;
a missing folder or file raises ``FileNotFoundError`` naming the path and what was
expected there.
"""
from __future__ import annotations

import difflib
import glob
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

# read_arff is imported from here by callers that predate the arff module.
from .arff import _Parsed, attribute_names, read_arff  # noqa: F401

DATA_DIR_ENV = "D2ACE_DATA_DIR"

# Name suffix that reads a folder's ARFF files even where it holds a .mat file.
ARFF_SUFFIX = "-arff"

# The files of the sets in the shared folder's README, named in error messages.
EXPECTED_FILES = {
    "cal500": ("cal500.arff", "cal500.xml"),
    "birds": ("birds-train.arff", "birds-test.arff", "birds.xml"),
    "enron": ("enron.arff", "enron.xml"),
    "scene": ("scene-train.arff", "scene-test.arff", "scene.xml"),
    "yeast": ("yeast.arff", "yeast.xml"),
    "Corel5k": ("Corel5k-sparse.arff", "Corel5k.xml"),
    "bibtex": ("bibtex.arff", "bibtex.xml"),
    "rcv1subset1": ("rcv1subset1_top944.mat",),
    "rcv1subset1-arff": ("rcv1subset1500.orig.arff.gz", "rcv1subset1500.xml"),
    "rcv1subset2": ("rcv1subset2500.orig.arff.gz", "rcv1subset2500.xml"),
    "rcv1subset3": ("rcv1subset3500.orig.arff.gz", "rcv1subset3500.xml"),
    "yahoo-Arts1": ("Arts1500.orig.arff.gz", "Arts1500.xml"),
    "yahoo-Business1": ("Business1500.orig.arff.gz", "Business1500.xml"),
    "emotions": ("emotions.arff", "emotions.xml"),
    "medical": ("medical.arff", "medical.xml"),
    "genbase": ("genbase.arff", "genbase.xml"),
    "flags": ("flags.arff", "flags.xml"),
}

# Attributes that are identifiers, not features: dropped by load_dataset (by folder).
DROPPED_FEATURES = {"genbase": ("protein",)}


def data_dir(path: str | None = None) -> str:
    """The MULAN data folder: ``path``, else ``$D2ACE_DATA_DIR``."""
    folder = path or os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise FileNotFoundError(f"no data folder: pass one or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"data folder {folder!r} does not exist (expected one folder per data set "
                                f"there, e.g. yeast/yeast.arff and yeast/yeast.xml)")
    return folder


def label_names(xml_path: str) -> list[str]:
    """Label names listed in a MULAN XML file, in its order. A malformed file or a label
    listed twice raises ValueError naming the file."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as err:
        raise ValueError(f"{xml_path}: malformed XML ({err}); a MULAN label file reads "
                         '<labels xmlns="http://mulan.sourceforge.net/labels"><label name="..."/>...</labels>'
                         ) from None
    names = [el.attrib["name"] for el in root.iter() if el.tag.endswith("label") and "name" in el.attrib]
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]
    if twice:
        raise ValueError(f"{xml_path}: label(s) {', '.join(map(repr, dict.fromkeys(twice)))} listed twice; "
                         "list each label once")
    return names


# ----------------------------------------------------------------------------- sets


def _expected(name: str) -> str:
    files = EXPECTED_FILES.get(name)
    if files:
        return ", ".join(files)
    return "<file>.arff (or .arff.gz, or a <file>-train.arff/<file>-test.arff pair) and <file>.xml, " \
           "or a .mat file with 'data' and 'target'"


def _arff_candidates(base: str) -> tuple[list[str], list[str], list[str]]:
    """(``*-train``, ``*-test`` and other ARFF files) of folder ``base``, sorted: ``.arff``
    and ``.arff.gz`` files, a ``.gz`` left out where its unpacked ``.arff`` is there too."""
    plain = glob.glob(os.path.join(base, "*.arff"))
    files = sorted(plain + [f for f in glob.glob(os.path.join(base, "*.arff.gz")) if f[:-3] not in plain])
    trains = [f for f in files if _stem(f).endswith("-train")]
    tests = [f for f in files if _stem(f).endswith("-test")]
    return trains, tests, [f for f in files if f not in trains and f not in tests]


def _stem(path: str) -> str:
    return os.path.basename(path).split(".")[0]


def _arff_files(base: str) -> list[str]:
    """The ARFF files of set folder ``base``: one ``<x>-train`` / ``<x>-test`` pair, else
    its one ARFF file, else none. Anything that leaves the choice open (two train files,
    a train file without its test file, two ARFF files) raises ValueError naming them:
    reading one of them would silently read part of the set, or another set."""
    trains, tests, others = _arff_candidates(base)

    def names(paths: list[str]) -> str:
        return ", ".join(os.path.basename(p) for p in paths)

    if trains or tests:
        if len(trains) == 1 and len(tests) == 1 and _stem(trains[0])[:-6] == _stem(tests[0])[:-5]:
            return trains + tests
        example = f"{_stem((trains or tests)[0]).rsplit('-', 1)[0]}-{'test' if trains else 'train'}.arff"
        raise ValueError(f"{base}: expected one <name>-train.arff / <name>-test.arff pair, found train file(s) "
                         f"[{names(trains)}] and test file(s) [{names(tests)}]"
                         f"{f' (e.g. {example} is missing)' if not (trains and tests) else ''}; "
                         "keep one pair in the folder")
    if len(others) > 1:
        raise ValueError(f"{base}: several ARFF files ({names(others)}) and no <name>-train/<name>-test pair; "
                         "keep one ARFF file per set folder")
    return others


def _has_arff(base: str) -> bool:
    """Whether folder ``base`` holds any ARFF file (a set to list; loading it says
    which files are wrong, if any)."""
    return any(_arff_candidates(base))


def _xml_file(base: str, arff: str) -> str | None:
    """The folder's MULAN XML label list: its one XML file, else the one named like the
    ARFF file (``<stem>.xml``, ``Corel5k.xml`` for ``Corel5k-sparse.arff``)."""
    xmls = sorted(glob.glob(os.path.join(base, "*.xml")))
    if len(xmls) <= 1:
        return xmls[0] if xmls else None
    stem = _stem(arff).split("-")[0]
    named = [x for x in xmls if os.path.basename(x) == stem + ".xml"] or \
        [x for x in xmls if os.path.basename(x).startswith(stem)]
    if len(named) == 1:
        return named[0]
    raise ValueError(f"{base}: several XML files ({', '.join(os.path.basename(x) for x in xmls)}) and none "
                     f"is the label list of {os.path.basename(arff)} ({stem}.xml); keep one")


def _mat_files(base: str) -> list[str]:
    return sorted(glob.glob(os.path.join(base, "*.mat")))


def available_datasets(folder: str | None = None) -> list[str]:
    """Names ``load_dataset`` reads in the data folder: each sub-folder holding a ``.mat``
    file or an ARFF file with its XML label list; a folder with both also gives
    ``<folder>-arff`` for its ARFF version (e.g. ``rcv1subset1-arff``)."""
    root = data_dir(folder)
    names = []
    for entry in sorted(os.listdir(root), key=str.lower):
        base = os.path.join(root, entry)
        if not os.path.isdir(base):
            continue
        has_arff = _has_arff(base) and bool(glob.glob(os.path.join(base, "*.xml")))
        needs_mat = any(f.endswith(".mat") for f in EXPECTED_FILES.get(entry, ()))
        if needs_mat and not _mat_files(base):  # rcv1subset1 without its .mat: ARFF name only
            names += [entry + ARFF_SUFFIX] if has_arff else []
        elif _mat_files(base):
            names.append(entry)
            if has_arff:
                names.append(entry + ARFF_SUFFIX)
        elif has_arff:
            names.append(entry)
    return names


def _resolve(name: str, root: str) -> tuple[str, str, bool]:
    """(folder name, folder path, ARFF forced) of set ``name``."""
    base = os.path.join(root, name)
    if os.path.isdir(base):
        return name, base, False
    if name.endswith(ARFF_SUFFIX) and os.path.isdir(os.path.join(root, name[:-len(ARFF_SUFFIX)])):
        stem = name[:-len(ARFF_SUFFIX)]
        return stem, os.path.join(root, stem), True
    available = available_datasets(root)
    raise FileNotFoundError(
        f"no folder {base!r} for data set {name!r} (expected there: {_expected(name)}); "
        f"available sets in {root!r}: {', '.join(available) if available else 'none'}")


def _load_mat(path: str, base: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import scipy.io
    import scipy.sparse

    contents = scipy.io.loadmat(path)
    if "data" not in contents or "target" not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path}: expected variables 'data' and 'target', found {found}")
    x, y = contents["data"], contents["target"]
    x = x.toarray() if scipy.sparse.issparse(x) else np.asarray(x)
    y = y.toarray() if scipy.sparse.issparse(y) else np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"{path}: 'data' {x.shape} and 'target' {y.shape} must be matrices")
    if x.shape[0] != y.shape[0]:
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"{path}: 'data' {x.shape} and 'target' {y.shape} share no instance axis")
        x, y = x.T, y.T  # stored features x instances
    y = np.where(y == -1, 0, y) if np.isin(y, (-1, 1)).all() else y
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{path}: 'target' holds values other than 0/1")
    features = np.ascontiguousarray(x, dtype=np.float64)
    labels = np.ascontiguousarray(y, dtype=np.int64)
    if not np.isfinite(features).all():
        row, column = np.argwhere(~np.isfinite(features))[0]
        raise ValueError(f"{path}: 'data' row {row}, column {column} is {float(features[row, column])}: features "
                         "must be finite")
    q = labels.shape[1]
    names = [f"label{j}" for j in range(q)]
    # rcv1subset1: the folder's ARFF holds the same label columns (checked: equal arrays),
    # so their names are the last q attributes of its header, if the XML lists them.
    try:
        arffs = _arff_files(base)
        xml = _xml_file(base, arffs[0]) if arffs else None
        header = attribute_names(arffs[0]) if xml else []
        if len(header) > q and set(header[-q:]) == set(label_names(xml)):
            names = header[-q:]
    except ValueError:  # names are a courtesy: a wrong ARFF or XML beside the .mat leaves label<j>
        pass
    return features, labels, names


def _label_columns(names: list[str], listed: list[str], arff: str, xml: str) -> list[int]:
    """Positions of the labels ``listed`` in the XML file ``xml`` among the attributes
    ``names`` of ``arff``, in the file's order (the XML may list them in another order,
    as enron's and yeast's do). A listed label that is no attribute is refused: taking
    other columns instead would swap labels and features without a word."""
    position = {n: j for j, n in enumerate(names)}
    missing = [n for n in listed if n not in position]
    if missing:
        hints = [f"{n!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, names, 1, 0.6))
                 else repr(n) for n in missing[:5]]
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{xml}: label(s) {', '.join(hints)}{more} are not attributes of {arff}; correct the "
                         "names (they are case-sensitive) or use the XML file of this ARFF file")
    if not listed or len(listed) >= len(names):
        raise ValueError(f"{xml}: lists {len(listed)} labels for the {len(names)} attributes of {arff}")
    return sorted(position[n] for n in listed)


def _load_arff(name: str, base: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    files = _arff_files(base)
    xml = _xml_file(base, files[0]) if files else None
    if not files or not xml:
        missing = "ARFF file" if not files else "XML label list"
        raise FileNotFoundError(f"{base!r} holds no {missing}: expected {_expected(name)} there "
                                f"(found: {', '.join(sorted(os.listdir(base))) or 'nothing'})")
    labels_listed = label_names(xml)
    parts = [_Parsed(path, labels=frozenset(labels_listed)) for path in files]
    names = parts[0].names
    for path, part in zip(files[1:], parts[1:]):
        if part.names != names:
            raise ValueError(f"{path}: attributes differ from those of {files[0]}")
    label_cols = _label_columns(names, labels_listed, files[0], xml)
    dropped = set(DROPPED_FEATURES.get(os.path.basename(base), ()))
    taken = set(label_cols)
    feature_cols = [j for j, n in enumerate(names) if j not in taken and n not in dropped]
    label_blocks = [part.take(label_cols) for part in parts]
    for path, block in zip(files, label_blocks):  # a numeric label attribute can hold anything
        outside = ~np.isin(block, (0.0, 1.0))
        if outside.any():
            column = label_cols[int(np.argmax(outside.any(0)))]
            raise ValueError(f"{path}: label attribute {names[column]!r} holds values other than 0/1")
    if len(parts) == 1:
        features, label_block = parts[0].take(feature_cols), label_blocks[0]
    else:
        features = np.vstack([part.take(feature_cols) for part in parts])
        label_block = np.vstack(label_blocks)
    return features, label_block.astype(np.int64), [names[j] for j in label_cols]


def load_dataset(name: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (n, d) float64, labels (n, q) int64 0/1, label names) of set ``name``.

    ``name`` is a folder of the data folder (``folder``, else ``$D2ACE_DATA_DIR``); see
    the module notes for the formats, ``rcv1subset1`` (.mat, d = 944) against
    ``rcv1subset1-arff`` (d = 500) and the encoding. A missing folder or file raises
    ``FileNotFoundError`` naming the path and the files expected; an unknown name lists
    the available sets.
    """
    root = data_dir(folder)
    _, base, force_arff = _resolve(name, root)
    mats = [] if force_arff else _mat_files(base)
    wanted = [f for f in EXPECTED_FILES.get(name, ()) if f.endswith(".mat")]
    if wanted and not force_arff:  # rcv1subset1: the .mat or nothing, never the 500-feature ARFF
        path = os.path.join(base, wanted[0])
        if not os.path.isfile(path):
            other = f"; its ARFF version (other features) is {name + ARFF_SUFFIX!r}" if _has_arff(base) else ""
            raise FileNotFoundError(f"no file {path!r}: data set {name!r} is read from {wanted[0]} "
                                    f"(variables 'data' and 'target'){other}")
        mats = [path]
    if mats:
        return _load_mat(mats[0], base)
    return _load_arff(name, base)


def load_mulan(name: str, folder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d) float64, labels (n, q) int64) of set ``name``: ``load_dataset``
    without the label names (so ``rcv1subset1`` is the .mat set with d = 944, and
    genbase has d = 1185 without its ``protein`` ID)."""
    features, labels, _ = load_dataset(name, folder)
    return features, labels
