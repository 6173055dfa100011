"""Measure a knowledge base and its matcher on a file of questions with the intents they expect.

The file (`config/robot-eval.tsv`) holds one question a line: the question, a TAB, the expected
intent or `-` when no intent should be answered (the fallback or a clarifying question is right),
and optionally a TAB and a kind (paraphrase, slip, vague, lookalike ...) that the report groups by.
Lines starting with `#` and blank lines are skipped. `hotline robot eval` prints the report.

Three figures matter, each a share of all questions:

- accuracy: the expected intent answered, or for `-` no intent answered;
- clarify rate: a "您是想问 A 还是 B?" answered (not wrong, but one more turn for the caller);
- confident-wrong rate: an intent answered that is not the expected one. The worst outcome: the
  caller acts on a wrong answer, where the fallback would have sent them to a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.robot.matcher import Answer, Matcher

NONE = "-"  # the expected intent of a question no intent should answer


class EvalFileError(ValueError):
    """A line of the evaluation file that is not question TAB intent [TAB kind]."""


@dataclass(frozen=True, slots=True)
class Case:
    """One question of the evaluation file and the intent it expects (None: no intent)."""

    question: str
    expected: str | None
    kind: str
    line: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the matcher answered to one case."""

    case: Case
    answer: Answer

    @property
    def correct(self) -> bool:
        return self.answer.intent == self.case.expected

    @property
    def clarified(self) -> bool:
        return self.answer.intent is None and bool(self.answer.candidates)

    @property
    def confident_wrong(self) -> bool:
        return self.answer.intent is not None and self.answer.intent != self.case.expected

    def said(self) -> str:
        """The answer in a few words: the intent, `clarify a|b` or `fallback`."""
        if self.answer.intent is not None:
            return self.answer.intent
        if self.answer.candidates:
            return "clarify " + "|".join(self.answer.candidates)
        return "fallback"


@dataclass
class Tally:
    """Counts over some outcomes; the rates are shares of `total`."""

    total: int = 0
    correct: int = 0
    clarified: int = 0
    confident_wrong: int = 0

    def add(self, outcome: Outcome) -> None:
        self.total += 1
        self.correct += outcome.correct
        self.clarified += outcome.clarified
        self.confident_wrong += outcome.confident_wrong

    def rate(self, count: int) -> float:
        return count / self.total if self.total else 0.0

    @property
    def accuracy(self) -> float:
        return self.rate(self.correct)

    @property
    def clarify_rate(self) -> float:
        return self.rate(self.clarified)

    @property
    def confident_wrong_rate(self) -> float:
        return self.rate(self.confident_wrong)


@dataclass
class Report:
    """Every outcome, the overall tally and one per kind."""

    outcomes: list[Outcome]
    overall: Tally = field(default_factory=Tally)
    kinds: dict[str, Tally] = field(default_factory=dict)
    unknown: list[Case] = field(default_factory=list)  # cases expecting an intent the base lacks

    @property
    def misses(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.correct]


def parse(text: str, source: str = "eval") -> list[Case]:
    """The cases of an evaluation file's text; a malformed line raises EvalFileError."""
    cases = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        parts = raw.split("\t")
        if len(parts) not in (2, 3) or not parts[0].strip() or not parts[1].strip():
            raise EvalFileError(
                f"{source}:{n}: expected question TAB intent (or -) [TAB kind], got {raw[:60]!r}"
            )
        expected = parts[1].strip()
        kind = parts[2].strip() if len(parts) == 3 and parts[2].strip() else "-"
        cases.append(Case(parts[0], None if expected == NONE else expected, kind, n))
    return cases


def load(path: Path) -> list[Case]:
    """The cases of an evaluation file."""
    return parse(path.read_text(encoding="utf-8"), str(path))


def evaluate(matcher: Matcher, cases: Iterable[Case]) -> Report:
    """Ask the matcher every case and tally the outcomes."""
    report = Report([])
    known = set(matcher.ids)
    for case in cases:
        outcome = Outcome(case, matcher.answer(case.question))
        report.outcomes.append(outcome)
        report.overall.add(outcome)
        report.kinds.setdefault(case.kind, Tally()).add(outcome)
        if case.expected is not None and case.expected not in known:
            report.unknown.append(case)
    return report


def _row(name: str, t: Tally) -> str:
    return (
        f"{name:<12} {t.total:>5} {t.accuracy:>9.1%} {t.clarify_rate:>8.1%} {t.confident_wrong_rate:>15.1%}"
    )


def _calibration(report: Report) -> list[str]:
    """How often an answered intent was right, by confidence: a calibrated robot is right in about as
    many cases as its confidence says, or more."""
    bands: dict[float, list[bool]] = {}
    for o in report.outcomes:
        if o.answer.intent is not None:
            low = min(0.9, int(o.answer.confidence * 10) / 10)
            bands.setdefault(low, []).append(o.correct)
    if not bands:
        return []
    lines = ["", "answered intents by confidence:"]
    for low in sorted(bands):
        right = bands[low]
        lines.append(f"  {low:.1f}-{low + 0.1:.1f}  {len(right):>4}  {sum(right) / len(right):>6.1%} right")
    return lines


def format_report(report: Report, source: str) -> str:
    """The report as `hotline robot eval` prints it: the figures, per kind, then every miss."""
    lines = [f"{'kind':<12} {'cases':>5} {'accuracy':>9} {'clarify':>8} {'confident-wrong':>15}"]
    lines += [_row(kind, tally) for kind, tally in report.kinds.items()]
    lines.append(_row("all", report.overall))
    lines += _calibration(report)
    misses = report.misses
    if misses:
        lines.append("")
        lines.append(f"misses ({len(misses)}; ! = confident-wrong):")
        for o in misses:
            mark = "!" if o.confident_wrong else " "
            expected = o.case.expected or NONE
            lines.append(
                f"{mark} {source}:{o.case.line}: {o.case.question.strip()!r} expected {expected}, "
                f"got {o.said()} ({o.answer.confidence:.2f})"
            )
    for case in report.unknown:
        lines.append(f"warning: {source}:{case.line}: the knowledge base has no intent '{case.expected}'")
    return "\n".join(lines) + "\n"
