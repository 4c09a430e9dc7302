"""Data loading (``chainrule.data``, PyTorch's ``torch.utils.data``): datasets, samplers and a
``DataLoader`` that prefetches on a thread (and onto the GPU: ``device='cuda'``), streams
``.npy`` files larger than memory and resumes an epoch exactly (``state_dict`` /
``load_state_dict``)."""

from . import datasets
from .dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    NpyDataset,
    Subset,
    TensorDataset,
    random_split,
)
from .device import DevicePrefetcher, move_batch, pin_batch
from .loader import DataLoader, default_collate, default_convert
from .sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
)
