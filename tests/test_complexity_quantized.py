"""The counter on int8 models (torch.ao FX post-training quantization): the same MACs as the float model, every op
covered, activations and weights at 1 byte, packed weights counted as parameters."""

from __future__ import annotations

import timm
import torch
from torch import nn

from harness.metrics.complexity import count, param_counts
from harness.zoo.quantize import quantize_int8


class ConvReluLinear(nn.Module):
    """conv 3→8 (3×3, bias) + ReLU, residual add of a 1×1 conv, max pool, flatten, linear 8·4·4 → 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.skip = nn.Conv2d(3, 8, 1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x)) + self.skip(x)
        return self.fc(self.pool(y).flatten(1))


def test_a_small_int8_model_is_counted_by_hand() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    q = quantize_int8(ConvReluLinear().eval(), [x])
    result = count(q, x)
    conv_macs, skip_macs, fc_macs = 8 * 3 * 9 * 64, 8 * 3 * 64, 5 * 128
    assert result.coverage == 1.0 and not result.uncounted
    assert result.total.macs == conv_macs + skip_macs + fc_macs
    by_op = result.by_op
    conv = by_op["quantized.conv2d_relu"]
    # reads the quint8 input (1 byte each), the qint8 weight and the fp32 bias; writes the quint8 output
    assert conv.mac_bytes == 3 * 64 + 8 * 27 + 8 * 4 + 8 * 64
    assert conv.flops == 2 * conv_macs + 8 * 64 * 2  # bias and fused ReLU, one each per output element
    assert by_op["quantized.linear"].mac_bytes == 128 + 5 * 128 + 5 * 4 + 5
    assert by_op["quantized.add"].flops == 8 * 64
    # FX quantizes the input and, after a float flatten, the linear layer's input
    assert by_op["aten.quantize_per_tensor"].flops == 2 * (3 * 64 + 8 * 4 * 4)
    assert param_counts(q) == {"params": 8 * 27 + 8 + 8 * 3 + 5 * 128 + 5, "params_trainable": 0}


def test_int8_resnet18_has_the_float_models_macs_and_a_quarter_of_its_weight_bytes() -> None:
    model = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    q = quantize_int8(model, [x])
    dense, int8 = count(model, x), count(q, x)
    assert int8.coverage == 1.0 and int8.method == "real"
    assert int8.total.macs == dense.total.macs
    batchnorm = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    # BN folded: its scale into the conv weights, its shift into a new conv bias (half of its parameters stay)
    assert param_counts(q)["params"] == param_counts(model)["params"] - batchnorm // 2
    assert 0.2 < int8.total.mac_bytes / dense.total.mac_bytes < 0.35
