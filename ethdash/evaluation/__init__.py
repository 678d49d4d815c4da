"""Evaluation: pure statistics (`statistics`), a system's probabilities aligned with the votes
(`aligned`), loading and calibrating them for a comparison (`assemble`), and the figures and exported
files drawn from them (`figures`, `export`).

The package's own namespace is the assembling API: `evaluation.evaluate`, `evaluation.load`, ...
"""

from ethdash.evaluation.assemble import CROSS_FIT, Evaluation, evaluate, fit_on, human_ceiling, load

__all__ = ["CROSS_FIT", "Evaluation", "evaluate", "fit_on", "human_ceiling", "load"]
