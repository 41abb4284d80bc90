"""Which model names exist, known without importing torch, torchvision or timm.

The command line checks a model name before it loads anything heavy, so a typo is refused in
a fraction of a second. The names come from ``resources/model_names.json``, written by
``tools/make_model_names.py`` from the installed torchvision and timm; each section records
the library version it came from. A section is used only while that exact version is
installed (``importlib.metadata``: fast). With another version the names are collected from
the library itself (slow: it imports torch) once, and kept in a per-version file under the
user cache folder, so the slow path runs once per library version.

This module must not import torch, torchvision or timm at import time.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

OFFLINE_MODEL = "efficientnet_lite0"  # the same as engine.catalog.OFFLINE_MODEL (a test holds them equal)
TIMM_PREFIX = "timm:"
# timm names that load from somewhere else (Hugging Face Hub, a folder): not checkable offline.
TIMM_SOURCES = ("hf-hub:", "hf_hub:", "local-dir:")
FORMAT = 1


@dataclass(frozen=True)
class TorchvisionNames:
    version: str
    names: frozenset[str]  # classification models with default (pretrained) weights


@dataclass(frozen=True)
class TimmNames:
    version: str
    archs: frozenset[str]  # timm.list_models()
    tags: dict[str, frozenset[str]]  # arch -> its pretrained tags ("a1_in1k" of "resnet50.a1_in1k")


# ----------------------------------------------------------------------------- collecting (slow)


def collect_torchvision() -> dict:
    """The torchvision section, from the installed torchvision (imports torch).

    The same filter as ``engine.catalog``: a classification model with default weights.
    """
    import torchvision

    names = []
    for name in torchvision.models.list_models(module=torchvision.models):
        try:
            torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError):
            continue
        names.append(name)
    return {"version": importlib.metadata.version("torchvision"), "names": sorted(names)}


def collect_timm() -> dict:
    """The timm section, from the installed timm (imports torch)."""
    import timm

    tags: dict[str, list[str]] = {}
    for full in timm.list_models(include_tags=True):
        arch, sep, tag = full.partition(".")
        if sep:
            tags.setdefault(arch, []).append(tag)
    return {"version": importlib.metadata.version("timm"), "archs": sorted(timm.list_models()),
            "tags": {arch: sorted(t) for arch, t in sorted(tags.items())}}


def collect_all() -> dict:
    return {"format": FORMAT, "generated_by": "tools/make_model_names.py",
            "torchvision": collect_torchvision(), "timm": collect_timm()}


# ----------------------------------------------------------------------------- reading (fast)


def bundled_path() -> Path:
    from transfer_gui.paths import resources_dir

    return resources_dir() / "model_names.json"


@functools.lru_cache(maxsize=1)
def bundled() -> dict:
    """The shipped name lists ({} when the file is missing or unreadable)."""
    try:
        data = json.loads(bundled_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("transfer_gui")) / "model_names"


def _cache_file(library: str, version: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._+-" else "_" for c in version)
    return cache_dir() / f"{library}-{safe}.json"


def _read_cache(library: str, version: str) -> dict | None:
    try:
        data = json.loads(_cache_file(library, version).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("format") == FORMAT and data.get("version") == version:
        return data
    return None


def _write_cache(library: str, section: dict) -> None:
    """Best effort: a read-only or missing cache folder only means the slow path runs again."""
    path = _cache_file(library, section["version"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"format": FORMAT, **section}, fh)
        os.replace(tmp, path)
    except OSError:
        pass


def _section(library: str, collect) -> dict | None:
    """The section for the installed ``library``: bundled, cached, or collected now (slow)."""
    version = installed_version(library)
    if version is None:
        return None
    shipped = bundled().get(library)
    if isinstance(shipped, dict) and shipped.get("version") == version:
        return shipped
    cached = _read_cache(library, version)
    if cached is not None:
        return cached
    try:
        section = collect()
    except Exception:  # noqa: BLE001 - a broken install: leave the check to the engine
        return None
    if section.get("version") == version:
        _write_cache(library, section)
    return section


@functools.lru_cache(maxsize=1)
def torchvision_names() -> TorchvisionNames | None:
    """None when torchvision is not installed or its names cannot be read."""
    s = _section("torchvision", collect_torchvision)
    return None if s is None else TorchvisionNames(s["version"], frozenset(s["names"]))


@functools.lru_cache(maxsize=1)
def timm_names() -> TimmNames | None:
    """None when timm is not installed or its names cannot be read."""
    s = _section("timm", collect_timm)
    if s is None:
        return None
    return TimmNames(s["version"], frozenset(s["archs"]), {a: frozenset(t) for a, t in s["tags"].items()})


def clear_memo() -> None:
    """Forget what was read (tests change the installed versions or the files)."""
    bundled.cache_clear()
    torchvision_names.cache_clear()
    timm_names.cache_clear()


# ----------------------------------------------------------------------------- checking


def _close(word: str, candidates, n: int = 3) -> list[str]:
    return difflib.get_close_matches(word.lower(), sorted(candidates), n=n, cutoff=0.6)


def _did_you_mean(close: list[str]) -> str:
    return f" Did you mean {', '.join(close)}?" if close else " Run `transfer-gui models` to list them."


def model_name_problem(name: str) -> str | None:
    """A one-line message when ``name`` is not a model the catalog can build, else None.

    None also when a library's names cannot be known (not installed): the engine decides then.
    """
    if name == OFFLINE_MODEL:
        return None
    if name.startswith(TIMM_PREFIX):
        return _timm_problem(name[len(TIMM_PREFIX):])
    tv = torchvision_names()
    if tv is None:
        return None
    if name in tv.names:
        return None
    close = _close(name, {OFFLINE_MODEL, *tv.names})
    tm = timm_names()
    if tm is not None:
        base = name.split(".", 1)[0]
        if base in tm.archs:  # a timm model named without its prefix
            close = [TIMM_PREFIX + name]
        elif not close:
            close = [TIMM_PREFIX + c for c in _close(base, tm.archs)]
    return f"unknown model '{name}'.{_did_you_mean(close)}"


def _timm_problem(rest: str) -> str | None:
    if rest.lower().startswith(TIMM_SOURCES):
        return None  # loaded from the Hub or a folder: only timm can tell
    tm = timm_names()
    if tm is None:
        return None
    arch, sep, tag = rest.partition(".")
    if arch not in tm.archs:
        close = [TIMM_PREFIX + c for c in _close(arch, tm.archs)]
        hint = _did_you_mean(close) if close else " See timm.list_models() for the names timm knows."
        return f"unknown model '{TIMM_PREFIX}{rest}' (timm {tm.version} has no model '{arch}').{hint}"
    known_tags = tm.tags.get(arch)
    if sep and known_tags and tag not in known_tags:
        close = [f"{TIMM_PREFIX}{arch}.{t}" for t in _close(tag, known_tags)] or \
                [f"{TIMM_PREFIX}{arch}.{t}" for t in sorted(known_tags)[:3]]
        return f"unknown model '{TIMM_PREFIX}{rest}': timm has no pretrained tag '{tag}' for '{arch}'." \
               f"{_did_you_mean(close)}"
    return None
