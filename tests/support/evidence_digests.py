"""The protocol digest of every setting with committed tabular evidence
(docs/evidence/*.jsonl), with the Protocol settings that give it: the one list the
tests pinning those digests share (a digest that changes orphans its evidence)."""

import glob
import json
import os

from .paths import ROOT

PUBLISHED_CLIF = {"clif": {"variant": "published"}}

#: digest -> keyword arguments of harness.experiment.Protocol
KNOWN_DIGESTS = {
    "32866394": {},
    "198f7a2e": {"epochs": 200},
    "a426e612": {"epochs": 300},
    "a19821f9": {"epochs": 1000},
    "3218acbb": {"epochs": 2000},
    "15451d80": {"model_options": PUBLISHED_CLIF},
    "1e6eeb1f": {"epochs": 200, "model_options": PUBLISHED_CLIF},
    "cda0a8c1": {"folds_from": "published", "model_selection": "last", "model_options": PUBLISHED_CLIF},
    # D2ACE's compact records, float16 and bfloat16 (corel5k_state_dtype.jsonl)
    "9a19bc77": {"selector_options": {"d2ace": {"state_dtype": "float16"}}},
    "ff4d0d2c": {"selector_options": {"d2ace": {"state_dtype": "bfloat16"}}},
}

#: Evidence run under protocol fields added later (a budget, another weight decay, a
#: selector option, label noise): digest -> keyword arguments of Protocol. Unlike
#: KNOWN_DIGESTS these are not full-budget clean runs at the defaults.
LATER_SETTINGS = {
    "11818c34": {"epochs": 1000, "budget": 0.5},
    "f9f30ad4": {"epochs": 1000, "budget": 0.3},
    "e5c7a82b": {"epochs": 1000, "budget": 0.5, "selector_options": {"infobatch": {"rescale": False}}},
    "1c8dc22c": {"epochs": 1000, "selector_options": {"infobatch": {"rescale": False}}},
    "82b9b30d": {"epochs": 1000, "weight_decay": 7e-5},
    "0e2b00e2": {"epochs": 1000, "weight_decay": 0.0},
    "975d22b7": {"epochs": 1000, "label_noise": "extra:1.0"},
    "79eb3590": {"epochs": 1000, "label_noise": "missing:0.4"},
    "b09314a3": {"epochs": 1000, "label_noise": "missing:0.2"},
    "c0188891": {"epochs": 1000, "label_noise": "extra:0.5"},
    "9b927230": {"epochs": 1000, "weight_decay": 0.0, "budget": 0.5},
    # the published CLIF at 100 epochs under a budget (budget_clif.jsonl)
    "d87b9872": {"model_options": PUBLISHED_CLIF, "budget": 0.5},
    "be04c4f6": {"model_options": PUBLISHED_CLIF, "budget": 0.3},
    # the published CLIF at 100 epochs under label noise (noise_clif.jsonl)
    "9bfb07c4": {"model_options": PUBLISHED_CLIF, "label_noise": "extra:1.0"},
    "eb2938e6": {"model_options": PUBLISHED_CLIF, "label_noise": "missing:0.4"},
    "99161632": {"model_options": PUBLISHED_CLIF, "label_noise": "extra:0.5"},
    "d7f63e99": {"model_options": PUBLISHED_CLIF, "label_noise": "missing:0.2"},
}

#: The ablations (issue 27 part 2, Figure 5's variants), clean and under extra:1.0.
for _noise, _digests in (
    (None, ("1099bfc0", "0af31182", "c1918e57", "b3bc731e", "c4708c50", "8a584e3c")),
    ("extra:1.0", ("4cc9f1c3", "d2bbaef1", "4573fb73", "44ea6a3c", "d62cc494", "c573c67b")),
):
    for _digest, _ablation in zip(
        _digests,
        (
            "no_correlation",
            "hardness_only",
            "uncertainty_only",
            "no_label_weights",
            "fixed_mix_0.5",
            "linear_label_weights",
        ),
    ):
        LATER_SETTINGS[_digest] = {
            "epochs": 1000,
            "selector_options": {"d2ace": {"ablation": _ablation}},
            **({"label_noise": _noise} if _noise else {}),
        }

#: Figure 5's other fixed mixing coefficients (D and F), clean and under extra:1.0.
for _digest, _ablation, _noise in (
    ("b85248a4", "fixed_mix_0.3", None),
    ("ab0e9ec8", "fixed_mix_0.7", None),
    ("4ff0850d", "fixed_mix_0.3", "extra:1.0"),
    ("7e9aa4dd", "fixed_mix_0.7", "extra:1.0"),
):
    LATER_SETTINGS[_digest] = {
        "epochs": 1000,
        "selector_options": {"d2ace": {"ablation": _ablation}},
        **({"label_noise": _noise} if _noise else {}),
    }

#: Base models of the image protocol, whose records carry image-protocol digests.
IMAGE_MODELS = ("mlgcn", "hst")


def tabular_evidence_digests() -> set:
    """The protocol digests of every tabular record in docs/evidence/*.jsonl."""
    found = set()
    for path in glob.glob(os.path.join(ROOT, "docs", "evidence", "*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            keys = [json.loads(line)["key"] for line in handle if line.strip()]
        found |= {key["protocol"] for key in keys if key["model"] not in IMAGE_MODELS}
    return found
