"""The logic-corpus grammar: English verb morphology, noun and verb phrases, random choices.

Small on purpose: agreement, tense and contractions are enough to make varied, grammatical
sentences from the word lists in `lexicon`; templates (in `templates`) decide the logic.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from sae_exp.corpora import lexicon as L


def s3(verb: str) -> str:
    """Third person singular present."""
    if verb in ("be", "have", "do", "go"):
        return {"be": "is", "have": "has", "do": "does", "go": "goes"}[verb]
    if re.search(r"(s|sh|ch|x|z|[^i]o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def _double(verb: str) -> str:
    return verb + verb[-1] if verb in L.DOUBLE else verb


def past(verb: str) -> str:
    if verb in L.IRREGULAR:
        return L.IRREGULAR[verb][0]
    if verb.endswith("e"):
        return verb + "d"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ied"
    return _double(verb) + "ed"


def pp(verb: str) -> str:
    return L.IRREGULAR[verb][1] if verb in L.IRREGULAR else past(verb)


def ing(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and verb != "be":
        return verb[:-1] + "ing"
    return _double(verb) + "ing"


@dataclass(frozen=True)
class NP:
    text: str
    num: str = "sg"  # sg | pl
    person: int = 3

    @property
    def plain(self) -> bool:
        """True for 3rd-person singular agreement."""
        return self.num == "sg" and self.person == 3


_OBJ = re.compile(r"the \{([^|}]+)\|([^|}]+)(?:\|(s))?\}")


@dataclass(frozen=True)
class VP:
    """A verb phrase "verb rest"; `rest` may hold one quantifiable object `the {sg|pl[|s]}`."""

    verb: str
    rest: str

    @staticmethod
    def parse(text: str) -> VP:
        verb, _, rest = text.partition(" ")
        return VP(verb, rest)

    def tail(self) -> str:
        """The rest with its object read as a plain definite NP."""
        return _OBJ.sub(lambda m: "the " + (m.group(1) if m.group(3) else m.group(2)), self.rest)

    def has_object(self) -> bool:
        return bool(_OBJ.search(self.rest))

    def with_object(self, quantified: Callable[[str, str], str]) -> str:
        return _OBJ.sub(lambda m: quantified(m.group(1), m.group(2)), self.rest)

    def object_np(self) -> tuple[str, str, str]:
        """(sg, pl, number of the plain reading) of the object."""
        m = _OBJ.search(self.rest)
        assert m is not None
        return m.group(1), m.group(2), "sg" if m.group(3) else "pl"

    def passive_parts(self) -> tuple[str, str, str]:
        """(subject text, number, remainder) for "the obj was VERB-ed <remainder> by X"."""
        m = _OBJ.search(self.rest)
        assert m is not None and self.rest.startswith("the {")
        sg, pl, num = self.object_np()
        return ("the " + (sg if num == "sg" else pl), num, self.rest[m.end():].strip())


def join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def be_form(np: NP, tense: str) -> str:
    if tense == "pres":
        return "am" if np.person == 1 and np.num == "sg" else ("is" if np.plain else "are")
    return "was" if np.num == "sg" and np.person != 2 else "were"


def verb_group(np: NP, vp: VP, tense: str, neg: bool = False) -> str:
    """The predicate of `np` in `tense`: pres, past, fut, would, would_have, pluperf, prog_past,
    perf, subj (past subjunctive), base, or a modal (can, could, might, must, should, may)."""
    v, tail = vp.verb, vp.tail()
    if tense == "base":
        return join("do not" if neg else "", v, tail)
    if tense == "prog_past" and (v == "be" or v in L.STATIVE):
        tense = "past"
    if v == "be" and tense in ("pres", "past", "subj"):
        form = "were" if tense == "subj" else be_form(np, tense)
        return join(form, "not" if neg else "", tail)
    if tense == "pres":
        if neg:
            return join("does not" if np.plain else "do not", v, tail)
        return join(s3(v) if np.plain else v, tail)
    if tense in ("past", "subj"):
        return join("did not", v, tail) if neg else join(past(v), tail)
    if tense == "prog_past":
        return join(be_form(np, "past"), "not" if neg else "", ing(v), tail)
    if tense == "perf":
        return join("has" if np.plain else "have", "not" if neg else "", pp(v), tail)
    if tense == "pluperf":
        return join("had", "not" if neg else "", pp(v), tail)
    if tense == "would_have":
        return join("would", "not" if neg else "", "have", pp(v), tail)
    aux = {"fut": "will"}.get(tense, tense)  # will, would, modals
    if neg:
        aux = "cannot" if aux == "can" else aux + " not"
    return join(aux, v, tail)


def clause(np: NP, vp: VP, tense: str, neg: bool = False) -> str:
    return join(np.text, verb_group(np, vp, tense, neg))


class Gen:
    """Random choices over the lexicon; one instance per corpus, seeded."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, seq):
        return self.rng.choice(seq)

    def p(self, prob: float) -> bool:
        return self.rng.random() < prob

    def topic(self) -> L.Topic:
        return self.pick(L.TOPICS)

    def person_np(self, t: L.Topic, pron: bool = True, names: bool = True,
                  num: str | None = None) -> NP:
        r = self.rng.random()
        if pron and num is None and r < 0.3:
            word = self.pick(L.PRONOUNS)
            person = {"I": 1, "we": 1, "you": 2}.get(word, 3)
            return NP(word, "pl" if word in ("we", "they", "you") else "sg", person)
        if names and num != "pl" and r < 0.5:
            return NP(self.pick(L.NAMES))
        sg, pl = self.pick(t.people).split("/")
        num = num or ("pl" if self.p(0.35) else "sg")
        det = self.pick(L.SG_DETS if num == "sg" else L.PL_DETS)
        adj = self.pick(L.PERSON_ADJ) + " " if self.p(0.2) else ""
        return NP(f"{det} {adj}{sg if num == 'sg' else pl}", num)

    def person_vp(self, t: L.Topic, with_object: bool = False) -> VP:
        vps = [VP.parse(v) for v in t.vps]
        if with_object:
            vps = [v for v in vps if v.has_object()]
        return self.pick(vps)

    def thing(self, t: L.Topic) -> tuple[str, str, VP]:
        sg, pl, vps = self.pick(t.things)
        return sg, pl, VP.parse(self.pick(vps))

    def event(self, t: L.Topic, pron: bool = True) -> tuple[NP, VP]:
        """A subject and predicate: a person doing something, or a thing happening."""
        if self.p(0.3):
            sg, pl, vp = self.thing(t)
            num = "pl" if self.p(0.3) else "sg"
            det = self.pick(("the", "the", "our", "that", "this") if num == "sg"
                            else ("the", "the", "our", "those"))
            return NP(f"{det} {sg if num == 'sg' else pl}", num), vp
        return self.person_np(t, pron=pron), self.person_vp(t)

    def adjunct(self, t: L.Topic, tense: str = "", prob: float = 0.35) -> str:
        if not self.p(prob):
            return ""
        r = self.rng.random()
        if r < 0.5:
            return self.pick(t.places)
        if r < 0.75:
            return self.pick(t.times)
        if tense in ("past", "prog_past", "pluperf"):
            return self.pick(L.PAST_TIMES)
        if tense in ("fut", "would", "can", "might", "should", "must", "may"):
            return self.pick(L.FUTURE_TIMES)
        return self.pick(L.NEUTRAL_TIMES)

    def opener(self, prob: float = 0.1) -> str:
        return self.pick(L.OPENERS) if self.p(prob) else ""

    def consequent_tense(self) -> str:
        return self.pick(("fut", "fut", "fut", "can", "might", "should", "must", "may"))

    def plain_tense(self) -> str:
        return self.pick(("past", "past", "past", "pres", "fut", "prog_past", "perf", "would",
                          "can", "should", "must", "might"))


CONTRACTIONS = (
    (re.compile(r"\bwill not\b"), "won't"),
    (re.compile(r"\bcannot\b"), "can't"),
    (re.compile(r"\b(do|does|did|would|could|should|is|are|was|were|has|have|had) not\b"),
     r"\1n't"),
    (re.compile(r"\b(I|you|we|they|she|he|it|You|We|They|She|He|It) will\b"), r"\1'll"),
    (re.compile(r"\b(I|you|we|they|she|he|You|We|They|She|He) would\b"), r"\1'd"),
    (re.compile(r"\b(I) am\b"), r"\1'm"),
    (re.compile(r"\b(you|we|they|You|We|They) are\b"), r"\1're"),
    (re.compile(r"\b(she|he|it|She|He|It) is\b"), r"\1's"),
)


def contract(text: str) -> str:
    """Spoken-style contractions (won't, didn't, you'll ...), as hand-written text has them."""
    for pattern, repl in CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text


def tidy(text: str) -> str:
    """One space between words, none before punctuation, a capital first letter."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([.,;:?])", r"\1", text)
    return text[0].upper() + text[1:]
