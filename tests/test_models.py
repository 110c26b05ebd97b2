"""Encoders: architecture (parameter counts of the standard networks), shapes, auto rules, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gated_symile.errors import ConfigError
from gated_symile.method.encoders.ecg import EcgResNet1d, ecg_resnet18_2d
from gated_symile.method.encoders.build import EncoderConfig, build_encoder, resolve_arch
from gated_symile.method.encoders.resnet import resnet18, resnet50

IMAGE = {"kind": "image_uint8", "shape": [32, 32]}
ECG = {"kind": "float32", "shape": [1, 5000, 12]}
LABS = {"kind": "float32", "shape": [100]}
VECTOR = {"kind": "float32", "shape": [24]}
TINY_RESNET = EncoderConfig(width=4, blocks=(1, 1, 1, 1))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet18_matches_the_standard_parameter_count():
    # torchvision resnet18 (1000-class fc) has 11,689,512 parameters; fc = 512 * 1000 + 1000.
    assert n_params(resnet18()) == 11_689_512 - (512 * 1000 + 1000)


def test_resnet50_backbone_matches_the_standard_parameter_count():
    # torchvision resnet50 has 25,557,032 parameters, of which the fc is 2048 * 1000 + 1000.
    model = resnet50()
    assert n_params(model) == 25_557_032 - (2048 * 1000 + 1000) == 23_508_032
    assert model.out_features == 2048


def test_encoder_parameter_count_is_backbone_plus_head():
    d = 32
    enc = build_encoder("cxr", IMAGE, EncoderConfig(arch="resnet18"), d, final_layernorm=True)
    assert n_params(enc) == 11_176_512 + (512 * d + d) + 2 * d


def test_bottleneck_carries_the_stride_in_its_3x3_conv():
    block = resnet50(width=8).layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.conv2.kernel_size == (3, 3)


def test_ecg_2d_stem_is_the_reference_one():
    conv1 = ecg_resnet18_2d().conv1
    assert isinstance(conv1, nn.Conv2d)
    assert (conv1.in_channels, conv1.out_channels) == (1, 64)
    assert conv1.kernel_size == (7, 7) and conv1.stride == (2, 2) and conv1.padding == (3, 3)
    assert conv1.bias is None


def test_ecg_1d_reads_leads_as_channels():
    model = EcgResNet1d(leads=12, width=4, blocks=(1, 1, 1, 1))
    assert isinstance(model.resnet.conv1, nn.Conv1d) and model.resnet.conv1.in_channels == 12
    x = torch.randn(2, 1, 500, 12)
    # leads are channels: permuting leads in the input equals permuting conv1's input channels
    perm = torch.randperm(12)
    ref = model.eval()(x)
    model.resnet.conv1.weight.data = model.resnet.conv1.weight.data[:, perm]
    assert torch.allclose(model(x[..., perm]), ref, atol=1e-5)
    with pytest.raises(ValueError):
        model(torch.randn(2, 500, 12))


@pytest.mark.parametrize(
    ("modality", "spec", "cfg", "x_shape", "trunk_type"),
    [
        ("cxr", IMAGE, EncoderConfig(arch="resnet18", width=4), (2, 3, 32, 32), "ResNet"),
        ("cxr", IMAGE, EncoderConfig(arch="resnet50", width=4), (2, 3, 32, 32), "ResNet"),
        (
            "ecg",
            ECG,
            EncoderConfig(arch="ecg_resnet18_2d", width=4, blocks=(1, 1, 1, 1)),
            (2, 1, 5000, 12),
            "ResNet",
        ),
        (
            "ecg",
            ECG,
            EncoderConfig(arch="ecg_resnet18_1d", width=4),
            (2, 1, 5000, 12),
            "EcgResNet1d",
        ),
        ("labs", LABS, EncoderConfig(arch="mlp_gelu"), (3, 100), "MLP"),
        ("a", VECTOR, EncoderConfig(arch="mlp_relu"), (3, 24), "MLP"),
        (
            "nmr",
            VECTOR,
            EncoderConfig(arch="tabular_mlp", hidden=(16, 8), dropout=0.2),
            (3, 24),
            "MLP",
        ),
    ],
)
@pytest.mark.parametrize("layernorm", [False, True])
def test_output_shape(modality, spec, cfg, x_shape, trunk_type, layernorm):
    torch.manual_seed(0)
    enc = build_encoder(modality, spec, cfg, embed_dim=8, final_layernorm=layernorm)
    assert type(enc.trunk).__name__ == trunk_type
    assert isinstance(enc.norm, nn.LayerNorm) == layernorm
    out = enc(torch.randn(x_shape))
    assert out.shape == (x_shape[0], 8) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("modality", "spec", "expected"),
    [
        ("cxr", IMAGE, "resnet18"),
        ("ecg", ECG, "ecg_resnet18_2d"),
        ("labs", LABS, "mlp_gelu"),
        ("a", VECTOR, "mlp_relu"),
        ("nmr", {"kind": "float32", "shape": [498]}, "mlp_relu"),
    ],
)
def test_auto_arch_rules(modality, spec, expected):
    assert resolve_arch(modality, spec, EncoderConfig()) == expected


def test_auto_refuses_an_unknown_layout():
    with pytest.raises(ConfigError, match="set its arch"):
        resolve_arch("x", {"kind": "float32", "shape": [3, 8, 8]}, EncoderConfig())


def test_labs_mlp_is_the_reference_network():
    enc = build_encoder("labs", LABS, EncoderConfig(), embed_dim=16, final_layernorm=True)
    layers = list(enc.trunk.layers)
    assert [type(m).__name__ for m in layers] == ["Linear", "GELU", "Linear", "GELU"]
    assert (layers[0].in_features, layers[0].out_features) == (100, 256)
    assert (layers[2].in_features, layers[2].out_features) == (256, 1024)
    assert (enc.head.in_features, enc.head.out_features) == (1024, 16)
    for lin in (layers[0], layers[2], enc.head):  # Xavier-uniform, zero bias
        bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
        assert lin.weight.abs().max() <= bound
        assert lin.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert not lin.bias.any()


def test_synthetic_mlp_is_the_reference_network():
    enc = build_encoder("b", {"kind": "float32", "shape": [128]}, EncoderConfig(), 256, False)
    layers = list(enc.trunk.layers)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert [(m.in_features, m.out_features) for m in layers[::2]] == [(128, 256), (256, 256)]
    assert (enc.head.in_features, enc.head.out_features) == (256, 256)
    for lin in (*layers[::2], enc.head):  # Kaiming-normal fan_out, zero bias
        assert lin.weight.std().item() == pytest.approx(math.sqrt(2.0 / lin.out_features), rel=0.1)
        assert not lin.bias.any()


def test_tabular_blocks_are_linear_gelu_layernorm_dropout():
    cfg = EncoderConfig(arch="tabular_mlp", dropout=0.6)
    enc = build_encoder("ehr", {"kind": "float32", "shape": [40]}, cfg, 8, False)
    names = [type(m).__name__ for m in enc.trunk.layers]
    assert names == ["Linear", "GELU", "LayerNorm", "Dropout"] * 3
    assert [m.out_features for m in enc.trunk.layers if isinstance(m, nn.Linear)] == [
        1024,
        512,
        256,
    ]


def test_empty_hidden_gives_a_single_linear_encoder():
    enc = build_encoder("a", {"kind": "float32", "shape": [5]}, EncoderConfig(hidden=()), 16, False)
    assert n_params(enc) == 5 * 16 + 16
    assert enc(torch.randn(4, 5)).shape == (4, 16)


def test_resnet_head_init_is_kaiming_fan_out_with_zero_bias():
    enc = build_encoder("cxr", IMAGE, EncoderConfig(width=16), embed_dim=256, final_layernorm=False)
    assert enc.head.weight.std().item() == pytest.approx(math.sqrt(2.0 / 256), rel=0.1)
    assert not enc.head.bias.any()
    conv = enc.trunk.conv1  # fan_out = 16 * 7 * 7
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / (16 * 49)), rel=0.15)


@pytest.mark.parametrize(
    ("modality", "spec", "cfg"), [("cxr", IMAGE, TINY_RESNET), ("labs", LABS, EncoderConfig())]
)
def test_init_is_deterministic_under_a_seed(modality, spec, cfg):
    def build(seed):
        torch.manual_seed(seed)
        return build_encoder(modality, spec, cfg, 8, True).state_dict()

    first, again, other = build(3), build(3), build(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize(
    ("modality", "spec", "cfg", "x_shape"),
    [
        ("cxr", IMAGE, TINY_RESNET, (4, 3, 32, 32)),
        (
            "ecg",
            ECG,
            EncoderConfig(arch="ecg_resnet18_1d", width=4, blocks=(1, 1, 1, 1)),
            (4, 1, 1000, 12),
        ),
        ("labs", LABS, EncoderConfig(), (4, 100)),
        ("a", VECTOR, EncoderConfig(), (4, 24)),
        ("ehr", VECTOR, EncoderConfig(arch="tabular_mlp", hidden=(16,)), (4, 24)),
    ],
)
def test_gradients_reach_every_parameter(modality, spec, cfg, x_shape):
    torch.manual_seed(0)
    enc = build_encoder(modality, spec, cfg, 8, final_layernorm=True)
    x = torch.randn(x_shape, requires_grad=True)
    (enc(x) * torch.randn(x_shape[0], 8)).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("arch", "spec"),
    [
        ("mlp_relu", IMAGE),
        ("resnet18", LABS),
        ("ecg_resnet18_2d", VECTOR),
        ("ecg_resnet18_1d", IMAGE),
    ],
)
def test_incompatible_arch_is_a_config_error(arch, spec):
    with pytest.raises(ConfigError, match=arch):
        build_encoder("m", spec, EncoderConfig(arch=arch), 8, False)


def test_unknown_input_kind_is_a_config_error():
    # Encoder settings are validated where the run config is built (tests/test_config.py).
    with pytest.raises(ConfigError, match="kind"):
        build_encoder("m", {"kind": "int8", "shape": [3]}, EncoderConfig(), 8, False)


def test_ecg_time_pool_averages_samples_before_the_trunk():
    """``pool``: the trunk sees the record averaged over groups of samples (500 Hz -> 50 Hz)."""
    torch.manual_seed(0)
    cfg = EncoderConfig(arch="ecg_resnet18_1d", width=4, blocks=(1, 1, 1, 1), pool=10)
    enc = build_encoder("ecg", ECG, cfg, 8, final_layernorm=False).eval()
    x = torch.randn(2, 1, 5000, 12)
    pooled = x.reshape(2, 1, 500, 10, 12).mean(dim=3)
    with torch.no_grad():
        direct = enc.head(enc.trunk.trunk(pooled))
        assert torch.allclose(enc(x), direct, atol=1e-6)
    assert n_params(enc) == n_params(build_encoder("ecg", ECG, EncoderConfig(arch="ecg_resnet18_1d", width=4, blocks=(1, 1, 1, 1)), 8, False))


def test_ecg_pool_longer_than_the_record_is_a_config_error():
    # pool < 1 is a schema limit, refused where the run config is built (test_settings_single_source)
    with pytest.raises(ConfigError, match="pool"):
        build_encoder("ecg", ECG, EncoderConfig(arch="ecg_resnet18_1d", width=4, pool=6000), 8, False)
