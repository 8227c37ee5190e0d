"""The paper's tabular base models: MLP, CLIF, DELA and PACA, behind one interface.

Every model maps features (b, d) to logits (b, q) and exposes ``objective(x, y)``, its full
training loss together with the logits of that training pass (see ``MultiLabelModel``).
Build one by name with ``make_model("clif", d, q, train_labels=y_train)``.
"""

from .base import MultiLabelModel
from .clif import CLIF
from .clif_published import PublishedCLIF
from .dela import DELA
from .label_graph import label_cooccurrence_graph
from .mlp import MLP
from .paca import PACA
from .registry import MODELS, VARIANTS, make_model

__all__ = [
    "MultiLabelModel",
    "MLP",
    "CLIF",
    "PublishedCLIF",
    "DELA",
    "PACA",
    "MODELS",
    "VARIANTS",
    "make_model",
    "label_cooccurrence_graph",
]
