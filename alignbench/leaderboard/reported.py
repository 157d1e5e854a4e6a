"""Rows copied from papers (``reported.yaml``): kept in their own section, never ranked with
measured rows.

Format::

    reported:
      - model: GLSCL
        source: "Tu et al., arXiv:2306.07096, Table 6"   # required: where the numbers are printed
        family: meter                                    # optional
        parameters: 350000000                            # optional
        map_method: attention                            # optional
        note: "pre-trained 100k steps"                   # optional
        scores:
          align-bench-global: {box_score: 0.5, pixel_score: 0.4}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPORTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["reported"],
    "additionalProperties": False,
    "properties": {
        "reported": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["model", "source", "scores"],
                "additionalProperties": False,
                "properties": {
                    "model": {"type": "string", "minLength": 1},
                    "source": {"type": "string", "minLength": 1},
                    "family": {"type": "string"},
                    "parameters": {"type": "integer"},
                    "map_method": {"type": "string"},
                    "note": {"type": "string"},
                    "scores": {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": {"type": "number"},
                        },
                    },
                },
            },
        }
    },
}


@dataclass
class ReportedRow:
    """Numbers printed in a paper, with the source they were copied from."""

    model: str
    source: str
    scores: dict[str, dict[str, float]]
    family: str | None = None
    parameters: int | None = None
    map_method: str | None = None
    note: str | None = None


def load_reported(path: str | Path) -> list[ReportedRow]:
    """Read and validate a ``reported.yaml``; errors name the file and the entry."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{p}: cannot read reported rows: {e}") from None
    try:
        jsonschema.validate(data, REPORTED_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(x) for x in e.absolute_path) or "(top level)"
        raise ValueError(f"{p}: invalid reported rows at {where}: {e.message}") from None
    return [ReportedRow(**entry) for entry in data["reported"]]
