"""The tuning before a study's comparison: each candidate strength's validation mAP and the strength chosen."""

import json
from dataclasses import dataclass
from pathlib import Path

from lfm.study.spec import TUNE, TUNED, Step, StudySpec

SCORE = "val/mAP_best"  # what a candidate is chosen by: its best validation mAP (validation identities only)


@dataclass(frozen=True)
class Choice:
    """A tuned method's candidates (index 0: the method's own strength), their scores and the winner."""

    method: str
    candidates: tuple[tuple[str, ...], ...]
    scores: tuple[float | None, ...]  # None: the candidate's run has not finished

    @property
    def complete(self) -> bool:
        return all(score is not None for score in self.scores)

    @property
    def winner(self) -> int:
        """The best-scoring candidate (the earliest on a tie, so the method's own strength wins ties)."""
        return max(range(len(self.scores)), key=lambda index: (self.scores[index], -index))

    @property
    def overrides(self) -> tuple[str, ...]:
        """What the tuned method adds to the method's overrides."""
        return self.candidates[self.winner]


def tuning_score(run_dir: Path) -> float | None:
    metrics = run_dir / "metrics.json"
    return float(json.loads(metrics.read_text())[SCORE]) if metrics.is_file() else None


def choose_strengths(spec: StudySpec, runs_dir: Path) -> dict[str, Choice]:
    """method -> its Choice, from the tuning runs finished under `runs_dir`."""
    choices = {}
    for method in spec.tuning.candidates if spec.tuning else ():
        candidates = spec.candidates(method)
        scores = tuple(
            tuning_score(runs_dir / Step(TUNE, "", method, 0, "", index).key) for index in range(len(candidates))
        )
        choices[method] = Choice(method, candidates, scores)
    return choices


def same_as_paper(choices: dict[str, Choice]) -> frozenset[str]:
    """The tuned labels whose method's own strength won: they are the same runs as the method."""
    return frozenset(method + TUNED for method, choice in choices.items() if choice.complete and choice.winner == 0)


def untuned(choices: dict[str, Choice]) -> frozenset[str]:
    """The tuned labels whose tuning has not finished (they cannot run yet)."""
    return frozenset(method + TUNED for method, choice in choices.items() if not choice.complete)
