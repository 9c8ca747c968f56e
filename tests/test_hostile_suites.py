"""Hostile suite files: every one is refused with `FILE:LINE: where: what was expected` and exit status 2, quickly,
in bounded memory, without a traceback; what is valid but suspect is a printed warning."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cli import main
from harness.suite import MAX_PROBLEMS_SHOWN, SuiteError, load_suite
from harness.yaml_lines import load_yaml_with_lines


def _laughs(levels: int) -> str:
    """Return the 'billion laughs' alias bomb: each level a list of nine aliases of the level below."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, "matrix:", f"  model: *l{levels}", ""])


BOMB = _laughs(9)  # 9^10 strings once expanded: gigabytes
MERGE_BOMB = "\n".join(["m0: &m0 {x: 1}", *(f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}"
                                             for i in range(1, 12))]) + "\n"
ALIAS_CHAIN = "\n".join(["a0: &a0 [x]", *(f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 100))]) + "\n"

# (id, file bytes, line, fragment of that line's message)
HOSTILE = [
    ("merged-key-keeps-its-line", b"matrix:\n  model: [tiny_cnn]\ninclude:\n  - &base {model: tiny_cnn, dtype: fp64}\n"
     b"  - <<: *base\n    batch: 2\n", 4, "include[1].dtype: Input should be 'fp32'"),
    ("recursive-alias", b"matrix:\n  model: &m [tiny_cnn, *m]\n", 2, "the alias *m is inside the node &m names"),
    ("deep-brackets", b"matrix:\n  model: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2,
     "nested more than 64 levels deep"),
    ("deep-mappings", b"matrix:\n  model: " + b"{a: " * 100_000 + b"1" + b"}" * 100_000 + b"\n", 2,
     "nested more than 64 levels deep"),
    ("int-tag-on-text", b"matrix:\n  model: [tiny_cnn]\n  batch: [!!int 'abc']\n", 3,
     "matrix.batch[0]: cannot read 'abc' as !!int"),
    ("unknown-tag", b"matrix:\n  model: [tiny_cnn]\n  batch: [!python/object 3]\n", 3,
     "matrix.batch[0]: cannot read '3' as !python/object"),
    ("complex-key", b"matrix:\n  model: [tiny_cnn]\n  ? [a, b]\n  : [1]\n", 3,
     "matrix: expected a name as the key, got a list"),
    ("null-key", b"matrix:\n  model: [tiny_cnn]\n  null: 3\n", 3, "matrix: the key null reads as null, not as a name"),
    ("latin-1", "matrix:\n  model: [tiny_cnn]\ndescription: café\n".encode("latin-1"), 3,
     "byte 0xe9 (byte 17 of the line) is not UTF-8"),
    ("utf-16", "matrix:\n  model: [tiny_cnn]\n".encode("utf-16"), 1, "the file is UTF-16"),
    ("nul-byte", b"matrix:\n  model: [tiny\x00cnn]\n", 2, "unacceptable character #x0000"),
    ("billion-laughs", BOMB.encode(), 5, "l4[5]: the aliases here expand to more than 50000 values"),
    ("merge-key-bomb", MERGE_BOMB.encode(), 6, "m5: the aliases here expand to more than 50000 values"),
    ("alias-chain", ALIAS_CHAIN.encode(), 64, "a63[0]: the aliases here expand to lists and mappings nested more "
     "than 64 levels deep"),
    ("merge-of-a-value", b"matrix:\n  model: [tiny_cnn]\n  <<: 3\n", 3,
     "matrix: a merge key `<<` takes a mapping or a list of mappings"),
    ("huge-file", b"matrix:\n  model: [tiny_cnn]\n" + b"# padding\n" * 200_000, 1, "larger than 1 MiB"),
    ("world-size", b"matrix:\n  model: [tiny_cnn]\n  world_size: [1, 100000]\n", 3,
     "matrix.world_size[1]: world_size 100000 starts 100000 processes on one machine; expected at most 256"),
    ("long-name", b"name: " + b"n" * 300 + b"\nmatrix:\n  model: [tiny_cnn]\n", 1,
     "name: the name is 300 bytes long; expected at most 255"),
    ("checkpoint-not-text", b"matrix:\n  model: [tiny_cnn]\ninclude:\n  - model_kwargs: {checkpoint: 3}\n", 4,
     "include[0].model_kwargs.checkpoint: expected the path of a weights file, got 3"),
]


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    """Return every HOSTILE case's id -> its file, written under tmp_path."""
    paths = {}
    for name, data, _, _ in HOSTILE:
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_bytes(data)
    return paths


