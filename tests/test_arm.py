"""aarch64 NEON kernels, checked on this x86 machine: the standalone driver (no torch)
cross-built statically for aarch64 and run under QEMU user mode, once as a core with
dotprod + i8mm (-cpu max) and once as an ARMv8.0 Cortex-A57 (no dotprod: the plain NEON
fallback must be chosen and must not raise SIGILL).  Every NEON path is compared with the
scalar reference (int8 bit-equal), and the int8 outputs must be bit-identical to the x86
build on the same inputs (the driver's --digest).  QEMU gives correctness, not speed.

The cross tools come from `make system-deps` (g++-aarch64-linux-gnu, qemu-user); on x86
their absence fails these tests instead of skipping them."""
import os
import platform
import re
import shutil
import subprocess

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "denseshift_speech", "kernels", "csrc")
CXX, QEMU, OBJDUMP = "aarch64-linux-gnu-g++", "qemu-aarch64", "aarch64-linux-gnu-objdump"
FLAGS = ["-std=c++17", "-ffp-contract=off", "-fno-math-errno", "-w", "-I", os.path.join(CSRC, "core")]

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="cross-build + QEMU tests run on x86 hosts")


def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian packages g++-aarch64-linux-gnu and qemu-user "
                    "(`make system-deps` does it)", pytrace=False)
    return path


def _sources(*names):
    return [os.path.join(CSRC, n) for n in names]


@pytest.fixture(scope="module")
def arm_driver(tmp_path_factory):
    exe = tmp_path_factory.mktemp("arm") / "driver-aarch64"
    srcs = _sources("tests/driver.cpp", "core/tiled_scalar.cpp", "core/cpu_features.cpp", "arch/arm/neon.cpp")
    # -march=armv8-a: only the dotprod / i8mm functions may use those extensions
    subprocess.run([_tool(CXX), "-static", "-O2", "-march=armv8-a", "-fopenmp-simd", *FLAGS,
                    "-o", str(exe), *srcs], check=True, timeout=300)
    return str(exe)


@pytest.fixture(scope="module")
def native_driver(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("no native C++ compiler")
    exe = tmp_path_factory.mktemp("native") / "driver"
    srcs = _sources("tests/driver.cpp", "core/tiled_scalar.cpp", "core/cpu_features.cpp",
                    "arch/x86/tiled_avx2.cpp", "arch/x86/tiled_avx512.cpp")
    subprocess.run(["g++", "-O2", "-fopenmp", *FLAGS, "-o", str(exe), *srcs], check=True, timeout=300)
    return str(exe)


def _qemu(cpu, exe, *args):
    out = subprocess.run([_tool(QEMU), "-cpu", cpu, exe, *args], capture_output=True, text=True, timeout=300)
    return out


@pytest.mark.parametrize("cpu,best,paths", [
    ("max", "neon-i8mm", ["neon-i8mm", "neon-dotprod", "neon"]),
    ("cortex-a57", "neon", ["neon"]),
])
def test_arm_driver_under_qemu(arm_driver, cpu, best, paths):
    """Every NEON path this emulated CPU runs against the scalar reference; the driver's
    argument makes it fail unless `best` is the path it would take."""
    out = _qemu(cpu, arm_driver, best)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"qemu -cpu {cpu} rc={out.returncode}\n{text[-3000:]}"
    assert f"best path: {best}\n" in out.stdout
    assert out.stdout.strip().splitlines()[-1].endswith(" 0 failed"), text[-3000:]
    # each int8 kernel was compared bit for bit (FAIL lines would name it)
    m = re.search(r"^(\d+) passed, 0 failed$", out.stdout, re.M)
    assert m and int(m.group(1)) > 1000
    if cpu == "cortex-a57":
        assert "dotprod" not in out.stdout.splitlines()[0]  # "cpu features: neon"
    got_paths = re.findall(r"^digest (\S+) [0-9a-f]{16}$", _qemu(cpu, arm_driver, "--digest").stdout, re.M)
    assert got_paths == paths + ["scalar"]


def _digest(out):
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"digest [0-9a-f]{16}", lines[-1]), lines
    f32 = [ln for ln in lines if ln.startswith("digest-f32-scalar ")]
    return lines[-1], f32


def test_int8_paths_bit_identical_x86_vs_aarch64(arm_driver, native_driver):
    """Same inputs, same int8 outputs (and quantized activations) on every path of both
    architectures: the driver checks its own paths agree, the digests compare the builds."""
    native = _digest(subprocess.run([native_driver, "--digest"], capture_output=True, text=True, timeout=300))
    for cpu in ("max", "cortex-a57"):
        assert _digest(_qemu(cpu, arm_driver, "--digest")) == native, cpu


def test_kernel_sources_cross_compile_for_aarch64(tmp_path):
    """The extension's torch-free sources for an aarch64 build (what setup.py picks there:
    core/*.cpp + arch/arm/*.cpp) compile with the extension's flags for plain ARMv8.0, and
    the dotprod / i8mm instructions sit only in the functions of those paths."""
    cxx = _tool(CXX)
    srcs = sorted(os.path.join(d, f) for d in (os.path.join(CSRC, "core"), os.path.join(CSRC, "arch", "arm"))
                  for f in os.listdir(d) if f.endswith(".cpp"))
    assert any(s.endswith("neon.cpp") for s in srcs)
    for src in srcs:
        obj = tmp_path / (os.path.basename(src) + ".o")
        subprocess.run([cxx, "-c", "-O3", "-fPIC", "-march=armv8-a", "-fopenmp", *FLAGS, "-o", str(obj), src],
                       check=True, timeout=300)
    objdump = shutil.which(OBJDUMP)
    if objdump is None:
        return
    dis = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", str(tmp_path / "neon.cpp.o")],
                         capture_output=True, text=True, check=True).stdout
    fn, where = "", {}
    for line in dis.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            fn = m.group(1)
        elif re.search(r"\t(sdot|udot|usdot|sudot|smmla|ummla|usmmla)\s", line):
            where.setdefault(fn, 0)
            where[fn] += 1
    assert any("dotprod" in f or "_dot<" in f for f in where), where
    assert any("i8mm" in f or "_mm<" in f for f in where), where
    stray = [f for f in where if not re.search(r"i8_neon_dotprod|i8_neon_i8mm|i8_(block|tile)_(dot|mm)<", f)]
    assert not stray, f"dotprod/i8mm instructions outside their paths: {stray}"
