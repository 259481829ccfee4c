"""The travelling decoder: a label scheme's constraints, constrained Viterbi, the CRF's likelihood and marginals.

Checked against rules written out here and against brute force over every label path.
"""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_layer_tokclf.model.pipeline_layer_tokclf import (
    FORBIDDEN,
    LinearChainCRF,
    label_constraints,
    label_groups,
    pack_positions,
    split_label,
)

IOB2 = {0: "O", 1: "B-Disease", 2: "I-Disease"}


def is_valid(labels, scheme):
    """The scheme's rules, written out independently of `label_constraints`."""
    previous = ("O", None)
    for label in [*labels, "O"]:  # a final O closes any open IOBES entity
        prefix, kind = label.split("-", 1) if label != "O" else ("O", None)
        before, before_kind = previous
        if scheme == "IOB2" and prefix == "I" and not (before in "BI" and before_kind == kind):
            return False
        if scheme == "IOBES":
            if before in "BI" and not (prefix in "IE" and kind == before_kind):
                return False
            if prefix in "IE" and not (before in "BI" and before_kind == kind):
                return False
        previous = (prefix, kind)
    return True


@st.composite
def label_sets(draw):
    """A random label set (one to three types, IOB2 or IOBES, in a random order) and its scheme."""
    scheme = draw(st.sampled_from(["IOB2", "IOBES"]))
    kinds = draw(st.lists(st.sampled_from(["Disease", "Chemical", "Gene"]), min_size=1, max_size=3, unique=True))
    prefixes = "BI" if scheme == "IOB2" else "BIES"
    labels = ["O", *(f"{p}-{k}" for k in kinds for p in prefixes)]
    labels = draw(st.permutations(labels))
    return dict(enumerate(labels)), scheme


@settings(max_examples=200, deadline=None)
@given(label_sets(), st.integers(1, 12), st.integers(0, 2**31 - 1), st.floats(0.1, 20))
def test_decoding_never_emits_an_invalid_sequence(label_set, length, seed, scale):
    id2label, scheme = label_set
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(3, length, len(id2label), generator=generator) * scale
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, max(1, length // 2) :] = False  # a padded row
    for learned in (False, True):
        crf = LinearChainCRF(id2label, learned=learned)
        if learned:  # random learned scores may prefer forbidden moves: the constraints still hold
            with torch.no_grad():
                for p in crf.parameters():
                    p.copy_(torch.randn(p.shape, generator=generator) * 5)
        for path in crf.decode(emissions.log_softmax(-1), mask):
            labels = [id2label[i] for i in path]
            assert is_valid(labels, scheme), (labels, scheme)


@settings(max_examples=200, deadline=None)
@given(label_sets(), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_where_argmax_is_valid_decoding_gives_argmax(label_set, length, seed):
    id2label, scheme = label_set
    start, transitions, end = label_constraints(id2label)
    generator = torch.Generator().manual_seed(seed)
    # A random valid path (a walk over allowed moves that can still end), and scores whose argmax it is.
    path = []
    for t in range(length):
        options = [j for j in id2label if (transitions[path[-1]][j] if path else start[j])]
        if t == length - 1:
            options = [j for j in options if end[j]]
        path.append(options[int(torch.randint(len(options), (1,), generator=generator))])
    assert is_valid([id2label[i] for i in path], scheme)
    scores = torch.rand(1, length, len(id2label), generator=generator)
    scores[0, torch.arange(length), torch.tensor(path)] += 1.5
    assert scores.argmax(-1)[0].tolist() == path
    decoded = LinearChainCRF(id2label, learned=False).decode(scores.log_softmax(-1), torch.ones(1, length, dtype=bool))
    assert decoded == [path]


def test_the_constraints_of_iob2_iobes_and_io_labels():
    start, transitions, end = label_constraints(IOB2)
    assert start == [True, True, False]  # no entity starts with I-
    assert transitions == [[True, True, False], [True, True, True], [True, True, True]]  # O I- is the one ban
    assert end == [True, True, True]
    iobes = dict(enumerate(["O", "B-X", "I-X", "E-X", "S-X"]))
    start, transitions, end = label_constraints(iobes)
    assert start == [True, True, False, False, True]
    assert transitions[1] == [False, False, True, True, False]  # B-X: only I-X or E-X
    assert transitions[3] == [True, True, False, False, True]  # after E-X: a new start
    assert end == [True, False, False, True, True]
    bilou = dict(enumerate(["O", "B-X", "I-X", "L-X", "U-X"]))
    assert label_constraints(bilou) == label_constraints(iobes)
    plain = dict(enumerate(["O", "Disease", "I-Chemical"]))  # IO tags, no B-: nothing forbidden
    start, transitions, end = label_constraints(plain)
    assert all(start) and all(all(row) for row in transitions) and all(end)


def test_split_label_and_label_groups():
    assert split_label("B-Disease") == ("B", "Disease")
    assert split_label("L-X") == ("E", "X")
    assert split_label("O") == (None, "O")
    assert split_label("Bacteria") == (None, "Bacteria")
    labels = ["O", "O", "B-D", "I-D", "B-D", "O", "S-C", "B-C", "E-C", "I-D"]
    assert label_groups(labels) == [(0, 2), (2, 4), (4, 5), (5, 6), (6, 7), (7, 9), (9, 10)]


def random_crf(seed):
    """A CRF over `IOB2` with random learned scores (and the torch seed set for what follows)."""
    torch.manual_seed(seed)
    crf = LinearChainCRF(IOB2)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape))
    return crf


