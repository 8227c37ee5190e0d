"""Where a MULAN set's files are: the data folder, a set's folder from its name, and the
ARFF, XML and ``.mat`` files in it (module notes of ``mulan``). A folder whose files
leave the choice open is refused rather than read one way; docs/inputs.md lists the
refusals."""

from __future__ import annotations

import glob
import os

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


def data_dir(path: str | None = None) -> str:
    """The MULAN data folder: ``path``, else ``$D2ACE_DATA_DIR``."""
    folder = path or os.environ.get(DATA_DIR_ENV)
    if not folder:
        raise FileNotFoundError(f"no data folder: pass one or set {DATA_DIR_ENV} (e.g. ../shared/data)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"data folder {folder!r} does not exist (expected one folder per data set "
            f"there, e.g. yeast/yeast.arff and yeast/yeast.xml)"
        )
    return folder


def expected_files(name: str) -> str:
    """The files set ``name`` is read from, as error messages name them."""
    files = EXPECTED_FILES.get(name)
    if files:
        return ", ".join(files)
    return (
        "<file>.arff (or .arff.gz, or a <file>-train.arff/<file>-test.arff pair) and <file>.xml, "
        "or a .mat file with 'data' and 'target'"
    )


def arff_candidates(base: str) -> tuple[list[str], list[str], list[str]]:
    """(``*-train``, ``*-test`` and other ARFF files) of folder ``base``, sorted: ``.arff``
    and ``.arff.gz`` files, a ``.gz`` left out where its unpacked ``.arff`` is there too."""
    plain = glob.glob(os.path.join(base, "*.arff"))
    files = sorted(plain + [f for f in glob.glob(os.path.join(base, "*.arff.gz")) if f[:-3] not in plain])
    trains = [f for f in files if file_stem(f).endswith("-train")]
    tests = [f for f in files if file_stem(f).endswith("-test")]
    return trains, tests, [f for f in files if f not in trains and f not in tests]


def file_stem(path: str) -> str:
    """``birds-train`` of ``.../birds-train.arff`` (and of ``.arff.gz``)."""
    return os.path.basename(path).split(".")[0]


def arff_files(base: str) -> list[str]:
    """The ARFF files of set folder ``base``: one ``<x>-train`` / ``<x>-test`` pair, else
    its one ARFF file, else none. Anything that leaves the choice open (two train files,
    a train file without its test file, two ARFF files) raises ValueError naming them:
    reading one of them would silently read part of the set, or another set."""
    trains, tests, others = arff_candidates(base)

    def names(paths: list[str]) -> str:
        return ", ".join(os.path.basename(p) for p in paths)

    if trains or tests:
        if len(trains) == 1 and len(tests) == 1 and file_stem(trains[0])[:-6] == file_stem(tests[0])[:-5]:
            return trains + tests
        example = f"{file_stem((trains or tests)[0]).rsplit('-', 1)[0]}-{'test' if trains else 'train'}.arff"
        raise ValueError(
            f"{base}: expected one <name>-train.arff / <name>-test.arff pair, found train file(s) "
            f"[{names(trains)}] and test file(s) [{names(tests)}]"
            f"{f' (e.g. {example} is missing)' if not (trains and tests) else ''}; "
            "keep one pair in the folder"
        )
    if len(others) > 1:
        raise ValueError(
            f"{base}: several ARFF files ({names(others)}) and no <name>-train/<name>-test pair; "
            "keep one ARFF file per set folder"
        )
    return others


def has_arff(base: str) -> bool:
    """Whether folder ``base`` holds any ARFF file (a set to list; loading it says
    which files are wrong, if any)."""
    return any(arff_candidates(base))


def xml_file(base: str, arff: str) -> str | None:
    """The folder's MULAN XML label list: its one XML file, else the one named like the
    ARFF file (``<stem>.xml``, ``Corel5k.xml`` for ``Corel5k-sparse.arff``)."""
    xmls = sorted(glob.glob(os.path.join(base, "*.xml")))
    if len(xmls) <= 1:
        return xmls[0] if xmls else None
    stem = file_stem(arff).split("-")[0]
    named = [x for x in xmls if os.path.basename(x) == stem + ".xml"] or [
        x for x in xmls if os.path.basename(x).startswith(stem)
    ]
    if len(named) == 1:
        return named[0]
    raise ValueError(
        f"{base}: several XML files ({', '.join(os.path.basename(x) for x in xmls)}) and none "
        f"is the label list of {os.path.basename(arff)} ({stem}.xml); keep one"
    )


def mat_files(base: str) -> list[str]:
    """The ``.mat`` files of folder ``base``, sorted."""
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
        listed = has_arff(base) and bool(glob.glob(os.path.join(base, "*.xml")))
        needs_mat = any(f.endswith(".mat") for f in EXPECTED_FILES.get(entry, ()))
        if needs_mat and not mat_files(base):  # rcv1subset1 without its .mat: ARFF name only
            names += [entry + ARFF_SUFFIX] if listed else []
        elif mat_files(base):
            names.append(entry)
            if listed:
                names.append(entry + ARFF_SUFFIX)
        elif listed:
            names.append(entry)
    return names


def resolve(name: str, root: str) -> tuple[str, str, bool]:
    """(folder name, folder path, ARFF forced) of set ``name``."""
    base = os.path.join(root, name)
    if os.path.isdir(base):
        return name, base, False
    if name.endswith(ARFF_SUFFIX) and os.path.isdir(os.path.join(root, name[: -len(ARFF_SUFFIX)])):
        stem = name[: -len(ARFF_SUFFIX)]
        return stem, os.path.join(root, stem), True
    available = available_datasets(root)
    raise FileNotFoundError(
        f"no folder {base!r} for data set {name!r} (expected there: {expected_files(name)}); "
        f"available sets in {root!r}: {', '.join(available) if available else 'none'}"
    )
