"""Pictures of what a network is and what backpropagation sees.

- ``draw_graph(loss, "graph.svg", params=dict(model.named_parameters()))``: the recorded
  computation graph (each op with its output shape, the leaves that require grad, parameters by
  name) as Graphviz DOT text, rendered with Graphviz's ``dot`` when it is on the PATH.
- ``draw_network(model, "net.png")``: the layers, input, hidden and output units coloured apart;
  for a small MLP every unit and every weighted connection (line width by |w|, red for positive,
  blue for negative), as in the classic diagrams; any other model as a block diagram.
- ``loss_landscape(model, loss_fn, batch)``: the loss along one or two random filter-normalised
  directions around the current weights (Li et al., "Visualizing the Loss Landscape of Neural
  Nets", 2018): a sharp or flat minimum, or a plateau. The weights are restored exactly.

matplotlib is needed for the PNGs (``pip install 'chainrule[plot]'``), imported only when a
picture is drawn, and used without pyplot (Agg), so no window opens and the caller's backend is
left alone. Graphviz is a system package (``apt-get install graphviz``, ``brew install graphviz``,
``conda install graphviz``); without it ``draw_graph`` still writes the ``.dot`` file.

Each has its own module: ``graph.py``, ``network.py``, ``landscape.py``.
"""

from __future__ import annotations

from .graph import GraphvizWarning, draw_graph, graph_dot
from .landscape import LossLandscape, loss_landscape
from .network import draw_network

__all__ = [
    "GraphvizWarning", "LossLandscape", "draw_graph", "draw_network", "graph_dot", "loss_landscape",
]  # fmt: skip
