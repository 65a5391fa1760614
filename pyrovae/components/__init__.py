"""The components a model kind is built from, each registered under the name a config
chooses (``pyrovae.runtime.registry``):

    priors.py        p(z): normal, learnable-normal, mog, vamp               (PRIORS)
    mixture.py       the mog/vamp mixture, its log-density by matrix products
    flow_prior.py    p(z): flow, a MAF over N(0, I)                          (PRIORS)
    likelihoods.py   p(x|z): bernoulli, gaussian, laplace, discretized ...   (LIKELIHOODS)
    beta_binomial.py p(x|z): beta-binomial, 8-bit pixels                     (LIKELIHOODS)
    posteriors/      q(z|x): diagonal, full, lowrank, iaf                    (POSTERIORS)
    nets/            encoder/decoder networks: mlp, conv                     (NETWORKS)
    distributions.py the distributions the likelihoods and priors need beyond Pyro's

Components know nothing of the config module or of training: each takes its settings as a
small dataclass it declares itself (``settings=`` of its registration).
"""

from pyrovae.components import flow_prior  # noqa: F401,E402  (registers prior "flow")
from pyrovae.components import beta_binomial  # noqa: F401,E402  (registers "beta-binomial")
