"""The semi-supervised VAE (Kingma et al. 2014, M2): ``model.kind = "ssvae"``.

    model.py      SSVAE: p(y) p(z) p(x|y,z) and the guide q(y|x) q(z|x,y) as Pyro programs
    nets.py       networks that take a class label beside their input
    labels.py     the balanced labelled / unlabelled / validation split
    objective.py  J^alpha: enumerated (TraceEnum_ELBO) or sampled-y (Trace_ELBO) + alpha loss
    trainer.py    SSVAETrainer: the shared SVI loop with a labelled batch per step
    evaluate.py   accuracy and the unlabelled ELBO
    sampling.py   the by-class grid (one row per class, one style per column)
"""

from pyrovae.kinds.ssvae.config import SSVAEConfig
from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.kinds.ssvae.evaluate import accuracy, evaluate_ssvae
from pyrovae.kinds.ssvae.labels import LabelSplit, split_labels
from pyrovae.kinds.ssvae.model import SSVAE
from pyrovae.kinds.ssvae.objective import make_ss_elbo, ss_loss
from pyrovae.kinds.ssvae.sampling import sample_by_class, save_by_class
from pyrovae.kinds.ssvae.trainer import SSVAETrainer

MODEL_KINDS.register("ssvae", SSVAE, config=SSVAEConfig, trainer=SSVAETrainer,
                     latents="sampled", pictures={"by_class": save_by_class})

__all__ = ["SSVAE", "SSVAEConfig", "LabelSplit", "split_labels", "make_ss_elbo", "ss_loss", "SSVAETrainer",
           "accuracy", "evaluate_ssvae", "sample_by_class", "save_by_class"]
