"""Valid entity sequences: a label scheme's constraints, a linear-chain CRF, and the pipeline that decodes with them.

A softmax token classifier picks each word's label on its own, so it can emit sequences no
annotation scheme allows (``O I-Disease``, ``B-Chemical I-Disease``). [`LinearChainCRF`] scores
whole label sequences: per-word emissions plus start, transition and end scores, where the
transitions the labels' scheme forbids (IOB2, or IOBES / BILOU where the labels are) score
``FORBIDDEN``. With learned transitions it is a CRF head (``use_crf=True``); with none it is
constrained Viterbi decoding of any token classifier's scores, without retraining.

[`LayerTokenClassificationPipeline`] is ``pipeline("token-classification")`` with that decoding:
same arguments (``aggregation_strategy``, ``stride``, ...) and output, plus ``decoding``
(``"viterbi"``, the default, or ``"argmax"``: the stock pipeline's labels).

This file travels next to every saved model and is executed by whoever loads it with
``trust_remote_code=True``: it imports only ``torch`` and ``transformers``, works on transformers
4.x and 5.x, and has no side effects.
"""

import torch
from torch import nn
from transformers.pipelines.token_classification import AggregationStrategy, TokenClassificationPipeline

DECODINGS = ("viterbi", "argmax")
# The score of a transition the scheme forbids: finite, so that sums and logsumexp stay finite.
FORBIDDEN = -10000.0
_PREFIXES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}  # BILOU's L / U are IOBES's E / S


def check_decoding(decoding):
    """``decoding`` in lower case, or a ``ValueError`` naming the known ones."""
    value = str(decoding).lower()
    if value not in DECODINGS:
        raise ValueError(f"decoding={decoding!r} is unknown; expected one of {DECODINGS}.")
    return value


def split_label(label):
    """``("B", "Disease")`` for ``"B-Disease"`` (also I, E, S, and BILOU's L, U as E, S); ``(None, label)`` else."""
    prefix, dash, kind = str(label).partition("-")
    return (_PREFIXES[prefix], kind) if dash and prefix in _PREFIXES else (None, str(label))


def label_constraints(id2label):
    """Which labels may start a sequence, follow each label, and end one: three nested lists of bools.

    IOB2: ``I-X`` only after ``B-X`` or ``I-X``. Where the labels have ``E-`` or ``S-`` (IOBES,
    BILOU) also: ``E-X`` only after ``B-X`` or ``I-X``; after ``B-X`` or ``I-X`` only ``I-X`` or
    ``E-X``, and never at the end. Types without a ``B-`` label (IO tags) and ``O`` go anywhere.
    """
    tags = [split_label(id2label[i]) for i in range(len(id2label))]
    iobes = any(prefix in ("E", "S") for prefix, _ in tags)
    begun = {kind for prefix, kind in tags if prefix == "B"}

    def continues(tag):  # needs B-X or I-X before it
        return tag[0] in ("I", "E") and tag[1] in begun

    def is_open(tag):  # needs I-X or E-X after it
        return iobes and tag[0] in ("B", "I") and tag[1] in begun

    def allowed(before, after):
        if continues(after) or is_open(before):
            return before[0] in ("B", "I") and after[0] in ("I", "E") and before[1] == after[1]
        return True

    start = [not continues(tag) for tag in tags]
    transitions = [[allowed(before, after) for after in tags] for before in tags]
    end = [not is_open(tag) for tag in tags]
    return start, transitions, end


def label_groups(labels):
    """``(start, end)`` (end exclusive) of each run of labels the pipeline groups into one entity (or ``O`` run).

    A run starts at ``B-`` or ``S-``, at a change of type, and at a label of no scheme; ``I-`` and
    ``E-`` of the same type continue it, as the pipeline's ``group_entities`` does for IOB2.
    """
    groups, last = [], None
    for i, label in enumerate(labels):
        prefix, kind = split_label(label)
        if groups and prefix not in ("B", "S") and kind == last:
            groups[-1][1] = i + 1
        else:
            groups.append([i, i + 1])
        last = kind
    return [tuple(group) for group in groups]


def pack_positions(keep):
    """Where the ``True`` positions of each row of ``keep`` go when packed to the left, and their mask.

    Returns ``(order, mask)``: ``values.gather(1, order)`` holds each row's kept positions first, in
    order, over ``mask.sum(1)`` places (the width is the longest row's count).
    """
    width = int(keep.sum(1).max()) if keep.numel() else 0
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    return order, keep.gather(1, order)


