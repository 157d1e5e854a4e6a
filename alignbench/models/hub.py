"""Fetching checkpoints: Hugging Face hub files and checksummed URL downloads.

Both go to the standard caches (``HF_HUB_CACHE`` / ``$XDG_CACHE_HOME/alignbench``) and work
from the cache with no network; a file that is neither cached nor reachable gives an error
saying how to fetch it or point ``--checkpoint`` at a local copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError

from ..hub_commands import hf_download_command


BUNDLED_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"
"""Where checkpoints shipped inside the package live."""


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint that is neither cached nor downloadable."""


@dataclass(frozen=True)
class CheckpointSource:
    """Where a registered model's weights live: a hub file, a URL, or a file ``bundled`` with
    the package (under ``alignbench/assets/checkpoints/``)."""

    hf_repo: str | None = None
    filename: str | None = None
    revision: str = "main"
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    bundled: str | None = None
    note: str = ""

    def describe(self) -> str:
        if self.bundled:
            return f"bundled: {self.bundled}"
        if self.hf_repo:
            return f"hf://{self.hf_repo}/{self.filename}@{self.revision}"
        return str(self.url)


def cache_dir() -> Path:
    """alignbench's own download cache (for non-hub checkpoints)."""
    base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(os.environ.get("ALIGNBENCH_CACHE", Path(base) / "alignbench"))


def sha256_file(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) because checkpoints are GBs."""
    path = Path(path).resolve()
    st = path.stat()
    memo_path = cache_dir() / "sha256.json"
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        memo[key] = h.hexdigest()
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            memo_path.write_text(json.dumps(memo))
        except OSError:
            pass
    return memo[key]


def sha256_path(path: Path) -> str:
    """sha256 of a checkpoint file, or of a checkpoint folder: over the names and sha256s of
    the files in it (a save_pretrained folder: weights, config, processor and tokenizer files)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    listing = "".join(f"{f.name}\0{sha256_file(f)}\n" for f in sorted(path.iterdir()) if f.is_file())
    return hashlib.sha256(listing.encode()).hexdigest()


def _how_to_fetch(src: CheckpointSource, model_name: str) -> str:
    if src.hf_repo:
        get = hf_download_command(src.hf_repo, src.filename, revision=src.revision)
    else:
        get = f"download {src.url} into {cache_dir() / 'checkpoints'}"
    return f"run once with network access, or {get}, or pass --checkpoint PATH to a local copy of {model_name}'s weights"


def resolve_checkpoint(src: CheckpointSource, model_name: str) -> Path:
    """Local path of a registered checkpoint, downloading it if needed and possible."""
    if src.bundled:
        path = BUNDLED_DIR / src.bundled
        if not path.is_file():
            raise CheckpointNotFoundError(f"the bundled checkpoint of {model_name!r} is missing from this installation ({path}); reinstall alignbench")
        if src.sha256 and sha256_file(path) != src.sha256:
            raise CheckpointNotFoundError(f"{path} does not match the registered sha256 {src.sha256}; reinstall alignbench")
        return path
    if src.hf_repo:
        try:
            return Path(hf_hub_download(src.hf_repo, src.filename, revision=src.revision))
        except (LocalEntryNotFoundError, OSError) as e:
            raise CheckpointNotFoundError(
                f"checkpoint {src.describe()} for model {model_name!r} is not in the local cache and could not be "
                f"downloaded ({type(e).__name__}); {_how_to_fetch(src, model_name)}"
            ) from None
    assert src.url, "a checkpoint source needs hf_repo or url"
    dst = cache_dir() / "checkpoints" / (src.filename or src.url.rsplit("/", 1)[-1])
    if not dst.exists():
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise CheckpointNotFoundError(f"checkpoint {src.url} for model {model_name!r} is not cached at {dst} and HF_HUB_OFFLINE=1; {_how_to_fetch(src, model_name)}")
        import torch.hub

        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(src.url, str(dst), hash_prefix=src.sha256, progress=True)
        except Exception as e:  # network errors come in many types
            raise CheckpointNotFoundError(f"could not download {src.url} for model {model_name!r} ({e}); {_how_to_fetch(src, model_name)}") from None
    if src.sha256 and sha256_file(dst) != src.sha256:
        raise CheckpointNotFoundError(f"{dst} does not match the registered sha256 {src.sha256}; delete it and download again")
    return dst
