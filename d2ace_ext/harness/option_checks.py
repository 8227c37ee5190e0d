"""Checking a comparison's model and selector options before any run trains.

``--model-opt hidden=-5`` or ``--selector-opt nosuchopt=1`` used to surface as a raw
traceback from inside the first run (or from every worker). Here each model and each
selector given options is built once on the data set's first fold, exactly as a run
builds it (``make_model``, ``build_sampler``), and anything it raises becomes one line
naming the options and what the model or selector accepts. Building on the real fold
also catches values that only the data can refute (``num_neighbors`` above the
training rows). :func:`check_options` is the check for any command (the image command
passes its own builders); :func:`check_run_options` is the tabular grid's.
"""

from __future__ import annotations

import warnings

from ..models.registry import option_names as model_option_names
from ..selectors.registry import option_names as selector_option_names
from .experiment import Protocol, RunKey
from .fold_data import PreparedDataset
from .fold_run import build_sampler

# Options of make_selector the harness sets itself (a tensor; --preset), never from --selector-opt.
_NOT_FROM_THE_COMMAND_LINE = ("neighbors", "preset")


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _given(name: str, options: dict) -> str:
    return " ".join(f"{name}.{key}={value!r}" for key, value in options.items())


def selector_options_accepted(name: str) -> list[str]:
    """The options ``--selector-opt NAME.KEY=VALUE`` may set for selector ``name``."""
    return [o for o in selector_option_names(name) if o not in _NOT_FROM_THE_COMMAND_LINE]


def check_options(model_options: dict, selector_options: dict, build_model, build_selector, where: str) -> None:
    """The check itself, for any command: ``model_options`` / ``selector_options``:
    {name: {option: value}} of the models and selectors that will run (only those);
    ``build_model(name)`` / ``build_selector(name)`` build one with its options exactly
    as a run does (on CPU, nothing trained); ``where``: the data set, for the message.
    Raises ValueError, one line: the options as given, the error, the options accepted."""
    with warnings.catch_warnings():  # the runs themselves warn where there is cause to
        warnings.simplefilter("ignore")
        for model, options in model_options.items():
            try:
                build_model(model)
            except Exception as error:  # noqa: BLE001  (any failure to build is the options' fault here)
                raise ValueError(
                    f"--model-opt {_given(model, options)}: cannot build {model} on {where} "
                    f"({_one_line(error)}); {model} takes: "
                    f"{', '.join(_accepted_models(model, options))}"
                ) from None
        for selector, options in selector_options.items():
            accepted = selector_options_accepted(selector)
            unknown = [key for key in options if key not in accepted]
            if unknown:
                raise ValueError(
                    f"--selector-opt {_given(selector, {k: options[k] for k in unknown})}: {selector} "
                    f"has no such option; it takes: {', '.join(accepted) or 'no options'}"
                )
            try:
                build_selector(selector)
            except Exception as error:  # noqa: BLE001
                raise ValueError(
                    f"--selector-opt {_given(selector, options)}: cannot build {selector} on "
                    f"{where} ({_one_line(error)}); {selector} takes: "
                    f"{', '.join(accepted) or 'no options'}"
                ) from None


def check_run_options(grid, protocol: Protocol, data: PreparedDataset) -> None:
    """:func:`check_options` for a tabular grid: every model and selector of ``grid``
    that has options, built on fold 0 of ``data`` by ``make_model`` and ``build_sampler``."""
    from ..models import make_model

    models = {m: protocol.model_options[m] for m in grid.models if protocol.model_options.get(m)}
    selectors = {s: protocol.selector_options[s] for s in grid.selectors if protocol.selector_options.get(s)}
    if not models and not selectors:
        return
    fold = data.fold(0)

    def build_model(name):
        return make_model(
            name,
            fold.train_x.shape[1],
            fold.train_y.shape[1],
            train_labels=fold.train_y,
            **protocol.model_options[name],
        )

    def build_selector(name):
        key = RunKey.make(data.name, grid.models[0], name, grid.preset, 0, protocol)
        return build_sampler(key, fold, protocol, protocol.run_seed(0, 0), "cpu")

    check_options(models, selectors, build_model, build_selector, data.name)


def _accepted_models(model: str, options: dict) -> list[str]:
    try:
        return model_option_names(model, options.get("variant", "paper"))
    except ValueError:
        return model_option_names(model)
