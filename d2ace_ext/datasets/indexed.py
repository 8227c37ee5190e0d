"""A dataset wrapper that returns each item's index, for the sampler's update call."""

from __future__ import annotations

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps ``dataset`` so that item i is ``(i, *dataset[i])`` (or ``(i, dataset[i])``
    when the item is not a tuple). The default collate then gives a (b,) index tensor
    first in every batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, tuple):
            return (index, *item)
        return index, item
