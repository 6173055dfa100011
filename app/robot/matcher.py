"""Match a caller's free-text question to an intent of the knowledge base, or know that none fits.

How this works. Questions are normalised (NFKC, case folded, traditional characters simplified,
punctuation and white space removed; English words become one symbol each; see text.py). Then:

1. Repair slips by sound, and only slips: a run of characters that no example or keyword of the
   knowledge base contains, but that sounds like a run that one does (电飞 -> 电费, 流两 -> 流量,
   网束 -> 网速 with the input methods' fuzzy zh/z ch/c sh/s), is read as that run, provided at
   least one character is the same. A whole word swapped for a homophone (化肥 for 话费, 新号 for
   信号) is a different word, not a slip, and is left alone; so is a run the knowledge base already
   knows. Repaired characters count for less.
2. Keep the content: function characters (我, 的, 请问), function words (多少, 有没有, the A-not-A
   question 贵不贵) and chatter (烦死了, 天天, 谢谢) are "quiet": every intent holds them, and they
   weigh little (text.quiet). 天天有骚扰电话烦死了 asks what 有骚扰电话 asks.
3. Cover the question: a content character is covered by an intent when it and a neighbour (as
   typed, or with the quiet ones between left out: 想换个套餐 holds 换套 of 换套餐) form a pair that
   the intent's examples or keywords contain. A character no pair covers but that the intent uses
   counts for it too (套餐怎么改 and 我想改套餐). A run no pair of the knowledge base covers is a word
   it does not know (银行卡 in 银行卡丢了): it weighs the most, unless 用 / 去 / 到 ... stand before
   it (用微信充话费, 去日本): then it says how or where, not what, and weighs little.
4. Score each intent by how much of the question's weight it covers (a question about something
   else is not covered, whatever it shares: 信用卡积分 is not about 积分), times how much
   distinctive evidence it holds (查一下 holds too little to say which of the intents that check
   something is meant), times how much of one of its example questions the question holds, by
   weight (查询 holds little of 查询余额; 怎么收费 little of 打国际长途怎么收费). Characters weigh by
   how rare they are among the intents (IDF), so 手机 / 办 count little and 积分 / 宽带 much. A
   keyword found in the question adds evidence for its intent, less when other intents use it too.
5. The confidence is that score mapped so that the threshold keeps what it promises: on the
   evaluation set (config/robot-eval.tsv) answers at 0.6 or more are right at least 9 times in 10,
   and questions from elsewhere stay below it (see _calibrate).

Below `threshold` the fallback is answered. When nothing the question holds tells the best intent
from the second (宽带: every character the best covers, the second covers too, and no keyword of the
best's alone), or the two are within `ambiguity` of each other, a short "您是想问 A 还是 B?" is asked
(or the fallback answered, when the second is below the threshold). Everything is indexed once, when
the knowledge base is loaded; a question takes tens of microseconds.

Why not rapidfuzz, the usual choice for fuzzy matching: its order-aware similarity (fuzz.ratio of
the question's content to each example's, best per intent) was measured for issue 27 as a factor of the score
(weights 0.2 and 0.4) and as "a close enough example answers on its own". On the evaluation set and
heldout.yaml it answered no question the coverage above misses and lost some it answers: the
paraphrases still missed differ from every example in their words (手机费 for 话费, 推销 for 骚扰),
not in order, and a Chinese paraphrase reorders freely (套餐怎么改, 我想改套餐), which an
order-aware measure counts against the right intent. So it is not used, and not a dependency.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from app.robot.schema import RobotFile
from app.robot.text import (
    ADJUNCT_MARKERS,
    FUNCTION_CHARS,
    STOPWORDS,
    by_sound,
    content,
    is_cjk,
    normalize,
    quiet,
    stem,
    tokenize,
)

__all__ = ["ANSWERS_KEPT", "Answer", "Matcher", "by_sound", "normalize", "tokenize"]

ANSWERS_KEPT = 4096  # distinct questions whose answers are kept (see Matcher.answer)
_LONGEST = 8  # the longest run looked up for a repair by sound
_REPAIRED = 0.7  # what a character repaired by sound counts for, against one typed as the base has it
_LONE = 1.0  # what a character an intent holds, but not beside these neighbours, counts for
_FUNCTION = 0.25  # the weight of a function character, against 1 for the rarest content character
_KEYWORD = 0.5  # evidence a keyword adds, as a share of its own weight (divided among intents using it)
_KNOWN_RUN = 0.7  # the least each character of a run of known characters in an unknown order weighs
_UNKNOWN_WEIGHT = 0.8  # the weight of each character of a word the base does not use
_ADJUNCT = 0.3  # ... of a word the base does not use after 用 / 去 / 到 ...: how or where, not what
_COVER_POWER = 0.75  # how steeply an uncovered share lowers the score
_HOLD_POWER = 0.3  # how steeply an example held only in part lowers the score
_EVIDENCE_MIN = 0.5  # ... or as much as the intent's own shortest example holds, but never less than this
_EVIDENCE = 1.0  # evidence (in units of the rarest character's weight) that makes an answer certain
_SMALL = 20  # fewer intents than this are weighed as if there were this many
_PIVOT = 0.65  # the raw score reported as confidence 0.6 (see _calibrate)
_UNKNOWN = "\U0010fffd"  # every word the knowledge base never uses
_FIRST_WORD = 0x100000  # word symbols: plane 16 (syllable symbols are in plane 15)


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
        self.words: dict[str, str] = {}  # stemmed word -> its symbol; grows only while indexing
        self.ids = [i.id for i in kb.intents]
        self.titles = [i.title or i.questions[0] for i in kb.intents]
        self.answers = [i.answer for i in kb.intents]
        self.threshold = kb.threshold
        self.ambiguity = kb.ambiguity
        self.fallback = Answer(kb.fallback, None, 0.0)
        self._answers: dict[str, Answer] = {}  # question -> its answer (see answer())
        self.vocab: list[frozenset[str]] = []  # per intent: its content characters
        self.examples = 0
        pairs: dict[str, set[int]] = defaultdict(set)  # pairs of content characters
        typed: set[str] = set()  # pairs of characters as the base has them
        chars: dict[str, set[int]] = defaultdict(set)
        runs: dict[str, set[str]] = defaultdict(set)  # sound of a run -> the runs that sound so
        keyword_users: list[tuple[str, int]] = []
        all_texts: list[set[str]] = []
        all_questions: list[set[str]] = []  # per intent: its questions' (and title's) content
        for n, intent in enumerate(kb.intents):
            texts = {self.encode(t, learn=True) for t in (*intent.questions, *intent.keywords)}
            if intent.title:
                texts.add(self.encode(intent.title, learn=True))
            texts.discard("")
            all_texts.append(texts)
            questions = {self.encode(q) for q in (*intent.questions, intent.title or "")}
            all_questions.append({content(q) for q in questions} - {""})
            self.examples += len(intent.questions)
            mine: set[str] = set()
            for text in texts:
                for start in range(len(text) - 1):
                    typed.add(text[start : start + 2])
                    pairs[text[start : start + 2]].add(n)
                    for end in range(start + 2, min(len(text), start + _LONGEST) + 1):
                        run = text[start:end]
                        runs[by_sound(run)].add(run)
                core = content(text)
                mine.update(core)
                for k in range(len(core) - 1):
                    pairs[core[k : k + 2]].add(n)
            for ch in mine:
                chars[ch].add(n)
            self.vocab.append(frozenset(mine))
            keyword_users += [(k, n) for k in {self.encode(w) for w in intent.keywords} if len(k) >= 2]
        self.pairs = {p: frozenset(ids) for p, ids in pairs.items()}
        self.typed = frozenset(typed)
        self.runs = {s: tuple(sorted(r)) for s, r in runs.items()}
        # IDF on a handful of intents says little (in a base of two, 余额 in both would weigh nothing):
        # a small base is weighed as if it were part of one of _SMALL intents.
        n_intents = max(len(kb.intents), _SMALL)
        self.top_weight = math.log((n_intents + 1) / 0.5)
        # IDF over intents, as a share of the rarest character's: 1 for a character one intent uses
        self.weight = {
            ch: math.log((n_intents + 1) / (len(ids) + 0.5)) / self.top_weight for ch, ids in chars.items()
        }
        # Each example question as its content characters and their weights, for how much of one the
        # question holds.
        self.held: list[list[tuple[tuple[tuple[str, float], ...], float]]] = []
        for questions in all_questions:
            rows = []
            for q in questions:
                cs = tuple((ch, self.weight[ch]) for ch in set(q))
                rows.append((cs, sum(w for _, w in cs)))
            self.held.append(rows)
        # How much evidence this intent's own shortest example holds: 你好 holds less than 话费还剩多少,
        # and a greeting is no less certain for it.
        self.enough = [
            min((sum(self.weight[ch] for ch in q) for q in questions), default=_EVIDENCE)
            for questions in all_questions
        ]
        # A keyword counts for each intent using it (in a question or keyword) 1 / the number of them.
        # Keywords are indexed by their first character: a question only tries those it could hold.
        self.keywords: dict[str, list[tuple[str, int, float]]] = defaultdict(list)
        for keyword, owner in keyword_users:
            users = sum(1 for held in all_texts if any(keyword in t for t in held))
            self.keywords[keyword[0]].append((keyword, owner, 1.0 / max(users, 1)))

    def encode(self, text: str, *, learn: bool = False) -> str:
        """Chinese characters as they are; every other word as one symbol of this knowledge base's
        vocabulary (words it never uses all become one "unknown" symbol, so questions cannot grow it)."""
        out = []
        words = self.words
        for token in tokenize(text):
            if is_cjk(token):
                out.append(token)
                continue
            if token in STOPWORDS or token.isdigit():
                continue  # function words and numbers say nothing about which intent is meant
            key = stem(token)
            symbol = words.get(key)
            if symbol is None:
                if learn:
                    symbol = words[key] = chr(_FIRST_WORD + len(words))
                else:  # unknown: it matches nothing, and weighs as much as a Chinese word of two
                    out.append(_UNKNOWN * 2)
                    continue
            out.append(symbol * min(len(token), 8))  # a word weighs as much as its letters would
        return "".join(out)

    def scores(self, question: str) -> list[tuple[str, float]]:
        """Every intent with a score above zero, best first."""
        best, _ = self._scores(self.encode(question))
        return sorted(((self.ids[i], s) for i, s in best.items() if s > 0), key=lambda x: -x[1])

    def answer(self, question: str) -> Answer:
        """The reply to `question`: an intent's answer, a clarifying question, or the fallback.
        Callers ask the same few questions over and over (流量还剩多少): the answers to the last
        ANSWERS_KEPT distinct questions are kept (the matcher is immutable: a reload makes a new one)."""
        answers = self._answers
        known = answers.get(question)
        if known is not None:
            return known
        found = self._answer(question)
        if len(answers) >= ANSWERS_KEPT:
            answers.clear()  # bounded: a flood of distinct questions cannot grow it
        answers[question] = found
        return found

    def _answer(self, question: str) -> Answer:
        text = self.encode(question)
        if not text or not self.ids:
            return self.fallback
        best, holds = self._scores(text)
        if not best:
            return Answer(self.fallback.text, None, 0.0)
        ranked = sorted(best.items(), key=lambda x: -x[1])
        first, top = ranked[0]
        if top < self.threshold:
            return Answer(self.fallback.text, None, round(top, 3))
        if len(ranked) > 1:
            other, second = ranked[1]
            # Nothing the question says tells the best from the second (宽带: install or repair?):
            # ask which one was meant, or when the second is too unlikely, fall back, no surer of
            # the best than of the second.
            alike = holds[first] <= holds[other]
            if alike and second < self.threshold:
                return Answer(self.fallback.text, None, round(second, 3))
            if second >= self.threshold and (alike or top - second < self.ambiguity):
                reply = self.kb.clarify.replace("{a}", self.titles[first]).replace("{b}", self.titles[other])
                return Answer(reply, None, round(top, 3), (self.ids[first], self.ids[other]))
        return Answer(self.answers[first], self.ids[first], round(top, 3))

    def repair(self, text: str) -> tuple[str, list[bool]]:
        """`text` with its slips repaired by sound, and which characters were repaired (see the top)."""
        typed, runs = self.typed, self.runs
        sound = by_sound(text)
        out = list(text)
        repaired = [False] * len(text)
        n = len(text)
        start = 0
        while start < n - 1:
            step = 1
            for end in range(min(n, start + _LONGEST), start + 1, -1):
                run = text[start:end]
                if end - start == 2 and run in typed:
                    break  # the base holds this pair as typed: not a slip
                candidates = runs.get(sound[start:end])
                if candidates is None or run in candidates:
                    continue
                fix = max(candidates, key=lambda c: _same(c, run))
                if not _same(fix, run):
                    continue  # a different word that sounds the same (化肥, 款待), not a slip
                for k in range(start, end):
                    if out[k] != fix[k - start]:
                        out[k] = fix[k - start]
                        repaired[k] = True
                step = end - start
                break
            start += step
        return "".join(out), repaired

    def _scores(self, text: str) -> tuple[dict[int, float], dict[int, frozenset[object]]]:
        """Intent -> score in [0, 1] for every intent that covers some of the question, and intent ->
        what of the question it holds (the positions of characters it covers, the keywords found)."""
        fixed, repaired = self.repair(text)
        pairs, weight, vocab = self.pairs, self.weight, self.vocab
        empty: frozenset[int] = frozenset()
        # Content characters only, with their positions: 想换个套餐 holds the pair 换套 of 换套餐.
        mask = quiet(fixed)
        content_at = [k for k, q in enumerate(mask) if not q]
        core = "".join(fixed[k] for k in content_at)
        n = len(core)
        size = len(fixed)
        covering = []
        for m, k in enumerate(content_at):
            ids = (pairs.get(core[m - 1 : m + 1], empty) if m else empty) | (
                pairs.get(core[m : m + 2], empty) if m + 1 < n else empty
            )
            if k:
                ids = ids | pairs.get(fixed[k - 1 : k + 1], empty)
            if k + 1 < size:
                ids = ids | pairs.get(fixed[k : k + 2], empty)
            covering.append(ids)
        functions = len(fixed) - n
        total = _FUNCTION * functions
        got: dict[int, float] = defaultdict(float)
        holds: dict[int, set[object]] = defaultdict(set)
        lone: list[tuple[int, str, float]] = []  # characters no pair covers but the base knows
        m = 0
        while m < n:
            if not covering[m]:
                end = m
                while end < n and not covering[end]:
                    end += 1
                run = core[m:end]
                if all(ch in weight for ch in run):
                    # characters the base knows, in an order it does not: a word of one character
                    # (充, 查) weighs as it is; a longer run may be a word the base does not know
                    for j, ch in zip(range(m, end), run, strict=True):
                        w = weight[ch] if end - m == 1 else max(weight[ch], _KNOWN_RUN)
                        total += w
                        lone.append((j, ch, w * (_REPAIRED if repaired[content_at[j]] else 1.0)))
                elif content_at[m] and fixed[content_at[m] - 1] in ADJUNCT_MARKERS:
                    total += _ADJUNCT * (end - m)  # 用微信, 去日本: how or where, not what
                else:  # a word the base does not use (银行卡 in 银行卡丢了): weighs the most
                    total += _UNKNOWN_WEIGHT * (end - m)
                m = end
                continue
            ch = core[m]
            w = weight.get(ch, 1.0)
            total += w
            credit = w * (_REPAIRED if repaired[content_at[m]] else 1.0)
            for i in covering[m]:
                got[i] += credit
                holds[i].add(m)
            m += 1
        if not got or total <= 0:
            return {}, {}
        evidence = dict(got)
        for i in got:
            for j, ch, credit in lone:
                if ch in vocab[i]:
                    got[i] += _LONE * credit
                    holds[i].add(j)
        for i, (bonus, found) in self._keyword_evidence(fixed).items():
            if i in evidence:
                evidence[i] += bonus
                holds[i].update(found)
        base = _FUNCTION * functions
        held = self._held(set(core), got)
        out = {}
        for i, covered in got.items():
            cover = (covered + base) / total
            certain = min(1.0, evidence[i] / min(_EVIDENCE, max(self.enough[i], _EVIDENCE_MIN)))
            out[i] = _calibrate(cover**_COVER_POWER * certain * held[i] ** _HOLD_POWER)
        return out, {i: frozenset(h) for i, h in holds.items()}

    def _held(self, chars: set[str], intents: dict[int, float]) -> dict[int, float]:
        """Intent -> the largest share of one of its example questions that the question holds, by
        weight: 查询 holds little of 查询余额, 套餐怎么改 all of 我想改套餐."""
        out = {}
        for i in intents:
            best = 0.0 if self.held[i] else 1.0  # an intent of greetings alone (在吗) holds no content
            for example, whole in self.held[i]:
                if whole > 0:
                    best = max(best, sum(w for ch, w in example if ch in chars) / whole)
            out[i] = best
        return out

    def _keyword_evidence(self, text: str) -> dict[int, tuple[float, set[object]]]:
        """Intent -> evidence from its keywords in the question. A keyword inside a longer keyword of
        another intent does not count: in 流量包, 流量包 (buy a data pack) is meant, not 流量 (usage)."""
        hits: list[tuple[int, int, int, float]] = []
        keywords = self.keywords
        for first in set(text) & keywords.keys():
            for k, i, share in keywords[first]:
                at = text.find(k)
                if at >= 0:
                    hits.append((i, at, at + len(k), share))
        out: dict[int, tuple[float, set[object]]] = {}
        weight = self.weight
        for i, start, end, share in hits:
            if any(j != i and s0 <= start and end <= e0 and e0 - s0 > end - start for j, s0, e0, _ in hits):
                continue
            bonus, found = out.get(i, (0.0, set()))
            found.add(text[start:end])
            out[i] = (bonus + _KEYWORD * share * sum(weight.get(ch, 1.0) for ch in text[start:end]), found)
        return out


def _same(a: str, b: str) -> int:
    """Content characters two runs of one length share in place (function characters do not count:
    鸡粉怎么 is not 积分怎么 with a slip)."""
    return sum(x == y and x not in FUNCTION_CHARS for x, y in zip(a, b, strict=True))


def _calibrate(raw: float) -> float:
    """Map the raw score (coverage ** 0.75 times evidence times the example held ** 0.3) to a
    confidence: monotone, 0 -> 0, 1 -> 1, and _PIVOT -> 0.6, the threshold the format suggests.
    The constants of this module were chosen together on config/robot-eval.tsv and heldout.yaml
    (never on heldout_fresh.yaml or the unseen base in tests/robot/unseen): answers at 0.6-0.7 were
    then right 9 times in 10, at 0.7 and over 97 times in 100 (`hotline robot eval` prints this
    table for any knowledge base and set of questions)."""
    if raw <= _PIVOT:
        return 0.6 * raw / _PIVOT
    return min(1.0, 0.6 + 0.4 * (raw - _PIVOT) / (1.0 - _PIVOT))
