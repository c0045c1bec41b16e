"""NumPy reference recursive nets over batched post-order trees, with backprop through structure.

Input: the arrays of :func:`textclf.trees.trees_to_batch`, each (B, N) int32:
``word_ids`` (0 = no word), ``left``/``right`` (column of the child in the same
row, -1 = none), ``height`` (-1 = padding), ``labels`` (-1 = no label). Nodes
are processed level by level (all nodes of one height in the whole batch at
once), leaves first; backpropagation walks the levels in reverse. Every node of
a level has its children at lower levels, so a node's state is final before
any parent reads it, and a node's gradient is complete (its one parent is
higher) before it is pushed to its children.

Notation: row vectors, as Keras stores weights (``z = x @ kernel + bias``).
``U`` units, ``D`` embedding size, ``V`` vocabulary, ``C`` classes; ``[a, b]``
is concatenation on the last axis; s = sigmoid.

``cell="rnn"`` (Socher et al. 2011/2013), D = U::

    leaf:   h = E[word]
    parent: h = tanh([h_l, h_r] @ W + b)         W = kernel (2U, U), b = bias (U,)

(Socher writes ``p = tanh(W' [c1; c2] + b)`` with column vectors: ``W' = W.T``.)

``cell="tree_lstm"``: binary (N-ary, N=2) Tree-LSTM of Tai et al. 2015, one
forget gate per child, left and right children weighted apart. Keras' LSTM
blocks [i, f, c, o] for the input side; the recurrent side has five blocks::

    a = x @ K + b                   K = kernel (D, 4U), b = bias (4U,): [i, f, c, o]
    m = [h_l, h_r] @ R              R = recurrent_kernel (2U, 5U): [i, f_l, f_r, c, o]
    i = s(a_i + m_i)   f_l = s(a_f + m_fl)   f_r = s(a_f + m_fr)
    u = tanh(a_c + m_c)   o = s(a_o + m_o)
    c = i*u + f_l*c_l + f_r*c_r     h = o * tanh(c)

``cell="child_sum"``: child-sum Tree-LSTM (Tai et al.), children unordered::

    ht = h_l + h_r                  R = recurrent_kernel (U, 4U): [i, f, c, o]
    i = s(a_i + ht @ R_i)   f_k = s(a_f + h_k @ R_f)   u = tanh(a_c + ht @ R_c)
    o = s(a_o + ht @ R_o)   c = i*u + sum_k f_k*c_k    h = o * tanh(c)

In both LSTM cells ``x = E[word]`` for a node with a word, 0 otherwise, and an
absent child has ``h = c = 0``. SST leaves have a word and no children; SST's
inner nodes have two children and no word. With one child per node (a chain)
both LSTM cells are ``keras.layers.LSTM``: ``recurrent_kernel[:U]`` with
blocks [i, f_l, c, o] (N-ary) or ``recurrent_kernel`` itself (child-sum) is
Keras' recurrent kernel.

Classifier at every node: ``p = softmax(h @ Ws + bs)``, Ws = output_kernel
(U, C), bs = output_bias (C,). Loss: the sum of the cross-entropies of the
labelled nodes (``root_only``: of the roots) plus ``l2 * sum(w**2)`` over the
kernels (kernel, recurrent_kernel, output_kernel; not embeddings or biases),
Keras' ``L2`` regulariser.

Parameter names (dict keys) are those of :data:`PARAM_SHAPES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import sigmoid

CELLS = ("rnn", "tree_lstm", "child_sum")
REGULARISED = ("kernel", "recurrent_kernel", "output_kernel")


def param_shapes(cell: str, vocab_size: int, embedding_dim: int, units: int,
                 n_classes: int) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter of ``cell`` (see the module docstring)."""
    V, D, U, C = vocab_size, embedding_dim, units, n_classes
    if cell == "rnn":
        if D != U:
            raise ValueError(f"the rnn cell needs embedding_dim == units; got {D} and {U}")
        core = {"kernel": (2 * U, U), "bias": (U,)}
    elif cell == "tree_lstm":
        core = {"kernel": (D, 4 * U), "recurrent_kernel": (2 * U, 5 * U), "bias": (4 * U,)}
    elif cell == "child_sum":
        core = {"kernel": (D, 4 * U), "recurrent_kernel": (U, 4 * U), "bias": (4 * U,)}
    else:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
    return {"embedding": (V, D), **core, "output_kernel": (U, C), "output_bias": (C,)}


