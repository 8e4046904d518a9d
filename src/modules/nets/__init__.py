"""Plain `nn.Module` networks that know nothing of Lightning.

Every net takes the full input shape of one sample (a tuple from the data module: (2,) for
two features, (3, 32, 32) for CIFAR-10, (1, 8, 8) for digits) and the number of outputs as its
first two arguments, so a LightningModule can build it from the data module's shapes. MLP
flattens any shape; the CNNs fit any image size and channel count. TorchvisionNet wraps any
torchvision classification model by name, pretrained (torchvision weights or a local file) or not;
TimmNet any timm model (the optional `timm` extra).
"""

from src.modules.nets.cnn import AirbenchNet, BlitzCNN, TinyVGG
from src.modules.nets.mlp import MLP
from src.modules.nets.pretrained import head_name
from src.modules.nets.timm_net import TimmNet
from src.modules.nets.torchvision_net import TorchvisionNet

__all__ = ["AirbenchNet", "BlitzCNN", "MLP", "TimmNet", "TinyVGG", "TorchvisionNet", "head_name"]
