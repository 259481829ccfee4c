"""Many documents: a corpus run (chunks, shards, resume, summary), torchrun's processes, Ray Data.

- chunks: documents in, entities out (`annotate_documents`); a stream of records cut in chunks dealt to shards.
- resumable: the output written chunk by chunk, its progress files beside it, resumed after a kill.
- summary: what produced a run and what it did (`describe_run`, `RunTally`), saved beside it; shards merged.
- annotate: the corpus run itself (`annotate_corpus`, `label_sentences`) and its progress line.
- parallel: torchrun's processes, a shard each, merged by rank 0.
- ray_io: Ray Data's corpus rows, the files read by tasks, the datasink writing the output format.
- ray_engine: Ray's actors annotating a dataset, and ``predict --engine ray``'s driver.

May import: base, model, formats, running.
"""
