"""The one reader/writer under every format (zeroformer/io/files.py, io/table.py): hostile
safetensors headers, unknown tensors, old config.json files, writes that replace only models,
an exported BERT whose tokenizer transformers reads."""

import json
import struct

import pytest
import torch

import zeroformer
from zeroformer.config import preset
from zeroformer.errors import UserError
from zeroformer.io import checkpoint as ckpt
from zeroformer.models import build_model


def tiny(**over):
    torch.manual_seed(0)
    return build_model(preset("tiny", **{**dict(vocab_size=37, n_layer=1, d_model=16, n_head=2,
                                                d_ff=32, max_seq_len=8), **over}))


def write_raw_safetensors(path, header: dict, data: bytes = b""):
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


@pytest.mark.parametrize("header,data,needle", [
    ({"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}, b"\0" * 16,
     "claims shape"),                              # sizes that do not match the bytes
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8,
     "claims shape"),                              # bytes beyond the end of the file
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": "x"}}, b"\0" * 8, "malformed"),
])
def test_hostile_safetensors_headers_are_refused_before_reading(tmp_path, header, data, needle):
    model = tiny()
    ckpt.save_checkpoint(model, tmp_path / "c")
    write_raw_safetensors(tmp_path / "c" / "model.safetensors", header, data)
    with pytest.raises(UserError, match=needle):
        zeroformer.load(tmp_path / "c")


def test_header_length_beyond_the_file(tmp_path):
    ckpt.save_checkpoint(tiny(), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(UserError, match="header length"):
        zeroformer.load(tmp_path / "c")


def test_old_config_with_extra_dict_loads(tmp_path):
    """config.json files written before the typed fields: BERT heads/labels and Marian-style
    embedding sharing come from "extra"; a leaked training input is dropped with a warning."""
    cfg = preset("bert-base", vocab_size=50, n_layer=1, d_model=16, n_head=2, d_ff=32,
                 max_seq_len=16, heads=["classify"], num_labels=3, labels=["a", "b", "c"])
    model = build_model(cfg)
    ckpt.save_checkpoint(model, tmp_path / "c")
    path = tmp_path / "c" / "config.json"
    raw = json.loads(path.read_text())
    raw["extra"] = {k: raw.pop(k) for k in ("heads", "num_labels", "labels")}
    raw["extra"]["data"] = "/home/someone/train.tsv"
    raw.pop("share_embeddings")
    path.write_text(json.dumps(raw))
    with pytest.warns(UserWarning, match="data"):
        loaded = zeroformer.load(tmp_path / "c")
    assert loaded.config == cfg and loaded.labels == ["a", "b", "c"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values()))
    raw["extra"] = ["not", "a", "dict"]
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="extra"):
        zeroformer.load(tmp_path / "c")


def test_writer_replaces_only_model_folders(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a model folder"):
        ckpt.save_checkpoint(tiny(), out)
    assert (out / "notes.txt").read_text() == "keep me"
    ckpt.save_checkpoint(tiny(), tmp_path / "model")
    ckpt.save_checkpoint(tiny(n_layer=2), tmp_path / "model")  # a model folder is replaced
    assert zeroformer.load(tmp_path / "model").config.n_layer == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "model"]  # no temp left


def test_unknown_tensor_in_a_hf_folder_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=37, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    hf.save_pretrained(tmp_path)
    zeroformer.load(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state["transformer.h.0.mlp.c_gate.weight"] = torch.zeros(16, 16)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError, match="c_gate"):
        zeroformer.load(tmp_path)


def test_bert_export_writes_the_tokenizer_transformers_reads(tmp_path):
    """The exported folder's tokenizer comes from the model's tokenizer object (the model does
    not know the folder it was read from)."""
    from zeroformer.tokenizers.wordpiece import WordPieceTokenizer

    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
             "##s", "un", "##happy", "."]
    hf = transformers.BertModel(transformers.BertConfig(
        vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16))
    hf.save_pretrained(tmp_path / "src")
    (tmp_path / "src" / "vocab.txt").write_text("\n".join(words) + "\n")
    ours = zeroformer.load(tmp_path / "src")
    assert isinstance(ours.tokenizer, WordPieceTokenizer)
    (tmp_path / "src" / "vocab.txt").unlink()     # nothing may be copied from the source
    from zeroformer.io.hf_bert import export

    export(ours, tmp_path / "out")
    ref = transformers.BertTokenizerFast.from_pretrained(tmp_path / "out")
    text = "The cats sat on the unhappy mat."
    assert ref(text)["input_ids"] == ours.tokenizer.encode(text, add_special_tokens=True)
    assert not hasattr(ours, "hf_source")


def test_a_run_saved_with_the_old_extra_field_resumes(tmp_path, capsys):
    """Runs written before ModelConfig.extra became typed fields (and before TrainConfig.extra)
    resume: the saved configs are read with the new fields' meaning, not compared raw."""
    from zeroformer.cli import main

    out = tmp_path / "run"
    base = ["train", "toy", "--out", str(out), "--progress=false", "--device=cpu", "--n_layer=1",
            "--batch_size=4", "--seed", "3"]
    assert main([*base, "--max-steps", "2", "--save-every", "2"]) == 0
    folder = ckpt.latest_checkpoint(out)
    raw = json.loads((folder / "config.json").read_text())
    for k in ("heads", "num_labels", "labels", "share_embeddings"):
        raw.pop(k)
    (folder / "config.json").write_text(json.dumps({**raw, "extra": {}}))
    state = json.loads((folder / "trainer_state.json").read_text())
    del state["train_config"]["extra"]
    (folder / "trainer_state.json").write_text(json.dumps(state))
    assert main([*base, "--resume", "--max-steps", "3"]) == 0, capsys.readouterr().err
    assert ckpt.latest_checkpoint(out).name == "step-00000003"
