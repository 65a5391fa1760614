"""Optional integrations with other libraries, each in its own module and each imported only when
it is chosen; importing this package imports no optional package.

    lightning.py         train a pyrovae model and objective with PyTorch Lightning's ``Trainer``
                         (``pip install 'pyrovae[lightning]'``; docs/lightning.md); imported by
                         you, by nothing in pyrovae
    lightning_data.py    its data module (pyrovae's minibatches as Lightning's loaders) and the
                         import of Lightning itself
    tracking.py          ``train.tracking``: picks the tracker and fans the Trainer's calls out to
                         TensorBoard and it (imported by ``pyrovae.api`` and ``compare`` inside
                         the functions that need it, only when tracking is chosen)
    tracker.py           the tracker protocol shared by the two below
    mlflow_tracking.py   ``tracking = "mlflow"``: params, per-epoch metrics, artifacts in a local
                         SQLite/folder store (``pip install 'pyrovae[mlflow]'``; docs/tracking.md)
    wandb_tracking.py    ``tracking = "wandb"``: the same in Weights & Biases' offline mode
                         (``pip install 'pyrovae[wandb]'``)
"""
