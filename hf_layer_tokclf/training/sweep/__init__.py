"""Which layer? Linear probes on every layer of a frozen encoder, from one pass over the data.

`sweep` runs the frozen encoder once over the training and dev sentences, with all hidden states,
and keeps for every word the vector of its first subword at every requested layer (a word in
several windows of a long sentence takes the window `merge_windows` would take). The vectors are
cached in memory or in a disk cache, so the probe epochs never run the encoder again. One linear
probe per layer is then trained on them, all at once: the weights are a
``[num_layers, hidden, num_labels]`` tensor, every minibatch is one batched matmul, and the loss is
the sum of the layers' cross-entropies, so each probe gets exactly the gradient it would get
alone. Every probe is scored with seqeval entity-level F1 on the dev words; the recommendation is
the shallowest layer within ``tolerance`` F1 points of the best.

A probe is exactly the family's layer classifier (``BertForLayerTokenClassification(hidden_layer=k)``,
``RobertaForLayerTokenClassification(...)``, ...) with the probe as its classifier (dropout is off in
eval mode): `SweepResult.probe_model` builds that model, which `sentences.evaluate_sentences` scores like
any other.

Several corpora, one per task of a multi-task model (`sweep_tasks`, `run_task_sweep`): the encoder is loaded
once and reads each corpus once, and each task's probes learn from its own corpus; a layer is recommended per task,
and the joint model's `train` command names each task's layer.

The modules, each importing only those before it: `result` (`SweepResult`, `TaskSweepResult` and the layer rules),
`extract` (the encoder pass and the feature stores), `probes` (training, applying and scoring the
probes), `settings` (defaults and checks), `report` (table, JSON, plot), `finetune` (fine-tuning the
best layers), `run` (`sweep` and the files-to-files `run_sweep`) and `tasks` (the multi-task sweep).
"""

from .extract import CACHES
from .probes import auto_epochs
from .report import write_sweep
from .result import SweepResult, TaskSweepResult, finetune_candidates, recommend_layer, resolve_layers
from .run import run_sweep, sweep
from .settings import SWEEP_DEFAULTS
from .tasks import run_task_sweep, sweep_tasks

__all__ = [
    "CACHES",
    "SWEEP_DEFAULTS",
    "SweepResult",
    "TaskSweepResult",
    "auto_epochs",
    "finetune_candidates",
    "recommend_layer",
    "resolve_layers",
    "run_sweep",
    "run_task_sweep",
    "sweep",
    "sweep_tasks",
    "write_sweep",
]
