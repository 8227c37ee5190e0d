"""Results records built by hand for the report tests: the key every record carries."""


def run_key(selector, fold, protocol, *, dataset, preset="-", repeat=0, model="mlp") -> dict:
    """A results record's key: one run of ``selector`` on one fold of one repeat, under
    the protocol digest ``protocol`` (``preset`` "-" for selectors without presets)."""
    return {
        "dataset": dataset,
        "model": model,
        "selector": selector,
        "preset": preset,
        "fold": fold,
        "protocol": protocol,
        "repeat": repeat,
    }