@pytest.mark.parametrize(("name", "line", "fragment"), [(c[0], c[2], c[3]) for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_validate_refuses_a_hostile_file_at_its_line(hostile, capsys, name, line, fragment):
    started = time.perf_counter()
    assert main(["validate", str(hostile[name])]) == 2
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err
    assert f"error: {hostile[name]}:{line}: " in err and fragment in err, err
    assert "Traceback" not in err and len(err) < 2000


def test_the_command_line_refuses_every_hostile_file_without_a_traceback(hostile, tmp_path):
    """The real command, all files at once (`run` validates every suite before it runs one): exit status 2."""
    for command, options in (("validate", []), ("run", ["--results", str(tmp_path / "results")])):
        proc = subprocess.run([sys.executable, "-m", "harness.cli", command, *map(str, hostile.values()), *options],
                              capture_output=True, text=True, timeout=120, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        assert "Traceback" not in output
        for name, _, line, fragment in HOSTILE:
            assert f"{hostile[name]}:{line}: " in output and fragment in output, (command, name, output)


def test_the_alias_bomb_is_refused_in_little_time_and_memory(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SuiteError, match="expand to more than 50000 values"):
            load_suite(path)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak_bytes < 500e6, peak_bytes


def test_merge_keys_merge_as_yaml_says_with_the_lines_where_keys_are_written():
    loaded = load_yaml_with_lines("a: &a {x: 1, y: 2}\nb: &b {y: 3, z: 4}\nc:\n  w: 0\n  <<: [*a, *b]\n  x: 5\n")
    assert loaded.data["c"] == {"w": 0, "x": 5, "y": 2, "z": 4}  # own keys win, then the first merged
    assert list(loaded.data["c"]) == ["w", "y", "z", "x"]  # merged keys where the `<<` is
    assert loaded.lines[("c", "x")] == 6 and loaded.lines[("c", "y")] == 1 and loaded.lines[("c", "z")] == 2
    assert loaded.problems == []


def test_a_duplicate_key_beside_a_merge_is_still_a_duplicate():
    loaded = load_yaml_with_lines("a: &a {x: 1}\nc:\n  <<: *a\n  y: 1\n  y: 2\n")
    assert loaded.problems == [(5, ("c", "y"), "duplicate key 'y' (first given at line 4)")]


def test_at_most_so_many_problems_are_listed_then_counted(tmp_path, capsys):
    path = tmp_path / "keys.yaml"
    path.write_text("matrix:\n  model: [tiny_cnn]\n" + "".join(f"  k{i}: [1]\n" for i in range(200)))
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == MAX_PROBLEMS_SHOWN + 1
    assert lines[0].startswith(f"error: {path}:3: matrix.k0: unknown key 'k0'")
    assert lines[-1] == f"error: ... and {200 - MAX_PROBLEMS_SHOWN} more in {path}"


def test_a_long_value_is_quoted_short(tmp_path, capsys):
    nested: object = "lol"
    for _ in range(4):
        nested = [nested] * 9  # 6561 strings, 7381 values: under the loader's limit
    path = tmp_path / "long.yaml"
    path.write_text(f"matrix:\n  model: [tiny_cnn]\n  device: [{'x' * 100_000}]\n  ? {'k' * 100_000}\n  : [1]\n"
                    f"description: {json.dumps(nested)}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: matrix.device[0]: Input should be 'cpu', 'cuda' or 'meta', got 'xxxxx" in err
    assert f"{path}:4: matrix.{'k' * 57}...: unknown key 'kkkk" in err
    assert f"{path}:6: description: expected a string, got [[[" in err
    assert len(err) < 1500, err


SHAPE_ERRORS = {
    "wrong-type": "matrix:\n  model: [tiny_cnn]\n  batch: [eight]\n",
    "null-key": "matrix:\n  model: [tiny_cnn]\n  null: 3\n",
    "duplicate-key": "matrix:\n  model: [tiny_cnn]\n  batch: [1]\n  batch: [2]\n",
    "world-size": "matrix:\n  model: [tiny_cnn]\n  world_size: [100000]\n",
}


@pytest.mark.parametrize("text", list(SHAPE_ERRORS.values()), ids=list(SHAPE_ERRORS))
def test_a_shape_error_is_reported_before_torch_is_imported(tmp_path, text):
    path = tmp_path / "shape.yaml"
    path.write_text(text)
    # `validate` says the model names' problems too, in the same pass, after the shape errors: they need torch
    code = ("import sys\n"
            "class Spy:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch': sys.stderr.write('TORCH IMPORTED\\n'); sys.stderr.flush()\n"
            "sys.meta_path.insert(0, Spy())\n"
            "from harness.cli import main\n"
            "sys.exit(main(['run' if sys.argv[2] == 'run' else 'validate', sys.argv[1]]))\n")
    for command in ("validate", "run"):
        proc = subprocess.run([sys.executable, "-c", code, str(path), command], capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        said = [proc.stderr.find(f"{path}:{line}: ") for line in (3, 4)]
        first_error = min(i for i in said if i >= 0)
        torch_at = proc.stderr.find("TORCH IMPORTED")
        assert torch_at == -1 or first_error < torch_at, proc.stderr
        if command == "run":
            assert torch_at == -1  # run stops at the shape errors


def _valid(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text("defaults: {resolution: 32}\nmatrix:\n  model: [tiny_cnn]\nmetrics: [complexity]\n" + extra)
    return path


def test_threads_beyond_the_cores_is_a_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    path = _valid(tmp_path, "include:\n  - {model: tiny_cnn, threads: 64}\n")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert (f"warning: {path}:6: include[0].threads: 64 threads, and this machine has 2 cores: the case runs "
            "oversubscribed") in err
    assert "a warning, not an error" in err


def test_a_published_entry_matching_no_case_is_a_warning(tmp_path, capsys):
    path = _valid(tmp_path, "published:\n  - match: {model: resnet18}\n    source: paper\n    values: {params: 1}\n")
    assert main(["validate", str(path)]) == 0
    assert (f"warning: {path}:6: published[0].match: matches no case of the suite (model: resnet18): its values are "
            "never shown") in capsys.readouterr().err


def test_cuda_cases_needing_more_gpus_than_here_are_a_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("harness.suite._gpu_count", lambda: 1)
    path = _valid(tmp_path, "include:\n  - {model: tiny_cnn, device: cuda, world_size: 2}\n")
    assert main(["validate", str(path)]) == 0
    assert (f"warning: {path}:6: include[0].world_size: world_size 2 on cuda needs 2 GPUs, one per process, and "
            "this machine has 1: those cases will be recorded as skipped here") in capsys.readouterr().err


def test_the_gpus_here_are_nvmls_count_or_fewer_when_cuda_sees_fewer(monkeypatch):
    from harness import nvml, suite

    monkeypatch.setattr(nvml, "nvml_available", lambda: (False, "no NVIDIA driver"))
    assert suite._gpu_count() is None
    monkeypatch.setattr(nvml, "nvml_available", lambda: (True, ""))
    four = SimpleNamespace(nvmlDeviceGetCount=lambda: 4)
    monkeypatch.setattr(nvml, "nvml_session", lambda: contextlib.nullcontext(four))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert suite._gpu_count() == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert suite._gpu_count() == 2
