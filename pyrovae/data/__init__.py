"""Data: readers for each source, and the in-memory :class:`Dataset` a run trains on."""

from .dataset import Dataset, from_arrays, load_dataset, validate_values
from .sources import RawData

__all__ = ["Dataset", "RawData", "from_arrays", "load_dataset", "validate_values"]
