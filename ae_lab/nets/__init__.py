"""Plain ``nn.Module`` encoders and decoders. Their sizes come from the data's shape."""

from ae_lab.nets.conv import ConvDecoder, ConvEncoder, conv_autoencoder
from ae_lab.nets.mlp import MLP, MLPDecoder, MLPEncoder, mlp_autoencoder

__all__ = [
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "conv_autoencoder",
    "mlp_autoencoder",
]
