"""`zeroformer explain`'s page: one self-contained HTML file (inline CSS and JavaScript, the data
of explain.py embedded as JSON; no network, no library) that draws a forward pass.

The page reads its data from ``<script type="application/json" id="data">`` and builds, in order:
the tokens (#tokens), embedding + position (#embedding), the attention of a chosen stack, layer
and head (#stack, #layer, #head, the matrix #attn with one ``data-w`` per cell; hovering a query
row colours the key tokens #attn-keys by where it looks), the residual stream's norms
(#residual), and the output (#pos, the temperature slider #temp, the top-10 table #top whose rows
carry ``data-id`` and ``data-p`` = softmax(z / T) over the embedded logits).
"""

from __future__ import annotations

import html
import json

CSS = r"""
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.note { background: #fff6d6; padding: .3em .6em; border-left: 3px solid #e0b000; margin: .3em 0; }
.muted { color: #666; } .side { margin: .4em 0; }
.tok { display: inline-block; border: 1px solid #bbb; border-radius: 4px; padding: 1px 4px;
       margin: 2px; font-family: ui-monospace, monospace; white-space: pre; }
.tok sub { color: #888; font-size: .75em; margin-left: 2px; }
table { border-collapse: collapse; } td, th { padding: 1px 4px; font-size: 12px; }
#attn td.w { width: 14px; height: 14px; padding: 0; border: 1px solid #fff; }
#attn th.q { text-align: right; font-family: ui-monospace, monospace; cursor: pointer; }
#attn th.k { writing-mode: vertical-rl; font-family: ui-monospace, monospace; font-weight: normal; }
#attn tr.hover th.q { background: #ffe08a; }
.num { text-align: right; font-family: ui-monospace, monospace; }
canvas { vertical-align: middle; border: 1px solid #eee; }
.bar { display: inline-block; height: 10px; background: #4a7bd0; vertical-align: middle; }
"""

SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
const visible = (s) => s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
function chip(t) {
  return el("span", {class: "tok", title: "id " + t.id + ", text " + JSON.stringify(t.text)},
            visible(t.piece), el("sub", {text: String(t.id)}));
}
const SIDE_NAMES = {input: "input", source: "source (encoder)", target: "target (decoder)"};

function showSummary() {
  const m = D.model;
  const kind = {decoder: "decoder-only language model", encoder: "BERT encoder",
                encoder_decoder: "encoder-decoder (translator)"}[D.kind];
  $("summary").append(el("p", {text: m.path + ": " + kind + ", " + m.layers + " layers" +
    (m.encoder_layers ? " (+ " + m.encoder_layers + " encoder layers)" : "") + ", " + m.heads +
    " heads (" + m.kv_heads + " key/value), d_model " + m.d_model + ", vocabulary " +
    m.vocab_size + ", " + m.position + " positions, " + m.norm + (m.prenorm ? " pre-norm" :
    " post-norm") + ", " + m.parameters.toLocaleString("en") + " parameters"}));
  for (const n of D.notes) $("notes").append(el("div", {class: "note", text: n}));
}

function showTokens() {
  for (const [side, toks] of Object.entries(D.tokens)) {
    const d = el("div", {class: "side"}, el("b", {text: SIDE_NAMES[side] + " (" + toks.length +
                                                  " tokens): "}));
    toks.forEach((t) => d.append(chip(t)));
    $("tokens").append(d);
  }
}

function strip(values, scale) {  // one row of numbers as coloured cells (red +, blue -)
  const c = el("canvas", {width: values.length * 5, height: 10});
  const g = c.getContext("2d");
  values.forEach((v, i) => {
    const a = Math.min(1, Math.abs(v) / scale);
    g.fillStyle = v >= 0 ? "rgba(200,40,40," + a + ")" : "rgba(40,80,200," + a + ")";
    g.fillRect(i * 5, 0, 5, 10);
  });
  return c;
}

function showEmbedding() {
  for (const [side, e] of Object.entries(D.embedding)) {
    const parts = ["token", "position", "h0"].filter((p) => e[p]);
    const names = {token: "E[x]\u00b7s", position: "P[pos]", h0: "h\u2080 (block 1's input)"};
    const t = el("table", {class: "embedding", "data-side": side});
    const head = el("tr", {}, el("th", {text: "token"}));
    parts.forEach((p) => head.append(el("th", {text: "\u2016" + names[p] + "\u2016"}),
                                     el("th", {text: "first " + e.dims + " dims"})));
    t.append(head);
    const scale = {};
    parts.forEach((p) => { scale[p] = Math.max(...e[p].head.flat().map(Math.abs)) || 1; });
    D.tokens[side].forEach((tok, i) => {
      const r = el("tr", {}, el("td", {}, chip(tok)));
      parts.forEach((p) => {
        r.append(el("td", {class: "num", text: e[p].norm[i].toFixed(3)}),
                 el("td", {}, strip(e[p].head[i], scale[p])));
      });
      t.append(r);
    });
    $("embedding").append(el("h3", {text: SIDE_NAMES[side]}), t);
  }
  if (!Object.values(D.embedding).some((e) => e.position))
    $("embedding").append(el("p", {class: "muted", text: "No position vector is added: this " +
      "model rotates queries and keys by their position inside attention (RoPE)."}));
}