class LinearChainCRF(nn.Module):
    r"""
    Scores of label sequences: emissions plus learned start, transition and end scores, with the
    scheme's forbidden transitions (`label_constraints`) at ``FORBIDDEN``.

    Args:
        id2label (`dict[int, str]`): The labels, whose names give the scheme.
        learned (`bool`, defaults to `True`): A CRF head. `False`: zero transitions, i.e. constrained
            decoding of independent per-word scores; entity probabilities are then the product of the
            words' probabilities rather than CRF marginals.

    Emissions are ``(batch, positions, labels)``; ``mask`` marks the real positions, left-aligned.
    """

    def __init__(self, id2label, learned=True):
        super().__init__()
        num_labels = len(id2label)
        self.learned = learned
        self.allowed = label_constraints(id2label)  # plain lists: not weights, rebuilt from the config
        self.start_transitions = nn.Parameter(torch.zeros(num_labels), requires_grad=learned)
        self.transitions = nn.Parameter(torch.zeros(num_labels, num_labels), requires_grad=learned)
        self.end_transitions = nn.Parameter(torch.zeros(num_labels), requires_grad=learned)

    def scores(self, device=None):
        """``(start, transitions, end)`` in float32 on ``device`` (default: the parameters'): the learned
        scores, ``FORBIDDEN`` where the scheme forbids."""
        params = (self.start_transitions, self.transitions, self.end_transitions)
        return tuple(
            torch.where(
                torch.tensor(ok, device=p.device), p.float(), torch.full_like(p, FORBIDDEN, dtype=torch.float)
            ).to(device or p.device)
            for ok, p in zip(self.allowed, params, strict=True)
        )

    @staticmethod
    def _alphas(emissions, mask, start, transitions):
        """Forward algorithm: ``(batch, positions, labels)`` log-sums of every path's score up to each position."""
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + transitions, dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t, None], step, alpha)  # padding carries the last real position on
            alphas.append(alpha)
        return torch.stack(alphas, dim=1)

    def neg_log_likelihood(self, emissions, tags, mask):
        """``-log p(tags | emissions)`` per sequence (sequences need at least one position)."""
        emissions = emissions.float()
        start, transitions, end = self.scores(emissions.device)
        emitted = emissions.gather(2, tags[..., None]).squeeze(2)
        steps = (transitions[tags[:, :-1], tags[:, 1:]] + emitted[:, 1:]) * mask[:, 1:]
        last = tags.gather(1, (mask.sum(1) - 1).clamp_min(0)[:, None]).squeeze(1)
        gold = start[tags[:, 0]] + emitted[:, 0] + steps.sum(1) + end[last]
        log_z = torch.logsumexp(self._alphas(emissions, mask, start, transitions)[:, -1] + end, dim=-1)
        return log_z - gold

    def word_loss(self, logits, labels):
        """The mean negative log-likelihood per word over the positions whose label is not ``-100``.

        Those positions (a word's first subword) are packed to the left of each row, so the
        ignored subwords, special tokens and padding are skipped, not fed in as labels.
        """
        order, mask = pack_positions(labels != -100)
        if not mask.any():
            return logits.sum() * 0.0
        words = logits.gather(1, order[..., None].expand(-1, -1, logits.shape[-1]))
        tags = labels.gather(1, order).clamp_min(0)
        rows = mask[:, 0]  # rows with at least one labeled word
        return self.neg_log_likelihood(words[rows], tags[rows], mask[rows]).sum() / mask.sum()

    @torch.no_grad()
    def decode(self, emissions, mask):
        """The best-scoring valid label path of each sequence (Viterbi): a list of label id lists."""
        emissions = emissions.float()  # a GPU model's CRF decodes the CPU scores of a pipeline too
        start, transitions, end = self.scores(emissions.device)
        batch, positions, num_labels = emissions.shape
        best = start + emissions[:, 0]
        stay = torch.arange(num_labels, device=emissions.device).expand(batch, num_labels)
        history = []
        for t in range(1, positions):
            value, index = (best[:, :, None] + transitions).max(dim=1)
            real = mask[:, t, None]
            best = torch.where(real, value + emissions[:, t], best)
            history.append(torch.where(real, index, stay))  # through padding, a path stays where it is
        label = (best + end).argmax(-1)
        path = [label]
        for index in reversed(history):
            label = index.gather(1, label[:, None]).squeeze(1)
            path.append(label)
        paths = torch.stack(path[::-1], dim=1).tolist()
        return [row[:n] for row, n in zip(paths, mask.sum(1).tolist(), strict=True)]

    @torch.no_grad()
    def forward_backward(self, log_probs, mask):
        """Forward-backward over a padded batch ``(batch, positions, labels)``: ``(alphas, betas, log_z)``.

        ``alphas[b, t, y]`` (``betas[b, t, y]``): the log-sum of the scores of row ``b``'s paths from its start
        to position ``t`` (from ``t`` to its end) with label ``y`` there, the emission at ``t`` counted in both;
        ``log_z[b]``: the log-sum of all its paths' scores.
        """
        start, transitions, end = self.scores(log_probs.device)
        positions = torch.arange(log_probs.shape[1], device=log_probs.device).expand_as(mask)
        # Each row reversed within its length, padding left in place: the backward pass is a forward one.
        reverse = torch.where(mask, mask.sum(1, keepdim=True) - 1 - positions, positions)[..., None]
        reverse = reverse.expand_as(log_probs)
        alphas = self._alphas(log_probs, mask, start, transitions)
        betas = self._alphas(log_probs.gather(1, reverse), mask, end, transitions.T).gather(1, reverse)
        return alphas, betas, torch.logsumexp(alphas[:, -1] + end, dim=-1)

    @torch.no_grad()
    def group_probabilities(self, log_probs, path, groups):
        """The probability of each ``(start, end)`` run of ``path`` over one sequence's ``(positions, labels)``.

        A CRF's is its marginal (forward-backward); without learned transitions, the product of the
        positions' probabilities along the path.
        """
        log_probs = log_probs.float().log_softmax(-1)
        positions = torch.arange(len(path), device=log_probs.device)
        tags = torch.as_tensor(path, device=log_probs.device)
        picked = log_probs[positions, tags]
        if not self.learned:
            return [float(picked[s:e].sum().exp()) for s, e in groups]
        transitions = self.scores(log_probs.device)[1]
        mask = torch.ones(1, len(path), dtype=torch.bool, device=log_probs.device)
        alphas, betas, log_z = (x[0] for x in self.forward_backward(log_probs[None], mask))
        steps = torch.cat([picked.new_zeros(1), transitions[tags[:-1], tags[1:]] + picked[1:]])
        out = []
        for s, e in groups:  # alpha at the first position, the path's steps inside, beta from the last
            inside = steps[s + 1 : e].sum() - picked[e - 1]
            out.append(float((alphas[s, tags[s]] + inside + betas[e - 1, tags[e - 1]] - log_z).exp().clamp(max=1.0)))
        return out


