"""Published models in the object store and the champion pointer.

Layout under a store (``STREAMGUARD_STORE`` or a run's ``store_uri``)::

    models/<name>/<version>/bundle.json, transformer/, gnn/, fusion/ ...   one bundle (bundle.json uploaded last)
    models/<name>/<version>/card.json, card.md                             its model card (``streamguard.publish``)
    models/<name>/champion.json                                            the pointer: which version is the champion

A version's directory is written once and never changed after its ``bundle.json`` (the completion marker). The
pointer names a version only after that version is complete (:func:`swap_pointer` refuses one whose
``bundle.json`` is missing), so a reader that resolves the pointer always finds a whole bundle.

``--bundle .../models/<name>/champion`` (``predict``, ``evaluate``, ``scan``; an ``s3://`` URI or a local store
path) resolves the pointer (:func:`resolve`) to that version's prefix.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from streamguard.errors import UserError

log = logging.getLogger(__name__)

MODELS = "models"
POINTER = "champion.json"
CHAMPION = "champion"
CARD = "card.json"
IMAGE_ENV = "STREAMGUARD_IMAGE"
"""The image the publish task runs in (the compile profile sets it): lineage in the model card."""
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def model_prefix(name: str) -> str:
    if not VERSION_RE.match(name):
        raise UserError(f"publish.model_name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    return f"{MODELS}/{name}"


def version_prefix(name: str, version: str) -> str:
    if not VERSION_RE.match(version):
        raise UserError(f"publish version {version!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    return f"{model_prefix(name)}/{version}"


def pointer_key(name: str) -> str:
    return f"{model_prefix(name)}/{POINTER}"


def make_version(run_id: str | None, code_version: str, now: str) -> str:
    """``<run id>-<code version>`` (a KFP run's retry republishes the same version), or ``<UTC time>-<code
    version>`` without a run id; characters outside ``[A-Za-z0-9._-]`` become ``-``."""
    base = run_id.strip() if run_id and run_id.strip() and "{{" not in run_id else now
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{base}-{code_version}").strip("-.")[:128]


def _parse(data: bytes | None, where: str) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("version"), str):
        raise UserError(f"{where}: not a champion pointer (field 'version' missing)")
    return obj


def read_pointer(store, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The champion pointer of ``name`` and its tag (for :func:`swap_pointer`); ``(None, None)`` before the first
    promotion."""
    key = pointer_key(name)
    data, tag = store.get_bytes_tagged(key)
    return _parse(data, f"{store.uri}/{key}"), tag


def swap_pointer(store, name: str, pointer: dict[str, Any], tag: str | None) -> bool:
    """Write the pointer if it still has ``tag`` (None: if there is none yet); False when another writer got
    there first. Where the store does not enforce the condition this writes anyway: the caller reads back."""
    from streamguard.bundle import MANIFEST
    from streamguard.jsonio import dumps

    complete = f"{version_prefix(name, pointer['version'])}/{MANIFEST}"
    if not store.exists(complete):
        raise UserError(f"{store.uri}/{complete}: missing; the pointer names only a completely uploaded bundle")
    return store.put_bytes_if(pointer_key(name), dumps(pointer), tag)


def _split_champion(uri: str) -> tuple[str, str] | None:
    """``(store uri, model name)`` when ``uri`` names a champion (``.../models/<name>/champion[.json]``)."""
    u = uri.rstrip("/")
    parts = u.rsplit("/", 3)
    if len(parts) == 4 and parts[1] == MODELS and parts[3] in (CHAMPION, POINTER):
        return parts[0], parts[2]
    if len(parts) == 3 and parts[0] == MODELS and parts[2] in (CHAMPION, POINTER):  # relative: models/x/champion
        return ".", parts[1]
    return None


def resolve(uri: str | os.PathLike, store_settings: Any = None) -> str:
    """``uri`` itself, or, for ``<store>/models/<name>/champion`` (or ``champion.json``), the champion version's
    bundle (``<store>/models/<name>/<version>``). A directory that is itself a bundle is never a pointer."""
    from streamguard.bundle import MANIFEST

    uri = str(uri)
    split = _split_champion(uri)
    if split is None:
        return uri
    local = "://" not in uri or uri.startswith("file://")
    if local and (Path(uri.removeprefix("file://")) / MANIFEST).is_file():
        return uri
    from streamguard.storage import open_store

    store_uri, name = split
    store = open_store(store_uri, store_settings)
    pointer, _ = read_pointer(store, name)
    if pointer is None:
        raise UserError(f"{uri}: no champion yet ({store.uri}/{pointer_key(name)} missing; `streamguard publish` "
                        "promotes one)")
    resolved = f"{store.uri.rstrip('/')}/{version_prefix(name, pointer['version'])}"
    log.info("champion of %s: version %s (%s)", name, pointer["version"], resolved)
    return resolved
