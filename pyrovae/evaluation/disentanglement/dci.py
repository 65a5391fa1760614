"""DCI: Disentanglement, Completeness and Informativeness (Eastwood & Williams 2018, "A
framework for the quantitative evaluation of disentangled representations"), as
disentanglement_lib computes it (``metrics/dci.py``).

For each factor k, a classifier predicts v_k from the whole code z [N, L] (``model``: "gbt",
scikit-learn's GradientBoostingClassifier with default settings as in disentanglement_lib, or
"forest", a RandomForestClassifier of 50 trees of depth <= 8 that try every
dimension at each split, faster); its feature importances fill column k of the
importance matrix R [L, K] (|importance|). With H_b the entropy in base b of a normalised row
or column (plus 1e-11, as disentanglement_lib)::

    D_j = 1 - H_K( R_j. / sum_k R_jk )          disentanglement of code dimension j
    rho_j = sum_k R_jk / sum R                  its weight
    D = sum_j rho_j D_j

    C_k = 1 - H_L( R_.k / sum_j R_jk )          completeness of factor k
    C = sum_k (sum_j R_jk / sum R) C_k

    I = 1/K sum_k accuracy_k(test)              informativeness: test accuracy of the classifiers

A code that copies each factor into its own dimension has D = C = 1 (each row and column of R
one-hot) and I = 1; codes that mix factors spread R and lower D and C.
"""

from __future__ import annotations

import numpy as np

from pyrovae.runtime.errors import ConfigError
from pyrovae.evaluation.disentanglement.common import check_inputs, sklearn_needed

MODELS = ("gbt", "forest")


def _classifier(model: str, seed: int):
    if model == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier
        return GradientBoostingClassifier(random_state=seed)
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(n_estimators=50, max_depth=8, max_features=None,
                                  random_state=seed)


def importance_matrix(z_train, v_train, z_test, v_test, model: str = "gbt", seed: int = 0):
    """(R [L, K], train accuracies [K], test accuracies [K]) of one classifier per factor."""
    L, K = z_train.shape[1], v_train.shape[1]
    r, acc_train, acc_test = np.zeros((L, K)), np.zeros(K), np.zeros(K)
    for k in range(K):
        if len(np.unique(v_train[:, k])) < 2:  # a constant factor: predicted exactly, no importance
            acc_train[k] = 1.0
            acc_test[k] = float(np.mean(v_test[:, k] == v_train[0, k]))
            continue
        clf = _classifier(model, seed).fit(z_train, v_train[:, k])
        r[:, k] = np.abs(clf.feature_importances_)
        acc_train[k] = np.mean(clf.predict(z_train) == v_train[:, k])
        acc_test[k] = np.mean(clf.predict(z_test) == v_test[:, k])
    return r, acc_train, acc_test


def _entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy in ``base`` of each column of p (normalised after adding 1e-11)."""
    p = p + 1e-11
    p = p / p.sum(axis=0, keepdims=True)
    return -np.sum(p * np.log(p), axis=0) / np.log(base)


def disentanglement(r: np.ndarray) -> float:
    """D of an importance matrix r [L, K]."""
    if r.sum() == 0:
        return 0.0
    per_code = 1.0 - _entropy(r.T, r.shape[1])
    return float(np.sum(per_code * r.sum(axis=1) / r.sum()))


def completeness(r: np.ndarray) -> float:
    """C of an importance matrix r [L, K]."""
    if r.sum() == 0:
        return 0.0
    per_factor = 1.0 - _entropy(r, r.shape[0])
    return float(np.sum(per_factor * r.sum(axis=0) / r.sum()))


def dci(z_train, v_train, z_test, v_test, model: str = "gbt", seed: int = 0) -> dict:
    """DCI of representations z [N, L] with factor indices v [N, K] (train for the classifiers,
    test for informativeness) -> {"dci_disentanglement", "dci_completeness",
    "dci_informativeness", "dci_informativeness_train", "importance": R [L, K]}."""
    sklearn_needed("DCI score")
    if model not in MODELS:
        raise ConfigError(f"DCI model = {model!r}: use one of {', '.join(MODELS)}")
    z_train, v_train = check_inputs(z_train, v_train, "DCI")
    z_test, v_test = check_inputs(z_test, v_test, "DCI")
    if z_train.shape[1] < 2 or z_test.shape[1] != z_train.shape[1]:
        raise ConfigError(f"DCI needs at least 2 code dimensions, the same in train and test "
                          f"(got {z_train.shape[1]} and {z_test.shape[1]})")
    r, acc_train, acc_test = importance_matrix(z_train, v_train, z_test, v_test, model, seed)
    return {"dci_disentanglement": disentanglement(r), "dci_completeness": completeness(r),
            "dci_informativeness": float(acc_test.mean()),
            "dci_informativeness_train": float(acc_train.mean()), "importance": r}
