"""Function source bundles: the files of one deploy, checked, normalised and packed into one
deterministic tar.gz named by its SHA-256; unpacked once per digest for the runtime.

Imports the standard library and shared errors only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from services.shared.errors import InvalidInput

MAX_BUNDLE_BYTES = 20 * 1024 * 1024  # Supabase's limit on a function's bundle
MAX_FILES = 1000
MAX_PATH = 512
SLUG_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
SAFE_PART = re.compile(r"^[^\x00/\\]+$")


def check_slug(slug: Any) -> str:
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise InvalidInput("slug: a letter, then letters, digits, _ or - (at most 128 characters)")
    return slug


def normalize_path(raw: Any, what: str = "file") -> str:
    """A bundle-relative POSIX path. Accepts what deploy tools send (`file:///…/index.ts`,
    `./index.ts`, `source/index.ts`); refuses anything that could leave the bundle."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(f"{what}: a relative file path")
    path = raw.strip()
    if path.startswith("file://"):
        path = path[len("file://"):]
    path = path.replace("\\", "/").lstrip("/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or not SAFE_PART.match(p) for p in parts):
        raise InvalidInput(f"{what}: {raw!r} is not a path inside the bundle")
    norm = posixpath.join(*parts)
    if len(norm) > MAX_PATH:
        raise InvalidInput(f"{what}: path longer than {MAX_PATH} characters")
    return norm


def pack(files: list[tuple[str, bytes]], entrypoint_path: Any, import_map_path: Any = None) -> dict[str, Any]:
    """Check and pack a deploy's files. Returns {data, sha256, size_bytes, entrypoint_path,
    import_map_path, paths}; raises InvalidInput naming what is wrong."""
    if not files:
        raise InvalidInput("file: at least one source file")
    if len(files) > MAX_FILES:
        raise InvalidInput(f"file: at most {MAX_FILES} files")
    by_path: dict[str, bytes] = {}
    for raw, content in files:
        path = normalize_path(raw)
        if path in by_path and by_path[path] != content:
            raise InvalidInput(f"file: {path} sent twice with different contents")
        by_path[path] = content
    total = sum(len(c) for c in by_path.values())
    if total > MAX_BUNDLE_BYTES:
        raise InvalidInput(f"file: the bundle is {total} bytes; at most {MAX_BUNDLE_BYTES}")
    entry = resolve(by_path, entrypoint_path, "entrypoint_path")
    import_map = resolve(by_path, import_map_path, "import_map_path") if import_map_path else None
    buf = io.BytesIO()
    # Deterministic bytes: sorted names, fixed times and owners, gzip without a timestamp,
    # so the same sources always give the same digest.
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(by_path):
                info = tarfile.TarInfo(path)
                info.size = len(by_path[path])
                info.mode = 0o444
                info.mtime = 0
                tar.addfile(info, io.BytesIO(by_path[path]))
    data = buf.getvalue()
    return {"data": data, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": total,
            "entrypoint_path": entry, "import_map_path": import_map, "paths": sorted(by_path)}


def resolve(by_path: dict[str, bytes], raw: Any, what: str) -> str:
    """The bundle path `raw` names: exactly, or as the one path ending in it."""
    want = normalize_path(raw, what)
    if want in by_path:
        return want
    matches = [p for p in by_path if p.endswith("/" + want) or want.endswith("/" + p)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InvalidInput(f"{what}: {raw!r} is not one of the uploaded files ({', '.join(sorted(by_path)[:5])})")
    raise InvalidInput(f"{what}: {raw!r} matches several uploaded files; give its full path")


def unpack(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                out.append((normalize_path(member.name), f.read() if f else b""))
    return out


def materialize(data: bytes, sha256: str, root: Path) -> Path:
    """The bundle unpacked under `root/<sha256>` (once; read-only afterwards). Safe when
    several processes race: each unpacks into its own temporary folder and renames."""
    target = root / sha256
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{sha256}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for path, content in unpack(data):
        dest = tmp / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
        if not target.is_dir():
            raise
    return target
