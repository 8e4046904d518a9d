"""Plain `nn.Module` networks that know nothing of Lightning.

Every net takes the input size (features or channels) and the number of outputs as its
first two arguments, so a LightningModule can build it from the data module's shapes.
"""

from src.modules.nets.cnn import AirbenchNet, BlitzCNN, TinyVGG
from src.modules.nets.mlp import MLP

__all__ = ["AirbenchNet", "BlitzCNN", "MLP", "TinyVGG"]
