"""Scoring: jobs and the score cache (`jobs`), prompting, the backends and their registry (`backends/`,
with the vLLM server beside its backend) and background scoring (`background`).

The package's own namespace is the jobs API: `scoring.Job`, `scoring.plan`, `scoring.run`, ...
"""

from ethdash.scoring.jobs import (
    CHUNK,
    Job,
    Plan,
    Progress,
    System,
    distribution,
    export,
    plan,
    run,
    scores_frame,
    stored,
)

__all__ = [
    "CHUNK", "Job", "Plan", "Progress", "System", "distribution", "export", "plan", "run", "scores_frame", "stored",
]  # fmt: skip
