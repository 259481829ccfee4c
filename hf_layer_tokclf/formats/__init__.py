"""Reading and writing: labeled sentences (CoNLL, JSON lines, datasets), predict's inputs and outputs, corpus
formats (PubMed XML, BioC, PubTator) and the HTML page.

- lines: `DataError`, and a user file's lines read in bounded pieces (record-size limit, UTF-8, gzip, sniffing).
- sentence: `Sentence`, words and labels that remember their file and line.
- labels: label schemes (IOB1, IOBES, BILOU, ...) to IOB2 and back, the label set, typos in training labels.
- conll: CoNLL(-U) files read as sentences, and what a CoNLL line can hold.
- records: JSON lines records and `datasets` rows as sentences (`Columns`).
- loading: `load_sentences` from a file, a ``save_to_disk`` folder or a Hub dataset.
- corpus_documents: a corpus's `Document`, `Passage` and `RecordError`.
- corpus_readers: text lines, JSON lines and PubTator read as documents; `read_corpus` for every corpus format.
- pubmed_bioc: PubMed XML, BioC XML and BioC JSON read as documents.
- corpus_scan: a corpus file's format and record count, from a cheap look.
- corpus_writers: documents and their entities written as JSON lines, PubTator, BioC XML or BioC JSON.
- documents: which format predict's input is in, and which format to write.
- rendering: entities as an HTML page.

May import: base.
"""