def brute_force(crf, emissions):
    """Every path's score, over all label sequences (including forbidden ones, at FORBIDDEN)."""
    start, transitions, end = (s.detach() for s in crf.scores())
    length, num_labels = emissions.shape
    scores = {}
    for path in itertools.product(range(num_labels), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, path[t]] for t in range(length))
        score += sum(transitions[path[t - 1], path[t]] for t in range(1, length))
        scores[path] = float(score)
    return scores


@pytest.mark.parametrize("length", [1, 2, 4])
def test_the_crf_likelihood_decoding_and_marginals_match_brute_force(length):
    crf = random_crf(seed=length)
    emissions = torch.randn(length, 3).log_softmax(-1)
    scores = brute_force(crf, emissions)
    log_z = math.log(sum(math.exp(s) for s in scores.values()))
    best = max(scores, key=scores.get)
    mask = torch.ones(1, length, dtype=torch.bool)
    assert crf.decode(emissions[None], mask) == [list(best)]
    nll = crf.neg_log_likelihood(emissions[None], torch.tensor([best]), mask)
    assert float(nll.detach()) == pytest.approx(log_z - scores[best], abs=1e-4)
    # The marginal of each run of the best path: the total probability of paths that agree on it.
    groups = [(s, e) for s in range(length) for e in range(s + 1, length + 1)]
    for (s, e), found in zip(groups, crf.group_probabilities(emissions, list(best), groups), strict=True):
        agree = sum(math.exp(v - log_z) for p, v in scores.items() if p[s:e] == best[s:e])
        assert found == pytest.approx(agree, abs=1e-5), (s, e)


def test_without_learned_transitions_an_entity_scores_the_product_of_its_words_probabilities():
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]])
    crf = LinearChainCRF(IOB2, learned=False)
    assert crf.group_probabilities(probabilities.log(), [0, 1, 2], [(0, 1), (1, 3)]) == pytest.approx(
        [0.7, 0.6 * 0.8], abs=1e-6
    )
    assert not any(p.requires_grad for p in crf.parameters())


def test_decoding_a_padded_batch_decodes_each_row_alone():
    crf = random_crf(seed=0)
    emissions = torch.randn(3, 7, 3)
    lengths = [7, 3, 1]
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    batch = crf.decode(emissions, mask)
    alone = [crf.decode(emissions[i : i + 1, :n], mask[i : i + 1, :n])[0] for i, n in enumerate(lengths)]
    assert batch == alone and [len(p) for p in batch] == lengths
    nll = crf.neg_log_likelihood(emissions, torch.zeros(3, 7, dtype=torch.long), mask)
    nll_alone = [
        crf.neg_log_likelihood(emissions[i : i + 1, :n], torch.zeros(1, n, dtype=torch.long), mask[i : i + 1, :n])
        for i, n in enumerate(lengths)
    ]
    assert nll.tolist() == pytest.approx(torch.cat(nll_alone).tolist(), abs=1e-5)


def test_forward_backward_of_a_padded_batch_is_each_rows_alone_and_gives_the_brute_force_partition():
    crf = random_crf(seed=1)
    emissions = torch.randn(3, 4, 3).log_softmax(-1)
    lengths = [4, 2, 1]
    mask = torch.arange(4)[None] < torch.tensor(lengths)[:, None]
    alphas, betas, log_z = crf.forward_backward(emissions, mask)
    for i, n in enumerate(lengths):
        a, b, z = crf.forward_backward(emissions[i : i + 1, :n], mask[i : i + 1, :n])
        assert torch.equal(alphas[i, :n], a[0]) and torch.equal(betas[i, :n], b[0]) and torch.equal(log_z[i], z[0])
        scores = brute_force(crf, emissions[i, :n])
        assert float(z[0]) == pytest.approx(math.log(sum(math.exp(v) for v in scores.values())), abs=1e-4)
        # At every position, alpha + beta - emission sums the paths through each label: all paths together.
        through = torch.logsumexp(a[0] + b[0] - emissions[i, :n], dim=-1)
        assert through.tolist() == pytest.approx([float(z[0])] * n, abs=1e-4)


def test_the_word_loss_skips_the_ignored_positions_rather_than_feeding_them_in():
    crf = random_crf(seed=0)
    logits = torch.randn(2, 6, 3)
    labels = torch.tensor([[-100, 1, -100, 2, 0, -100], [-100, 0, -100, -100, -100, -100]])
    words = [logits[0, [1, 3, 4]], logits[1, [1]]]
    expected = (
        sum(
            crf.neg_log_likelihood(w[None], torch.tensor([tags]), torch.ones(1, len(tags), dtype=torch.bool))
            for w, tags in zip(words, [[1, 2, 0], [0]], strict=True)
        )
        / 4
    )
    assert float(crf.word_loss(logits, labels).detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
    order, mask = pack_positions(labels != -100)
    assert order[0, :3].tolist() == [1, 3, 4] and mask.sum(1).tolist() == [3, 1]
    nothing = torch.full((1, 4), -100)
    empty = crf.word_loss(torch.randn(1, 4, 3, requires_grad=True), nothing)
    assert float(empty.detach()) == 0.0 and empty.requires_grad  # a zero loss that still backpropagates


def test_forbidden_transitions_score_forbidden_whatever_was_learned():
    crf = LinearChainCRF(IOB2)
    with torch.no_grad():
        crf.transitions.fill_(3.0)
        crf.start_transitions.fill_(2.0)
    start, transitions, end = crf.scores()
    assert transitions[0, 2] == FORBIDDEN and start[2] == FORBIDDEN
    assert transitions[1, 2] == 3.0 and start[1] == 2.0 and end.tolist() == [0.0, 0.0, 0.0]
