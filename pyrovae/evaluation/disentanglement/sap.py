"""The Separated Attribute Predictability score (Kumar et al. 2018, "Variational inference of
disentangled latent concepts from unlabeled observations"), as disentanglement_lib computes it
(``metrics/sap_score.py``).

For each code dimension j and factor k, a score S_jk of how well z_j alone predicts v_k:

    discrete factors (default)   S_jk = test accuracy of a linear SVM on the one feature z_j
                                 (scikit-learn LinearSVC, C = 0.01, balanced class weights)
    continuous factors           S_jk = Cov(z_j, v_k)^2 / (Var z_j Var v_k)   (R^2, on train)

and the score is the mean over factors of the gap between the two best dimensions:

    SAP = 1/K sum_k ( S_(1)k - S_(2)k )

A one-feature linear classifier separates 2 or 3 classes well but not many (a factor with 32
positions is predicted by one code dimension only roughly), so SAP stays well below 1 even for
a perfect code on such factors; it is about 0 for noise and for codes where two dimensions
hold the same factor.
"""

from __future__ import annotations

import warnings

import numpy as np

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement.common import check_inputs, sklearn_needed


def score_matrix(z_train, v_train, z_test, v_test, continuous: bool = False) -> np.ndarray:
    """S [L, K] (see the module docstring)."""
    from sklearn.exceptions import ConvergenceWarning

    L, K = z_train.shape[1], v_train.shape[1]
    s = np.zeros((L, K))
    for j in range(L):
        for k in range(K):
            if continuous:
                cov = np.cov(z_train[:, j], v_train[:, k], ddof=1)
                var = cov[0, 0] * cov[1, 1]
                s[j, k] = cov[0, 1] ** 2 / var if var > 0 else 0.0
            elif len(np.unique(v_train[:, k])) > 1:
                from sklearn.svm import LinearSVC

                clf = LinearSVC(C=0.01, class_weight="balanced")
                with warnings.catch_warnings():  # (a 1-D fit of many classes may not converge)
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(z_train[:, j:j + 1], v_train[:, k])
                s[j, k] = np.mean(clf.predict(z_test[:, j:j + 1]) == v_test[:, k])
    return s


def sap(z_train, v_train, z_test, v_test, continuous: bool = False) -> dict:
    """SAP of representations z [N, L] with factor indices v [N, K] -> {"sap": float,
    "sap_per_factor": [K] list, "scores": S [L, K]}."""
    sklearn_needed("SAP score")
    z_train, v_train = check_inputs(z_train, v_train, "SAP")
    z_test, v_test = check_inputs(z_test, v_test, "SAP")
    if z_train.shape[1] < 2:
        raise ConfigError("SAP needs at least 2 code dimensions (the gap between the top two)")
    s = score_matrix(z_train, v_train, z_test, v_test, continuous)
    top = np.sort(s, axis=0)[::-1]
    gaps = top[0] - top[1]
    return {"sap": float(gaps.mean()), "sap_per_factor": gaps.tolist(), "scores": s}
