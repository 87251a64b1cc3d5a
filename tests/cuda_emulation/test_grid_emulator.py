"""The grid emulator's own checks (shim/emu_grid.h), on the small kernels of emu_grid_selftest.cuh: warp shuffles
and ballots against their CUDA definitions, grid.sync() ordering the blocks (and its absence exposed by the thread
order), shared memory per block, and the reports of broken rules (divergent shuffle, a block returning before a
grid barrier, grid.sync() without a cooperative launch, a misaligned 16-byte load); the flags of csrc/cuda/flags.cuh
(shim/emu_flags.h): data handed between blocks by counters and per-block flags in any thread order, the integer
atomics, and the reports of a read before the acquire, a write after the release, a release not ordered after the
block's writes, and a wait that nothing will end."""

import platform
import sys

import numpy as np
import pytest
import torch

from tests.cuda_emulation import build_emulator, build_grid_emulator
from tests.cuda_emulation.emulated_sweep import EmulatorError, run_harness

pytestmark = [
    pytest.mark.skipif(build_emulator.find_compiler() is None,
                       reason="no C++ compiler ($CXX, g++, c++ or clang++) to build the CUDA emulator"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                       reason="the grid emulator's fiber switch is x86-64 assembly"),
]

THREADS = 64  # grid_selftest::kThreads
MODES = ["shuffles", "grid_race", "grid_sync", "divergent_shuffle", "early_return", "smem_per_block", "misaligned",
         "not_cooperative", "flag_handoff", "read_before_acquire", "write_after_release", "unordered_release",
         "flag_deadlock", "atomics", "published_flags"]


@pytest.fixture(scope="module")
def harness():
    return build_grid_emulator.build("grid_selftest")


def run(harness, tmp_path, mode, blocks=2, order=0, poison=0xFF):
    run_harness(harness, [MODES.index(mode), blocks, order, poison, tmp_path])
    return torch.from_numpy(np.fromfile(tmp_path / "out.bin", dtype=np.float32))


def test_warp_collectives(harness, tmp_path):
    out = run(harness, tmp_path, "shuffles", order=2).view(2 * THREADS, 8)
    for g in range(2 * THREADS):
        lane, base = g % 32, g - g % 32
        seg8, seg16 = lane // 8 * 8, lane // 16 * 16
        want = [base + (lane ^ 5),
                base + (lane + 3 if lane + 3 < 32 else lane),
                base + (lane - 2 if lane >= 2 else lane),
                base + 7,
                base + (lane ^ 4),  # stays in its group of 8
                base + (lane + 3 if lane - seg8 + 3 < 8 else lane),
                base + seg16 + (lane + 9) % 16,
                sum(1 << k for k in range(0, 16, 3))]
        assert out[g].tolist() == [float(w) for w in want], g


def test_grid_sync_orders_blocks_and_its_absence_shows(harness, tmp_path):
    blocks = 3
    want = [1.0, 2.0, 3.0, 2.0, 3.0, 1.0]
    for order in (0, 1, 2):
        assert run(harness, tmp_path, "grid_sync", blocks, order)[:6].tolist() == want
    # Without the barrier a block reads out[b + 1] before or after block b + 1 wrote it, depending on the order.
    in_order = run(harness, tmp_path, "grid_race", blocks, 0)[:6]
    reversed_ = run(harness, tmp_path, "grid_race", blocks, 1)[:6]
    assert not torch.equal(in_order, reversed_)


@pytest.mark.parametrize("poison", [0x5A, 0xFF])
def test_shared_memory_is_per_block_and_starts_as_garbage(harness, tmp_path, poison):
    out = run(harness, tmp_path, "smem_per_block", 3, 2, poison)
    garbage = np.frombuffer(bytes([poison]) * 4, dtype=np.float32)[0]
    first, last = out[:3 * THREADS].numpy(), out[3 * THREADS:6 * THREADS].numpy()
    assert (first.view(np.int32) == garbage.view(np.int32)).all()
    assert last.tolist() == [float(g // THREADS) for g in range(3 * THREADS)]


@pytest.mark.parametrize("mode, message", [
    ("divergent_shuffle", "warp divergence at a full-mask warp collective"),
    ("early_return", "returned while other blocks wait at grid.sync"),
    ("not_cooperative", "not launched with cudaLaunchCooperativeKernel"),
    ("misaligned", "misaligned address"),
])
def test_broken_rules_are_reported(harness, tmp_path, mode, message):
    with pytest.raises(EmulatorError, match=message):
        run(harness, tmp_path, mode)


@pytest.mark.parametrize("mode", ["flag_handoff", "published_flags"])
@pytest.mark.parametrize("order", [0, 1, 2])
def test_flags_hand_data_between_blocks(harness, tmp_path, mode, order):
    """Each block writes its slice, releases (a shared arrival counter, or a flag of its own), and reads its
    neighbour's slice after acquiring: the right values in any thread order, and the checker stays silent."""
    blocks = 3
    out = run(harness, tmp_path, mode, blocks, order)
    n = blocks * THREADS
    assert out[:n].tolist() == [float(g) for g in range(n)]
    assert out[n:2 * n].tolist() == [float((g + THREADS) % n) for g in range(n)]


UNACQUIRED = "without having acquired a flag that block released after the write"


@pytest.mark.parametrize("mode, order, message", [
    ("read_before_acquire", 0, UNACQUIRED),
    ("read_before_acquire", 1, UNACQUIRED),
    ("write_after_release", 0, UNACQUIRED),
    # reversed: the other threads write before thread 0 has released, so the release is reported first
    ("write_after_release", 1, "not ordered before the release"),
    # Thread 0 releasing first: the others' later writes are read unacquired; releasing last: the release itself
    # is reported (the writes before it are not ordered before it without a __syncthreads).
    ("unordered_release", 0, UNACQUIRED),
    ("unordered_release", 1, "not ordered before the release"),
    ("flag_deadlock", 0, "deadlock: threads spin on flags"),
    ("flag_deadlock", 2, "deadlock: threads spin on flags"),
])
def test_broken_flag_rules_are_reported(harness, tmp_path, mode, order, message):
    with pytest.raises(EmulatorError, match=message):
        run(harness, tmp_path, mode, 3, order)


@pytest.mark.parametrize("order", [0, 2])
def test_integer_atomics(harness, tmp_path, order):
    blocks = 2
    n = blocks * THREADS
    out = run(harness, tmp_path, "atomics", blocks, order)
    flags = np.fromfile(tmp_path / "flags.bin", dtype=np.uint32)
    assert sorted(out[:n].tolist()) == [float(g) for g in range(n)], "atomicAdd returned a value twice"
    assert flags[0] == n and flags[1].view(np.int32) == -n and flags[3] == 7
    winner = int(out[n])
    assert flags[2] == winner + 1, "atomicCAS: the thread whose swap succeeded is not the one that saw 0"
