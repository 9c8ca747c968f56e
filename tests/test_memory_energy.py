"""The memory and energy metrics and the NVML wrapper: known sizes on the CPU, NVML through a fake."""

from __future__ import annotations

import sys
import time

import pytest
import torch

from harness import nvml
from harness.case import Case
from harness.metrics import energy, memory

MiB = 2**20


class BigTemporary(torch.nn.Module):
    """Allocates (and touches) a ``mib`` MiB tensor in forward, keeps it ``hold_s`` seconds, frees it."""

    def __init__(self, mib: int, hold_s: float = 0.0) -> None:
        super().__init__()
        self.numel = mib * MiB // 4
        self.hold_s = hold_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(self.numel)
        time.sleep(self.hold_s)
        return x + big[0]


# ---- memory ----------------------------------------------------------------------------------------


def test_weight_bytes_counts_parameters_and_buffers_once():
    first, second = torch.nn.Linear(10, 10), torch.nn.Linear(10, 10)
    second.weight = first.weight
    model = torch.nn.Sequential(first, torch.nn.BatchNorm1d(10), second).eval()
    # weight 10*10 (shared), 2 biases 2*10, bn weight+bias 2*10, running mean/var 2*10: fp32;
    # num_batches_tracked: one int64
    expected = (100 + 20 + 20 + 20) * 4 + 8
    assert memory.weight_bytes(model) == expected
    out = memory.measure(model, torch.zeros(2, 10), Case("tied"), memory.Options())
    assert out["mem_weight_bytes"] == expected


def test_rss_growth_sees_a_64_mib_temporary_and_not_a_tiny_model():
    big = memory.measure(BigTemporary(64), torch.zeros(1), Case("big"), memory.Options())
    tiny = memory.measure(torch.nn.Linear(8, 8), torch.zeros(1, 8), Case("tiny"), memory.Options())
    assert big["mem_peak_rss_delta_bytes"] >= 62 * MiB
    assert tiny["mem_peak_rss_delta_bytes"] < 8 * MiB
    assert big["mem_peak_cuda_bytes"] is None and big["mem_weight_bytes"] == 0
    assert "clear_refs" in big["mem_method"]


def test_rss_falls_back_to_sampling_where_the_peak_cannot_be_reset(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "absent" / "clear_refs")
    out = memory.measure(BigTemporary(64, hold_s=0.03), torch.zeros(1), Case("big"), memory.Options(iterations=2))
    assert out["mem_peak_rss_delta_bytes"] >= 62 * MiB
    assert out["mem_method"].startswith("VmRSS sampled every 1 ms (peak reset refused: FileNotFoundError)")


def test_training_step_runs_backward_and_leaves_the_model_in_eval_without_gradients():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5)).eval()
    seen_modes = []
    model.register_forward_hook(lambda module, args, output: seen_modes.append(module.training))
    out = memory.measure(model, torch.randn(4, 8), Case("tiny", mode="train"), memory.Options(iterations=2))
    assert seen_modes == [True] * 3 and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert out["mem_peak_rss_delta_bytes"] is not None


# ---- a fake pynvml ---------------------------------------------------------------------------------


class NVMLError(Exception):
    """Base of the fake's errors, as in pynvml."""


