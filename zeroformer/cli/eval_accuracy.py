"""`zeroformer eval accuracy --model PATH --data FILE.tsv|jsonl`: a BERT classifier's accuracy and
macro-F1 on a labelled file (zeroformer/data/labelled.py; a label the model does not know, or a
line with the wrong columns, is an error naming FILE:LINE, exit 2).

    accuracy = mean_i [argmax_c logits_i = y_i]       macro-F1 = mean_c 2 P_c R_c / (P_c + R_c)
"""

from __future__ import annotations

import json

from ..errors import UserError


def register(sub):
    p = sub.add_parser("accuracy", help="accuracy / macro-F1 of a BERT classifier on a TSV/JSONL file")
    p.add_argument("--model", required=True, help="a classifier (zeroformer train classify, or HF)")
    p.add_argument("--data", required=True, help="labelled file: text[<TAB>text_b]<TAB>label or JSONL")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args):
    from ..data.labelled import read_labelled
    from ..inference.classification import classifier_scores
    from ..inference.load import load_encoder

    model, tok = load_encoder(args.model, classifier=True)
    rows = read_labelled(args.data, model.labels)
    if args.batch_size < 1 or args.max_length < 3:
        raise UserError("--batch-size must be >= 1 and --max-length >= 3")
    result = classifier_scores(model, tok, rows, args.batch_size,
                               min(args.max_length, model.config.max_seq_len))
    result["n"] = len(rows)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"accuracy {result['accuracy']:.4f}  macro_f1 {result['macro_f1']:.4f}  n {len(rows)}")
    return 0
