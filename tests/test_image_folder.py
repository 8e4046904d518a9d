"""Your own images: nets for any input shape, the image-folder data module, bad input,
prediction and export round trips."""

import math

import pytest
import torch

from src.modules.nets import MLP, AirbenchNet, BlitzCNN, TinyVGG

# --- nets for any shape --------------------------------------------------------------------
IMAGE_SHAPES = [(1, 8, 8), (3, 8, 8), (3, 32, 32), (1, 28, 28), (3, 64, 64), (3, 24, 40), (3, 4, 4)]


@pytest.mark.parametrize("shape", IMAGE_SHAPES)
@pytest.mark.parametrize(
    "make",
    [
        lambda shape: MLP(shape, 5, hidden_sizes=[16]),
        lambda shape: BlitzCNN(shape, 5),
        lambda shape: TinyVGG(shape, 5, hidden_units=4),
        lambda shape: AirbenchNet(shape, 5, widths=[8, 8, 8], channels_last=False),
    ],
    ids=["MLP", "BlitzCNN", "TinyVGG", "AirbenchNet"],
)
def test_every_net_runs_forward_and_backward_at_any_image_size(make, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = make(shape)
    images = torch.randn(4, *shape, requires_grad=True)
    outputs = net(images)
    assert outputs.shape == (4, 5)
    outputs.square().mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    trained = [p for p in net.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trained)


def test_a_net_names_images_too_small_for_it() -> None:
    with pytest.raises(ValueError, match="TinyVGG cannot take 2x3 images"):
        TinyVGG((3, 2, 3), 5)


def test_the_cifar10_nets_keep_their_layers_and_parameter_counts() -> None:
    def count(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    # The counts of the shipped configs before nets took shapes (configs/cifar10*.yaml).
    assert count(BlitzCNN((3, 32, 32), 10)) == count(BlitzCNN(3, 10)) == 62006
    assert count(TinyVGG((3, 32, 32), 10)) == 9420
    assert count(AirbenchNet((3, 32, 32), 10, widths=[32, 64, 128])) == 295096
    assert count(AirbenchNet((3, 32, 32), 10)) == 1972792
    assert not AirbenchNet((3, 32, 32), 10).groups[0].pool.ceil_mode
    assert MLP(2, 1, hidden_sizes=[8]).layers[0].in_features == 2  # an int is still a vector length
    assert MLP((1, 8, 8), 10).layers[0].in_features == math.prod((1, 8, 8))


def test_airbench_whitening_fits_grayscale_stems() -> None:
    net = AirbenchNet((1, 8, 8), 10, widths=[8, 8, 8])
    assert net.stem[0].out_channels == 8 and not net.stem[0].weight.requires_grad  # frozen at construction
    net.init_whitening(torch.randn(64, 1, 8, 8))
    patches = torch.randn(64, 1, 8, 8)
    assert torch.isfinite(net(patches)).all()
