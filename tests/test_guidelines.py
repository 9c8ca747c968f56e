"""The ShuffleNet V2 §2 benchmark networks (harness/zoo/guidelines.py) and their suite.

Counts are taken with ``harness.metrics.complexity.count`` on meta tensors (nothing computed), for
every configuration of Tables 1-4 in both of the paper's platform columns. Within a table the paper
holds FLOPs fixed up to its own integer channel rounding, and argues that MAC (memory access cost,
``mac_bytes``) grows with c1:c2 imbalance (G1) and with the group count (G2).

The suite has both columns: the ARM column's configurations as CPU cases (batch 1, one thread) and the
GPU column's as CUDA cases (batch 8, threads unset), each beside the paper's value for that cell.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness.case import Case
from harness.metrics.complexity import OpCost, count
from harness.suite import load_suite
from harness.zoo import create_model
from harness.zoo.guidelines import BLOCKS, G1_CHANNELS, G2_CHANNELS, G3_STRUCTURES, g1_channels, g2_channels

SUITE = Path(__file__).resolve().parents[1] / "suites" / "shufflenet_v2_guidelines.yaml"
SIZE = 56  # the paper's input side in all four tables
SCALES = (1, 2, 4)  # columns ×1, ×2, ×4 of Tables 1 and 2
G3_COLUMNS = {"arm": (64, 128, 256), "gpu": (128, 256, 512)}  # Table 3's c
G4_COLUMNS = (32, 64, 128)  # Table 4's c, both platforms
PLATFORMS = ("arm", "gpu")  # the paper's two columns in every table
DEVICE_PLATFORM = {"cpu": "arm", "cuda": "gpu"}  # the suite measures the ARM column on CPU, the GPU's on CUDA
#: The suite's CUDA batch: Tables 1-4 state none (GPU in batches/s); the paper's other GPU speeds use 8.
GPU_BATCH = 1

Kwargs = tuple[tuple[str, Any], ...]

Column = tuple[str, list[dict[str, Any]]]


def _columns(platform: str) -> dict[str, list[Column]]:
    """Return each table's configurations in the ``platform`` column, grouped by column (×1/×2/×4 or c):
    (model, [kwargs of the rows, in the table's order]). Tables 1 and 2 list their rows from balanced
    to unbalanced and from 1 to 8 groups."""
    return {
        "G1": [
            ("sv2_g1", [{"ratio": r, "scale": s, "platform": platform} for r in G1_CHANNELS[platform]]) for s in SCALES
        ],
        "G2": [
            ("sv2_g2", [{"groups": g, "scale": s, "platform": platform} for g in G2_CHANNELS[platform]]) for s in SCALES
        ],
        "G3": [("sv2_g3", [{"structure": st, "channels": c} for st in G3_STRUCTURES]) for c in G3_COLUMNS[platform]],
        "G4": [
            ("sv2_g4", [{"relu": r, "shortcut": sc, "channels": c} for r in (True, False) for sc in (True, False)])
            for c in G4_COLUMNS
        ],
    }


#: Platform -> table -> its columns (see :func:`_columns`).
COLUMNS: dict[str, dict[str, list[Column]]] = {p: _columns(p) for p in PLATFORMS}

#: Each table's distinct columns over both platforms (Table 4's are the same on both).
TABLES: dict[str, list[Column]] = {
    table: arm + [col for col in COLUMNS["gpu"][table] if col not in arm] for table, arm in COLUMNS["arm"].items()
}

#: Largest relative MACs difference from a column's first row that the integer channels make:
#: G1: the paper's ARM (22, 44) has 22·44 = 968 vs 32·32 = 1024 multiply-adds a pixel (−5.5%);
#: G2: the ARM ×1 g = 8 row is built with c = 184, a multiple of 8, for the paper's 180 (+3.3%);
#: G3: 2-fragment-series at c = 128 has ⌊128/√2⌋ = 90 channels: 2·90² vs 128² (−1.1%);
#: G4: every variant has the same three convolutions.
MACS_TOLERANCE = {"G1": 0.06, "G2": 0.035, "G3": 0.012, "G4": 0.0}


def _build(model: str, kwargs: Kwargs) -> nn.Module:
    """Return the model with its parameters on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        return create_model(model, **dict(kwargs))


def _input_channels(model: nn.Module) -> int:
    """Return the input channels of the model's first convolution."""
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def _input(model: nn.Module) -> torch.Tensor:
    """Return a meta input of batch 1 at the paper's 56×56 with the model's input channels."""
    return torch.empty(1, _input_channels(model), SIZE, SIZE, device="meta")


@cache
def _cost(model: str, kwargs: Kwargs) -> OpCost:
    """Return the counted cost of one forward pass at batch 1, fp32 (4-byte) MAC."""
    net = _build(model, kwargs)
    return count(net, _input(net), dtype_bytes=4).total


def _costs(model: str, rows: list[dict[str, Any]]) -> list[OpCost]:
    """Return the cost of each row of a table column."""
    return [_cost(model, tuple(sorted(row.items()))) for row in rows]


@pytest.mark.parametrize("table", list(TABLES))
def test_macs_equal_within_each_column(table: str) -> None:
    for model, rows in TABLES[table]:
        first, *others = _costs(model, rows)
        for row, cost in zip(rows[1:], others, strict=True):
            assert cost.macs == pytest.approx(first.macs, rel=MACS_TOLERANCE[table]), (model, row)


@pytest.mark.parametrize("table", ["G1", "G2", "G3"])
def test_flops_are_the_convolutions_only(table: str) -> None:
    """G1-G3 networks are convolutions (and G3's concatenation, a copy): flops = 2 × macs, so FLOPs
    are equal within a column to the same tolerance as MACs."""
    for model, rows in TABLES[table]:
        for cost in _costs(model, rows):
            assert cost.flops == 2 * cost.macs


@pytest.mark.parametrize("table", ["G1", "G2"])
def test_mac_grows_as_the_paper_argues(table: str) -> None:
    """G1: MAC strictly increases with the c1:c2 imbalance; G2: with the number of groups."""
    for model, rows in TABLES[table]:
        mac = [cost.mac_bytes for cost in _costs(model, rows)]
        assert mac == sorted(set(mac)), (model, rows[0], mac)


def test_g1_mac_is_the_papers_formula() -> None:
    """Per 1×1 conv, MAC = h·w·(c1 + c2) + c1·c2 elements (§2, G1), 4 bytes each, 2 convs a block."""
    for model, rows in TABLES["G1"]:
        for row, cost in zip(rows, _costs(model, rows), strict=True):
            c1, c2 = g1_channels(row["ratio"], row["scale"], row["platform"])
            per_conv = SIZE * SIZE * (c1 + c2) + c1 * c2
            assert cost.mac_bytes == BLOCKS * 2 * per_conv * 4
            assert cost.macs == BLOCKS * 2 * SIZE * SIZE * c1 * c2


def test_g2_mac_is_the_papers_formula() -> None:
    """Per 1×1 group conv c→c, MAC = h·w·2c + c²/g elements (§2, Eq. 2), 4 bytes each."""
    for model, rows in TABLES["G2"]:
        for row, cost in zip(rows, _costs(model, rows), strict=True):
            c, g = g2_channels(row["groups"], row["scale"], row["platform"]), row["groups"]
            assert cost.mac_bytes == BLOCKS * (SIZE * SIZE * 2 * c + c * c // g) * 4


def test_g4_removing_relu_or_shortcut_lowers_flops_and_mac() -> None:
    for c in G4_COLUMNS:
        cost = {
            (r, sc): _cost("sv2_g4", (("channels", c), ("relu", r), ("shortcut", sc)))
            for r in (True, False)
            for sc in (True, False)
        }
        for fewer, more in [
            ((True, False), (True, True)),
            ((False, True), (True, True)),
            ((False, False), (True, False)),
            ((False, False), (False, True)),
        ]:
            assert cost[fewer].flops < cost[more].flops, (c, fewer, more)
            assert cost[fewer].mac_bytes < cost[more].mac_bytes, (c, fewer, more)


@pytest.mark.parametrize("table", list(TABLES))
def test_output_shape_is_the_input_shape(table: str) -> None:
    """Every network keeps its input's channels and 56×56 size (stride 1, blocks c→…→c)."""
    for model, rows in TABLES[table]:
        for row in rows:
            net = _build(model, tuple(row.items()))
            x = _input(net)
            assert net(x).shape == x.shape, (model, row)


@pytest.mark.parametrize(
    ("model", "kwargs", "expected"),
    [
        ("sv2_g1", {"ratio": "1:2", "scale": 2, "platform": "arm"}, 44),
        ("sv2_g1", {"ratio": "1:2", "scale": 1, "platform": "gpu"}, 90),
        ("sv2_g2", {"groups": 8, "scale": 1, "platform": "arm"}, 184),
        ("sv2_g2", {"groups": 8, "scale": 1, "platform": "gpu"}, 360),
        ("sv2_g3", {"structure": "2-fragment-series", "channels": 64}, 45),
        ("sv2_g3", {"structure": "4-fragment-series", "channels": 128}, 64),
        ("sv2_g3", {"structure": "4-fragment-parallel", "channels": 128}, 128),
        ("sv2_g4", {"relu": False, "shortcut": True, "channels": 64}, 64),
    ],
)
def test_input_channels(model: str, kwargs: dict[str, Any], expected: int) -> None:
    assert _input_channels(_build(model, tuple(kwargs.items()))) == expected


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("sv2_g1", {"ratio": "1:3"}),
        ("sv2_g1", {"platform": "cpu"}),
        ("sv2_g2", {"groups": 3}),
        ("sv2_g3", {"structure": "3-fragment-series"}),
    ],
)
def test_unknown_configuration_is_a_value_error(model: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        _build(model, tuple(kwargs.items()))


def _position(case: Case) -> tuple[str, int, int]:
    """Return (table, column index, row index) of a suite case in its device's column of Tables 1-4."""
    platform = DEVICE_PLATFORM[case.device]
    kwargs = dict(case.model_kwargs)
    for table, columns in COLUMNS[platform].items():
        for j, (model, rows) in enumerate(columns):
            if model == case.model and kwargs in rows:
                return table, j, rows.index(kwargs)
    raise AssertionError(f"{case.label}: not a configuration of the paper's {platform} column")


def test_suite_validates_and_each_case_gets_its_input() -> None:
    suite = load_suite(SUITE)
    # both platforms' three columns of Tables 1-4 (rows: 4, 4, 5, 4)
    assert len(suite.cases) == 2 * 3 * (4 + 4 + 5 + 4)
    for case in suite.cases:
        protocol = (case.resolution, case.batch, case.device, case.dtype, case.threads)
        if case.device == "cpu":
            assert protocol == (SIZE, 1, "cpu", "fp32", 1), case.label  # the ARM column: one thread
        else:
            assert protocol == (SIZE, GPU_BATCH, "cuda", "fp32", None), case.label  # threads: torch's default
        assert case.channels == _input_channels(_build(case.model, case.model_kwargs)), case.label


def test_suite_has_every_cell_of_both_columns_once() -> None:
    """Each CPU case (ARM column) has a CUDA case (GPU column) at the same table, row and ×1/×2/×4 or
    c column, and the cases of each device cover every cell of Tables 1-4 once."""
    suite = load_suite(SUITE)
    cells = {
        (table, j, i)
        for table, columns in COLUMNS["arm"].items()
        for j, (_, rows) in enumerate(columns)
        for i in range(len(rows))
    }
    positions = {device: [_position(c) for c in suite.cases if c.device == device] for device in DEVICE_PLATFORM}
    assert sorted(positions["cuda"]) == sorted(positions["cpu"])
    for device, found in positions.items():
        assert len(found) == len(set(found)), device
        assert set(found) == cells, device


@pytest.mark.parametrize("device", list(DEVICE_PLATFORM))
def test_suite_macs_equal_within_each_column(device: str) -> None:
    """The suite's cases of one table column, on one device, have the same MACs (as the paper's FLOPs)
    within the table's tolerance."""
    suite = load_suite(SUITE)
    columns: dict[tuple[str, int], list[Case]] = {}
    for case in suite.cases:
        if case.device == device:
            table, j, _ = _position(case)
            columns.setdefault((table, j), []).append(case)
    assert len(columns) == 4 * 3
    for (table, j), cases in columns.items():
        first, *others = [_cost(c.model, c.model_kwargs).macs for c in cases]
        for case, macs in zip(cases[1:], others, strict=True):
            assert macs == pytest.approx(first, rel=MACS_TOLERANCE[table]), (table, j, case.label)


def test_suite_published_entries_select_one_case_each() -> None:
    suite = load_suite(SUITE)
    for entry in suite.published:
        wanted = entry.match.model_dump(exclude_none=True)
        matched = [c for c in suite.cases if all(c.to_dict()[k] == v for k, v in wanted.items())]
        assert len(matched) == 1, wanted
    for case in suite.cases:
        assert [p["metric"] for p in suite.published_for(case)] == ["throughput_samples_per_s"], case.label


def test_suite_published_values_are_the_columns_in_images_per_second() -> None:
    """ARM entries are the paper's images/s; GPU entries its batches/s (integers) × the batch, with the
    conversion, the GPU and the unit stated in the convention."""
    suite = load_suite(SUITE)
    for case in suite.cases:
        (entry,) = suite.published_for(case)
        if case.device == "cuda":
            assert (entry["value"] / GPU_BATCH).is_integer(), case.label
            for words in ("images/s", f"batches/s read at batch {GPU_BATCH}", "GTX 1080Ti", "cuDNN 7.0"):
                assert words in entry["convention"], (case.label, words)
        else:
            assert "Snapdragon 810" in entry["convention"], case.label
