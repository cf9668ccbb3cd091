"""Generate the shipped logic corpus: a seeded grammar, deterministic, no duplicates.

    python -m sae_exp.corpora.make_logic_corpus [--seed 0] [--out path.jsonl]

Labels `conditional`, `quantifier`, `control`; each sentence carries a `subset` (which surface
cues it has), a `form` (the marker or construction), the `template` that made it and a fixed
`split`. Whole templates are held out for the test split, so test accuracy measures transfer to
unseen sentence frames, not recall of seen ones. See DATA_CARD.md for definitions and counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sae_exp.corpora import lexicon as L

log = logging.getLogger(__name__)

OUT = Path(__file__).with_name("logic_corpus.jsonl")
TARGETS = {  # (label, subset) -> number of sentences
    ("conditional", "canonical"): 640,
    ("conditional", "no_if"): 760,
    ("quantifier", "canonical"): 660,
    ("quantifier", "no_canonical"): 740,
    ("control", "plain"): 760,
    ("control", "lexical_trap"): 640,
}
MIN_WORDS, MAX_WORDS = 7, 22
HELD_OUT_TEMPLATE_SHARE = 0.2  # of the templates of forms with >= 2 templates
RANDOM_TEST_SHARE = 0.1  # of the sentences of the other templates

IF_RE = re.compile(r"\bif\b", re.I)
COND_RE = re.compile(r"\b(if|unless|provided|providing|as long as|so long as|assuming|"
                     r"suppose|supposing|otherwise|in the event)\b", re.I)
QUANT_RE = re.compile(r"\b(all|every|everyone|everybody|everything|each|some|someone|somebody|"
                      r"something|any|anyone|anybody|anything|no|none|nobody|nothing|most|"
                      r"many|few|several|both|much|either|neither)\b", re.I)
NUMBER_RE = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifty|"
                       r"hundred|hundreds|dozen|dozens|half|third|thirds|quarter|majority|"
                       r"minority|single|only|percent|zero|\d+)\b", re.I)


# ---------------------------------------------------------------- morphology and clauses
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


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _be(np: NP, tense: str) -> str:
    if tense == "pres":
        return "am" if np.person == 1 and np.num == "sg" else ("is" if np.plain else "are")
    return "was" if np.num == "sg" and np.person != 2 else "were"


def verb_group(np: NP, vp: VP, tense: str, neg: bool = False) -> str:
    """The predicate of `np` in `tense`: pres, past, fut, would, would_have, pluperf, prog_past,
    perf, subj (past subjunctive), base, or a modal (can, could, might, must, should, may)."""
    v, tail = vp.verb, vp.tail()
    if tense == "base":
        return _join("do not" if neg else "", v, tail)
    if v == "be" and tense == "prog_past":
        tense = "past"
    if v == "be" and tense in ("pres", "past", "subj"):
        form = "were" if tense == "subj" else _be(np, tense)
        return _join(form, "not" if neg else "", tail)
    if tense == "pres":
        if neg:
            return _join("does not" if np.plain else "do not", v, tail)
        return _join(s3(v) if np.plain else v, tail)
    if tense in ("past", "subj"):
        return _join("did not", v, tail) if neg else _join(past(v), tail)
    if tense == "prog_past":
        return _join(_be(np, "past"), "not" if neg else "", ing(v), tail)
    if tense == "perf":
        return _join("has" if np.plain else "have", "not" if neg else "", pp(v), tail)
    if tense == "pluperf":
        return _join("had", "not" if neg else "", pp(v), tail)
    if tense == "would_have":
        return _join("would", "not" if neg else "", "have", pp(v), tail)
    aux = {"fut": "will"}.get(tense, tense)  # will, would, modals
    if neg:
        aux = "cannot" if aux == "can" else aux + " not"
    return _join(aux, v, tail)


def clause(np: NP, vp: VP, tense: str, neg: bool = False) -> str:
    return _join(np.text, verb_group(np, vp, tense, neg))


# ---------------------------------------------------------------- the generator
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
        if pron and num is None and r < 0.2:
            word = self.pick(L.PRONOUNS)
            person = {"I": 1, "we": 1, "you": 2}.get(word, 3)
            return NP(word, "pl" if word in ("we", "they", "you") else "sg", person)
        if names and num != "pl" and r < 0.45:
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


# ---------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    id: str
    label: str
    subset: str
    form: str
    make: Callable[[Gen], str]


TEMPLATES: list[Template] = []


def template(label: str, subset: str, form: str, name: str):
    def deco(fn: Callable[[Gen], str]) -> Callable[[Gen], str]:
        TEMPLATES.append(Template(f"{label}.{subset}.{form}.{name}", label, subset, form, fn))
        return fn
    return deco


def _ev(g: Gen, t: L.Topic, tense: str, neg: bool = False, adj: float = 0.3) -> str:
    np, vp = g.event(t)
    return _join(clause(np, vp, tense, neg), g.adjunct(t, tense, adj))


# conditionals with "if" ---------------------------------------------------------------------
C, CAN = "conditional", "canonical"


@template(C, CAN, "if", "front")
def _if_front(g: Gen) -> str:
    t = g.topic()
    return f"{g.opener()}if {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense(), g.p(0.2))}."


@template(C, CAN, "if", "back")
def _if_back(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, g.consequent_tense(), g.p(0.2))} if {_ev(g, t, 'pres', g.p(0.2))}."


@template(C, CAN, "if", "then")
def _if_then(g: Gen) -> str:
    t = g.topic()
    return f"If {_ev(g, t, 'pres', g.p(0.2))}, then {_ev(g, t, g.pick(('fut', 'pres')))}."


@template(C, CAN, "if_counterfactual", "present")
def _if_cf(g: Gen) -> str:
    t = g.topic()
    cons = _ev(g, t, g.pick(("would", "would", "could", "might")), g.p(0.2))
    return f"{g.opener()}if {_ev(g, t, 'subj', g.p(0.2))}, {cons}."


@template(C, CAN, "if_counterfactual", "past")
def _if_cf_past(g: Gen) -> str:
    t = g.topic()
    return f"If {_ev(g, t, 'pluperf', g.p(0.2))}, {_ev(g, t, 'would_have', g.p(0.2))}."


@template(C, CAN, "if_counterfactual", "back")
def _if_cf_back(g: Gen) -> str:
    t = g.topic()
    if g.p(0.5):
        return f"{_ev(g, t, 'would')} if {_ev(g, t, 'subj')}."
    return f"{_ev(g, t, 'would_have')} if {_ev(g, t, 'pluperf')}."


@template(C, CAN, "if", "generic")
def _if_generic(g: Gen) -> str:
    t = g.topic()
    return f"If {_ev(g, t, 'pres')}, {_ev(g, t, 'pres', g.p(0.2))}."


@template(C, CAN, "if", "imperative")
def _if_imp(g: Gen) -> str:
    t = g.topic()
    please = "please " if g.p(0.3) else ""
    vp = g.person_vp(t)
    return f"If {_ev(g, t, 'pres')}, {please}{verb_group(NP('you', 'pl', 2), vp, 'base')}."


@template(C, CAN, "if", "question")
def _if_question(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    if g.p(0.5):
        return f"Will {np.text} {verb_group(np, vp, 'base')} if {_ev(g, t, 'pres')}?"
    return f"Would {np.text} {verb_group(np, vp, 'base')} if {_ev(g, t, 'subj')}?"


@template(C, CAN, "if", "what_question")
def _if_what(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    aux = g.pick(("will", "would", "should"))
    ante = _ev(g, t, "subj" if aux == "would" else "pres")
    return f"What {aux} {np.text} do if {ante}?"


@template(C, CAN, "only_if", "back")
def _only_if(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, g.consequent_tense())} only if {_ev(g, t, 'pres')}."


@template(C, CAN, "only_if", "front")
def _only_if_front(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"Only if {_ev(g, t, 'pres')} will {np.text} {verb_group(np, vp, 'base')}."


@template(C, CAN, "even_if", "front")
def _even_if(g: Gen) -> str:
    t = g.topic()
    return f"Even if {_ev(g, t, 'pres')}, {_ev(g, t, 'fut', g.p(0.3))}."


@template(C, CAN, "if", "reported")
def _if_reported(g: Gen) -> str:
    t = g.topic()
    speaker = g.person_np(t)
    verb = g.pick(("said", "warned", "explained", "told us", "promised"))
    return f"{speaker.text} {verb} that if {_ev(g, t, 'past')}, {_ev(g, t, 'would')}."


# conditionals without "if" ------------------------------------------------------------------
N = "no_if"


@template(C, N, "unless", "back")
def _unless_back(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, g.consequent_tense(), g.p(0.4))} unless {_ev(g, t, 'pres')}."


@template(C, N, "unless", "front")
def _unless_front(g: Gen) -> str:
    t = g.topic()
    return f"{g.opener()}unless {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense())}."


@template(C, N, "provided", "back")
def _provided_back(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("provided that", "provided", "providing that", "providing"))
    return f"{_ev(g, t, g.consequent_tense())}, {mk} {_ev(g, t, 'pres')}."


@template(C, N, "provided", "front")
def _provided_front(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("Provided that", "Provided", "Providing"))
    return f"{mk} {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense())}."


@template(C, N, "as_long_as", "back")
def _as_long_as_back(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("as long as", "as long as", "so long as"))
    return f"{_ev(g, t, g.pick(('fut', 'can', 'pres')))} {mk} {_ev(g, t, 'pres')}."


@template(C, N, "as_long_as", "front")
def _as_long_as_front(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("As long as", "As long as", "So long as"))
    return f"{mk} {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense())}."


@template(C, N, "on_condition", "back")
def _on_condition(g: Gen) -> str:
    t = g.topic()
    np, vp = g.person_np(t), g.person_vp(t)
    if g.p(0.5):
        mk = g.pick(("on condition that", "on the condition that"))
        return f"{clause(np, vp, 'fut')} {mk} {_ev(g, t, 'pres')}."
    return (f"{np.text} agreed to {verb_group(np, vp, 'base')} on condition that "
            f"{_ev(g, t, 'past')}.")


@template(C, N, "assuming", "front")
def _assuming(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("Assuming", "Assuming that"))
    return f"{mk} {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense())}."


@template(C, N, "assuming", "back")
def _assuming_back(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, 'fut')}, assuming {_ev(g, t, 'pres')}."


@template(C, N, "suppose", "question")
def _suppose_q(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    mk = g.pick(("Suppose", "Supposing", "Imagine", "Let's say"))
    return f"{mk} {_ev(g, t, 'subj')}: would {np.text} {verb_group(np, vp, 'base')}?"


@template(C, N, "suppose", "statement")
def _suppose_s(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("Suppose", "Supposing", "Imagine that", "Say"))
    return f"{mk} {_ev(g, t, 'subj')}; {_ev(g, t, g.pick(('would', 'could', 'might')))}."


@template(C, N, "in_the_event", "front")
def _in_event(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("In the event that", "In the event that", "In case"))
    return f"{mk} {_ev(g, t, 'pres')}, {_ev(g, t, 'fut')}."


@template(C, N, "in_case_of", "imperative")
def _in_case_of(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    return f"In case of {g.pick(L.CASE_OF)}, {verb_group(NP('you', 'pl', 2), vp, 'base')}."


@template(C, N, "inverted_had", "front")
def _had_front(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    neg = "not " if g.p(0.25) else ""
    return (f"{g.opener()}had {np.text} {neg}{pp(vp.verb)} {vp.tail()}, "
            f"{_ev(g, t, 'would_have', g.p(0.2))}.").replace("  ", " ")


@template(C, N, "inverted_had", "back")
def _had_back(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"{_ev(g, t, 'would_have')} had {np.text} {pp(vp.verb)} {vp.tail()}.".replace(
        "  ", " ")


@template(C, N, "inverted_had", "not_been_for")
def _had_not_been(g: Gen) -> str:
    t = g.topic()
    sg = g.thing(t)[0]
    return f"Had it not been for the {sg}, {_ev(g, t, 'would_have')}."


@template(C, N, "inverted_were", "front")
def _were_front(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"Were {np.text} to {verb_group(np, vp, 'base')}, {_ev(g, t, 'would')}."


@template(C, N, "inverted_should", "front")
def _should_front(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    if g.p(0.35):
        cons = "please " + verb_group(NP("you", "pl", 2), g.person_vp(t), "base")
    else:
        cons = _ev(g, t, "fut")
    return f"Should {np.text} {verb_group(np, vp, 'base')}, {cons}."


@template(C, N, "inverted_should", "back")
def _should_back(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"{_ev(g, t, 'fut')} should {np.text} {verb_group(np, vp, 'base')}."


@template(C, N, "imperative_and", "coord")
def _imp_and(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    np, cvp = g.event(t)
    tense = g.pick(("fut", "fut", "pres"))
    return f"{verb_group(NP('you', 'pl', 2), vp, 'base')} and {clause(np, cvp, tense)}."


@template(C, N, "imperative_or", "coord")
def _imp_or(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    mk = g.pick(("or", "or else"))
    return f"{verb_group(NP('you', 'pl', 2), vp, 'base')}, {mk} {_ev(g, t, 'fut')}."


@template(C, N, "otherwise", "modal")
def _otherwise(g: Gen) -> str:
    t = g.topic()
    np, vp = g.person_np(t), g.person_vp(t)
    mod = g.pick(("must", "should", "need to", "have to"))
    if mod in ("need to", "have to") and np.plain:
        mod = {"need to": "needs to", "have to": "has to"}[mod]
    return f"{np.text} {mod} {verb_group(np, vp, 'base')}; otherwise {_ev(g, t, 'fut')}."


@template(C, N, "without", "counterfactual")
def _without(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("Without", "But for"))
    obj = g.pick(L.WITHOUT_NP) if g.p(0.5) else "the " + g.thing(t)[0]
    tense = g.pick(("would", "would_have", "could"))
    return f"{mk} {obj}, {_ev(g, t, tense)}."


@template(C, N, "given", "counterfactual")
def _given(g: Gen) -> str:
    t = g.topic()
    return f"{g.pick(L.GIVEN_NP)}, {_ev(g, t, g.pick(('would', 'could', 'might')))}."


# quantifiers -----------------------------------------------------------------------------
Q = "quantifier"
QSETS = {"canonical": (L.CANONICAL_Q, L.CANONICAL_PRON),
         "no_canonical": (L.NO_CANONICAL_Q, L.NO_CANONICAL_PRON)}


def _qnp(g: Gen, subset: str, sg: str, pl: str, exist: bool = False) -> NP:
    dets = [q for q in QSETS[subset][0] if q[2] or not exist]
    pat, num, _ = g.pick(dets)
    return NP(pat.format(sg=sg, pl=pl), num)


def _qpeople(g: Gen, t: L.Topic, subset: str, exist: bool = False) -> NP:
    sg, pl = g.pick(t.people).split("/")
    return _qnp(g, subset, sg, pl, exist)


def _qobject(g: Gen, subset: str) -> Callable[[str, str], str]:
    return lambda sg, pl: _qnp(g, subset, sg, pl).text


def _quant_templates(subset: str) -> None:
    """The same frames for both subsets; only the quantifier words differ."""

    @template(Q, subset, "subject", "people")
    def _subj(g: Gen) -> str:
        t = g.topic()
        tense = g.pick(("past", "past", "pres", "fut", "perf", "would", "can", "must"))
        np = _qpeople(g, t, subset)
        return f"{g.opener()}{clause(np, g.person_vp(t), tense)} {g.adjunct(t, tense, 0.4)}."

    @template(Q, subset, "subject", "things")
    def _subj_things(g: Gen) -> str:
        t = g.topic()
        sg, pl, vp = g.thing(t)
        tense = g.pick(("past", "pres", "fut", "perf"))
        return f"{clause(_qnp(g, subset, sg, pl), vp, tense)} {g.adjunct(t, tense, 0.4)}."

    @template(Q, subset, "object", "people")
    def _obj(g: Gen) -> str:
        t = g.topic()
        np, vp = g.person_np(t), g.person_vp(t, with_object=True)
        tense = g.pick(("past", "past", "pres", "fut", "perf", "would"))
        qvp = VP(vp.verb, vp.with_object(_qobject(g, subset)))
        return f"{clause(np, qvp, tense)} {g.adjunct(t, tense, 0.3)}."

    @template(Q, subset, "subject", "because")
    def _because(g: Gen) -> str:
        t = g.topic()
        np = _qpeople(g, t, subset)
        return f"{clause(np, g.person_vp(t), 'past')} because {_ev(g, t, 'past')}."

    @template(Q, subset, "subject", "when")
    def _when(g: Gen) -> str:
        t = g.topic()
        np = _qpeople(g, t, subset)
        return f"When {_ev(g, t, 'past')}, {clause(np, g.person_vp(t), 'past')}."

    @template(Q, subset, "subject", "question")
    def _question(g: Gen) -> str:
        t = g.topic()
        np, vp = _qpeople(g, t, subset), g.person_vp(t)
        aux = g.pick(("Did", "Will", "Can", "Should"))
        return f"{aux} {np.text} {verb_group(np, vp, 'base')} {g.adjunct(t, '', 0.3)}?"

    @template(Q, subset, "existential", "there")
    def _there(g: Gen) -> str:
        t = g.topic()
        if g.p(0.6):
            sg, pl = g.pick(t.people).split("/")
        else:
            sg, pl, _ = g.thing(t)
        np = _qnp(g, subset, sg, pl, exist=True)
        be = g.pick(("is", "was", "will be")) if np.num == "sg" else g.pick(
            ("are", "were", "will be"))
        return f"There {be} {np.text} {g.pick(t.places)} {g.pick(t.times)}."

    @template(Q, subset, "embedded", "reported")
    def _reported(g: Gen) -> str:
        t = g.topic()
        speaker = g.person_np(t)
        np = _qpeople(g, t, subset)
        verb = g.pick(("said", "reported", "claimed", "thought", "hoped"))
        return f"{speaker.text} {verb} that {clause(np, g.person_vp(t), 'would')}."

    @template(Q, subset, "passive", "by")
    def _passive(g: Gen) -> str:
        t = g.topic()
        vps = [VP.parse(v) for v in t.vps if v.split(" ", 1)[1].startswith("the {")]
        vp = g.pick(vps)
        sg, pl, _ = vp.object_np()
        _, _, rest = vp.passive_parts()
        np = _qnp(g, subset, sg, pl)
        be = g.pick(("was", "will be")) if np.num == "sg" else g.pick(("were", "will be"))
        agent = g.person_np(t, pron=False)
        return _join(np.text, be, pp(vp.verb), rest, "by", agent.text) + "."

    @template(Q, subset, "pronoun", "people")
    def _pron(g: Gen) -> str:
        t = g.topic()
        word, num = g.pick(QSETS[subset][1])
        where = g.pick(t.places) if g.p(0.6) else ""
        np = NP(_join(word, where), num)
        tense = g.pick(("past", "past", "pres", "fut", "can", "would"))
        return f"{clause(np, g.person_vp(t), tense)}."

    @template(Q, subset, "subject", "although")
    def _although(g: Gen) -> str:
        t = g.topic()
        np = _qpeople(g, t, subset)
        return f"Although {_ev(g, t, 'past')}, {clause(np, g.person_vp(t), 'past')}."


_quant_templates("canonical")
_quant_templates("no_canonical")


# controls: plain ---------------------------------------------------------------------------
K, P, T = "control", "plain", "lexical_trap"


@template(K, P, "simple", "people")
def _c_simple(g: Gen) -> str:
    t = g.topic()
    tense = g.plain_tense()
    return f"{g.opener()}{_ev(g, t, tense, g.p(0.15), adj=0.6)}."


@template(K, P, "simple", "things")
def _c_things(g: Gen) -> str:
    t = g.topic()
    sg, pl, vp = g.thing(t)
    np = NP("the " + sg) if g.p(0.7) else NP("the " + pl, "pl")
    tense = g.pick(("past", "pres", "fut", "perf", "prog_past"))
    return f"{clause(np, vp, tense)} {g.adjunct(t, tense, 0.6)}."


def _two_clause(conj: str, first: bool = False):
    def make(g: Gen) -> str:
        t = g.topic()
        a, b = _ev(g, t, "past", g.p(0.15)), _ev(g, t, "past", g.p(0.15))
        return f"{conj.capitalize()} {a}, {b}." if first else f"{a} {conj} {b}."
    return make


for _conj, _first in (("because", False), ("when", True), ("after", True), ("before", False),
                      ("while", False), ("although", True), ("but", False), ("and", False),
                      ("so", False), ("since", True), ("until", False)):
    template(K, P, "subordinate", _conj)(_two_clause(_conj, _first))


@template(K, P, "relative", "who")
def _c_relative(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, pron=False)
    rel = verb_group(np, g.person_vp(t), g.pick(("pres", "past")))
    tense = g.pick(("past", "fut", "perf"))
    return f"{np.text}, who {rel}, {verb_group(np, g.person_vp(t), tense)}."


@template(K, P, "reported", "that")
def _c_reported(g: Gen) -> str:
    t = g.topic()
    speaker = g.person_np(t)
    verb = g.pick(("said", "told us", "mentioned", "announced", "explained", "claimed"))
    return f"{speaker.text} {verb} that {_ev(g, t, g.pick(('would', 'past', 'pluperf')))}."


@template(K, P, "question", "aux")
def _c_question(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    aux = g.pick(("Did", "Will", "Why did", "When will", "Where did", "How did", "Can"))
    return f"{aux} {np.text} {verb_group(np, vp, 'base')} {g.adjunct(t, '', 0.3)}?"


@template(K, P, "passive", "by")
def _c_passive(g: Gen) -> str:
    t = g.topic()
    vps = [VP.parse(v) for v in t.vps if v.split(" ", 1)[1].startswith("the {")]
    vp = g.pick(vps)
    subj, num, rest = vp.passive_parts()
    be = g.pick(("was", "will be", "has been")) if num == "sg" else g.pick(
        ("were", "will be", "have been"))
    return _join(subj, be, pp(vp.verb), rest, "by", g.person_np(t, pron=False).text) + "."


@template(K, P, "imperative", "please")
def _c_imperative(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    please = g.pick(("Please ", "", "Remember to ", "Don't forget to "))
    return f"{please}{verb_group(NP('you', 'pl', 2), vp, 'base')} {g.pick(t.times)}."


@template(K, P, "progressive", "when")
def _c_progressive(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, 'prog_past', adj=0)} when {_ev(g, t, 'past')}."


@template(K, P, "purpose", "so_that")
def _c_purpose(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, 'past')} so that {_ev(g, t, 'could')}."


# controls: lexical traps ---------------------------------------------------------------------
@template(K, T, "embedded_if", "asked")
def _t_asked(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("asked", "wondered", "wanted to know", "could not tell", "checked",
                   "was not sure", "tried to find out", "doubted"))
    if verb == "was not sure" and not np.plain and np.text not in ("I", "she", "he"):
        verb = "were not sure"
    return f"{np.text} {verb} if {_ev(g, t, g.pick(('past', 'would', 'pluperf')))}."


@template(K, T, "embedded_if", "wonder")
def _t_wonder(g: Gen) -> str:
    t = g.topic()
    head = g.pick(("I wonder if", "Do you know if", "We need to check if",
                   "Can you find out if", "Ask the manager if", "Let me see if"))
    end = "?" if head.startswith(("Do", "Can")) else "."
    return f"{head} {_ev(g, t, g.pick(('pres', 'fut')))}{end}"


@template(K, T, "if_title", "mention")
def _t_if_title(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("read", "quoted", "recited", "talked about", "recommended", "reviewed"))
    return f"{np.text} {verb} {g.pick(L.IF_TITLES)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "quant_title", "mention")
def _t_quant_title(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("watched", "quoted", "loved", "recommended", "reviewed", "talked about"))
    return f"{np.text} {verb} {g.pick(L.QUANT_TITLES)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "quant_name", "place")
def _t_place(g: Gen) -> str:
    t = g.topic()
    np, vp = g.person_np(t), g.person_vp(t)
    place = g.pick(L.QUANT_PLACES)
    if g.p(0.4):
        verb = g.pick(("moved to", "grew up in", "drove to", "lives near" if np.plain else
                       "live near"))
        return f"{np.text} {verb} {place}."
    return f"{clause(np, vp, g.pick(('past', 'fut')))} in {place}."


@template(K, T, "quant_name", "org")
def _t_org(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    org = g.pick(L.QUANT_ORGS)
    verb = g.pick(("bought tickets for", "wrote to", "visited", "works for", "talked about",
                   "supports"))
    if verb in ("works for", "supports") and not np.plain:
        verb = verb.replace("works", "work").replace("supports", "support")
    return f"{np.text} {verb} {org} {g.adjunct(t, 'past', 0.4)}."


@template(K, T, "quant_name", "person")
def _t_person(g: Gen) -> str:
    t = g.topic()
    np = NP(g.pick(L.QUANT_NAMES))
    tense = g.plain_tense()
    return f"{clause(np, g.person_vp(t), tense)} {g.adjunct(t, tense, 0.5)}."


@template(K, T, "quant_morpheme", "adverb")
def _t_morpheme(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    form = g.pick(("somehow", "almost", "anyway", "nonetheless", "somewhat"))
    if form in ("somehow", "almost"):
        return f"{np.text} {form} {verb_group(np, vp, 'past')} {g.adjunct(t, 'past', 0.4)}."
    if form == "somewhat":
        return f"{clause(np, vp, 'past')}, somewhat {g.pick(('reluctantly', 'late', 'slowly'))}."
    return f"{form.capitalize()}, {clause(np, vp, g.pick(('past', 'fut')))}."


@template(K, T, "quant_morpheme", "noun")
def _t_morpheme_noun(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("forgot", "packed", "brought", "talked about", "changed"))
    return f"{np.text} {verb} the {g.pick(L.TRAP_ADJ_NOUN)} {g.adjunct(t, 'past', 0.5)}."


@template(K, T, "no_interjection", "answer")
def _t_no(g: Gen) -> str:
    t = g.topic()
    head = g.pick(("No, ", "Oh no, ", "No, no, ", "No thanks, "))
    return f"{head}{_ev(g, t, g.pick(('past', 'fut', 'pres')))}."


@template(K, T, "numeral_nonquant", "clock")
def _t_clock(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, g.pick(('past', 'fut')), adj=0)} {g.pick(L.CLOCK)}."


@template(K, T, "quant_homonym", "noun")
def _t_homonym(g: Gen) -> str:
    t = g.topic()
    h = g.pick(L.QUANT_HOMONYM)
    vp = g.person_vp(t)
    if h in ("half-time", "the first half"):
        return f"{clause(g.person_np(t), vp, 'past')} during {h}."
    if h in ("the one-way street", "the single ticket"):
        verb = g.pick(("forgot", "mentioned", "found"))
        return f"{g.person_np(t).text} {verb} {h} {g.pick(t.times)}."
    np = NP(h)
    return f"{clause(np, vp, g.pick(('past', 'fut', 'perf')))} {g.adjunct(t, 'past', 0.4)}."


@template(K, T, "as_long_as_comparative", "length")
def _t_as_long(g: Gen) -> str:
    a, b = g.rng.sample(L.LONG_THINGS, 2)
    verb = g.pick(("was", "is", "will be", "seemed"))
    return f"{a.capitalize()} {verb} as long as {b} {g.pick(('', 'this time', 'in the end'))}."


@template(K, T, "as_long_as_comparative", "stayed")
def _t_stayed(g: Gen) -> str:
    t = g.topic()
    a, b = g.person_np(t), g.person_np(t, pron=False)
    verb = g.pick(("stayed", "waited", "worked"))
    return f"{a.text} {verb} as long as {b.text} did {g.pick(t.places)}."


@template(K, T, "provided_verb", "active")
def _t_provided(g: Gen) -> str:
    t = g.topic()
    vps = [VP.parse(v) for v in t.vps if VP.parse(v).has_object()]
    vp = g.pick(vps)
    sg, pl, num = vp.object_np()
    np = g.person_np(t, pron=False)
    return f"{np.text} provided the {pl} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "assuming_verb", "role")
def _t_assuming(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, pron=False)
    be = "is" if np.plain else "are"
    return f"{np.text} {be} assuming the role of {g.pick(L.ROLES)} {g.pick(L.FUTURE_TIMES)}."


@template(K, T, "condition_noun", "state")
def _t_condition(g: Gen) -> str:
    t = g.topic()
    if g.p(0.5):
        sg = g.thing(t)[0]
        verb = g.pick(("is", "was", "remains"))
        return f"The {sg} {verb} in {g.pick(L.CONDITION_STATES)} condition {g.pick(t.places)}."
    np = g.person_np(t, pron=False)
    has = "has" if np.plain else "have"
    return f"{np.text} {g.pick((has, 'had'))} {g.pick(L.MEDICAL)}."


@template(K, T, "case_noun", "object")
def _t_case(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("packed", "lost", "opened", "forgot", "found"))
    return f"{np.text} {verb} {g.pick(L.CASES)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "suppose_epistemic", "suppose")
def _t_suppose(g: Gen) -> str:
    t = g.topic()
    if g.p(0.5):
        return f"I suppose {_ev(g, t, g.pick(('pres', 'past', 'perf')))}."
    np, vp = g.person_np(t), g.person_vp(t)
    be = verb_group(np, VP("be", ""), "pres") if g.p(0.5) else _be(np, "past")
    return f"{np.text} {be} supposed to {verb_group(np, vp, 'base')} {g.pick(t.times)}."


@template(K, T, "should_advice", "statement")
def _t_should(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, 'should', g.p(0.2), adj=0.5)}."


@template(K, T, "should_advice", "question")
def _t_should_q(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"Should {np.text} {verb_group(np, vp, 'base')} {g.adjunct(t, '', 0.4)}?"


@template(K, T, "had_main", "statement")
def _t_had(g: Gen) -> str:
    t = g.topic()
    return f"{g.person_np(t).text} had {g.pick(L.HAD_NP)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "had_main", "question")
def _t_had_q(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"Had {np.text} {pp(vp.verb)} {vp.tail()} {g.pick(('before', 'already', 'yet'))}?"


@template(K, T, "were_question", "question")
def _t_were(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, num="pl", pron=False, names=False)
    return f"Were {np.text} {g.pick(t.places)} {g.pick(L.PAST_TIMES)}?"


@template(K, T, "then_sequence", "past")
def _t_then(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    a, b = g.person_vp(t), g.person_vp(t)
    return f"{clause(np, a, 'past')} and then {verb_group(np, b, 'past')}."


@template(K, T, "imperative_coordination", "and")
def _t_imp_and(g: Gen) -> str:
    t = g.topic()
    you = NP("you", "pl", 2)
    a, b = g.person_vp(t), g.person_vp(t)
    mk = g.pick(("and", "and then", ", then"))
    return f"{verb_group(you, a, 'base')} {mk} {verb_group(you, b, 'base')}.".replace(" ,", ",")


@template(K, T, "otherwise_adj", "quiet")
def _t_otherwise(g: Gen) -> str:
    t = g.topic()
    day = g.pick(("quiet", "ordinary", "calm", "dull", "pleasant"))
    when = g.pick(("day", "afternoon", "morning", "evening"))
    return f"{_ev(g, t, 'past', adj=0)} on an otherwise {day} {when}."


@template(K, T, "without_plain", "left")
def _t_without(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("left", "set off", "arrived", "came home", "went out"))
    return f"{np.text} {verb} without {g.pick(L.WITHOUT_PLAIN)} {g.adjunct(t, 'past', 0.5)}."


@template(K, T, "given_passive", "given")
def _t_given(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, pron=False)
    be = "was" if np.num == "sg" else "were"
    return f"{np.text} {be} given {g.pick(L.GIVEN_THINGS)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "habitual_would", "child")
def _t_habitual(g: Gen) -> str:
    t = g.topic()
    word = g.pick(("I", "she", "he", "we", "they"))
    was = "were" if word in ("we", "they") else "was"
    who = "children" if word in ("we", "they") else "a child"
    vp = g.person_vp(t)
    np = NP(word, "pl" if word in ("we", "they") else "sg")
    return f"When {word} {was} {who}, {word} would {verb_group(np, vp, 'base')}."


# ---------------------------------------------------------------- assembly
def tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([.,;:?])", r"\1", text)
    return text[0].upper() + text[1:]


def check_clean(text: str, label: str, subset: str) -> bool:
    """Labels stay clean: no stray markers of another label in generated sentences."""
    if label == "conditional":
        numbers = NUMBER_RE.findall(text)
        return not QUANT_RE.search(text) and set(numbers) <= {"only", "Only"} and (
            subset == "canonical" or not IF_RE.search(text))
    if label == "quantifier":
        if COND_RE.search(text):
            return False
        return subset == "canonical" or not QUANT_RE.search(text)
    if subset == "plain":
        return not (COND_RE.search(text) or QUANT_RE.search(text) or NUMBER_RE.search(text))
    return True


def held_out_templates(rng: random.Random) -> set[str]:
    """Per (label, subset), ~20% of the templates of forms that have >= 2 templates."""
    held: set[str] = set()
    for key in TARGETS:
        temps = [t for t in TEMPLATES if (t.label, t.subset) == key]
        per_form = Counter(t.form for t in temps)
        eligible = sorted((t for t in temps if per_form[t.form] >= 2), key=lambda t: t.id)
        n = max(1, round(HELD_OUT_TEMPLATE_SHARE * len(temps)))
        rng.shuffle(eligible)
        chosen: list[Template] = []
        for tmpl in eligible:  # never hold out every template of one form
            if sum(c.form == tmpl.form for c in chosen) + 1 < per_form[tmpl.form]:
                chosen.append(tmpl)
            if len(chosen) == n:
                break
        held.update(t.id for t in chosen)
    return held


def generate(seed: int = 0) -> list[dict]:
    """All records, in a fixed order. Raises RuntimeError when a subset cannot be filled."""
    rng = random.Random(seed)
    g = Gen(rng)
    held = held_out_templates(random.Random(seed + 1))
    seen: set[str] = set()
    records: list[dict] = []
    for (label, subset), target in TARGETS.items():
        temps = [t for t in TEMPLATES if (t.label, t.subset) == (label, subset)]
        made, tries = 0, 0
        while made < target:
            tries += 1
            if tries > 200 * target:
                raise RuntimeError(f"could not fill {label}/{subset}: {made} of {target}")
            tmpl = rng.choice(temps)
            text = tidy(tmpl.make(g))
            n_words = len(text.split())
            key = re.sub(r"\W+", " ", text.lower()).strip()
            if not MIN_WORDS <= n_words <= MAX_WORDS or key in seen:
                continue
            if not check_clean(text, label, subset):
                raise RuntimeError(f"template {tmpl.id} made an unclean sentence: {text}")
            seen.add(key)
            test = tmpl.id in held or rng.random() < RANDOM_TEST_SHARE
            records.append({"text": text, "label": label, "subset": subset, "form": tmpl.form,
                            "template": tmpl.id, "split": "test" if test else "train"})
            made += 1
    for i, r in enumerate(records):
        r["id"] = i
    return records


def write(records: list[dict], out: Path) -> None:
    keys = ("id", "text", "label", "subset", "form", "template", "split")
    with open(out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records = generate(args.seed)
    write(records, args.out)
    counts = Counter((r["label"], r["subset"], r["split"]) for r in records)
    for key in sorted(counts):
        log.info("%-12s %-14s %-5s %5d", *key, counts[key])
    log.info("wrote %d sentences to %s", len(records), args.out)


if __name__ == "__main__":
    main()