let attnRows = [];
function currentMatrix() {
  const s = D.attention[$("stack").value], layer = s.layers[$("layer").value];
  const h = $("head").value;
  if (h !== "mean") return layer[h];
  return layer[0].map((row, i) => row.map((_, j) =>
    layer.reduce((acc, head) => acc + head[i][j], 0) / layer.length));
}
function fillLayerHead() {
  const s = D.attention[$("stack").value];
  $("layer").replaceChildren(...s.layers.map((_, i) => el("option", {value: i, text: "layer " + (i + 1)})));
  $("head").replaceChildren(...s.layers[0].map((_, i) => el("option", {value: i, text: "head " + (i + 1)})),
                            el("option", {value: "mean", text: "mean of the heads"}));
  drawAttention();
}
function drawAttention() {
  const s = D.attention[$("stack").value], m = currentMatrix();
  const q = D.tokens[s.queries], k = D.tokens[s.keys];
  const t = $("attn");
  const head = el("tr", {}, el("th"));
  k.forEach((tok) => head.append(el("th", {class: "k", text: visible(tok.text)})));
  t.replaceChildren(head);
  attnRows = m;
  m.forEach((row, i) => {
    const r = el("tr", {"data-row": i}, el("th", {class: "q", text: visible(q[i].text)}));
    row.forEach((w, j) => r.append(el("td", {class: "w", "data-w": w,
      title: JSON.stringify(q[i].text) + " \u2192 " + JSON.stringify(k[j].text) + ": " + w.toFixed(4),
      style: "background: rgba(30,90,200," + Math.sqrt(w) + ")"})));
    r.addEventListener("mouseenter", () => hoverRow(i));
    t.append(r);
  });
  $("attn-what").textContent = s.label + ": row = query (" + SIDE_NAMES[s.queries] +
    "), column = key (" + SIDE_NAMES[s.keys] + "); each row is softmax(QK\u1d40/\u221ad\u2096 + M) and sums to 1 " +
    "(shade \u221d \u221aweight, so that small weights stay visible; hover a cell for its value, a row for where that token looks).";
  hoverRow(m.length - 1);
}
function hoverRow(i) {
  const s = D.attention[$("stack").value], row = attnRows[i];
  document.querySelectorAll("#attn tr.hover").forEach((r) => r.classList.remove("hover"));
  const tr = document.querySelector('#attn tr[data-row="' + i + '"]');
  if (tr) tr.classList.add("hover");
  const box = $("attn-keys");
  box.replaceChildren(el("span", {text: "\u201c" + visible(D.tokens[s.queries][i].text) +
                                  "\u201d looks at: "}));
  D.tokens[s.keys].forEach((tok, j) => {
    const c = chip(tok);
    c.setAttribute("data-w", row[j]);
    c.style.background = "rgba(255,170,0," + row[j] + ")";
    box.append(c);
  });
}

function showResidual() {
  for (const r of D.residual) {
    const toks = D.tokens[r.side];
    const t = el("table", {class: "residual", "data-stack": r.name});
    const head = el("tr", {}, el("th", {text: "\u2016h\u2097\u2016"}));
    toks.forEach((tok) => head.append(el("th", {class: "k", text: visible(tok.text)})));
    head.append(el("th", {text: "mean"}));
    t.append(head);
    const max = Math.max(...r.norms.flat());
    r.norms.forEach((row, l) => {
      const tr = el("tr", {}, el("th", {text: l === 0 ? "embeddings" : "after block " + l}));
      row.forEach((v) => tr.append(el("td", {class: "num", title: v.toFixed(3), text: v.toFixed(v < 10 ? 2 : 1),
                                             style: "background: rgba(0,150,80," + (0.6 * Math.log1p(v) / Math.log1p(max)) + ")"})));
      tr.append(el("td", {class: "num", text: (row.reduce((a, b) => a + b, 0) / row.length).toFixed(2)}));
      t.append(tr);
    });
    const label = {self: "the residual stream", encoder: "encoder", decoder: "decoder"}[r.name];
    $("residual").append(el("h3", {text: label}), t);
  }
}

