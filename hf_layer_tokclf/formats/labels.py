"""Labels: their schemes, the label set a model learns, and the checks of training labels.

- Schemes (`SCHEMES`: IOB1, IOB2, IOE1/2, IOBES, BILOU, IO): `detect_scheme` tells them apart; `to_iob2` and
  `normalize_labels` convert any of them to IOB2, because the token-classification pipeline's
  ``aggregation_strategy`` only understands ``B-`` / ``I-``; `from_iob2` writes predictions back in the data's
  scheme.
- The label set: `label_list` builds it from the training data; `check_known_labels` rejects labels seen nowhere
  else; `describe_labels` counts them.
- Typos in training data (`check_training_labels`): a rare type next to a frequent one, a few tags that change
  the scheme.
"""

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .lines import DataError
from .sentence import Sentence

__all__ = [
    "SCHEMES",
    "check_known_labels",
    "check_training_labels",
    "describe_labels",
    "detect_scheme",
    "edit_distance",
    "from_iob2",
    "is_label",
    "label_list",
    "normalize_labels",
    "parse_label",
    "to_iob2",
    "with_iob2",
]

SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU", "IO")


_LABEL = re.compile(r"^([BIESLU])-(.+)$")


def parse_label(label: str) -> tuple[str, str | None]:
    """Splits a label into (prefix, type): ``"B-Disease"`` -> ``("B", "Disease")``, ``"O"`` -> ``("O", None)``.

    Raises:
        DataError: ``label`` is neither ``O`` nor ``PREFIX-TYPE`` with a prefix of one of `SCHEMES`.
    """
    if label == "O":
        return "O", None
    match = _LABEL.match(label)
    if match is None:
        raise DataError(
            f"label {label!r} is neither 'O' nor of the form PREFIX-TYPE with a prefix B, I, E, S, L or U "
            "(IOB1, IOB2, IOE1, IOE2, IOBES, BILOU or IO tags)"
        )
    return match.group(1), match.group(2)


def is_label(label: str) -> bool:
    """Whether `parse_label` takes ``label``."""
    return label == "O" or _LABEL.match(label) is not None


def _check_labels(sentences: Iterable[Sentence]) -> None:
    """DataError naming file, line and label for the first label `parse_label` rejects."""
    for sentence in sentences:
        for index, label in enumerate(sentence.labels or ()):
            try:
                parse_label(label)
            except DataError as error:
                raise DataError(f"{sentence.where(index)}: {error}") from None


def detect_scheme(label_sequences: Iterable[Sequence[str]]) -> str:
    """Returns the tagging scheme of some label sequences, by `seqeval.scheme`'s names (and ``"IO"``).

    - ``L-`` / ``U-`` prefixes: ``"BILOU"``; ``S-``, or ``E-`` beside ``B-``: ``"IOBES"``;
    - ``E-`` without ``B-``: ``"IOE2"`` if every entity ends in ``E-``, else ``"IOE1"`` (``E-`` only
      where an entity of the same type follows);
    - ``B-`` / ``I-``: ``"IOB1"`` if an ``I-`` starts an entity (first, after ``O`` or another type),
      else ``"IOB2"``; ``I-`` alone: ``"IO"``. ``O``-only data is ``"IOB2"``.
    """
    prefixes: set[str] = set()
    starts_with_inside = ends_with_inside = False
    for labels in label_sequences:
        parsed = [parse_label(label) for label in labels]
        for index, (prefix, kind) in enumerate(parsed):
            prefixes.add(prefix)
            previous = parsed[index - 1] if index else ("O", None)
            following = parsed[index + 1] if index + 1 < len(parsed) else ("O", None)
            if prefix == "I" and previous[1] != kind:
                starts_with_inside = True
            if prefix == "I" and (following[1] != kind or following[0] not in ("I", "E")):
                ends_with_inside = True
    if prefixes & {"L", "U"}:
        return "BILOU"
    if "S" in prefixes or {"B", "E"} <= prefixes:
        return "IOBES"
    if "E" in prefixes:
        return "IOE1" if ends_with_inside else "IOE2"
    if "B" in prefixes:
        return "IOB1" if starts_with_inside else "IOB2"
    return "IO" if "I" in prefixes else "IOB2"


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


def to_iob2(labels: Sequence[str], scheme: str) -> list[str]:
    """Converts one sentence's labels from ``scheme`` (any of `SCHEMES`) to IOB2.

    An entity starts at ``B-`` / ``S-`` / ``U-``, or at an ``I-`` / ``E-`` / ``L-`` that does not
    continue a ``B-`` / ``I-`` of the same type (an ``E-`` / ``L-`` ends its entity); it becomes
    ``B-``, its other tokens ``I-``. This one rule reads every scheme, and repairs IOB2 whose
    entities start with ``I-``.
    """
    _check_scheme(scheme)
    converted = []
    previous: tuple[str, str | None] = ("O", None)
    for label in labels:
        prefix, kind = parse_label(label)
        if prefix == "O":
            converted.append("O")
        else:
            continues = prefix in ("I", "E", "L") and previous[0] in ("B", "I") and previous[1] == kind
            converted.append(f"{'I' if continues else 'B'}-{kind}")
        previous = (prefix, kind)
    return converted


