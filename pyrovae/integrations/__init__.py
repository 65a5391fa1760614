"""Optional integrations with other libraries, each in its own module and each imported only when
it is chosen; importing this package imports no optional package.

    lightning.py   train a pyrovae model and objective with PyTorch Lightning's ``Trainer``
                   (``pip install 'pyrovae[lightning]'``; docs/lightning.md); imported by you,
                   by nothing in pyrovae
"""
