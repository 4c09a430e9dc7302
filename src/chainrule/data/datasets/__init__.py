"""Datasets: the 1986 backpropagation problems, scikit-learn's digits and file readers.

``digits`` needs the optional extra ``chainrule[digits]`` (scikit-learn) when called, not on
import.
"""

from .classic1986 import (
    FAMILY_PEOPLE,
    FAMILY_RELATIONS,
    addition,
    encoder,
    family_tree_cases,
    family_trees,
    negation,
    parity,
    symmetry,
    xor,
)
from .digits import digits
from .mnist1d import make_mnist1d, mnist1d
from .readers import (
    MNIST_FILES,
    DataFormatError,
    load_npy,
    load_npz,
    mnist,
    read_csv,
    read_idx,
    write_idx,
)