function softmax(z, T) {
  const x = z.map((v) => (v === null ? -Infinity : v / T));
  const m = Math.max(...x), e = x.map((v) => Math.exp(v - m)), s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
function showPrediction() {
  const P = D.prediction;
  if (!P) {
    const last = D.residual[D.residual.length - 1];
    $("pred-note").textContent = "This BERT has no masked-LM head (a sentence-embedding model " +
      "such as MiniLM), so it predicts no token. Its output is the last hidden state h_L; " +
      "\u2016h_L\u2016 per token is the last row of the residual table above: " +
      last.norms[last.norms.length - 1].map((v) => v.toFixed(2)).join(", ") + ".";
    $("pred-controls").hidden = true;
    return;
  }
  const toks = D.tokens[P.side];
  $("pos").replaceChildren(...toks.map((t, i) => el("option", {value: i,
    text: i + ": " + visible(t.text)})));
  $("pos").value = P.default;
  drawPrediction();
}
function drawPrediction() {
  const P = D.prediction, row = P.positions[$("pos").value], T = parseFloat($("temp").value);
  const p = softmax(row.logits, T);
  $("temp-value").textContent = T.toFixed(2);
  const t = $("top");
  t.replaceChildren(el("tr", {}, ...["#", "token", "id", "logit z", "p = softmax(z/T)", "",
                                     "p (all " + P.vocab_size + ", T = 1)"].map((h) => el("th", {text: h}))));
  row.ids.slice(0, 10).forEach((id, r) => {
    const tok = P.vocab[id];
    t.append(el("tr", {"data-id": id, "data-p": p[r]}, el("td", {text: String(r + 1)}),
      el("td", {}, chip(tok)), el("td", {class: "num", text: String(id)}),
      el("td", {class: "num", text: row.logits[r] === null ? "-inf" : row.logits[r].toFixed(3)}),
      el("td", {class: "num p", text: p[r].toFixed(4)}),
      el("td", {}, el("span", {class: "bar", style: "width:" + (200 * p[r]) + "px"})),
      el("td", {class: "num", text: row.p[r].toFixed(4)})));
  });
  const mass = row.p.reduce((a, b) => a + b, 0);
  const i = parseInt($("pos").value, 10);
  $("pred-note").textContent = "Predicting " + P.what + " (" + JSON.stringify(D.tokens[P.side][i].text) +
    "). Embedded: the " + P.top + " largest of the " + P.vocab_size + " logits at each position" +
    (P.top < P.vocab_size ? "; the slider's softmax(z/T) runs over these " + P.top +
     " only (at T = 1 they hold " + (100 * mass).toFixed(2) + "% of the probability)." :
     ": the whole vocabulary, so softmax(z/T) is exact.");
}

function main() {
  showSummary(); showTokens(); showEmbedding();
  $("stack").replaceChildren(...D.attention.map((s, i) => el("option", {value: i, text: s.label})));
  const cross = D.attention.findIndex((s) => s.name === "cross");
  if (cross >= 0) $("stack").value = cross;
  $("stack").addEventListener("change", fillLayerHead);
  $("layer").addEventListener("change", drawAttention);
  $("head").addEventListener("change", drawAttention);
  fillLayerHead();
  showResidual();
  $("pos").addEventListener("change", drawPrediction);
  $("temp").addEventListener("input", drawPrediction);
  showPrediction();
  document.body.setAttribute("data-ready", "1");
}
main();
"""

BODY = """<h1>{title}</h1>
<section id="summary"></section><section id="notes"></section>
<h2>1. Tokens and their ids</h2>
<p class="muted">Each box is one token: its vocabulary piece (sub-word marks visible: \u0120 or
\u2581 = a space before, ## = continues a word; \u2423 = space) and its id.</p>
<div id="tokens"></div>
<h2>2. Embedding + position</h2>
<p class="muted">h\u2080 = E[x]\u00b7s + P[pos] (+ segment, then LayerNorm for BERT): the token's
row of the embedding table (scaled by s = \u221ad_model in the 2017 paper), plus the position's
vector. Colours: the first dimensions (red +, blue \u2212).</p>
<div id="embedding"></div>
<h2>3. Attention</h2>
<p><label>attention <select id="stack"></select></label>
<label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label></p>
<p class="muted" id="attn-what"></p>
<div id="attn-keys"></div>
<table id="attn"></table>
<h2>4. The residual stream</h2>
<p class="muted">\u2016h\u2097\u2016 of each token after the embeddings and after each block
(pre-norm models add to the stream, so it grows; post-norm models normalise it after every
sub-layer). Shade \u221d log(1 + \u2016h\u2097\u2016), so that a few huge norms (a first
token used as an "attention sink") do not wash out the rest.</p>
<div id="residual"></div>
<h2>5. The output</h2>
<p id="pred-controls"><label>position <select id="pos"></select></label>
<label>temperature T <input type="range" id="temp" min="0.05" max="3" step="0.05" value="1">
<span id="temp-value"></span></label></p>
<table id="top"></table>
<p id="pred-note"></p>
"""


def render(data: dict) -> str:
    """The whole page as one string. The JSON is escaped so that no text in it (a token such as
    "</script>") can end the script element."""
    blob = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = html.escape(f"zeroformer explain: {data['model']['path']}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{CSS}</style></head><body>\n{BODY.format(title=title)}\n"
            f'<script type="application/json" id="data">{blob}</script>\n'
            f"<script>{SCRIPT}</script>\n</body></html>\n")
