"""The inference layer: what every front end (the CLI, recipes, the coming `zeroformer serve`)
needs to run a model for a job, and nothing about argument parsing or printing.

    load.py            load a language model, a translator, an encoder or a classifier for a job
    text.py            prompt ids, fitting the context, EOS ids, streaming text, one generate call
    chat.py            render a chat template; one assistant reply
    translation.py     translate a batch of sentences (beam search); BLEU / chrF
    embedding.py       embed a batch of texts (mean-pooled BERT); rank by cosine similarity
    classification.py  classify a batch; accuracy and macro-F1
    perplexity.py      perplexity of a text with strided windows
    viz.py             pictures: attention maps (any stack, across a run), the positional table, loss
    trace.py           one forward pass kept: tokens, attention of every stack, residual stream
    explain.py         the explain page's data; explain_page.py: the self-contained HTML page
    split_steps.py     how a tokenizer splits a text, merge by merge

It imports the library below it (models, io, generate, train's data readers, tokenizers) and
never a front end (docs/architecture.md; tests/test_layers.py keeps it so).
"""
