"""Probes on frozen codes: how much of the labels a simple classifier reads from a latent space.

* :func:`linear_probe`: scikit-learn's logistic regression on standardised codes (the codes
  scaled to zero mean and unit variance per unit, fitted on the training codes), trained on all
  training codes or on a seeded random sample of them (ae_bakeoff trains its classifier on 550
  random labelled images);
* :func:`knn_probe`: the majority label of the ``k`` nearest training codes (Euclidean), in torch,
  a chunk of test codes at a time.

Both return the test accuracy, a fraction in [0, 1]. Test codes of a class no training code has
(a held-out class) are left out: no probe can name a class it never saw.
"""

from __future__ import annotations

import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ae_lab.latent.codes import Codes

#: L-BFGS iterations of the logistic regression (standardised codes converge well within them)
MAX_ITER = 200
#: distances held at once by the k-NN probe (64 MB of float32)
DISTANCE_BUDGET = 1 << 24


def labelled_sample(codes: Codes, count: int | None, seed: int) -> Codes:
    """``count`` codes chosen at random by ``seed`` (all of them when ``count`` is None or not
    below their number): the labels a semi-supervised probe gets."""
    if count is None or count >= len(codes):
        return codes
    pick = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:count]
    return Codes(codes.codes[pick], codes.labels[pick])


def seen_classes(train: Codes, test: Codes) -> Codes:
    """The test codes whose class the training codes have."""
    keep = torch.isin(test.labels, train.labels.unique())
    return Codes(test.codes[keep], test.labels[keep])


def linear_probe(
    train: Codes, test: Codes, seed: int = 0, count: int | None = None
) -> float | None:
    """Test accuracy of a logistic regression on standardised codes, trained on ``count`` seeded
    training codes (all when None); None when the training codes hold fewer than two classes or
    no test code has a class they hold."""
    train = labelled_sample(train, count, seed)
    test = seen_classes(train, test)
    if len(train.labels.unique()) < 2 or len(test) == 0:
        return None
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=MAX_ITER, random_state=seed)
    )
    # one BLAS thread: the products are thin (codes x classes), and OpenBLAS's threads spinning
    # beside torch's made the fit many times slower on a busy CPU
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # unconverged, still a probe
        probe.fit(train.codes.double().numpy(), train.labels.numpy())
        predicted = torch.from_numpy(probe.predict(test.codes.double().numpy()))
    return float((predicted == test.labels).double().mean())


def knn_predict(
    train: Codes, queries: torch.Tensor, k: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The label of each query code ``(M, latent)``: the most common among its ``k`` nearest
    training codes; a tie goes to the tied label whose codes rank nearer. Computed on ``device``,
    as many queries at a time as :data:`DISTANCE_BUDGET` distances allow."""
    k = min(int(k), len(train))
    references = train.codes.to(device)
    labels = train.labels.to(device)
    classes = int(labels.max()) + 1
    # every vote counts 1; the nearer ones a little more, never enough to outweigh one vote
    weights = 1 + 1e-3 * torch.arange(k, 0, -1, device=device, dtype=torch.float64) / k
    chunk = max(1, DISTANCE_BUDGET // len(references))
    predicted = []
    for part in queries.split(chunk):
        distances = torch.cdist(part.to(device), references)
        nearest = distances.topk(k, dim=1, largest=False).indices  # (m, k), nearest first
        votes = torch.zeros(len(part), classes, device=device, dtype=torch.float64)
        votes.scatter_add_(1, labels[nearest], weights.expand(len(part), k))
        predicted.append(votes.argmax(dim=1).cpu())
    return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)


def knn_probe(
    train: Codes, test: Codes, k: int, device: torch.device | str = "cpu"
) -> float | None:
    """Test accuracy of the ``k``-nearest-neighbour vote (:func:`knn_predict`); None when no
    test code has a class of the training codes."""
    test = seen_classes(train, test)
    if len(train) == 0 or len(test) == 0:
        return None
    predicted = knn_predict(train, test.codes, k, device)
    return float((predicted == test.labels).double().mean())