def label_decoder(model):
    """The model's CRF (``model.crf``: a layer classifier's with ``use_crf``, or its ONNX export's), else the
    constraints of its labels alone."""
    crf = getattr(model, "crf", None)
    return crf if crf is not None else LinearChainCRF(model.config.id2label, learned=False)


class LayerTokenClassificationPipeline(TokenClassificationPipeline):
    """``pipeline("token-classification")`` whose labels form valid sequences; see the module docstring.

    With ``decoding="viterbi"`` (the default), the units the aggregation strategy labels (words for
    ``first``, ``average``, ``max``; tokens for ``none``, ``simple``) are decoded together, with the
    model's CRF where it has one, and each entity's ``score`` is its probability under that decoder.
    """

    def _sanitize_parameters(self, decoding=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if decoding is not None:
            postprocess["decoding"] = check_decoding(decoding)
        return preprocess, forward, postprocess

    def postprocess(self, all_outputs, aggregation_strategy=AggregationStrategy.NONE, ignore_labels=None, **kwargs):
        # `aggregate`, which the stock postprocess calls once per window, reads the choice from here.
        self.decoding = kwargs.pop("decoding", DECODINGS[0])
        return super().postprocess(all_outputs, aggregation_strategy=aggregation_strategy, ignore_labels=ignore_labels)

    def aggregate_word(self, entities, aggregation_strategy):
        word = super().aggregate_word(entities, aggregation_strategy)
        if getattr(self, "decoding", DECODINGS[0]) == "argmax":
            return word
        # The word's row of label probabilities, as the strategy picks it, for the decoder.
        rows = torch.stack([torch.as_tensor(entity["scores"]) for entity in entities])
        if aggregation_strategy == AggregationStrategy.AVERAGE:
            word["scores"] = rows.mean(0)
        else:  # FIRST, or MAX: the subword holding the highest score
            word["scores"] = rows[
                0 if aggregation_strategy == AggregationStrategy.FIRST else rows.max(1).values.argmax()
            ]
        return word

    def aggregate(self, pre_entities, aggregation_strategy):
        if getattr(self, "decoding", DECODINGS[0]) == "argmax" or not pre_entities:
            return super().aggregate(pre_entities, aggregation_strategy)
        by_token = aggregation_strategy in (AggregationStrategy.NONE, AggregationStrategy.SIMPLE)
        units = pre_entities if by_token else self.aggregate_words(pre_entities, aggregation_strategy)
        log_probs = torch.stack([torch.as_tensor(unit["scores"]) for unit in units]).float().clamp_min(1e-30).log()
        decoder = label_decoder(self.model)
        path = decoder.decode(log_probs[None], torch.ones(1, len(units), dtype=torch.bool))[0]
        id2label = self.model.config.id2label
        entities = [
            {
                "entity": id2label[tag],
                "score": float(log_probs[i, tag].exp()),
                **({"index": unit["index"]} if by_token else {}),
                "word": unit["word"],
                "start": unit["start"],
                "end": unit["end"],
            }
            for i, (unit, tag) in enumerate(zip(units, path, strict=True))
        ]
        if aggregation_strategy == AggregationStrategy.NONE:
            return entities
        groups = label_groups([entity["entity"] for entity in entities])
        scores = decoder.group_probabilities(log_probs, path, groups)
        return [
            {**self.group_sub_entities(entities[s:e]), "score": p} for (s, e), p in zip(groups, scores, strict=True)
        ]

    def get_tag(self, entity_name):
        # IOBES / BILOU too: S- starts an entity as B- does, E- continues one as I- does.
        prefix, kind = split_label(entity_name)
        return ("B" if prefix in ("B", "S") else "I"), kind


class TaskView:
    """What the pipeline's decoding reads of a model (``config.id2label``, ``crf``), for one task of a multi-task
    model: its labels and its decoder."""

    def __init__(self, model, name):
        id2label = model.config.task_id2label(name)
        self.config = type("TaskLabels", (), {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}})
        self.crf = model.task_decoder(name)


