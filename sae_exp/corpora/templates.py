"""Sentence templates of the logic corpus, one function per sentence frame.

Each `@template(label, subset, form, name)` registers a frame in TEMPLATES. Labels and subsets:
- conditional/canonical: conditionals with "if" (predictive, counterfactual, generic, questions,
  only if, even if, reported); conditional/no_if: unless, provided, as long as, on condition
  that, assuming, suppose, in the event that, in case of, inverted had/were/should, imperative +
  and/or, otherwise, without / but for, given.
- quantifier/canonical and quantifier/no_canonical: the same frames, with quantifier words
  (every, most, none of ...) or paraphrases without them (the majority of, not a single ...).
- control/plain: no markers; control/lexical_trap: the surface cues of the other labels used
  without their logic (asked if, as long as the bridge, Somerset, everyday, Should we ...?).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sae_exp.corpora import lexicon as L
from sae_exp.corpora.grammar import NP, VP, Gen, be_form, clause, join, pp, verb_group


@dataclass(frozen=True)
class Template:
    id: str
    label: str
    subset: str
    form: str
    make: Callable[[Gen], str]


TEMPLATES: list[Template] = []


def template(label: str, subset: str, form: str, name: str, tail: float = 0.0):
    """Register a frame; `tail` = chance of a trailing "because/while ... <clause>" on
    statements, which lets short frames reach the same lengths as two-clause conditionals."""
    def deco(fn: Callable[[Gen], str]) -> Callable[[Gen], str]:
        make = _with_tail(fn, tail) if tail else fn
        TEMPLATES.append(Template(f"{label}.{subset}.{form}.{name}", label, subset, form, make))
        return fn
    return deco


TAIL_CONJ = ("because", "while", "after", "before", "when", "so", "but")


def _with_tail(fn: Callable[[Gen], str], prob: float) -> Callable[[Gen], str]:
    def make(g: Gen) -> str:
        text = fn(g).rstrip()
        if not text.endswith(".") or not g.p(prob):
            return text
        conj = g.pick(TAIL_CONJ)
        sep = ", " if conj in ("so", "but") else " "
        return f"{text[:-1].rstrip()}{sep}{conj} {_ev(g, g.topic(), 'past', adj=0.2)}."
    return make


def _ev(g: Gen, t: L.Topic, tense: str, neg: bool = False, adj: float = 0.3) -> str:
    np, vp = g.event(t)
    return join(clause(np, vp, tense, neg), g.adjunct(t, tense, adj))


# conditionals with "if" ---------------------------------------------------------------------
C, CAN = "conditional", "canonical"


@template(C, CAN, "if", "front", tail=0.2)
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


@template(C, CAN, "if", "generic", tail=0.2)
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


@template(C, CAN, "even_if", "front", tail=0.2)
def _even_if(g: Gen) -> str:
    t = g.topic()
    return f"Even if {_ev(g, t, 'pres')}, {_ev(g, t, 'fut', g.p(0.3))}."


@template(C, CAN, "if", "reported")
def _if_reported(g: Gen) -> str:
    t = g.topic()
    speaker = g.person_np(t)
    verb = g.pick(("said", "warned", "explained", "told us", "promised"))
    return f"{speaker.text} {verb} that if {_ev(g, t, 'past')}, {_ev(g, t, 'would')}."


@template(C, CAN, "if_counterfactual", "were_you", tail=0.2)
def _if_were_you(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    who = g.pick(L.IF_I_WERE)
    neg = g.p(0.4)
    me = NP("I", "sg", 1)
    if g.p(0.5):
        return f"If I were {who}, {clause(me, vp, 'would', neg)}."
    return f"{clause(me, vp, 'would', neg)} if I were {who}."


@template(C, CAN, "if", "biscuit")
def _if_biscuit(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t, with_object=True)
    sg, pl, num = vp.object_np()
    head = g.pick(L.BISCUIT)
    if head == "In case you need":  # keeps "if" in this subset: use the if-variants
        head = "If you need"
    obj = sg if num == "sg" else pl
    be = "is" if num == "sg" else "are"
    pron = "it" if num == "sg" else "they"
    return f"{head} the {obj}, {pron} {be} {g.pick(t.places)}."


# conditionals without "if" ------------------------------------------------------------------
N = "no_if"


@template(C, N, "unless", "back")
def _unless_back(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, g.consequent_tense(), g.p(0.4))} unless {_ev(g, t, 'pres')}."


@template(C, N, "unless", "front", tail=0.2)
def _unless_front(g: Gen) -> str:
    t = g.topic()
    return f"{g.opener()}unless {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense())}."


@template(C, N, "provided", "back")
def _provided_back(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("provided that", "provided", "providing that", "providing"))
    return f"{_ev(g, t, g.consequent_tense())}, {mk} {_ev(g, t, 'pres')}."


@template(C, N, "provided", "front", tail=0.2)
def _provided_front(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("Provided that", "Provided", "Providing"))
    return f"{mk} {_ev(g, t, 'pres')}, {_ev(g, t, g.consequent_tense())}."


@template(C, N, "as_long_as", "back")
def _as_long_as_back(g: Gen) -> str:
    t = g.topic()
    mk = g.pick(("as long as", "as long as", "so long as"))
    return f"{_ev(g, t, g.pick(('fut', 'can', 'pres')))} {mk} {_ev(g, t, 'pres')}."


@template(C, N, "as_long_as", "front", tail=0.2)
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


@template(C, N, "assuming", "front", tail=0.2)
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


@template(C, N, "in_case_of", "imperative", tail=0.2)
def _in_case_of(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    return f"In case of {g.pick(L.CASE_OF)}, {verb_group(NP('you', 'pl', 2), vp, 'base')}."


@template(C, N, "inverted_had", "front")
def _had_front(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    neg = "not " if g.p(0.25) else ""
    if g.p(0.25):
        np = g.person_np(t)
        vp = VP("know", "about the " + g.thing(t)[0])
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
    if g.p(0.5):
        np, cvp = NP("you", "pl", 2), g.person_vp(t)
    tense = g.pick(("fut", "fut", "pres", "can"))
    return f"{verb_group(NP('you', 'pl', 2), vp, 'base')} and {clause(np, cvp, tense)}."


@template(C, N, "imperative_or", "coord")
def _imp_or(g: Gen) -> str:
    t = g.topic()
    vp = g.person_vp(t)
    mk = g.pick(("or", "or else"))
    you = NP("you", "pl", 2)
    cons = clause(you, g.person_vp(t), "fut") if g.p(0.5) else _ev(g, t, "fut")
    return f"{verb_group(you, vp, 'base')}, {mk} {cons}."


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


@template(C, N, "given", "counterfactual", tail=0.2)
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

    @template(Q, subset, "subject", "people", tail=0.3)
    def _subj(g: Gen) -> str:
        t = g.topic()
        tense = g.pick(("past", "past", "pres", "fut", "perf", "would", "can", "must"))
        np = _qpeople(g, t, subset)
        return f"{g.opener()}{clause(np, g.person_vp(t), tense)} {g.adjunct(t, tense, 0.4)}."

    @template(Q, subset, "subject", "things", tail=0.3)
    def _subj_things(g: Gen) -> str:
        t = g.topic()
        sg, pl, vp = g.thing(t)
        tense = g.pick(("past", "pres", "fut", "perf"))
        return f"{clause(_qnp(g, subset, sg, pl), vp, tense)} {g.adjunct(t, tense, 0.4)}."

    @template(Q, subset, "object", "people", tail=0.3)
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

    @template(Q, subset, "existential", "there", tail=0.3)
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

    @template(Q, subset, "passive", "by", tail=0.3)
    def _passive(g: Gen) -> str:
        t = g.topic()
        vps = [VP.parse(v) for v in t.vps if v.split(" ", 1)[1].startswith("the {")]
        vp = g.pick(vps)
        sg, pl, _ = vp.object_np()
        _, _, rest = vp.passive_parts()
        np = _qnp(g, subset, sg, pl)
        be = g.pick(("was", "will be")) if np.num == "sg" else g.pick(("were", "will be"))
        agent = g.person_np(t, pron=False)
        return join(np.text, be, pp(vp.verb), rest, "by", agent.text) + "."

    @template(Q, subset, "pronoun", "people", tail=0.3)
    def _pron(g: Gen) -> str:
        t = g.topic()
        word, num = g.pick(QSETS[subset][1])
        where = g.pick(t.places) if g.p(0.6) else ""
        np = NP(join(word, where), num)
        tense = g.pick(("past", "past", "pres", "fut", "can", "would"))
        return f"{clause(np, g.person_vp(t), tense)}."

    @template(Q, subset, "subject", "although")
    def _although(g: Gen) -> str:
        t = g.topic()
        np = _qpeople(g, t, subset)
        return f"Although {_ev(g, t, 'past')}, {clause(np, g.person_vp(t), 'past')}."


@template(Q, "canonical", "any", "free_choice", tail=0.3)
def _any(g: Gen) -> str:
    t = g.topic()
    sg, pl = g.pick(t.people).split("/")
    vp = g.person_vp(t)
    r = g.rng.random()
    if r < 0.35:
        who = g.pick((f"any {sg}", "anyone", "anybody", f"any {sg} {g.pick(t.places)}"))
        mod = g.pick(("can", "could", "may", "is allowed to"))
        return f"{who} {mod} {verb_group(NP(who), vp, 'base')}."
    if r < 0.7:
        return f"Did any of the {pl} {verb_group(NP(pl, 'pl'), vp, 'base')}?"
    np = g.person_np(t)
    ovp = g.person_vp(t, with_object=True)
    rest = ovp.with_object(lambda s, p: g.pick((f"any {p}", f"any of the {p}")))
    return f"{np.text} did not {ovp.verb} {rest} {g.adjunct(t, 'past', 0.4)}."


_quant_templates("canonical")
_quant_templates("no_canonical")


# controls: plain ---------------------------------------------------------------------------
K, P, T = "control", "plain", "lexical_trap"


@template(K, P, "simple", "people", tail=0.25)
def _c_simple(g: Gen) -> str:
    t = g.topic()
    tense = g.plain_tense()
    return f"{g.opener()}{_ev(g, t, tense, g.p(0.15), adj=0.6)}."


@template(K, P, "simple", "things", tail=0.25)
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
                      ("so", False), ("since", True)):
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


@template(K, P, "passive", "by", tail=0.25)
def _c_passive(g: Gen) -> str:
    t = g.topic()
    vps = [VP.parse(v) for v in t.vps if v.split(" ", 1)[1].startswith("the {")]
    vp = g.pick(vps)
    subj, num, rest = vp.passive_parts()
    be = g.pick(("was", "will be", "has been")) if num == "sg" else g.pick(
        ("were", "will be", "have been"))
    return join(subj, be, pp(vp.verb), rest, "by", g.person_np(t, pron=False).text) + "."


@template(K, P, "imperative", "please", tail=0.25)
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


@template(K, T, "if_title", "mention", tail=0.45)
def _t_if_title(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("read", "quoted", "recited", "talked about", "recommended", "reviewed"))
    return f"{np.text} {verb} {g.pick(L.IF_TITLES)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "quant_title", "mention", tail=0.45)
def _t_quant_title(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("watched", "quoted", "loved", "recommended", "reviewed", "talked about"))
    return f"{np.text} {verb} {g.pick(L.QUANT_TITLES)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "quant_name", "place", tail=0.45)
def _t_place(g: Gen) -> str:
    t = g.topic()
    np, vp = g.person_np(t), g.person_vp(t)
    place = g.pick(L.QUANT_PLACES)
    if g.p(0.4):
        verb = g.pick(("moved to", "grew up in", "drove to", "lives near" if np.plain else
                       "live near"))
        return f"{np.text} {verb} {place}."
    return f"{clause(np, vp, g.pick(('past', 'fut')))} in {place}."


@template(K, T, "quant_name", "org", tail=0.45)
def _t_org(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    org = g.pick(L.QUANT_ORGS)
    verb = g.pick(("bought tickets for", "wrote to", "visited", "works for", "talked about",
                   "supports"))
    if verb in ("works for", "supports") and not np.plain:
        verb = verb.replace("works", "work").replace("supports", "support")
    return f"{np.text} {verb} {org} {g.adjunct(t, 'past', 0.4)}."


@template(K, T, "quant_name", "person", tail=0.45)
def _t_person(g: Gen) -> str:
    t = g.topic()
    np = NP(g.pick(L.QUANT_NAMES))
    tense = g.plain_tense()
    return f"{clause(np, g.person_vp(t), tense)} {g.adjunct(t, tense, 0.5)}."


@template(K, T, "quant_morpheme", "adverb", tail=0.45)
def _t_morpheme(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    form = g.pick(("somehow", "almost", "anyway", "nonetheless", "somewhat"))
    if form in ("somehow", "almost"):
        return f"{np.text} {form} {verb_group(np, vp, 'past')} {g.adjunct(t, 'past', 0.4)}."
    if form == "somewhat":
        return f"{clause(np, vp, 'past')}, somewhat {g.pick(('reluctantly', 'late', 'slowly'))}."
    return f"{form.capitalize()}, {clause(np, vp, g.pick(('past', 'fut')))}."


@template(K, T, "quant_morpheme", "noun", tail=0.45)
def _t_morpheme_noun(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("forgot", "packed", "brought", "talked about", "changed"))
    return f"{np.text} {verb} the {g.pick(L.TRAP_ADJ_NOUN)} {g.adjunct(t, 'past', 0.5)}."


@template(K, T, "no_interjection", "answer", tail=0.45)
def _t_no(g: Gen) -> str:
    t = g.topic()
    head = g.pick(("No, ", "Oh no, ", "No, no, ", "No thanks, "))
    return f"{head}{_ev(g, t, g.pick(('past', 'fut', 'pres')))}."


@template(K, T, "numeral_nonquant", "clock", tail=0.45)
def _t_clock(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, g.pick(('past', 'fut')), adj=0)} {g.pick(L.CLOCK)}."


@template(K, T, "quant_homonym", "noun", tail=0.45)
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


@template(K, T, "as_long_as_comparative", "length", tail=0.45)
def _t_as_long(g: Gen) -> str:
    a, b = g.rng.sample(L.LONG_THINGS, 2)
    verb = g.pick(("was", "is", "will be", "seemed"))
    return f"{a.capitalize()} {verb} as long as {b} {g.pick(('', 'this time', 'in the end'))}."


@template(K, T, "as_long_as_comparative", "stayed", tail=0.45)
def _t_stayed(g: Gen) -> str:
    t = g.topic()
    a, b = g.person_np(t), g.person_np(t, pron=False)
    verb = g.pick(("stayed", "waited", "worked"))
    return f"{a.text} {verb} as long as {b.text} did {g.pick(t.places)}."


@template(K, T, "provided_verb", "active", tail=0.45)
def _t_provided(g: Gen) -> str:
    t = g.topic()
    vps = [VP.parse(v) for v in t.vps if VP.parse(v).has_object()]
    vp = g.pick(vps)
    sg, pl, num = vp.object_np()
    np = g.person_np(t, pron=False)
    return f"{np.text} provided the {pl} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "assuming_verb", "role", tail=0.45)
def _t_assuming(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, pron=False)
    be = "is" if np.plain else "are"
    return f"{np.text} {be} assuming the role of {g.pick(L.ROLES)} {g.pick(L.FUTURE_TIMES)}."


@template(K, T, "condition_noun", "state", tail=0.45)
def _t_condition(g: Gen) -> str:
    t = g.topic()
    if g.p(0.5):
        sg = g.thing(t)[0]
        verb = g.pick(("is", "was", "remains"))
        return f"The {sg} {verb} in {g.pick(L.CONDITION_STATES)} condition {g.pick(t.places)}."
    np = g.person_np(t, pron=False)
    has = "has" if np.plain else "have"
    return f"{np.text} {g.pick((has, 'had'))} {g.pick(L.MEDICAL)}."


@template(K, T, "case_noun", "object", tail=0.45)
def _t_case(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("packed", "lost", "opened", "forgot", "found"))
    return f"{np.text} {verb} {g.pick(L.CASES)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "suppose_epistemic", "suppose", tail=0.45)
def _t_suppose(g: Gen) -> str:
    t = g.topic()
    if g.p(0.5):
        return f"I suppose {_ev(g, t, g.pick(('pres', 'past', 'perf')))}."
    np, vp = g.person_np(t), g.person_vp(t)
    be = verb_group(np, VP("be", ""), "pres") if g.p(0.5) else be_form(np, "past")
    return f"{np.text} {be} supposed to {verb_group(np, vp, 'base')} {g.pick(t.times)}."


@template(K, T, "should_advice", "statement", tail=0.45)
def _t_should(g: Gen) -> str:
    t = g.topic()
    return f"{_ev(g, t, 'should', g.p(0.2), adj=0.5)}."


@template(K, T, "should_advice", "question", tail=0.45)
def _t_should_q(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"Should {np.text} {verb_group(np, vp, 'base')} {g.adjunct(t, '', 0.4)}?"


@template(K, T, "had_main", "statement", tail=0.45)
def _t_had(g: Gen) -> str:
    t = g.topic()
    return f"{g.person_np(t).text} had {g.pick(L.HAD_NP)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "had_main", "question", tail=0.45)
def _t_had_q(g: Gen) -> str:
    t = g.topic()
    np, vp = g.event(t)
    return f"Had {np.text} {pp(vp.verb)} {vp.tail()} {g.pick(('before', 'already', 'yet'))}?"


@template(K, T, "were_question", "question", tail=0.45)
def _t_were(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, num="pl", pron=False, names=False)
    return f"Were {np.text} {g.pick(t.places)} {g.pick(L.PAST_TIMES)}?"


@template(K, T, "then_sequence", "past", tail=0.45)
def _t_then(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    a, b = g.person_vp(t), g.person_vp(t)
    return f"{clause(np, a, 'past')} and then {verb_group(np, b, 'past')}."


@template(K, T, "imperative_coordination", "and", tail=0.45)
def _t_imp_and(g: Gen) -> str:
    t = g.topic()
    you = NP("you", "pl", 2)
    a, b = g.person_vp(t), g.person_vp(t)
    mk = g.pick(("and", "and then", ", then"))
    return f"{verb_group(you, a, 'base')} {mk} {verb_group(you, b, 'base')}.".replace(" ,", ",")


@template(K, T, "otherwise_adj", "quiet", tail=0.45)
def _t_otherwise(g: Gen) -> str:
    t = g.topic()
    day = g.pick(("quiet", "ordinary", "calm", "dull", "pleasant"))
    when = g.pick(("day", "afternoon", "morning", "evening"))
    return f"{_ev(g, t, 'past', adj=0)} on an otherwise {day} {when}."


@template(K, T, "without_plain", "left", tail=0.45)
def _t_without(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t)
    verb = g.pick(("left", "set off", "arrived", "came home", "went out"))
    return f"{np.text} {verb} without {g.pick(L.WITHOUT_PLAIN)} {g.adjunct(t, 'past', 0.5)}."


@template(K, T, "given_passive", "given", tail=0.45)
def _t_given(g: Gen) -> str:
    t = g.topic()
    np = g.person_np(t, pron=False)
    be = "was" if np.num == "sg" else "were"
    return f"{np.text} {be} given {g.pick(L.GIVEN_THINGS)} {g.adjunct(t, 'past', 0.6)}."


@template(K, T, "habitual_would", "child", tail=0.45)
def _t_habitual(g: Gen) -> str:
    t = g.topic()
    word = g.pick(("I", "she", "he", "we", "they"))
    was = "were" if word in ("we", "they") else "was"
    who = "children" if word in ("we", "they") else "a child"
    vp = g.person_vp(t)
    np = NP(word, "pl" if word in ("we", "they") else "sg")
    return f"When {word} {was} {who}, {word} would {verb_group(np, vp, 'base')}."
