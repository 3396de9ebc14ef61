"""The principal directions figure: drawn for a linear autoencoder with a bottleneck only, its
decoder's directions beside PCA's, titled with the largest principal angle."""

import torch

from ae_lab.data import MNISTDataModule
from ae_lab.figures import PrincipalDirections
from ae_lab.figures.subspace import subspace_angle, training_pca
from ae_lab.run.build import build_model


def model_for(compose, mnist_root, *overrides: str):
    cfg = compose([*overrides, f"data.root={mnist_root}", "data.download=false"])
    data = MNISTDataModule(str(mnist_root), seed=0)
    return build_model(cfg.model, data.image_shape), data


def test_principal_directions_draws_for_a_linear_bottleneck_only(compose, mnist_root):
    figure = PrincipalDirections()
    model, data = model_for(compose, mnist_root, "model=linear_ae", "model.latent_dim=20")
    assert figure.applies_to(model)
    rendered = figure.draw(model, data)
    image = rendered["principal_directions"]
    assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 100 and image.shape[1] > 300
    wide, _ = model_for(compose, mnist_root, "model=linear_ae")  # as wide as the input
    assert not figure.applies_to(wide)
    ae, _ = model_for(compose, mnist_root, "model=ae", "model.latent_dim=20")
    assert not figure.applies_to(ae)


def test_the_figure_s_title_angle_is_zero_for_a_decoder_set_to_pca(compose, mnist_root):
    model, data = model_for(compose, mnist_root, "model=linear_ae", "model.latent_dim=3")
    _, components = training_pca(data, 3, centered=False)
    with torch.no_grad():
        model.decoder.mlp.linears[0].weight.copy_(components)
    figure = PrincipalDirections()
    figure.draw(model, data)  # draws (3 tiles a panel) without error
    assert subspace_angle(model, components) < 0.01
