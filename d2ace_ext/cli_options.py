"""KEY=VALUE options of the command line (``--model-opt``, ``--selector-opt``), shared by
the tabular and the image commands so both read them by one rule."""

from __future__ import annotations

import ast


def parse_value(text: str):
    """A Python literal when the text is one (``0.01``, ``True``, ``[1, 2]``), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(pairs: list[str] | None, flag: str) -> dict:
    """{key: value} from KEY=VALUE strings; ``flag`` names the option in the error."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"{flag} takes key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        if not key.strip():
            raise SystemExit(f"{flag} takes key=value, got {pair!r} (no key)")
        out[key.strip()] = parse_value(value.strip())
    return out


def options_per_name(pairs: list[str] | None, flag: str, names: list[str], normalise=str, known=None) -> dict:
    """{name: {option: value}} from NAME.KEY=VALUE, or KEY=VALUE when only one name runs.
    ``normalise`` maps the NAME as written to the registry's spelling. Options of a NAME
    this command does not run are kept: they are part of the protocol, so ``run`` with
    the options of a whole ``compare`` finds that comparison's runs. ``known``: every
    name there is (the registry's); a NAME outside it is refused as the typo it is."""
    out: dict = {}
    for key, value in parse_options(pairs, flag).items():
        if "." in key:
            name, field = key.split(".", 1)
            if known is not None and normalise(name) not in known:
                raise SystemExit(
                    f"{flag} {key}={value!r}: no model or selector is called {name!r}; known: {', '.join(known)}"
                )
            out.setdefault(normalise(name), {})[field] = value
        elif len(names) == 1:
            out.setdefault(names[0], {})[key] = value
        else:
            raise SystemExit(f"{flag} {key}: name which one, e.g. {names[-1]}.{key}=...")
    return out