def from_iob2(labels: Sequence[str], scheme: str) -> list[str]:
    """Writes one sentence's IOB2 labels in ``scheme``: the inverse of `to_iob2` (IO merges adjacent
    entities of one type, which it cannot tell apart). Entities that start with ``I-`` count as
    starting there, as in `to_iob2`."""
    _check_scheme(scheme)
    iob2 = to_iob2(labels, "IOB2")
    converted = []
    for index, label in enumerate(iob2):
        if label == "O":
            converted.append("O")
            continue
        prefix, kind = label.split("-", 1)
        before = iob2[index - 1] if index else "O"
        after = iob2[index + 1] if index + 1 < len(iob2) else "O"
        first, last = prefix == "B", after != f"I-{kind}"
        adjacent_before = first and before != "O" and before[2:] == kind  # the same type ends just before
        adjacent_after = last and after == f"B-{kind}"  # the same type starts just after
        converted.append(f"{_prefix(scheme, first, last, adjacent_before, adjacent_after)}-{kind}")
    return converted


def _prefix(scheme: str, first: bool, last: bool, adjacent_before: bool, adjacent_after: bool) -> str:
    """The prefix of an entity's token in ``scheme``, from where the token sits in its entity."""
    if scheme == "IOB2":
        return "B" if first else "I"
    if scheme == "IOB1":
        return "B" if adjacent_before else "I"
    if scheme == "IOE2":
        return "E" if last else "I"
    if scheme == "IOE1":
        return "E" if adjacent_after else "I"
    if scheme in ("IOBES", "BILOU"):
        single, begin, end = ("S", "B", "E") if scheme == "IOBES" else ("U", "B", "L")
        return single if first and last else begin if first else end if last else "I"
    return "I"  # IO


def normalize_labels(sentences: Sequence[Sentence]) -> tuple[list[Sentence], str]:
    """Returns copies of ``sentences`` with labels in IOB2, and the scheme they were written in.

    Unlabeled sentences are copied unchanged.

    Raises:
        DataError: naming file, line and label, for a label that is not ``O`` or ``X-TYPE``.
    """
    _check_labels(sentences)
    scheme = detect_scheme(s.labels for s in sentences if s.labels is not None)
    normalized = [with_iob2(s, scheme) for s in sentences]
    return normalized, scheme


def label_list(sentences: Iterable[Sentence]) -> list[str]:
    """``"O"``, then ``B-TYPE``, ``I-TYPE`` for every entity type seen, types sorted.

    Both ``B-`` and ``I-`` of every type are included even if the data shows only one, so that
    the model can predict (and `encode` can use) either.
    """
    sentences = list(sentences)
    _check_labels(sentences)
    kinds = {parse_label(label)[1] for s in sentences for label in s.labels or ()}
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(kinds - {None}) for prefix in ("B", "I")]


def check_known_labels(
    sentences: Iterable[Sentence], label2id: Mapping[str, int], known_as: str = "the training data"
) -> None:
    """Raises DataError, naming file, line and the label as the file writes it, for the first label whose IOB2
    form (`to_iob2`) is not in ``label2id``. ``sentences`` may be as read (any scheme) or in IOB2."""
    known = None
    for sentence in sentences:
        for index, label in enumerate(_iob2_labels(sentence)):
            if label not in label2id:
                known = known or ", ".join(sorted(label2id, key=label2id.__getitem__))
                written = sentence.labels[index]
                raise DataError(
                    f"{sentence.where(index)}: label {written!r} never appears in {known_as} (known: {known})"
                )


def _iob2_labels(sentence: Sentence) -> list[str]:
    """``sentence``'s labels in IOB2 (`to_iob2`'s one rule reads every scheme); a bad label named with its line."""
    if sentence.labels is None:
        return []
    try:
        return to_iob2(sentence.labels, "IOB2")
    except DataError:
        _check_labels([sentence])
        raise


def with_iob2(sentence: Sentence, scheme: str) -> Sentence:
    """A copy of ``sentence`` with its labels (written in ``scheme``) in IOB2; an unlabeled one copied as it is."""
    labels = to_iob2(sentence.labels, scheme) if sentence.labels is not None else None
    return Sentence(list(sentence.tokens), labels, sentence.source, sentence.line, sentence.token_lines)


# --------------------------------------------------------------------------------------------
# Typos in training data: a rare type next to a frequent one, a few tags that change the scheme
# --------------------------------------------------------------------------------------------

