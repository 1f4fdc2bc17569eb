"""Model registry: ``build_model(name, num_classes, in_channels, image_size)``.

Small-image models (``small_cnn``, ``mlp``, ``lenet5``, the CIFAR ResNets of He
et al., Wide ResNets and a CIFAR VGG-19) are defined here; ImageNet-family
networks come from ``torchvision.models`` (``weights=None``), with the usual
CIFAR stem swapped in when ``image_size <= 64`` so 32x32 inputs are not
downsampled 4x before the first block.

Every model maps ``(B, in_channels, H, W)`` to ``(B, num_classes)`` logits and
is initialised only from torch's global RNG, so ``torch.manual_seed(s)`` before
``build_model`` gives identical weights (what paired target/reference training
relies on). All models except ``mlp`` and ``lenet5`` end in global average
pooling and therefore accept any input size; those two are built for
``image_size`` x ``image_size`` inputs.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Callable

import torch
import torchvision
from torch import nn

from law.errors import ConfigError

# ----------------------------------------------------------------------------------------
# Tiny models for CPU runs and tests


def small_cnn(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """3 conv blocks (32-64-128, conv3x3-BN-ReLU-maxpool) and 2 linear layers, ~0.11M params."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(in_channels, 32),
        *block(32, 64),
        *block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, num_classes),
    )


def mlp(num_classes: int, in_channels: int = 3, image_size: int = 32, hidden: int = 128) -> nn.Module:
    """Two linear layers on the flattened image: the cheapest model for unit tests."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size * image_size, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )


def lenet5(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """LeNet-5 (conv5-pool-conv5-pool-fc120-fc84) with ReLU and max-pooling."""
    if image_size < 16:
        raise ConfigError("image_size", f"lenet5 needs images of at least 16x16, got {image_size}")
    side = ((image_size - 4) // 2 - 4) // 2  # two valid 5x5 convs, each followed by a 2x2 pool
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.ReLU(inplace=True),
        nn.Linear(120, 84),
        nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )


# ----------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016, section 4.2)


class _ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        half = self.extra_channels // 2
        return nn.functional.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


class _CifarBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else _ZeroPadShortcut(c_out - c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images: 3 stages of n basic blocks with 16/32/64 channels.

    Uses option A (parameter-free zero-padding) shortcuts, as in the paper's CIFAR
    experiments, so parameter counts match its Table 6 (ResNet-20: 0.27M, ResNet-32: 0.46M).
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ConfigError("model", f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        stages, c_in = [], 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                stages.append(_CifarBasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


# ----------------------------------------------------------------------------------------
# Wide ResNets (Zagoruyko & Komodakis 2016)


class _WideBasicBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3, 1x1 conv shortcut on shape change."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        # As in the reference code, a projection shortcut reads the pre-activated input.
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-k: 3 stages of (depth-4)/6 pre-activation blocks with 16k/32k/64k channels."""

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ConfigError("model", f"Wide ResNet depth must be 6n+4 with n >= 1, got {depth}")
        if widen < 1:
            raise ConfigError("model", f"Wide ResNet width factor must be >= 1, got {widen}")
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        blocks, c_in = [], 16
        for c_out, stride in zip(widths, (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBasicBlock(c_in, c_out, stride if i == 0 else 1, dropout))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))))


# ----------------------------------------------------------------------------------------
# VGG-19 with batch norm, CIFAR style (one linear classifier on the 512-d pooled feature)

_VGG19_CHANNELS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg19(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    layers: list[nn.Module] = []
    c_in, side = in_channels, image_size
    for item in _VGG19_CHANNELS:
        if item == "M":
            # Skip pools that would shrink the map below 1x1 (e.g. the 5th pool on 28x28 inputs).
            if side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
        else:
            layers += [nn.Conv2d(c_in, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
            c_in = item
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


# ----------------------------------------------------------------------------------------
# torchvision ImageNet models

CIFAR_STEM_MAX_SIZE = 64
"""Images up to this size get the CIFAR stem (stride-1 3x3 first conv, no max-pool)."""


def _fresh_conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Conv2d:
    # Same init as torchvision gives its own first convolution.
    conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _torchvision_resnet(arch: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if image_size <= CIFAR_STEM_MAX_SIZE:
            model.conv1 = _fresh_conv(in_channels, 64, 3, 1)
            model.maxpool = nn.Identity()
        elif in_channels != 3:
            model.conv1 = _fresh_conv(in_channels, 64, 7, 2)
        return model

    build.__name__ = arch
    return build


def mobilenet_v2(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    stride = 1 if image_size <= CIFAR_STEM_MAX_SIZE else 2
    if stride != 2 or in_channels != 3:
        first = model.features[0][0]
        model.features[0][0] = _fresh_conv(in_channels, first.out_channels, 3, stride)
    return model


# ----------------------------------------------------------------------------------------
# Registry

def _cifar_resnet(depth: int, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return CifarResNet(depth, num_classes, in_channels)


def _wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return WideResNet(depth, widen, num_classes, in_channels)


ModelBuilder = Callable[[int, int, int], nn.Module]
"""(num_classes, in_channels, image_size) -> model."""

_BUILDERS: dict[str, ModelBuilder] = {
    "small_cnn": small_cnn,
    "mlp": mlp,
    "lenet5": lenet5,
    **{f"resnet{depth}": partial(_cifar_resnet, depth) for depth in (20, 32, 44, 56, 110)},
    "wrn28_10": partial(_wide_resnet, 28, 10),
    "vgg19": vgg19,
    **{arch: _torchvision_resnet(arch) for arch in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "mobilenet_v2": mobilenet_v2,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""Every registered name; ``wrn{depth}_{k}`` (e.g. ``wrn16_4``) is accepted as well."""

_WRN_PATTERN = re.compile(r"wrn(\d+)_(\d+)")


def check_model(name: str, field: str = "model") -> None:
    """Refuse an unknown architecture name (before any work), listing the known ones."""
    if name not in _BUILDERS and not _WRN_PATTERN.fullmatch(name):
        raise ConfigError(field, f"unknown model '{name}'; known: {', '.join(MODEL_NAMES)}, wrn{{depth}}_{{k}}")


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32,
                device: torch.device | str = "cpu") -> nn.Module:
    """Build a freshly initialised model that maps (B, in_channels, H, W) to (B, num_classes), on ``device``.

    The weights are drawn on the CPU whatever the device (so a seed gives the same network
    everywhere). On the CPU the convolution weights are stored channels-last, the layout
    oneDNN's fastest kernels take (``docs/design.md``, "Channels-last on CPU").
    """
    if num_classes < 1:
        raise ConfigError("num_classes", f"must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ConfigError("in_channels", f"must be >= 1, got {in_channels}")
    if image_size < 8:
        raise ConfigError("image_size", f"must be >= 8, got {image_size}")
    check_model(name)
    if name in _BUILDERS:
        model = _BUILDERS[name](num_classes, in_channels, image_size)
    else:
        depth, width = _WRN_PATTERN.fullmatch(name).groups()
        model = _wide_resnet(int(depth), int(width), num_classes, in_channels, image_size)
    device = torch.device(device)
    layout = torch.channels_last if device.type == "cpu" else torch.preserve_format
    return model.to(device, memory_format=layout)
