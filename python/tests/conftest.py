"""Shared fixtures for the netquant Python tests (run by tools/test.sh with PYTHONPATH=<build>/python)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import netquant


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    # Seeded from the test's name: reproducible run to run, different from test to test.
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Heavy-ish tailed weights like a trained layer's (Laplace-like), float32."""
    return (rng.laplace(0.0, 0.05, size=shape)).astype(np.float32)


def importance(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.gamma(0.5, 2.0, size=shape).astype(np.float32) + np.float32(1e-3)


@pytest.fixture(scope="session")
def cli() -> str:
    """The `netquant` binary: $NETQUANT_CLI (tools/test.sh sets it), else <build>/netquant beside <build>/python."""
    path = os.environ.get("NETQUANT_CLI")
    if not path:
        guess = Path(netquant.__file__).resolve().parents[2] / "netquant"
        path = str(guess) if guess.is_file() else (shutil.which("netquant") or "")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("netquant CLI not found: set NETQUANT_CLI to the built binary (tools/test.sh does)")
    return path


def run_cli(cli: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `netquant ARGS` (each argument str()-ed) and requires exit 0, showing stderr when not."""
    proc = subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"netquant {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}"
    return proc


def write_raw_safetensors(path: Path, header: dict | bytes, data: bytes, pad: bool = True) -> None:
    """Writes a safetensors file from its parts as given: the header (a dict is JSON-encoded; padded with spaces to
    8 bytes unless pad=False), its 8-byte little-endian length before it, then the data."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


# A peer module that is missing skips its whole test file at collection. With NETQUANT_REQUIRE_PEERS=1 (CI sets it)
# such a skip fails the run instead, so the peer checks cannot quietly stop running.
_skipped_modules: list[str] = []


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and os.environ.get("NETQUANT_REQUIRE_PEERS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped_modules.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_modules:
        print("\nerror: NETQUANT_REQUIRE_PEERS=1, but these peer test files were skipped:", file=sys.stderr)
        for line in _skipped_modules:
            print(f"  {line}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
