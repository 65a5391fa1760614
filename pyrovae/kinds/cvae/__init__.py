"""The conditional VAE (Sohn et al. 2015): ``model.kind = "cvae"`` (docs/conditional.md).

    config.py     CVAEConfig: condition (quadrants | label), visible, networks, objective
    masks.py      which pixels are x_in and x_out (Pyro's examples/cvae quadrants)
    data.py       the data a label-conditioned model sees: each image and its one-hot class
    model.py      CVAE: p(z|x_in) p(x_out|x_in,z) and q(z|x_in,x_out) as Pyro programs
    trainer.py    CVAETrainer: the shared loop, with prediction pictures
    pictures.py   completions of test images (quadrants), one row per class (label)
    baseline.py   the deterministic baseline network of Pyro's example and its NLL
"""

from pyrovae.runtime.registry import MODEL_KINDS
from pyrovae.kinds.cvae.baseline import BaselineNet, baseline_nll, train_baseline
from pyrovae.kinds.cvae.config import CONDITIONS, CVAEConfig
from pyrovae.kinds.cvae.data import LabelledInputs, with_labels
from pyrovae.kinds.cvae.masks import visible_mask
from pyrovae.kinds.cvae.model import CVAE
from pyrovae.kinds.cvae.pictures import save_by_class, save_predictions
from pyrovae.kinds.cvae.trainer import CVAETrainer

MODEL_KINDS.register("cvae", CVAE, config=CVAEConfig, trainer=CVAETrainer,
                     latents="reparameterised")

__all__ = ["CVAE", "CVAEConfig", "CVAETrainer", "CONDITIONS", "LabelledInputs", "with_labels",
           "visible_mask", "BaselineNet", "train_baseline", "baseline_nll", "save_predictions",
           "save_by_class"]
