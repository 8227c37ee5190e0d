"""The image backbone: a torchvision ResNet cut before its pooling, or no backbone for
precomputed features.

Weights are never downloaded: ``weights=None`` (random initialisation) unless the user
passes a checkpoint file. The paper fine-tunes an ImageNet-pretrained ResNet-101; to
reproduce that, download torchvision's ``resnet101`` ImageNet weights once on a machine
with network access and pass the file (``--model-opt checkpoint=PATH``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .label_files import label_embeddings  # noqa: F401  (its earlier home; the models import it from here)

RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}
TRAINABLE = ("all", "layer4", "none")
_WEIGHTS_HINT = (
    "weights are never downloaded at run time: fetch torchvision's ImageNet weights for {name} "
    "(e.g. torchvision.models.{name}(weights='IMAGENET1K_V1') on a machine with network, then "
    "torch.save(model.state_dict(), PATH)) and pass checkpoint=PATH"
)


def _load_checkpoint(net: nn.Module, path: str, name: str) -> None:
    """Load a torchvision-layout state dict (optionally under 'state_dict' / 'model', with
    DataParallel's 'module.' prefix); the ImageNet classifier 'fc.*' is not needed."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ResNet checkpoint not found: {path}; " + _WEIGHTS_HINT.format(name=name))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit {name}: missing {missing[:3]}..., unexpected {list(unexpected)[:3]}..."
        )


class Backbone(nn.Module):
    """images (b, 3, H, W) -> feature map (b, C, H/32, W/32); C = ``out_channels``
    (512 for ResNet-18/34, 2048 for 50/101/152). ``pool`` > 1 averages the map over
    ``pool`` × ``pool`` windows after layer4 (b, C, H/32/pool, W/32/pool): HST's released
    ResNet adds ``AvgPool2d(2, 2)`` there (7 × 7 positions at 448 px instead of 14 × 14).
    A map smaller than the window (inputs under 64 px with ``pool = 2``) is left as it is.

    name "none": the inputs already are features, (b, d) vectors (returned as (b, d, 1, 1))
    or (b, C, h, w) maps; ``in_features`` is then d or C. ``trainable``: "all" layers,
    "layer4" only (earlier layers frozen, their BatchNorm kept in eval mode, as HST's
    code trains), or "none".
    """

    def __init__(
        self,
        name: str = "resnet101",
        in_features: int = 3,
        *,
        checkpoint: str | None = None,
        trainable: str = "all",
        pool: int = 1,
    ) -> None:
        super().__init__()
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {trainable!r}")
        if not isinstance(pool, int) or pool < 1:
            raise ValueError(f"pool must be an integer >= 1 (1: no pooling), got {pool!r}")
        self.name, self.trainable, self.pool = name, trainable, pool
        if name == "none":
            if checkpoint:
                raise ValueError("checkpoint= needs a ResNet backbone, not backbone='none'")
            self.body, self.out_channels = None, in_features
            return
        if name not in RESNETS:
            raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(RESNETS)} or 'none'")
        if in_features != 3:
            raise ValueError(f"a ResNet backbone takes 3-channel images, got in_features={in_features}")
        from ..datasets.images.files import require_torchvision

        net = getattr(require_torchvision("the ResNet backbone").models, name)(weights=None)
        if checkpoint:
            _load_checkpoint(net, checkpoint, name)
        self.pretrained = bool(checkpoint)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
        self.layer4 = net.layer4
        self.out_channels = RESNETS[name]
        frozen = {"all": [], "layer4": [self.body], "none": [self.body, self.layer4]}[trainable]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if self.body is not None and self.trainable != "all":  # frozen BatchNorm keeps its statistics
            self.body.eval()
            if self.trainable == "none":
                self.layer4.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.body is None:
            if x.dim() == 2:
                x = x[:, :, None, None]
            if x.dim() != 4 or x.shape[1] != self.out_channels:
                raise ValueError(
                    f"expected features (b, {self.out_channels}) or (b, {self.out_channels}, h, w), "
                    f"got {tuple(x.shape)}"
                )
            return x
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (b, 3, H, W), got {tuple(x.shape)}")
        fmap = self.layer4(self.body(x))
        if self.pool > 1 and min(fmap.shape[-2:]) >= self.pool:
            fmap = F.avg_pool2d(fmap, self.pool, self.pool)
        return fmap
