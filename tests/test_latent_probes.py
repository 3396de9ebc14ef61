"""The probes on frozen codes: perfect on separable codes, chance on codes that say nothing of
the labels, seeded, and blind to a class the training codes lack."""

import pytest
import torch

from ae_lab.latent import probes
from ae_lab.latent.codes import Codes
from ae_lab.latent.probes import knn_predict, knn_probe, labelled_sample, linear_probe


def clusters(n: int, classes: int = 10, dim: int = 12, spread: float = 0.1, seed: int = 0) -> Codes:
    """Codes of ``classes`` tight clusters around far-apart centres (separable), labels cycling."""
    generator = torch.Generator().manual_seed(seed)
    centres = 10 * torch.eye(classes, dim) + 3  # an offset and scale standardising must undo
    labels = torch.arange(n) % classes
    codes = centres[labels] + spread * torch.randn(n, dim, generator=generator)
    return Codes(codes, labels)


def test_separable_codes_are_read_perfectly_by_every_probe():
    train, test = clusters(1000), clusters(300, seed=1)
    assert linear_probe(train, test) == 1.0
    assert linear_probe(train, test, seed=3, count=550) == 1.0
    assert linear_probe(train, test, count=30) == 1.0  # three labels a class still separate them
    assert knn_probe(train, test, k=5) == 1.0


def test_codes_that_say_nothing_of_the_labels_give_chance():
    generator = torch.Generator().manual_seed(0)
    train = Codes(torch.randn(2000, 8, generator=generator), torch.randint(0, 10, (2000,)))
    test = Codes(torch.randn(1000, 8, generator=generator), torch.randint(0, 10, (1000,)))
    assert linear_probe(train, test) < 0.2  # chance is 0.1
    assert knn_probe(train, test, k=5) < 0.2


def test_the_linear_probe_reads_standardised_codes():
    """Each unit rescaled and shifted: the standardised codes, and so the predictions, are the
    same (a probe on raw codes would weigh the units by their scale)."""
    train, test = clusters(1000, spread=8.0), clusters(500, spread=8.0, seed=1)
    scale = torch.logspace(-3, 3, 12)
    moved = [Codes(c.codes * scale - 50, c.labels) for c in (train, test)]
    accuracy = linear_probe(train, test)
    assert 0.2 < accuracy < 1.0  # overlapping clusters: a probe that can be wrong
    assert linear_probe(*moved) == pytest.approx(accuracy, abs=2 / len(test))


def test_the_labelled_sample_is_seeded_and_sized():
    codes = clusters(1000)
    a, again, other = (labelled_sample(codes, 550, seed) for seed in (1, 1, 2))
    assert len(a) == 550 and torch.equal(a.codes, again.codes)
    assert torch.equal(a.labels, again.labels)
    assert not torch.equal(a.codes, other.codes)
    assert labelled_sample(codes, 5000, 1) is codes and labelled_sample(codes, None, 1) is codes
    # each sampled code keeps its own label
    rows = [(codes.codes == row).all(dim=1).nonzero().item() for row in a.codes[:20]]
    assert torch.equal(codes.labels[rows], a.labels[:20])


def test_the_small_probe_depends_on_its_labels_and_seed():
    """With few labels of overlapping classes the sample matters: the seed picks it, the same seed
    gives the same accuracy."""
    train, test = clusters(2000, spread=8.0), clusters(1000, spread=8.0, seed=1)
    accuracies = {linear_probe(train, test, seed=s, count=20) for s in range(4)}
    assert len(accuracies) > 1
    same = linear_probe(train, test, seed=2, count=20)
    assert linear_probe(train, test, seed=2, count=20) == same


def test_a_class_the_training_codes_lack_is_left_out_of_the_test():
    train, test = clusters(1000), clusters(300, seed=1)
    seen = train.labels != 7
    train = Codes(train.codes[seen], train.labels[seen])
    assert linear_probe(train, test) == 1.0 and knn_probe(train, test, k=3) == 1.0
    only_seven = Codes(test.codes[test.labels == 7], test.labels[test.labels == 7])
    assert linear_probe(train, only_seven) is None and knn_probe(train, only_seven, 3) is None


def test_a_single_class_trains_no_linear_probe():
    train = Codes(torch.randn(20, 3), torch.zeros(20, dtype=torch.long))
    assert linear_probe(train, train) is None


def test_knn_votes_the_majority_and_breaks_ties_by_nearness():
    train = Codes(torch.tensor([[0.0], [1.0], [2.0], [10.0]]), torch.tensor([0, 1, 1, 2]))
    queries = torch.tensor([[0.1], [1.6], [9.0]])
    assert knn_predict(train, queries, k=1).tolist() == [0, 1, 2]
    # k=3 at 0.1: neighbours 0 (label 0), 1, 2 (label 1): the majority, not the nearest
    assert knn_predict(train, queries, k=3).tolist() == [1, 1, 1]
    # k=2 at 0.1: one vote each for 0 and 1; the nearer code's label wins the tie
    assert knn_predict(train, queries[:1], k=2).tolist() == [0]
    assert knn_predict(train, queries, k=99).tolist() == [1, 1, 1]  # k beyond the codes: all


def test_knn_in_chunks_is_the_same_as_at_once(monkeypatch):
    train, test = clusters(500, spread=6.0), clusters(200, spread=6.0, seed=1)
    whole = knn_predict(train, test.codes, k=7)
    monkeypatch.setattr(probes, "DISTANCE_BUDGET", 3 * len(train))  # three queries at a time
    assert torch.equal(knn_predict(train, test.codes, k=7), whole)
    assert 0.2 < float((whole == test.labels).double().mean()) < 1.0  # overlapping: not trivial


@pytest.mark.parametrize("k", [1, 5])
def test_knn_of_the_training_codes_themselves_is_perfect_at_k1(k):
    train = clusters(300, spread=6.0)
    accuracy = knn_probe(train, train, k)
    assert accuracy == 1.0 if k == 1 else accuracy < 1.0
