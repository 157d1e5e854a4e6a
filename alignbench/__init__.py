"""alignbench: measure how well vision-language models align text with images.

Typical use::

    import alignbench
    model = alignbench.load_model("meter-tiny-random")
    tasks = alignbench.load_tasks(["align-bench-synth-global", "align-bench-synth-local"])
    results = alignbench.evaluate(model, tasks, output_dir="results/")
    print(results[0]["metrics"]["box_score"])
"""

from .__about__ import __version__
from .api import FAMILIES, MODELS, TASKS, evaluate, expand_task_names, list_models, list_tasks, load_model, load_task, load_tasks
from .models.base import AlignmentModel, CapabilityError, MapMethod, TextBatch
from .protocol import REFERENCE, V2, Protocol, get_protocol
from .tasks.base import RunOptions

__all__ = [
    "FAMILIES",
    "MODELS",
    "REFERENCE",
    "TASKS",
    "V2",
    "AlignmentModel",
    "CapabilityError",
    "MapMethod",
    "Protocol",
    "RunOptions",
    "TextBatch",
    "__version__",
    "evaluate",
    "expand_task_names",
    "get_protocol",
    "list_models",
    "list_tasks",
    "load_model",
    "load_task",
    "load_tasks",
]
