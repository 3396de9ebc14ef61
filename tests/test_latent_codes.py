"""The codes of a split: what the probes, densities and projector read."""

import torch

from ae_lab.latent.codes import encode_images, split_codes


class Doubler(torch.nn.Module):
    latent_dim = 3

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def encode(self, x):
        assert not self.training and not torch.is_grad_enabled()
        return 2 * self.w * x.flatten(1)[:, :3]


class Data:
    image_shape = (1, 2, 2)

    def __init__(self, n):
        self.images = torch.arange(n * 4, dtype=torch.float32).view(n, 1, 2, 2)
        self.labels = torch.arange(n) % 3

    def split_size(self, split):
        return len(self.images)

    def sample_batch(self, n, split, seed):
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))
        pick = order[:n]
        return self.images[pick], self.labels[pick]


def test_codes_are_the_models_encoding_chunk_by_chunk_with_mode_restored():
    model = Doubler().train()
    images = torch.randn(10, 1, 2, 2)
    codes = encode_images(model, images, chunk=3)
    assert torch.equal(codes, 2 * images.flatten(1)[:, :3])
    assert model.training


def test_split_codes_keep_labels_in_step_and_limit_with_a_seed():
    data = Data(20)
    full = split_codes(Doubler(), data, "train", limit=None)
    assert len(full) == 20
    # each code's label is its image's: image i has first pixel 4i and label i % 3
    assert torch.equal(((full.codes[:, 0] / 8).long()) % 3, full.labels)
    some = split_codes(Doubler(), data, "train", limit=5, seed=1)
    again = split_codes(Doubler(), data, "train", limit=5, seed=1)
    assert len(some) == 5 and torch.equal(some.codes, again.codes)
