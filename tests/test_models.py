import pytest
import torch
from torch import nn

from law.errors import ConfigError
from law.models import MODEL_NAMES, build_model


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _logits(name: str, in_channels: int, image_size: int, num_classes: int = 10) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(name, num_classes, in_channels=in_channels, image_size=image_size).eval()
    with torch.no_grad():
        return model(torch.randn(2, in_channels, image_size, image_size))


# resnet44/56/110 are deeper copies of resnet20/32 (same class): their parameter counts are
# checked below, a forward pass would only cost time.
@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in ("resnet44", "resnet56", "resnet110")])
def test_every_model_gives_finite_logits_on_32x32(name):
    logits = _logits(name, 3, 32, num_classes=7)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


# Every architecture family with one input channel; the big siblings share the same stem code.
@pytest.mark.parametrize("name", ["small_cnn", "mlp", "lenet5", "resnet20", "wrn10_2", "vgg19", "resnet18", "mobilenet_v2"])
def test_grayscale_28x28_images(name):
    assert _logits(name, 1, 28).shape == (2, 10)


@pytest.mark.parametrize("name", ["small_cnn", "mlp", "lenet5"])
def test_16x16_images(name):
    assert _logits(name, 3, 16).shape == (2, 10)


def test_cifar_resnet_parameter_counts_match_he_et_al_table_6():
    # Option A shortcuts add no parameters, so these are the paper's 0.27M / 0.46M / 1.7M.
    counts = {name: _param_count(build_model(name, 10)) for name in ("resnet20", "resnet32", "resnet110")}
    assert counts == {"resnet20": 269_722, "resnet32": 464_154, "resnet110": 1_727_962}


def test_wide_resnet_28_10_has_36_5m_parameters():
    # Zagoruyko & Komodakis report 36.5M for WRN-28-10 on CIFAR-10.
    assert round(_param_count(build_model("wrn28_10", 10)) / 1e6, 1) == 36.5


def test_torchvision_models_get_cifar_stem_on_small_images():
    resnet = build_model("resnet18", 10, in_channels=1, image_size=32)
    assert (resnet.conv1.in_channels, resnet.conv1.kernel_size, resnet.conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(resnet.maxpool, nn.Identity)
    assert build_model("mobilenet_v2", 10, image_size=32).features[0][0].stride == (1, 1)


def test_torchvision_models_keep_imagenet_stem_on_large_images():
    resnet = build_model("resnet18", 10, in_channels=1, image_size=96)
    assert (resnet.conv1.in_channels, resnet.conv1.kernel_size, resnet.conv1.stride) == (1, (7, 7), (2, 2))
    assert isinstance(resnet.maxpool, nn.MaxPool2d)
    assert build_model("mobilenet_v2", 10, image_size=96).features[0][0].stride == (2, 2)
    assert _logits("resnet18", 1, 96).shape == (2, 10)


@pytest.mark.parametrize("name", ["small_cnn", "lenet5", "resnet20", "wrn10_1", "resnet18", "mobilenet_v2"])
def test_same_seed_gives_same_initial_weights(name):
    def init(seed):
        torch.manual_seed(seed)
        return build_model(name, 10, in_channels=1).state_dict()

    first, again, other = init(0), init(0), init(1)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_unknown_model_error_names_field_and_lists_known_models():
    with pytest.raises(ConfigError) as error:
        build_model("resnet9000", 10)
    assert error.value.field == "model"
    assert "unknown model 'resnet9000'" in str(error.value)
    assert all(name in str(error.value) for name in MODEL_NAMES)


@pytest.mark.parametrize("name", ["wrn27_10", "wrn28_0"])
def test_invalid_wide_resnet_shape_is_a_config_error(name):
    with pytest.raises(ConfigError, match="Wide ResNet"):
        build_model(name, 10)


def test_invalid_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("mlp", 0)
    with pytest.raises(ConfigError, match="in_channels"):
        build_model("mlp", 10, in_channels=0)
    with pytest.raises(ConfigError, match="image_size"):
        build_model("lenet5", 10, image_size=12)


def test_every_config_names_models_by_one_rule():
    """law train, the env and law compare accept the same names (wrn{depth}_{k} too) and refuse the rest."""
    from envs import EnvConfig
    from law.bench.experiment import CompareConfig
    from law.errors import ConfigError
    from law.train import RunConfig

    for name in ("resnet20", "wrn16_4"):
        RunConfig(model=name).validate()
        EnvConfig(model=name).validate()
        CompareConfig(model=name, search_model=name, profile="smoke").validate()
    for config, field in ((RunConfig(model="wrn16"), "model"), (EnvConfig(model="resnet9000"), "model"),
                          (CompareConfig(search_model="wrnx", profile="smoke"), "search_model")):
        with pytest.raises(ConfigError, match="known: small_cnn") as error:
            config.validate()
        assert error.value.field == field


@pytest.mark.parametrize("name", ["small_cnn", "resnet20"])
def test_a_cpu_model_is_channels_last_and_computes_what_the_standard_layout_computes(name):
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    convolutions = [p for p in model.parameters() if p.dim() == 4]
    assert convolutions and all(p.is_contiguous(memory_format=torch.channels_last) for p in convolutions)
    standard = build_model(name, 10).eval()  # the same weights laid out (C, H, W) ...
    standard.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    standard = standard.to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in standard.parameters())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():  # ... give the same logits up to float rounding
        torch.testing.assert_close(model(x), standard(x), rtol=1e-4, atol=1e-5)
