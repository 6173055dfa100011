"""Match a caller's free-text question to an intent of the knowledge base.

How this works. Questions are normalised (NFKC, case folded, punctuation and white space removed)
and also written "by sound": each Chinese character becomes one symbol per toneless pinyin syllable,
so that 花费 and 话费 (the typical typo of a pinyin input method) look the same. Each example question
is compared with the caller's on three measures, all in [0, 1]:

- order-aware similarity of the sound strings (rapidfuzz's normalised Indel ratio, in C++);
- order-free overlap of the two bags of characters, each weighted by how rare it is in the knowledge
  base (IDF), so that 我 / 的 / 怎么 count little and 积分 / 宽带 count much (by character, not by
  sound: single syllables have too many homophones);
- containment: the example found whole inside a longer question ("你好,请问我的话费还剩多少呢").

An intent scores the best of its examples; keywords found in the question (also by sound) raise it
towards 1. The confidence is that score. Below `threshold` the fallback is answered; when the best two
intents are within `ambiguity` of each other, a short "您是想问 A 还是 B?" is.

Everything is indexed once, when the knowledge base is loaded; answering allocates little.
"""

from __future__ import annotations

import heapq
import math
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz, process

from app.robot.schema import RobotFile

_NOT_WORD = re.compile(r"[\W_]+")
_KEYWORD_STEP = 0.35  # how far one keyword moves the score towards 1
_KEYWORD_MAX = 0.6
_CONTAIN_MIN = 3  # an example shorter than this is not looked for inside longer questions
_CONTAIN_CANDIDATES = 32
_COVER = 0.7  # weight of "the question holds all of the example's words" (order-free containment)
# Calibration: raw similarity PIVOT is reported as confidence 0.6, the threshold the format suggests.
# Measured on the held-out questions of the shipped knowledge base: correct paraphrases mostly score
# above 0.4 raw, questions from other domains below 0.37.
_PIVOT = 0.4


def normalize(text: str) -> str:
    """NFKC, case folding, and no punctuation or white space: '  ５Ｇ 套餐？' -> '5g套餐'."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=65536)
def _syllable(ch: str) -> str:
    """One symbol per toneless pinyin syllable (a private-use character); other characters as they are."""
    code = ord(ch)
    if code < 0x3400:
        return ch
    from pypinyin.pinyin_dict import pinyin_dict  # noqa: PLC0415 - loaded on first use only

    reading = pinyin_dict.get(code)
    if reading is None:
        return ch
    first = unicodedata.normalize("NFKD", reading.split(",")[0])
    plain = "".join(c for c in first if not unicodedata.combining(c))
    return _symbol_for(plain)


_SYMBOLS: dict[str, str] = {}  # toneless syllable -> its private-use symbol (about 400 exist)


def _symbol_for(syllable: str) -> str:
    symbol = _SYMBOLS.get(syllable)
    if symbol is None:
        symbol = _SYMBOLS[syllable] = chr(0xF0000 + len(_SYMBOLS))
    return symbol


def by_sound(normalized: str) -> str:
    """The sound string of a normalised text: one symbol per character."""
    return "".join(map(_syllable, normalized))


@dataclass(frozen=True, slots=True)
class Answer:
    """The robot's reply: its text, the intent (None for the fallback or a clarifying question)."""

    text: str
    intent: str | None
    confidence: float
    candidates: tuple[str, ...] = ()


