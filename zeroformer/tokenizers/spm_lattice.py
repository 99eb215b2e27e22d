"""The segmentation lattice of many strings at once, vectorised with numpy: the unigram trainer's
E-step (forward-backward) and Viterbi.

A string x of length n has nodes 0..n (positions) and an edge i -> j for every candidate piece
x[i:j]; a path 0 -> n is a segmentation, scored by the sum of its pieces' log-probabilities.

    forward   alpha(0) = 0,  alpha(j) = logsumexp_{edges i->j} alpha(i) + s(piece)
    backward  beta(n) = 0,   beta(i)  = logsumexp_{edges i->j} s(piece) + beta(j)
    Z = alpha(n) = log sum over segmentations of exp(score)          (log-likelihood of x)
    posterior of an edge  P(i->j | x) = exp(alpha(i) + s(piece) + beta(j) - Z)
    expected count  E[c(piece)] = sum_x freq(x) * sum_{edges of piece in x} P(edge | x)
    Viterbi: the same forward recursion with max instead of logsumexp, then a back-trace.

All strings are processed together, one end position j at a time (a python loop of max-length
steps, each a numpy operation over every edge that ends at j in any string): edges sorted by
(j, string) so that the edges ending at one node are a contiguous group, reduced with
``np.maximum.reduceat`` / ``np.add.reduceat``.

Arrays (E edges, N = sum(len + 1) nodes, S strings): ``edge_str, edge_i, edge_j, edge_piece`` (E,),
``lengths`` (S,), node of (string s, position p) = ``off[s] + p``.
"""

from __future__ import annotations

import numpy as np


class Lattice:
    def __init__(self, lengths, edge_str, edge_i, edge_j, edge_piece):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.off = np.concatenate([[0], np.cumsum(self.lengths + 1)])
        self.n_nodes = int(self.off[-1])
        order = np.lexsort((edge_i, edge_str, edge_j))  # by end position, then string
        self.s = np.asarray(edge_str, dtype=np.int64)[order]
        self.i = np.asarray(edge_i, dtype=np.int64)[order]
        self.j = np.asarray(edge_j, dtype=np.int64)[order]
        self.piece = np.asarray(edge_piece, dtype=np.int64)[order]
        self.start = self.off[self.s] + self.i  # node ids
        self.end = self.off[self.s] + self.j
        self.fwd = self._steps(self.j, self.end)
        back = np.lexsort((self.j, self.s, -self.i))  # by start position (descending), string
        self.back = back
        self.bwd = self._steps(self.i[back], self.start[back])

    @staticmethod
    def _steps(pos, node):
        """[(lo, hi, group starts relative to lo, group sizes, node of each group)] per position."""
        steps = []
        if not len(pos):
            return steps
        cut = np.flatnonzero(np.diff(pos)) + 1
        bounds = np.concatenate([[0], cut, [len(pos)]])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            nd = node[lo:hi]
            g = np.concatenate([[0], np.flatnonzero(np.diff(nd)) + 1])
            sizes = np.diff(np.concatenate([g, [hi - lo]]))
            steps.append((int(lo), int(hi), g, sizes, nd[g]))
        return steps

    def subset(self, keep) -> Lattice:
        """The lattice with only the edges where `keep` (E,) is true."""
        return Lattice(self.lengths, self.s[keep], self.i[keep], self.j[keep], self.piece[keep])

    def forward(self, score):
        """alpha (N,) for piece log-probabilities `score`; unreachable nodes are -inf."""
        alpha = np.full(self.n_nodes, -np.inf)
        alpha[self.off[:-1]] = 0.0
        for lo, hi, g, sizes, nodes in self.fwd:
            alpha[nodes] = _logsumexp_groups(alpha[self.start[lo:hi]] + score[self.piece[lo:hi]],
                                             g, sizes)
        return alpha

    def backward(self, score):
        beta = np.full(self.n_nodes, -np.inf)
        beta[self.off[1:] - 1] = 0.0
        end, piece = self.end[self.back], self.piece[self.back]
        for lo, hi, g, sizes, nodes in self.bwd:
            beta[nodes] = _logsumexp_groups(beta[end[lo:hi]] + score[piece[lo:hi]], g, sizes)
        return beta

    def expected_counts(self, score, freq, n_pieces):
        """E-step: (expected count of each piece (n_pieces,), sum_x freq(x) * Z(x))."""
        alpha, beta = self.forward(score), self.backward(score)
        z = alpha[self.off[1:] - 1]
        ok = np.isfinite(z)
        post = np.exp(alpha[self.start] + score[self.piece] + beta[self.end] - z[self.s])
        post = np.where(ok[self.s], post, 0.0) * freq[self.s]
        return np.bincount(self.piece, weights=post, minlength=n_pieces), float(freq[ok] @ z[ok])

    def viterbi(self, score):
        """Best segmentation of every string -> (best score (S,), -inf when none; the pieces as
        parallel arrays (string index, piece id), one entry per token)."""
        best = np.full(self.n_nodes, -np.inf)
        best[self.off[:-1]] = 0.0
        arg = np.full(self.n_nodes, -1, dtype=np.int64)
        for lo, hi, g, sizes, nodes in self.fwd:
            v = best[self.start[lo:hi]] + score[self.piece[lo:hi]]
            m = np.maximum.reduceat(v, g)
            first = np.where(v == np.repeat(m, sizes), np.arange(lo, hi), hi)
            best[nodes] = m
            arg[nodes] = np.minimum.reduceat(first, g)  # the first edge reaching the max
        last = self.off[1:] - 1
        total = best[last]
        cur = np.flatnonzero(np.isfinite(total) & (self.lengths > 0))
        node = last[cur]
        strs, pieces = [], []
        while len(cur):
            e = arg[node]
            strs.append(cur)
            pieces.append(self.piece[e])
            node = self.start[e]
            more = node != self.off[cur]
            cur, node = cur[more], node[more]
        if not strs:
            return total, np.zeros(0, np.int64), np.zeros(0, np.int64)
        return total, np.concatenate(strs), np.concatenate(pieces)


def _logsumexp_groups(v, g, sizes):
    m = np.maximum.reduceat(v, g)
    safe = np.where(np.isfinite(m), m, 0.0)
    return safe + np.log(np.add.reduceat(np.exp(v - np.repeat(safe, sizes)), g))


def digamma(x):
    """psi(x) for x > 0, as SentencePiece computes it (recurrence up to 7, then the asymptotic
    series): used by the M-step's Bayesian update  log p(w) = psi(c(w)) - psi(sum c)."""
    x = np.array(x, dtype=np.float64)
    result = np.zeros_like(x)
    for _ in range(7):
        small = x < 7
        result -= np.where(small, 1.0 / np.where(small, x, 1.0), 0.0)
        x = np.where(small, x + 1, x)
    x = x - 0.5
    xx = 1.0 / x
    xx2 = xx * xx
    xx4 = xx2 * xx2
    return (result + np.log(x) + xx2 / 24.0 - 7.0 / 960.0 * xx4 + 31.0 / 8064.0 * xx4 * xx2
            - 127.0 / 30720.0 * xx4 * xx4)