class FakeNvml:
    """Stands in for the pynvml module: one GPU (UUID GPU-1234) whose energy counter (mJ), power (mW)
    and unsupported queries the test sets."""

    NVMLError = NVMLError
    NVMLError_NotSupported = type("NVMLError_NotSupported", (NVMLError,), {})
    NVMLError_FunctionNotFound = type("NVMLError_FunctionNotFound", (NVMLError,), {})
    NVMLError_NotFound = type("NVMLError_NotFound", (NVMLError,), {})
    NVMLError_LibraryNotFound = type("NVMLError_LibraryNotFound", (NVMLError,), {})
    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2

    def __init__(self, unsupported: tuple[str, ...] = (), uuids: tuple[str, ...] = ("GPU-1234",)) -> None:
        self.energy_mj = 7_000_000
        self.power_mw = 100_000
        self.unsupported = unsupported
        self.uuids = uuids
        self.sessions = 0

    def _check(self, query: str) -> None:
        if query in self.unsupported:
            raise (self.NVMLError_FunctionNotFound if query == "temperature" else self.NVMLError_NotSupported)()

    def nvmlInit(self) -> None:
        self.sessions += 1

    def nvmlShutdown(self) -> None:
        self.sessions -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid not in self.uuids:
            raise self.NVMLError_NotFound()
        return f"handle:{uuid}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        self._check("energy")
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        self._check("power")
        return self.power_mw

    def nvmlDeviceGetClockInfo(self, handle: str, clock: int) -> int:
        self._check("clock")
        return {self.NVML_CLOCK_SM: 1980, self.NVML_CLOCK_MEM: 2619}[clock]

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        self._check("temperature")
        return 41

    def nvmlDeviceGetPerformanceState(self, handle: str) -> int:
        self._check("pstate")
        return 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        self._check("clock")
        return 0x4 | 0x20 | 0x10000  # power cap, thermal slowdown, and a bit a later driver may define


class Burner(torch.nn.Module):
    """A 'model' each forward of which adds ``mj`` millijoules to the fake GPU's energy counter."""

    def __init__(self, gpu: FakeNvml, mj: int) -> None:
        super().__init__()
        self.gpu, self.mj = gpu, mj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.gpu.energy_mj += self.mj
        time.sleep(0.002)
        return x


@pytest.fixture
def fake_gpu(monkeypatch):
    """Return a function installing a FakeNvml as ``pynvml`` and making torch.cuda calls no-ops."""

    def install(**kwargs) -> FakeNvml:
        gpu = FakeNvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", gpu)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(nvml, "cuda_device_uuid", lambda index: "1234")
        return gpu

    return install


# ---- harness.nvml ----------------------------------------------------------------------------------


def test_gpu_state_in_units_and_unsupported_fields_as_none(fake_gpu):
    gpu = fake_gpu(unsupported=("temperature", "pstate"))
    with nvml.nvml_session():
        handle = nvml.handle_for_uuid("GPU-1234")
        assert nvml.gpu_state(handle) == {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temperature_c": None,
                                          "power_w": 100.0, "pstate": None,
                                          "clock_limits": ["sw_power_cap", "sw_thermal", "0x10000"]}
        assert nvml.total_energy_mj(handle) == 7_000_000
        gpu.unsupported = ("energy", "power", "clock")
        assert nvml.total_energy_mj(handle) is None and nvml.power_w(handle) is None
        assert nvml.gpu_state(handle)["sm_clock_mhz"] is None
    assert gpu.sessions == 0


def test_handle_for_a_bare_uuid_tries_gpu_then_mig(fake_gpu):
    fake_gpu(uuids=("MIG-abcd",))
    assert nvml.handle_for_uuid("abcd") == nvml.handle_for_uuid("MIG-abcd") == "handle:MIG-abcd"
    with pytest.raises(NVMLError):
        nvml.handle_for_uuid("GPU-ffff")


def test_nvml_available_reasons(monkeypatch):
    class NoDriver(FakeNvml):
        def nvmlInit(self) -> None:
            raise self.NVMLError_LibraryNotFound()

    monkeypatch.setitem(sys.modules, "pynvml", NoDriver())
    assert nvml.nvml_available() == (False, "no NVIDIA driver (NVMLError_LibraryNotFound)")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert nvml.nvml_available() == (False, "nvidia-ml-py not installed")
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    assert nvml.nvml_available() == (True, "")


# ---- energy ----------------------------------------------------------------------------------------


def test_cpu_case_is_not_applicable_and_does_not_raise():
    out = energy.measure(torch.nn.Identity(), torch.zeros(1), Case("tiny"), energy.Options())
    assert out == {column: None for column in energy.COLUMNS} | {
        "energy_status": "n/a: CPU case (NVML measures GPUs only)"}


