"""Reading and writing: labeled sentences (CoNLL, JSON lines, datasets), predict's inputs and outputs, corpus
formats (PubMed XML, BioC, PubTator) and the HTML page.

May import: base.
"""
