"""One node quantized alone, cut from a fully quantized QDQ model instead of re-running the
quantizer: the per-node sensitivity analysis needs one such model per quantized node, and ORT's
quantizer costs seconds per call on a MobileNetV2-sized graph (it walks and rewrites the whole
graph each time).

In ORT's QDQ form a quantized node reads its inputs through DequantizeLinear (after a
QuantizeLinear for activations, from an integer initializer for weights and biases) and its
output goes through QuantizeLinear -> DequantizeLinear to its consumers. Copying exactly those
Q/DQ nodes, with their scales, zero points and integer tensors, from the full model around the
same node of the FP32 model gives the node quantized alone with the full model's ranges (which
is what quantizing it alone from the same calibration cache gives, up to the quantizer's
choices at the boundaries: a test compares the two).
"""

from __future__ import annotations

import copy
from typing import Any

QDQ = ("QuantizeLinear", "DequantizeLinear")
SUFFIX = "/alone"  # renames the copied Q/DQ outputs: a bias DQ's output has the FP32 bias's name


class AloneCutter:
    """Builds, for a node name, the FP32 model with only that node's Q/DQ from ``full``."""

    def __init__(self, fp32: Any, full: Any):
        self.fp32, self.full = fp32, full
        g = full.graph
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inits = {t.name: t for t in g.initializer}
        self.by_name = {n.name: n for n in g.node if n.name}

    def _chain_in(self, tensor: str) -> list[Any]:
        """The Q/DQ nodes producing ``tensor`` in the full model, back to the FP32 tensor or the
        integer initializer they start from."""
        chain: list[Any] = []
        p = self.producer.get(tensor)
        while p is not None and p.op_type in QDQ:
            chain.append(p)
            p = self.producer.get(p.input[0])
        return chain[::-1]

    def model(self, node_name: str) -> Any:
        """A copy of the FP32 model with ``node_name``'s inputs and outputs quantized as in ``full``."""
        m = copy.deepcopy(self.fp32)
        g = m.graph
        target = next((n for n in g.node if n.name == node_name), None)
        qnode = self.by_name.get(node_name)
        if target is None or qnode is None or len(target.input) != len(qnode.input) \
                or len(target.output) != len(qnode.output):
            raise KeyError(f"node {node_name!r} is not the same node in both models")
        have = {t.name for t in g.initializer}

        def add(n: Any, inputs: list[str], outputs: list[str]) -> None:
            c = copy.deepcopy(n)
            c.name = (c.name or c.output[0]) + SUFFIX
            del c.input[:], c.output[:]
            c.input.extend(inputs)
            c.output.extend(outputs)
            for i in inputs:  # scales, zero points, integer weights: from the full model
                if i in self.inits and i not in have:
                    g.initializer.append(self.inits[i])
                    have.add(i)
            g.node.append(c)

        for k, t in enumerate(qnode.input):
            chain = self._chain_in(t)
            if not chain:
                continue
            # the chain starts at the FP32 tensor (activations) or an integer initializer (weights)
            prev = chain[0].input[0] if chain[0].input[0] in self.inits else target.input[k]
            for n in chain:
                out = n.output[0] + SUFFIX
                add(n, [prev, *n.input[1:]], [out])
                prev = out
            target.input[k] = prev
        # the output side: the node writes a new tensor, Q -> DQ gives back the FP32 model's name,
        # so every consumer (and a graph output) reads the quantized value unchanged
        for j, o in enumerate(qnode.output):
            q = next((c for c in self.consumers.get(o, []) if c.op_type == "QuantizeLinear"), None)
            d = next((c for c in self.consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None) \
                if q is not None else None
            if q is None or d is None:
                continue
            name = target.output[j]
            target.output[j] = name + SUFFIX + "/fp32"
            add(q, [target.output[j], *q.input[1:]], [q.output[0] + SUFFIX])
            add(d, [q.output[0] + SUFFIX, *d.input[1:]], [name])
        _topological_sort(g)
        return m


def _topological_sort(g: Any) -> None:
    """ONNX wants nodes in topological order; the copied Q/DQ nodes were appended at the end."""
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    nodes, order = list(g.node), []
    while nodes:
        ready = [n for n in nodes if all(i in known for i in n.input)]
        if not ready:
            raise ValueError("cannot order the graph (a cycle or a missing tensor)")
        for n in ready:
            order.append(n)
            known.update(n.output)
        ids = {id(n) for n in ready}
        nodes = [n for n in nodes if id(n) not in ids]
    del g.node[:]
    g.node.extend(order)
