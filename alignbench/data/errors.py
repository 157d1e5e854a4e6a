"""Errors raised while locating and reading grounding datasets."""

from __future__ import annotations

from pathlib import Path

from ..hub_commands import HF_LOGIN_COMMAND, hf_download_command


class DataError(ValueError):
    """Malformed or unrecognised data: the message names the sample, the file and the problem."""

    def __init__(self, problem: str, sample_id: str | None = None, path: str | Path | None = None) -> None:
        file = "" if path is None else str(path)
        where = file if sample_id is None else f"sample {sample_id!r}" + (file and f" ({file})")
        super().__init__(f"{where}: {problem}" if where else problem)
        self.problem = problem
        self.sample_id = sample_id
        self.path = None if path is None else str(path)

    def __reduce__(self) -> tuple:  # keep the fields when the error crosses a process boundary
        return type(self), (self.problem, self.sample_id, self.path)


class DataNotFoundError(FileNotFoundError):
    """A dataset that is neither cached nor reachable; the message says how to get it."""

    def __init__(self, dataset_id: str, revision: str, reason: str) -> None:
        super().__init__(
            f"dataset {dataset_id!r} at revision {revision!r} is not available: {reason}\n"
            f"Fetch it with {hf_download_command(dataset_id, repo_type='dataset', revision=revision)}; "
            f"for a gated or private dataset log in first with {HF_LOGIN_COMMAND}. "
            "Or point --data-dir at a local copy."
        )
        self.dataset_id = dataset_id
        self.revision = revision
        self.reason = reason

    def __reduce__(self) -> tuple:
        return type(self), (self.dataset_id, self.revision, self.reason)
