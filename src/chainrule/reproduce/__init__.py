"""Reproductions of classic published results, runnable as ``chainrule reproduce NAME``.

- ``rhw1986``: the experiments of Rumelhart, Hinton & Williams (Nature 323, 1986; PDP vol. 1
  ch. 8, 1986) — XOR, parity, encoder, symmetry, negation, addition, T-C, family trees — with
  the papers' update rule, over many seeds, next to the published figures; plus a table of
  remedies for getting stuck (momentum, Adam, initialisation, restarts).
- ``mnist1d``: the MNIST-1D benchmark's logistic / MLP / CNN / GRU (Greydanus & Kobak, 2024),
  next to the published accuracies and, if PyTorch is installed, PyTorch's from the same
  initial weights and batches.

Each module's ``main(out, quick=...)`` writes its tables (Markdown + CSV) and figures (PNG) to a
folder; ``docs/reproduce.md`` holds the measured output of the full runs.
"""
