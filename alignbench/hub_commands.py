"""The command lines that error messages give for fetching from the Hugging Face Hub.

``hf`` is the CLI of huggingface_hub 0.34 and newer; older releases (which alignbench still
supports) spell the same commands ``huggingface-cli``.
"""

from __future__ import annotations


def hf_download_command(repo_id: str, filename: str | None = None, *, repo_type: str = "model", revision: str | None = None) -> str:
    """The command that puts ``repo_id`` (or its ``filename``) into the Hugging Face cache."""
    parts = [repo_id, filename, "--repo-type dataset" if repo_type == "dataset" else None, f"--revision {revision}" if revision else None]
    args = " ".join(p for p in parts if p)
    return f"`hf download {args}` (huggingface_hub < 0.34: `huggingface-cli download {args}`)"


HF_LOGIN_COMMAND = "`hf auth login` (huggingface_hub < 0.34: `huggingface-cli login`)"
"""The command that stores a Hub token for gated or private repositories."""