# A type with fewer than this share of the entities, within `TYPO_DISTANCE` edits of another type, is a typo.
RARE_TYPE_SHARE = 0.001
TYPO_DISTANCE = 2
# Fewer than this share of the entity tags may not make B-/I- data read as another scheme than IOB2.
SCHEME_CHANGE_SHARE = 0.01


def describe_labels(sentences: Iterable[Sentence]) -> str:
    """The labels the model learns (IOB2) with their counts, most frequent first, then the entities per type:
    ``"O 1, B-X 1, I-X 1, B-Y 1 (2 entities: X 1, Y 1)"``. ``sentences`` may be in any scheme."""
    tags: Counter[str] = Counter()
    for sentence in sentences:
        tags.update(_iob2_labels(sentence))
    order = {label: i for i, label in enumerate(["O", *sorted(tags, key=lambda label: (label[2:], label))])}
    labels = sorted(tags, key=lambda label: (-tags[label], order[label]))
    kinds = sorted(((label[2:], n) for label, n in tags.items() if label.startswith("B-")), key=lambda k: (-k[1], k[0]))
    entities = f"{sum(n for _, n in kinds)} entities: {', '.join(f'{kind} {n}' for kind, n in kinds)}"
    return f"{', '.join(f'{label} {tags[label]}' for label in labels)} ({entities})"


def check_training_labels(sentences: Sequence[Sentence], scheme: str, allow: str) -> None:
    """Refuses what is most likely a typo in training data, naming file, line and the label as written.

    A type with fewer than `RARE_TYPE_SHARE` of the entities that is within `TYPO_DISTANCE` edits of a type at
    least as frequent (``B-Disaese`` among thousands of ``B-Disease``); and a ``scheme`` other than IOB2 that
    fewer than `SCHEME_CHANGE_SHARE` of the entity tags cause in ``B-``/``I-`` data (a few ``I-`` tags that start
    an entity make it IOB1; a stray ``E-`` or ``S-``, IOBES). ``sentences`` are as read; ``scheme`` is
    `detect_scheme`'s; ``allow`` names the option that trains on the data as it is, said in the message.
    """
    _check_rare_types(sentences, allow)
    _check_scheme_change(sentences, scheme, allow)


def _check_rare_types(sentences: Sequence[Sentence], allow: str) -> None:
    starts = Counter(label[2:] for sentence in sentences for label in _iob2_labels(sentence) if label[0] == "B")
    total = sum(starts.values())
    for kind, count in sorted(starts.items(), key=lambda item: item[1]):
        if count >= RARE_TYPE_SHARE * total:
            break
        near = [other for other in starts if other != kind and starts[other] >= count]
        near = sorted((edit_distance(kind, other), -starts[other], other) for other in near)
        if near and near[0][0] <= TYPO_DISTANCE:
            distance, _, other = near[0]
            sentence, index = next(
                (s, i) for s in sentences for i, label in enumerate(s.labels or ()) if parse_label(label)[1] == kind
            )
            raise DataError(
                f"{sentence.where(index)}: label {sentence.labels[index]!r}: its type {kind!r} has {count} of the "
                f"{total} entities ({count / total:.2%}) and is {distance} edit(s) from {other!r} ({starts[other]} "
                f"entities). A typo? Fix it, or pass {allow} to train {kind!r} as a type of its own."
            )


def _check_scheme_change(sentences: Sequence[Sentence], scheme: str, allow: str) -> None:
    if scheme in ("IOB2", "IO"):
        return
    changers: list[tuple[Sentence, int]] = []
    entity_tags = 0
    has_begin = False
    for sentence in sentences:
        parsed = [parse_label(label) for label in sentence.labels or ()]
        for index, (prefix, kind) in enumerate(parsed):
            entity_tags += prefix != "O"
            has_begin = has_begin or prefix == "B"
            starts_inside = prefix == "I" and (parsed[index - 1][1] if index else None) != kind
            if starts_inside or prefix in ("E", "S", "L", "U"):
                changers.append((sentence, index))
    if not has_begin or not changers or len(changers) >= SCHEME_CHANGE_SHARE * entity_tags:
        return
    named = ", ".join(f"{s.labels[i]!r} ({s.where(i)})" for s, i in changers[:3])
    first, index = changers[0]
    raise DataError(
        f"{first.where(index)}: {len(changers)} of the {entity_tags} entity tags ({len(changers) / entity_tags:.2%}) "
        f"make these B-/I- labels read as {scheme} rather than IOB2: {named}{', ...' if len(changers) > 3 else ''}. "
        f"An I- tag that starts an entity is a B- tag in IOB2 (and E-, S-, L-, U- are no IOB2 prefixes): fix them, "
        f"or pass {allow} to read the data as {scheme}."
    )


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn ``a`` into ``b``."""
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return previous[-1]
