#!/usr/bin/env python3
"""Generates data/sentiment/: a small synthetic sentiment data set of review-like sentences.

Every sentence is built from word lists and templates, and its label (1 positive, 0
negative) follows from its words *and their order* by a fixed rule:

* A clause "SUBJECT was [NEGATION] [INTENSIFIER] ADJECTIVE" has the polarity of its
  adjective, flipped when a negation ("not", "never", "hardly", "far from", "wasn't", ...)
  stands before it: "not good" is negative, "not bad" positive, "not very good" negative.
  Intensifiers ("very", "truly", ...) never change the polarity.
* "A, but B" and "although A, B": the second clause B decides.
* "B, even though A" and "B, despite the fact that A": the first clause B decides.
* "A and B": both clauses have the same polarity by construction.
* Short phrases "a truly awful movie" take the adjective's polarity; "not a good movie"
  and "hardly a good movie" flip it.
* Openers ("honestly,", "in my opinion,") and closers ("overall", "in the end") are
  neutral; a closing verdict ("i would recommend it" / "i would not recommend it") always
  agrees with the label.

In the two-clause sentences the clauses disagree three times in four, so the same bag of
words carries either label depending on which clause sits where: a bag-of-words model
cannot fit them, which the logistic-regression baseline printed at the end measures.

Python 3 standard library only; the output depends on the seed alone. Run from the
repository root:

    python3 scripts/make_sentiment_csv.py

(options: --seed, --train-rows, --test-rows, --out). Test sentences never occur in the
training file.
"""

import argparse
import csv
import math
import os
import random

POSITIVE = [
    "good", "great", "excellent", "wonderful", "brilliant", "enjoyable", "fun", "charming",
    "superb", "delightful", "moving", "clever", "beautiful", "funny", "gripping", "solid",
    "memorable", "fantastic", "lovely", "impressive",
]
NEGATIVE = [
    "bad", "awful", "terrible", "boring", "dull", "poor", "bland", "weak", "tedious",
    "disappointing", "clumsy", "forgettable", "messy", "painful", "lifeless", "predictable",
    "silly", "shallow", "mediocre", "horrible",
]
SINGULAR = [
    "the movie", "the film", "this movie", "this film", "the plot", "the story", "the acting",
    "the script", "the dialogue", "the ending", "the soundtrack", "the music", "the direction",
    "the pacing", "the cinematography", "the lead actor", "the sequel", "the first half",
    "the second half", "the humor",
]
PLURAL = ["the characters", "the visuals", "the jokes", "the performances", "the action scenes", "the songs"]
NOUNS = ["movie", "film", "story", "show", "sequel", "thriller", "comedy", "drama"]
INTENSIFIERS = ["very", "really", "truly", "extremely", "incredibly", "quite", "so", "pretty", "rather", "remarkably"]
OPENERS = ["honestly,", "overall,", "i think", "in my opinion,", "to be fair,", "frankly,", "i have to say",
           "i felt that", "sadly,", "luckily,"]
CLOSERS = ["overall", "in the end", "if you ask me", "for me", "to be honest", "all things considered"]
VERDICTS = {1: ["i would recommend it", "worth watching", "i loved it", "see it"],
            0: ["i would not recommend it", "not worth watching", "skip it", "i regret watching it"]}


def polarity_word(rng, positive):
    return rng.choice(POSITIVE if positive else NEGATIVE)


def adjective_phrase(rng, positive):
    """Words before the adjective and the adjective; returns (words, negated)."""
    negated = rng.random() < 0.4
    words = []
    if rng.random() < 0.35:
        words.append(rng.choice(INTENSIFIERS))
    # The adjective's own polarity is the clause polarity, flipped by a negation.
    words.append(polarity_word(rng, positive != negated))
    return words, negated


def clause(rng, positive):
    """'SUBJECT VERB [NEG] [INT] ADJ' with the given overall polarity."""
    plural = rng.random() < 0.25
    subject = rng.choice(PLURAL if plural else SINGULAR)
    adj, negated = adjective_phrase(rng, positive)
    if not negated:
        verb = rng.choice(["were", "are", "felt", "seemed"] if plural else ["was", "is", "felt", "seemed"])
        return f"{subject} {verb} {' '.join(adj)}"
    form = rng.randrange(4)
    if form == 0:
        verb = rng.choice(["weren't", "aren't"] if plural else ["wasn't", "isn't"])
        return f"{subject} {verb} {' '.join(adj)}"
    verb = rng.choice(["were", "are"] if plural else ["was", "is"])
    negation = ["not", "never", rng.choice(["hardly", "far from"])][form - 1]
    return f"{subject} {verb} {negation} {' '.join(adj)}"