class MultiTaskLayerTokenClassificationPipeline(LayerTokenClassificationPipeline):
    """[`LayerTokenClassificationPipeline`] over a multi-task model: every task's entities, each with its
    ``"task"``, in one list sorted by position (entities of different tasks may overlap). ``tasks=[...]``
    chooses some. One encoder pass per window gives every task's scores; each task is then decoded as a
    single-task model with its labels (and CRF) would be.
    """

    def _sanitize_parameters(self, tasks=None, **kwargs):
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if tasks is not None:
            names = [tasks] if isinstance(tasks, str) else list(tasks)
            unknown = [name for name in names if name not in self.model.config.tasks]
            if unknown:
                raise ValueError(f"tasks {unknown} are not the model's; it has {self.model.config.task_names}.")
            postprocess["tasks"] = names
        return preprocess, forward, postprocess

    def _forward(self, model_inputs):
        outputs = super()._forward(model_inputs)
        # One tensor, the tasks' scores side by side: batched outputs are split per row as tensors.
        outputs["logits"] = torch.cat([outputs["logits"][name] for name in self.model.config.task_names], dim=-1)
        return outputs

    def postprocess(self, all_outputs, aggregation_strategy=AggregationStrategy.NONE, ignore_labels=None, **kwargs):
        config, model = self.model.config, self.model
        names = kwargs.pop("tasks", None) or config.task_names
        entities, start = [], 0
        offsets = {}
        for name in config.task_names:
            offsets[name] = (start, start + len(config.tasks[name]["labels"]))
            start = offsets[name][1]
        try:
            for name in names:
                low, high = offsets[name]
                sliced = [{**outputs, "logits": outputs["logits"][..., low:high]} for outputs in all_outputs]
                # The stock decoding reads `self.model.config.id2label`: for this task, its labels and decoder.
                self.model = TaskView(model, name)
                found = super().postprocess(sliced, aggregation_strategy, ignore_labels, **kwargs)
                entities += [{**entity, "task": name} for entity in found]
        finally:
            self.model = model
        return sorted(entities, key=lambda entity: (entity.get("start") or 0, names.index(entity["task"])))
