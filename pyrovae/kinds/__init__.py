"""Model kinds (``model.kind``), one package each, registered in ``MODEL_KINDS`` with their
config dataclass, module and capabilities:

    vae/      the VAE p(z) p(x|z), guide q(z|x)
    ssvae/    the semi-supervised M2 (Kingma et al. 2014)
    hvae/     L stochastic layers (Burda et al. 2015)
    cvae/     conditional (Sohn et al. 2015): x given a part of it or its label
    module/   a model you wrote, rebuilt from its import path
    resolve.py  what train() (or the Lightning module) was given -> one RunConfig

Generic code (trainer, evaluation, compare, export, the CLI and the applications) reaches a
kind only through the registry and the model interface (``pyrovae.runtime.interface``).
"""
