"""Models: the architectures' sizes and shapes, loading every supported model file, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from classifiers.models import (
    ARCHITECTURES,
    CHECKPOINT_FORMAT,
    SHARED_ROBUST_MODELS,
    build_model,
    load_akamaster_resnet,
    load_classifier,
    output_classes,
)
from rlrobust.insertion import count_relu_calls
from tests.conftest import shared_file
from tests.test_classifiers_data import one_torch_thread

pytestmark = pytest.mark.usefixtures(one_torch_thread.__name__)

# Parameter counts for 10 classes. ResNet-18, WRN-34-10 and WRN-28-10 match the figures usually quoted for the
# CIFAR versions (11.17M, 46.16M, 36.48M); the pre-activation ResNet-18 has a final BN-ReLU before pooling (as He
# et al. 2016b and Rice et al.'s robust-overfitting code), 1,024 more than the 11,171,146 of layouts without it.
PARAMETERS = {
    "resnet20": 269_722,
    "preact_resnet20": 272_282,
    "resnet18": 11_173_962,
    "preact_resnet18": 11_172_170,
    "wrn34_10": 46_160_474,
    "wrn28_10": 36_479_194,
}


@pytest.mark.parametrize("arch", sorted(PARAMETERS))
def test_parameter_counts(arch):
    assert sum(p.numel() for p in build_model(arch).parameters()) == PARAMETERS[arch]


@pytest.mark.parametrize("arch", ["resnet20", "preact_resnet20", "resnet18", "preact_resnet18", "wrn28_10"])
def test_forward_on_cifar_and_tiny_imagenet_shapes(arch):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    if arch != "wrn28_10":  # adaptive pooling: the same net takes 64x64 Tiny-ImageNet images
        tiny = build_model(arch, num_classes=200).eval()
        assert tiny(torch.rand(1, 3, 64, 64)).shape == (1, 200)
        assert output_classes(tiny) == 200


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    model = build_model("preact_resnet18").eval()
    x = torch.rand(2, 3, 32, 32)
    fast = build_model("preact_resnet18").eval()
    fast.load_state_dict(model.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    assert torch.allclose(model(x), fast(x.to(memory_format=torch.channels_last)), atol=1e-4)


def test_normalisation_inside_the_model():
    torch.manual_seed(0)
    plain = build_model("resnet18").eval()
    normed = build_model("resnet18", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(normed(x), plain((x - 0.5) / 0.25), atol=1e-5)


def test_sap_finds_every_relu_of_the_preact_resnet20():
    # 9 blocks x 2 pre-activation ReLUs + the final one before pooling: the SAP paper's placements
    assert count_relu_calls(build_model("preact_resnet20").eval(), torch.rand(1, 3, 32, 32)) == 19


def test_training_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10).eval()
    path = tmp_path / "model.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": "resnet20",
            "num_classes": 10,
            "normalization": None,
            "model": model.state_dict(),
        },
        path,
    )
    loaded = load_classifier(path, num_classes=10)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="10 output classes but the data has 100"):
        load_classifier(path, num_classes=100)
    named_like_a_shared_model = tmp_path / "resnet4b_my_run.pt"  # our checkpoint wins over the file-name rule
    named_like_a_shared_model.write_bytes(path.read_bytes())
    assert torch.equal(load_classifier(named_like_a_shared_model)(x), model(x))


def test_bad_model_files_and_names(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", num_classes=1)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_classifier(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a torch file")
    with pytest.raises(ValueError, match="corrupt, truncated or not a torch file"):
        load_classifier(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a model file this loader knows"):
        load_classifier(foreign)
    wrong = tmp_path / "wrong.pt"
    state = build_model("resnet20").state_dict()
    torch.save(
        {"format": CHECKPOINT_FORMAT, "arch": "resnet18", "num_classes": 10, "normalization": None, "model": state},
        wrong,
    )
    with pytest.raises(ValueError, match="weights do not fit resnet18"):
        load_classifier(wrong)


@pytest.fixture(scope="module")
def cifar_lossless():
    data = np.load(shared_file("cifar10/cifar10_test_first1017_lossless.npz"))
    return torch.tensor(data["x"]).permute(0, 3, 1, 2).float() / 255, torch.tensor(data["y"])


ROBUST_FILES = {
    "resnet2b": ("alpha-beta-CROWN/resnet2b.pth", 0.704),
    "resnet4b": ("alpha-beta-CROWN/resnet4b.pth", 0.773),
    "cifar_cnn_a_adv": ("alpha-beta-CROWN/cifar_cnn_a_adv.model", 0.667),
    "cifar_conv_small_pgd": ("alpha-beta-CROWN/cifar_conv_small_pgd.pth", 0.632),
    "cifar_small_8px": ("convex_adversarial/cifar_small_8px.pth", 0.312),
}


@pytest.mark.parametrize("name", sorted(ROBUST_FILES))
def test_shared_robust_models_load_and_score_as_recorded(name, cifar_lossless):
    """Clean accuracy on the 1,017 lossless images equals the data README's table (architecture and
    normalisation right to the last image)."""
    relative, recorded = ROBUST_FILES[name]
    model = load_classifier(shared_file(f"cifar10_robust_models/{relative}"), num_classes=10)
    x, y = cifar_lossless
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(recorded, abs=0.0006)
    assert name in SHARED_ROBUST_MODELS


def test_akamaster_resnet20_through_the_generic_loader(cifar_lossless):
    path = shared_file("cifar10_models/akamaster_pytorch_resnet_cifar10/resnet20-12fca82f.th")
    x = cifar_lossless[0][:32]
    with torch.no_grad():
        assert torch.equal(load_classifier(path)(x), load_akamaster_resnet(path)(x))


def test_every_architecture_name_builds():
    for arch in ARCHITECTURES:
        if arch.startswith("wrn"):
            continue  # built in test_parameter_counts
        assert output_classes(build_model(arch, num_classes=7)) == 7
