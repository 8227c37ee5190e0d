"""The protocol digest of every setting with committed tabular evidence
(docs/evidence/*.jsonl), with the Protocol settings that give it: the one list the
tests pinning those digests share (a digest that changes orphans its evidence)."""

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