def init_params(cell: str, vocab_size: int, embedding_dim: int, units: int, n_classes: int,
                scale: float = 0.5, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float64 parameters, N(0, scale^2) everywhere, biases included.

    Non-trivial on purpose: with tiny weights tanh and the gates are nearly
    linear and constant, and a wrong derivative passes a gradient check.
    """
    rng = np.random.default_rng(seed)
    shapes = param_shapes(cell, vocab_size, embedding_dim, units, n_classes)
    return {name: rng.normal(0.0, scale, shape) for name, shape in shapes.items()}


@dataclass
class Forward:
    """Forward pass of a batch. ``h``, ``c`` (B, N, U); ``probs`` (B, N, C).

    Padding nodes hold zeros in ``h``/``c`` (their ``probs`` are the
    classifier's output for a zero state, not meaningful). ``c`` is zeros for
    the rnn cell.
    """

    h: np.ndarray
    c: np.ndarray
    probs: np.ndarray
    cache: dict


class TreeNetReference:
    """A recursive net over batched trees: forward, loss, backprop through structure.

    ``params`` are used as given (not copied): a gradient check that perturbs
    them in place sees the change on the next call.
    """

    def __init__(self, params: dict[str, np.ndarray], cell: str = "rnn", l2: float = 0.0):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
        self.params = params
        self.cell = cell
        self.l2 = float(l2)

    # -------------------------------------------------------------- forward

    def forward(self, batch: dict[str, np.ndarray]) -> Forward:
        p = self.params
        word, left, right, height, levels = _flatten(batch)
        M = word.size
        B, N = batch["word_ids"].shape
        U = p["output_kernel"].shape[0]
        dtype = p["output_kernel"].dtype
        # Row M of h and c stays zero: child index -1 reads it (an absent child).
        h = np.zeros((M + 1, U), dtype=dtype)
        c = np.zeros((M + 1, U), dtype=dtype)
        cache: dict = {"word": word, "left": left, "right": right, "levels": levels, "gates": {}}
        if self.cell == "rnn":
            _check_rnn_structure(word, left, right, height)
            leaves = levels[0] if levels else np.zeros(0, dtype=np.int64)
            h[leaves] = p["embedding"][word[leaves]]
            for k in range(1, len(levels)):
                idx = levels[k]
                children = np.concatenate([h[left[idx]], h[right[idx]]], axis=1)  # (n, 2U)
                h[idx] = np.tanh(children @ p["kernel"] + p["bias"])
        else:
            x = p["embedding"][word] * (word > 0)[:, None]  # (M, D); no word -> 0
            a = x @ p["kernel"] + p["bias"]  # (M, 4U): [i, f, c, o]
            cache["x"] = x
            for k, idx in enumerate(levels):
                hl, hr = h[left[idx]], h[right[idx]]
                cl, cr = c[left[idx]], c[right[idx]]
                ai, af, ac, ao = np.split(a[idx], 4, axis=1)
                if self.cell == "tree_lstm":
                    m = np.concatenate([hl, hr], axis=1) @ p["recurrent_kernel"]  # (n, 5U)
                    mi, mfl, mfr, mc, mo = np.split(m, 5, axis=1)
                else:  # child_sum
                    R = p["recurrent_kernel"]
                    mi, _, mc, mo = np.split((hl + hr) @ R, 4, axis=1)
                    Rf = R[:, U:2 * U]
                    mfl, mfr = hl @ Rf, hr @ Rf
                i, fl, fr = sigmoid(ai + mi), sigmoid(af + mfl), sigmoid(af + mfr)
                u, o = np.tanh(ac + mc), sigmoid(ao + mo)
                c[idx] = i * u + fl * cl + fr * cr
                h[idx] = o * np.tanh(c[idx])
                cache["gates"][k] = (i, fl, fr, u, o)
        logits = h[:M] @ p["output_kernel"] + p["output_bias"]
        probs = _softmax(logits)
        cache["h"], cache["c"], cache["probs"] = h, c, probs
        return Forward(h[:M].reshape(B, N, U), c[:M].reshape(B, N, U),
                       probs.reshape(B, N, -1), cache)

    # -------------------------------------------------------------- loss

    def loss(self, batch: dict[str, np.ndarray], root_only: bool = False) -> float:
        """Summed cross-entropy over the labelled nodes (or roots) + L2 penalty."""
        fwd = self.forward(batch)
        target, valid = _targets(batch, root_only)
        probs = fwd.cache["probs"]
        picked = probs[np.arange(len(target)), np.maximum(target, 0)]
        ce = -np.sum(np.log(picked[valid]))
        return float(ce + self._penalty())

    def _penalty(self) -> float:
        if not self.l2:
            return 0.0
        return self.l2 * sum(float(np.sum(self.params[n] ** 2))
                             for n in REGULARISED if n in self.params)

    # -------------------------------------------------------------- backward

    def loss_and_gradients(self, batch: dict[str, np.ndarray],
                           root_only: bool = False) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and the gradient of every parameter (same names and shapes).

        The embedding gradient is dense (V, D); a word used by several leaves
        receives the sum of their gradients.
        """
        p = self.params
        fwd = self.forward(batch)
        cache = fwd.cache
        word, left, right, levels = cache["word"], cache["left"], cache["right"], cache["levels"]
        h, c, probs = cache["h"], cache["c"], cache["probs"]
        M = word.size
        U = p["output_kernel"].shape[0]
        target, valid = _targets(batch, root_only)
        picked = probs[np.arange(M), np.maximum(target, 0)]
        loss = float(-np.sum(np.log(picked[valid])) + self._penalty())

        grads = {name: np.zeros_like(value) for name, value in p.items()}
        dlogits = probs.copy()
        dlogits[np.arange(M), np.maximum(target, 0)] -= 1.0
        dlogits *= valid[:, None]  # (M, C)
        grads["output_kernel"] = h[:M].T @ dlogits
        grads["output_bias"] = dlogits.sum(axis=0)
        dh = np.zeros_like(h)  # (M + 1, U); row M collects what absent children get
        dh[:M] = dlogits @ p["output_kernel"].T
        dc = np.zeros_like(c)

        if self.cell == "rnn":
            for k in range(len(levels) - 1, 0, -1):
                idx = levels[k]
                children = np.concatenate([h[left[idx]], h[right[idx]]], axis=1)
                dz = dh[idx] * (1.0 - h[idx] ** 2)  # through tanh
                grads["kernel"] += children.T @ dz
                grads["bias"] += dz.sum(axis=0)
                dchildren = dz @ p["kernel"].T  # (n, 2U)
                np.add.at(dh, left[idx], dchildren[:, :U])
                np.add.at(dh, right[idx], dchildren[:, U:])
            if levels:
                leaves = levels[0]
                np.add.at(grads["embedding"], word[leaves], dh[leaves])
        else:
            da = np.zeros((M, 4 * U), dtype=h.dtype)
            R = p["recurrent_kernel"]
            for k in range(len(levels) - 1, -1, -1):
                idx = levels[k]
                i, fl, fr, u, o = cache["gates"][k]
                hl, hr = h[left[idx]], h[right[idx]]
                cl, cr = c[left[idx]], c[right[idx]]
                tc = np.tanh(c[idx])
                dhn = dh[idx]
                dcn = dc[idx] + dhn * o * (1.0 - tc ** 2)
                dzi = dcn * u * i * (1.0 - i)
                dzfl = dcn * cl * fl * (1.0 - fl)
                dzfr = dcn * cr * fr * (1.0 - fr)
                dzc = dcn * i * (1.0 - u ** 2)
                dzo = dhn * tc * o * (1.0 - o)
                da[idx] = np.concatenate([dzi, dzfl + dzfr, dzc, dzo], axis=1)
                np.add.at(dc, left[idx], dcn * fl)
                np.add.at(dc, right[idx], dcn * fr)
                if self.cell == "tree_lstm":
                    dm = np.concatenate([dzi, dzfl, dzfr, dzc, dzo], axis=1)  # (n, 5U)
                    grads["recurrent_kernel"] += np.concatenate([hl, hr], axis=1).T @ dm
                    dchildren = dm @ R.T  # (n, 2U)
                    dhl, dhr = dchildren[:, :U], dchildren[:, U:]
                else:  # child_sum: i, c, o see h_l + h_r; each forget gate its own child
                    dm = np.concatenate([dzi, np.zeros_like(dzi), dzc, dzo], axis=1)
                    Rf = R[:, U:2 * U]
                    grads["recurrent_kernel"] += (hl + hr).T @ dm
                    grads["recurrent_kernel"][:, U:2 * U] += hl.T @ dzfl + hr.T @ dzfr
                    shared = dm @ R.T
                    dhl, dhr = shared + dzfl @ Rf.T, shared + dzfr @ Rf.T
                np.add.at(dh, left[idx], dhl)
                np.add.at(dh, right[idx], dhr)
            grads["kernel"] = cache["x"].T @ da
            grads["bias"] = da.sum(axis=0)
            has_word = word > 0
            np.add.at(grads["embedding"], word[has_word], (da @ p["kernel"].T)[has_word])
        if self.l2:
            for name in REGULARISED:
                if name in p:
                    grads[name] += 2.0 * self.l2 * p[name]
        return loss, grads


def _flatten(batch):
    """(B, N) arrays -> flat (M,) arrays, children as flat indices (-1 kept), levels.

    ``levels[k]`` holds the flat indices of the nodes of height ``k``.
    """
    word = np.asarray(batch["word_ids"]).reshape(-1).astype(np.int64)
    B, N = np.shape(batch["word_ids"])
    offset = (np.arange(B) * N)[:, None]
    flat = {}
    for name in ("left", "right"):
        child = np.asarray(batch[name], dtype=np.int64)
        flat[name] = np.where(child >= 0, child + offset, -1).reshape(-1)
    height = np.asarray(batch["height"]).reshape(-1)
    top = int(height.max()) if height.size else -1
    levels = [np.flatnonzero(height == k) for k in range(top + 1)]
    return word, flat["left"], flat["right"], height, levels


def _check_rnn_structure(word, left, right, height):
    inner = height > 0
    if np.any(inner & ((left < 0) | (right < 0))):
        raise ValueError("the rnn cell needs every inner node to have two children")


def _targets(batch, root_only: bool):
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if root_only:
        roots = np.full(labels.shape, -1, dtype=np.int64)
        roots[:, -1] = labels[:, -1]  # left padding: the root is the last column
        labels = roots
    target = labels.reshape(-1)
    return target, target >= 0


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