class Matcher:
    """An index of one knowledge base; `answer(question)` is pure and thread-safe."""

    def __init__(self, kb: RobotFile) -> None:
        self.kb = kb
        self.ids = [i.id for i in kb.intents]
        self.titles = [i.title or i.questions[0] for i in kb.intents]
        self.answers = [i.answer for i in kb.intents]
        self.threshold = kb.threshold
        self.ambiguity = kb.ambiguity
        self.fallback = Answer(kb.fallback, None, 0.0)
        self.owner: list[int] = []
        self.sounds: list[str] = []
        bags: list[dict[str, int]] = []
        for n, intent in enumerate(kb.intents):
            seen: set[str] = set()
            for q in intent.questions:
                text = normalize(q)
                s = by_sound(text)
                if s and s not in seen:
                    seen.add(s)
                    self.owner.append(n)
                    self.sounds.append(s)
                    bags.append(_bag(text))
        # A keyword is worth less when other intents' questions or keywords use it too
        # (话费 belongs to "balance" but also appears in "怎么充话费"): its weight is 1 / #intents using it.
        vocab = [
            [*self.sounds_of(n), *(by_sound(normalize(w)) for w in intent.keywords)]
            for n, intent in enumerate(kb.intents)
        ]
        self.keywords: list[tuple[tuple[re.Pattern[str], float], ...]] = []
        for intent in kb.intents:
            entries = []
            for k in (by_sound(normalize(w)) for w in intent.keywords):
                if k:
                    users = sum(1 for texts in vocab if any(k in t for t in texts))
                    entries.append((_keyword_pattern(k), 1.0 / max(users, 1)))
            self.keywords.append(tuple(entries))
        # IDF over intents: a syllable every intent uses says nothing about which one is meant
        docs: dict[str, set[int]] = defaultdict(set)
        for idx, bag in enumerate(bags):
            for sym in bag:
                docs[sym].add(self.owner[idx])
        n_intents = max(len(kb.intents), 1)
        self.idf = {sym: math.log((n_intents + 1) / (len(owners) + 0.5)) for sym, owners in docs.items()}
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.weights: list[float] = []
        for idx, bag in enumerate(bags):
            self.weights.append(sum(self.idf[s] * c for s, c in bag.items()))
            for sym, count in bag.items():
                self.postings[sym].append((idx, count))
        self.default_idf = math.log((n_intents + 1) / 0.5)

    def sounds_of(self, intent: int) -> list[str]:
        """The sound strings of one intent's example questions."""
        return [s for s, o in zip(self.sounds, self.owner, strict=True) if o == intent]

    def scores(self, question: str) -> list[tuple[str, float]]:
        """Every intent with a score above zero, best first."""
        text = normalize(question)
        best = self._scores(text, by_sound(text))
        return sorted(((self.ids[i], s) for i, s in enumerate(best) if s > 0), key=lambda x: -x[1])

    def answer(self, question: str) -> Answer:
        """The reply to `question`: an intent's answer, a clarifying question, or the fallback."""
        text = normalize(question)
        sound = by_sound(text)
        if not sound or not self.ids:
            return self.fallback
        best = self._scores(text, sound)
        first = max(range(len(best)), key=best.__getitem__)
        top = best[first]
        if top < self.threshold:
            return Answer(self.fallback.text, None, round(top, 3))
        second = max((s for i, s in enumerate(best) if i != first), default=0.0)
        if second >= self.threshold and top - second < self.ambiguity:
            other = next(i for i, s in enumerate(best) if s == second and i != first)
            text = self.kb.clarify.replace("{a}", self.titles[first]).replace("{b}", self.titles[other])
            return Answer(text, None, round(top, 3), (self.ids[first], self.ids[other]))
        return Answer(self.answers[first], self.ids[first], round(top, 3))

    def _scores(self, text: str, sound: str) -> list[float]:
        best = [0.0] * len(self.ids)
        owner = self.owner
        n = len(sound)
        # 1. order-aware similarity, computed in C++ over every example
        for _, score, idx in process.extract(
            sound, self.sounds, scorer=fuzz.ratio, limit=None, score_cutoff=30
        ):
            s = score / 100.0
            i = owner[idx]
            best[i] = max(best[i], s)
        # 2. IDF-weighted overlap of character bags (order-free), as a Dice coefficient
        bag = _bag(text)
        q_weight = 0.0
        overlap: dict[int, float] = defaultdict(float)
        idf = self.idf
        for sym, count in bag.items():
            w = idf.get(sym, self.default_idf)
            q_weight += w * count
            for idx, c in self.postings.get(sym, ()):
                overlap[idx] += w * min(c, count)
        if q_weight > 0:
            weights = self.weights
            for idx, shared in overlap.items():
                w = weights[idx]
                s = max(2.0 * shared / (q_weight + w), _COVER * shared / w if w > 0 else 0.0)
                i = owner[idx]
                best[i] = max(best[i], s)
        # 3. an example found whole inside a longer question; only examples that share words with it
        #    can be, so only the best few by overlap are aligned (partial_ratio is the costly measure)
        if n > _CONTAIN_MIN and overlap:
            sounds = self.sounds
            candidates = heapq.nlargest(_CONTAIN_CANDIDATES, overlap, key=overlap.__getitem__)
            for idx in candidates:
                example = sounds[idx]
                m = len(example)
                if _CONTAIN_MIN <= m < n:
                    score = fuzz.partial_ratio(example, sound, score_cutoff=85)
                    if score:
                        s = score / 100.0 * (0.75 + 0.2 * m / n)
                        i = owner[idx]
                        best[i] = max(best[i], s)
        # 4. keyword evidence lifts an intent towards 1
        #    A keyword found inside a longer keyword of another intent does not count: in 流量包,
        #    "流量包" (buy a data pack) is meant, not "流量" (data usage).
        hits: list[tuple[int, int, int, float]] = []
        for i, keywords in enumerate(self.keywords):
            for k, weight in keywords:
                found = k.search(sound)
                if found is not None:
                    hits.append((i, found.start(), found.end(), weight))
        if hits:
            evidence = [0.0] * len(best)
            for i, start, end, weight in hits:
                inside = any(
                    j != i and s0 <= start and end <= e0 and e0 - s0 > end - start for j, s0, e0, _ in hits
                )
                if not inside:
                    evidence[i] += weight
            for i, ev in enumerate(evidence):
                if ev:
                    best[i] += (1.0 - best[i]) * min(_KEYWORD_MAX, _KEYWORD_STEP * ev)
        return [_calibrate(b) for b in best]


def _calibrate(raw: float) -> float:
    """Map raw similarity to confidence: PIVOT -> 0.6, monotone, 0 -> 0 and 1 -> 1."""
    if raw <= _PIVOT:
        return 0.6 * raw / _PIVOT
    return min(1.0, 0.6 + 0.4 * (raw - _PIVOT) / (1.0 - _PIVOT))


def _keyword_pattern(sound: str) -> re.Pattern[str]:
    """A keyword matches with at most one extra syllable between its own: 网速慢 in 网速太慢."""
    if len(sound) < 2:
        return re.compile(re.escape(sound))
    return re.compile(".?".join(map(re.escape, sound)))


def _bag(sound: str) -> dict[str, int]:
    bag: dict[str, int] = {}
    for sym in sound:
        bag[sym] = bag.get(sym, 0) + 1
    return bag
