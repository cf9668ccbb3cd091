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
from pathlib import Path

from sae_exp.corpora.grammar import Gen, contract, tidy
from sae_exp.corpora.templates import TEMPLATES, Template

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
CONTRACT_SHARE = 0.6  # sentences written with contractions (won't, didn't, you'll ...)
# Every (label, subset) gets the same length profile, so sentence length says nothing about the
# label: word-count bins [7, 10), [10, 13), [13, 16), [16, 22] and their shares.
LENGTH_BINS = (7, 10, 13, 16, MAX_WORDS + 1)
LENGTH_SHARES = (0.3, 0.35, 0.23, 0.12)

IF_RE = re.compile(r"\bif\b", re.I)
COND_RE = re.compile(r"\b(if|unless|provided|providing|as long as|so long as|assuming|"
                     r"suppose|supposing|otherwise|in the event)\b", re.I)
QUANT_RE = re.compile(r"\b(all|every|everyone|everybody|everything|each|some|someone|somebody|"
                      r"something|any|anyone|anybody|anything|no|none|nobody|nothing|most|"
                      r"many|few|several|both|much|either|neither)\b", re.I)
NUMBER_RE = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifty|"
                       r"hundred|hundreds|dozen|dozens|half|third|thirds|quarter|majority|"
                       r"minority|single|only|percent|zero|\d+)\b", re.I)


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


def _repeats(key: str, n: int = 3) -> bool:
    """True when a word n-gram occurs twice ("play the encore, then play the encore")."""
    words = key.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def _quotas(target: int) -> list[int]:
    quota = [int(round(share * target)) for share in LENGTH_SHARES]
    quota[1] += target - sum(quota)
    return quota


def _length_bin(text: str) -> int | None:
    n = len(text.split())
    for i in range(len(LENGTH_BINS) - 1):
        if LENGTH_BINS[i] <= n < LENGTH_BINS[i + 1]:
            return i
    return None


def generate(seed: int = 0) -> list[dict]:
    """All records, in a fixed order. Raises RuntimeError when a subset cannot be filled."""
    rng = random.Random(seed)
    g = Gen(rng)
    held = held_out_templates(random.Random(seed + 1))
    seen: set[str] = set()
    records: list[dict] = []
    for (label, subset), target in TARGETS.items():
        temps = [t for t in TEMPLATES if (t.label, t.subset) == (label, subset)]
        per_form = Counter(t.form for t in temps)
        # a form with many templates (11 subordinators) should not crowd out the others
        weights = [per_form[t.form] ** -0.5 for t in temps]
        made, tries = 0, 0
        quota = _quotas(target)
        while made < target:
            tries += 1
            if tries > 200 * target:
                raise RuntimeError(f"could not fill {label}/{subset}: {made} of {target}")
            tmpl = rng.choices(temps, weights)[0]
            text = tidy(tmpl.make(g))
            if rng.random() < CONTRACT_SHARE:
                text = contract(text)
            b = _length_bin(text)
            key = re.sub(r"\W+", " ", text.lower()).strip()
            if b is None or quota[b] == 0 or key in seen or _repeats(key):
                continue
            quota[b] -= 1
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
