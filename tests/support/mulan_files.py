"""Small MULAN sets (ARFF + XML) written into a test's temporary folder."""

import gzip

import numpy as np

HEADER = """% a comment
@relation 'tiny: test'
@attribute 'it\\'s numeric' numeric
@attribute colour {red, 'dark blue', green}
@attribute count INTEGER
@attribute L1 {0,1}
@attribute 'label two' {1,0}
@data
"""


def write_set(root, name, header, rows, labels=("L1", "label two"), arff_name=None, gz=False):
    folder = root / name
    folder.mkdir()
    text = header + "".join(row + "\n" for row in rows)
    path = folder / (arff_name or f"{name}.arff{'.gz' if gz else ''}")
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    (folder / f"{name}.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">\n'
        + "".join(f'<label name="{label}"></label>\n' for label in labels)
        + "</labels>\n"
    )
    return folder


def write_toy_mulan(root, name="toy", n=90, d=5, q=3, seed=0):
    """A small dense MULAN set (ARFF + XML) in root/name; every label has >= 20 positives."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    x = rng.random((n, d))
    y = (rng.random((n, q)) < 0.45).astype(int)
    y[np.arange(n), np.arange(n) % q] = 1
    header = (
        [f"@relation {name}"]
        + [f"@attribute f{j} numeric" for j in range(d)]
        + [f"@attribute l{j} {{0,1}}" for j in range(q)]
        + ["@data"]
    )
    rows = [",".join([f"{v:.4f}" for v in x[i]] + [str(v) for v in y[i]]) for i in range(n)]
    (folder / f"{name}.arff").write_text("\n".join(header + rows) + "\n")
    labels = "".join(f'<label name="l{j}"></label>' for j in range(q))
    (folder / f"{name}.xml").write_text(
        f'<?xml version="1.0"?><labels xmlns="http://mulan.sourceforge.net/labels">{labels}</labels>\n'
    )
    return str(root)
