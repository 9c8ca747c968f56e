"""Capture of the environment that produced a result: software versions, CPU, GPU, host, git sha.

Every key is prefixed ``env_`` and becomes a column of every record. Values are strings or ints; what
cannot be known here is an empty string, never a guess.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ENV_COLUMNS: dict[str, str] = {
    "env_harness_version": "string",
    "env_git_sha": "string",
    "env_python": "string",
    "env_torch": "string",
    "env_torchvision": "string",
    "env_timm": "string",
    "env_platform": "string",
    "env_cpu": "string",
    "env_cpu_count": "int64",
    "env_torch_threads": "int64",
    "env_cuda": "string",
    "env_cudnn": "string",
    "env_gpu": "string",
    "env_gpu_driver": "string",
    "env_hostname": "string",
}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def git_sha(start: Path | None = None) -> str:
    """Return the commit sha of the git checkout holding the harness (or ``start``), with ``+dirty``; '' if none."""
    where = start or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty else "")


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo (Linux) or platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_info() -> dict[str, str]:
    """Return the names of the NVIDIA GPUs and the driver version through NVML; '' where there is none."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound on machines without a driver, ImportError without the binding
        return {"env_gpu": "", "env_gpu_driver": ""}
    try:
        names = [
            pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            for i in range(pynvml.nvmlDeviceGetCount())
        ]
        return {"env_gpu": "; ".join(names), "env_gpu_driver": pynvml.nvmlSystemGetDriverVersion()}
    finally:
        pynvml.nvmlShutdown()


def capture() -> dict[str, Any]:
    """Return the environment as ``{env_*: value}`` (imports torch; call it where torch is loaded)."""
    import torch

    cuda = torch.version.cuda or ""
    cudnn = str(torch.backends.cudnn.version() or "") if torch.backends.cudnn.is_available() else ""
    return {
        "env_harness_version": _version("harness"),
        "env_git_sha": git_sha(),
        "env_python": platform.python_version(),
        "env_torch": torch.__version__,
        "env_torchvision": _version("torchvision"),
        "env_timm": _version("timm"),
        "env_platform": platform.platform(),
        "env_cpu": cpu_model(),
        "env_cpu_count": os.cpu_count() or 0,
        "env_torch_threads": torch.get_num_threads(),
        "env_cuda": cuda if torch.cuda.is_available() else f"{cuda} (no device)" if cuda else "",
        "env_cudnn": cudnn,
        **gpu_info(),
        "env_hostname": socket.gethostname(),
    }
