"""Plain `nn.Module` networks that know nothing of Lightning.

Every net takes the full input shape of one sample (a tuple from the data module: (2,) for
two features, (3, 32, 32) for CIFAR-10, (1, 8, 8) for digits) and the number of outputs as its
first two arguments, so a LightningModule can build it from the data module's shapes. MLP
flattens any shape; the CNNs fit any image size and channel count. TorchvisionNet wraps any
torchvision classification model by name, pretrained (torchvision weights or a local file) or not.
"""

from src.modules.nets.cnn import AirbenchNet, BlitzCNN, TinyVGG
from src.modules.nets.mlp import MLP
from src.modules.nets.torchvision_net import TorchvisionNet, head_name

__all__ = ["AirbenchNet", "BlitzCNN", "MLP", "TinyVGG", "TorchvisionNet", "head_name"]