def short_phrase(rng, positive):
    """'a truly awful movie' or 'not a good film'."""
    noun = rng.choice(NOUNS)
    if rng.random() < 0.4:
        return f"{rng.choice(['not', 'hardly', 'never'])} a {polarity_word(rng, not positive)} {noun}"
    words = [rng.choice(INTENSIFIERS)] if rng.random() < 0.5 else []
    adj = polarity_word(rng, positive)
    article = "an" if (words or [adj])[0][0] in "aeiou" else "a"
    return " ".join([article, *words, adj, noun])


def sentence(rng, positive):
    """One review sentence with label `positive`, before capitalisation and the final mark."""
    kind = rng.choices(["short", "single", "but", "although", "even_though", "and"], [1, 2, 3, 2, 2, 1])[0]
    other = positive if rng.random() < 0.25 else not positive  # the clause that does not decide
    if kind == "short":
        text = short_phrase(rng, positive)
    elif kind == "single":
        text = clause(rng, positive)
    elif kind == "but":
        text = f"{clause(rng, other)}, but {clause(rng, positive)}"
    elif kind == "although":
        text = f"although {clause(rng, other)}, {clause(rng, positive)}"
    elif kind == "even_though":
        link = rng.choice(["even though", "despite the fact that"])
        text = f"{clause(rng, positive)}, {link} {clause(rng, other)}"
    else:
        text = f"{clause(rng, positive)} and {clause(rng, positive)}"
    if kind != "short" and rng.random() < 0.3:
        text = f"{rng.choice(OPENERS)} {text}"
    if kind != "short" and rng.random() < 0.2:
        text = f"{text} {rng.choice(CLOSERS)}"
    if rng.random() < 0.2:
        text = f"{text}. {rng.choice(VERDICTS[int(positive)])}"
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "!"])


def generate(rng, rows, seen):
    """`rows` (text, label) pairs, half of each label, 3 to 25 tokens, none in `seen`."""
    out = []
    while len(out) < rows:
        positive = len(out) % 2 == 0
        text = sentence(rng, positive)
        if text in seen or not 3 <= len(text.split()) <= 25:
            continue
        seen.add(text)
        out.append((text, int(positive)))
    rng.shuffle(out)
    return out


def tokens(text):
    """How wgrad::data::text::tokenize splits ASCII text: at whitespace, lower case, outer punctuation stripped."""
    words = (w.lower().strip("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for w in text.split())
    return [w for w in words if w]


def bag_of_words_baseline(train, test, epochs=30, lr=0.5):
    """Test accuracy of a logistic regression on word counts, trained by plain SGD."""
    weights, bias = {}, 0.0
    order = list(range(len(train)))
    rng = random.Random(0)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            text, label = train[i]
            words = tokens(text)
            z = bias + sum(weights.get(w, 0.0) for w in words)
            g = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0))) - label
            bias -= lr * g
            for w in words:
                weights[w] = weights.get(w, 0.0) - lr * g / len(words)
    correct = sum((bias + sum(weights.get(w, 0.0) for w in tokens(t)) > 0) == bool(y) for t, y in test)
    return correct / len(test)


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--out", default="data/sentiment")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    seen = set()
    train = generate(rng, args.train_rows, seen)
    test = generate(rng, args.test_rows, seen)
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "train.csv"), train)
    write_csv(os.path.join(args.out, "test.csv"), test)

    lengths = [len(tokens(t)) for t, _ in train + test]
    vocab = {w for t, _ in train for w in tokens(t)}
    print(f"wrote {len(train)} training and {len(test)} test rows to {args.out}")
    print(f"tokens per sentence: {min(lengths)} to {max(lengths)}, mean {sum(lengths) / len(lengths):.1f}; "
          f"{len(vocab)} distinct training tokens")
    print(f"bag-of-words logistic regression, test accuracy: {100 * bag_of_words_baseline(train, test):.2f}%")


if __name__ == "__main__":
    main()
