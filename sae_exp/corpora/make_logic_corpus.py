"""Generate the shipped logic corpus: a seeded grammar, deterministic, no duplicates.

    python -m sae_exp.corpora.make_logic_corpus [--seed 0] [--out path.jsonl]

Labels `conditional`, `quantifier`, `control`; each sentence carries a `subset` (which surface
cues it has), a `form` (the marker or construction), the `template` that made it, its `group`
(the sentence frame: the template without its subset, so the two quantifier subsets share
frames) and a fixed `split`. The split is by frame: every sentence of a held-out frame is test
and no training sentence uses a test frame, in every label and subset (traps included), so test
accuracy measures transfer to unseen frames, not recall of seen ones. See DATA_CARD.md.
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
from sae_exp.corpora.templates import TEMPLATES

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
TEST_SHARE = 0.22  # of each (label, subset)'s sentences, reached by holding out whole frames
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


def frame_of(template_id: str) -> str:
    """The sentence frame of a template: its id without the subset (`label.form.name`).

    The quantifier subsets fill the same frames with different quantifier words, so a frame
    held out for test must be held out in both."""
    label, _subset, form, name = template_id.split(".")
    return f"{label}.{form}.{name}"


def held_out_frames(records: list[dict], rng: random.Random) -> set[str]:
    """Frames whose sentences all go to test: per (label, subset), frames in random order are
    held out until TEST_SHARE of its sentences are test. A frame is skipped when holding it
    out would leave one of its forms (markers) without training frames, or the subset
    without training sentences, so every marker is still seen in training."""
    size = Counter(r["group"] for r in records)
    held: set[str] = set()
    for key in TARGETS:
        rows = [r for r in records if (r["label"], r["subset"]) == key]
        frames = sorted({r["group"] for r in rows})
        per_form: dict[str, set[str]] = {}
        for r in rows:
            per_form.setdefault(r["form"], set()).add(r["group"])
        in_subset = Counter(r["group"] for r in rows)
        rng.shuffle(frames)
        for frame in frames:
            n_test = sum(in_subset[f] for f in held if f in in_subset)
            if n_test >= TEST_SHARE * len(rows):
                break
            if frame in held:
                continue
            forms = {r["form"] for r in rows if r["group"] == frame}
            if any(per_form[f] <= held | {frame} for f in forms):
                continue  # every frame of this marker would be test
            if n_test + in_subset[frame] > 0.5 * len(rows) or size[frame] > 0.5 * len(rows):
                continue
            held.add(frame)
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
            records.append({"text": text, "label": label, "subset": subset, "form": tmpl.form,
                            "template": tmpl.id, "group": frame_of(tmpl.id)})
            made += 1
    held = held_out_frames(records, random.Random(seed + 1))
    for i, r in enumerate(records):
        r["id"] = i
        r["split"] = "test" if r["group"] in held else "train"
    return records


def write(records: list[dict], out: Path) -> None:
    keys = ("id", "text", "label", "subset", "form", "template", "group", "split")
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
