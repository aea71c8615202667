"""Hparams loading with DenseShift twins (``extends``), and the resolved-hparams file.

A DenseShift hparams file may start with ``extends: <fp file>``.  Its other top-level
keys are laid over the full-precision file (new keys allowed), then the command line
overrides go on top (those must name existing keys).  So ``conformer_ds.yaml`` contains
only its quantization block, and differs from ``conformer_fp.yaml`` in nothing else by
construction.
"""
from __future__ import annotations

import os
import sys
from io import StringIO

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from ...fsio import atomic_open

RESOLVED_HPARAMS = "hyperparams_resolved.yaml"


class HparamsError(ValueError):
    """Invalid hyperparameters: the message names the file/key and what was expected."""


def _yaml():
    return ruamel.yaml.YAML()


def merged_yaml_text(hparams_file: str, overrides: str | dict | None = None) -> str:
    """The experiment as one YAML text: base file (if ``extends``) + twin keys + overrides,
    with !ref/!copy resolved (tags like !new: are kept)."""
    if not os.path.isfile(hparams_file):
        raise HparamsError(f"hparams file not found: {hparams_file}")
    with open(hparams_file) as f:
        doc = _yaml().load(f) or {}
    cli = _parse_overrides(overrides)
    base_file, layer = hparams_file, {}
    if "extends" in doc:
        base_file = os.path.join(os.path.dirname(os.path.abspath(hparams_file)), str(doc["extends"]))
        if not os.path.isfile(base_file):
            raise HparamsError(f"{hparams_file}: 'extends' names {base_file}, which does not exist")
        layer = {k: v for k, v in doc.items() if k != "extends"}
    with open(base_file) as f:
        base = _yaml().load(f) or {}
    known = set(base) | set(layer)
    unknown = sorted(set(cli) - known)
    if unknown:
        raise HparamsError(
            f"unknown hparam(s) {', '.join(unknown)} for {hparams_file} "
            f"(known keys: {', '.join(sorted(k for k in known if not k.startswith('_')))})")
    # Top-level keys are replaced whole (a twin's 'denseshift' block replaces 'null').
    for key, value in list(layer.items()) + list(cli.items()):
        base[key] = value
    stream = resolve_references(StringIO(_dump(base)))
    return stream.getvalue()


def load_hparams(hparams_file: str, overrides=None):
    """(hparams dict, resolved yaml text).  Errors become one HparamsError naming the file."""
    text = merged_yaml_text(hparams_file, overrides)
    try:
        return load_hyperpyyaml(text), text
    except (ValueError, TypeError, KeyError) as err:
        raise HparamsError(f"{hparams_file}: {err}") from err


def _parse_overrides(overrides) -> dict:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    try:
        return dict(_yaml().load(overrides) or {})
    except ruamel.yaml.YAMLError as err:
        raise HparamsError(f"could not read the command-line overrides: {err}") from err


def _dump(mapping) -> str:
    out = StringIO()
    _yaml().dump(mapping, out)
    return out.getvalue()


def exit_on_hparams_error(func):
    """Run ``func``; an HparamsError prints one line and exits with status 2."""
    try:
        return func()
    except HparamsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def save_resolved_hparams(folder: str, text: str) -> str:
    """The whole experiment as one self-contained YAML (what export and stream rebuild)."""
    path = os.path.join(folder, RESOLVED_HPARAMS)
    from speechbrain.utils.distributed import if_main_process
    if if_main_process():
        os.makedirs(folder, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return path


def update_resolved_hparams(folder: str, values: dict) -> str:
    """Replace top-level ``values`` in ``folder``'s resolved hparams (settings the run
    chose itself, e.g. the LM weights tuned on the dev split), keeping the rest as is."""
    path = os.path.join(folder, RESOLVED_HPARAMS)
    with open(path) as f:
        doc = _yaml().load(f)
    unknown = sorted(set(values) - set(doc))
    if unknown:
        raise HparamsError(f"{path} has no hparam(s) {', '.join(unknown)} to update")
    doc.update(values)
    with atomic_open(path) as f:
        _yaml().dump(doc, f)
    return path