@pytest.mark.skipif(nvml.nvml_available()[0], reason="NVML works on this machine")
def test_without_a_driver_the_status_gives_nvmls_reason():
    out = energy.measure(torch.nn.Identity(), torch.zeros(1), Case("tiny", device="cuda"), energy.Options())
    assert out["energy_status"] == "n/a: no NVIDIA driver (NVMLError_LibraryNotFound)"
    assert out["energy_j_per_batch"] is None


def test_energy_counter_gives_joules_per_batch_and_per_image(fake_gpu):
    gpu = fake_gpu()
    opts = energy.Options(min_window_s=0.05, warmup_iters=2)
    out = energy.measure(Burner(gpu, 250), torch.zeros(1), Case("burn", batch=8, device="cuda"), opts)
    assert out["energy_status"] == "ok"
    assert out["energy_j_per_batch"] == pytest.approx(0.25)
    assert out["energy_j_per_image"] == pytest.approx(0.25 / 8)
    assert out["energy_window_s"] >= 0.05 and out["energy_iterations"] >= 1
    window_j = 0.25 * out["energy_iterations"]
    assert out["energy_power_w_mean"] == pytest.approx(window_j / out["energy_window_s"])
    assert gpu.energy_mj == 7_000_000 + 250 * (2 + out["energy_iterations"]) and gpu.sessions == 0


def test_power_samples_are_integrated_where_the_counter_is_not_supported(fake_gpu):
    gpu = fake_gpu(unsupported=("energy",))
    opts = energy.Options(min_window_s=0.1, warmup_iters=0, power_sample_interval_s=0.005)
    out = energy.measure(Burner(gpu, 0), torch.zeros(1), Case("burn", batch=4, device="cuda"), opts)
    assert out["energy_status"] == "ok (integrated power samples)"
    assert out["energy_power_w_mean"] == pytest.approx(100.0, rel=0.02)
    per_batch = 100.0 * out["energy_window_s"] / out["energy_iterations"]
    assert out["energy_j_per_batch"] == pytest.approx(per_batch, rel=0.02)
    assert out["energy_j_per_image"] == pytest.approx(out["energy_j_per_batch"] / 4)


def test_neither_counter_nor_power_is_not_applicable(fake_gpu):
    gpu = fake_gpu(unsupported=("energy", "power"))
    out = energy.measure(Burner(gpu, 250), torch.zeros(1), Case("burn", device="cuda"), energy.Options())
    assert out["energy_status"] == f"n/a: {energy.NO_METER}" and out["energy_j_per_batch"] is None
    assert gpu.sessions == 0


def test_an_nvml_error_is_not_applicable_and_keeps_the_case(fake_gpu):
    gpu = fake_gpu(uuids=("GPU-other",))
    out = energy.measure(Burner(gpu, 250), torch.zeros(1), Case("burn", device="cuda"), energy.Options())
    assert out["energy_status"] == "n/a: NVML error (NVMLError_NotFound)" and gpu.sessions == 0


def test_trapezoid_of_known_power_samples():
    assert energy.trapezoid_j([(0.0, 100.0), (1.0, 200.0), (3.0, 200.0)]) == pytest.approx(550.0)
    assert energy.trapezoid_j([(5.0, 80.0)]) == 0.0


def test_weight_bytes_counts_the_packed_weights_of_an_int8_model():
    from harness.zoo.build import build_model

    fp32 = build_model(Case("tiny_cnn", resolution=16))
    int8 = build_model(Case("tiny_cnn", resolution=16, quant="int8"))
    conv_and_fc_elements = 3 * 8 * 9 + 8 * 10
    # int8 weights take one byte an element: more than that, far less than the fp32 model's 4 bytes each
    assert conv_and_fc_elements <= memory.weight_bytes(int8) < memory.weight_bytes(fp32)
