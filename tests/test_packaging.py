"""Packaging as a user meets it: files that follow the umask, the kernel sources listed as
package data, and a wheel (not the editable checkout) installed into a fresh venv that
runs the CLI, the native op and the demo's set-up."""
import configparser
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from denseshift_speech.core.nn import DenseShiftWeight
from denseshift_speech.data.manifest import write_csv
from denseshift_speech.integrations.speechbrain.lm import write_arpa
from denseshift_speech.packed import fileformat, pack_, save_packed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "denseshift_speech")


@pytest.fixture
def umask():
    """Set the process umask for one test, and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert fileformat.current_umask() == mask
    layer = nn.Linear(8, 4)
    parametrize.register_parametrization(layer, "weight", DenseShiftWeight(bits=3, init="from_float"))
    model = nn.Sequential(layer).eval()
    with torch.no_grad():
        pack_(model)
    save_packed(model, tmp_path / "model.dsp")  # safetensors alone would make it 0600
    write_csv(str(tmp_path / "m.csv"), ["ID"], [["a"]])
    write_arpa(["a b", "b a"], str(tmp_path / "lm.arpa"), order=2)
    for name in ("model.dsp", "m.csv", "lm.arpa"):
        assert _mode(tmp_path / name) == 0o666 & ~mask, name
    assert not glob.glob(str(tmp_path / "*.tmp"))


def test_every_kernel_source_is_package_data():
    """An sdist made on x86 must hold the aarch64 files too (and the headers, and the
    standalone driver): setup.cfg's package_data globs cover every file under csrc/."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    patterns = [p.strip() for p in cfg["options.package_data"]["denseshift_speech"].split()
                if p.strip()]
    covered = {os.path.normpath(f) for p in patterns for f in glob.glob(os.path.join(PACKAGE, p))}
    sources = {os.path.normpath(f)
               for f in glob.glob(os.path.join(PACKAGE, "kernels", "csrc", "**", "*"), recursive=True)
               if f.endswith((".cpp", ".h"))}
    assert sources and sources <= covered, sorted(sources - covered)
    for sub in ("core", "torch", "tests", os.path.join("arch", "x86"), os.path.join("arch", "arm")):
        assert any(os.sep + os.path.join("csrc", sub) + os.sep in s for s in sources), sub


def test_constraints_pin_what_setup_cfg_ranges_allow():
    """install_requires has ranges, constraints.txt the exact versions make install uses."""
    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    reqs = [Requirement(r) for r in cfg["options"]["install_requires"].split("\n") if r.strip()]
    pins = {}
    with open(os.path.join(REPO, "constraints.txt")) as fh:
        for line in fh:
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                pins[name.lower().replace("_", "-")] = version
    for req in reqs:
        assert "==" not in str(req.specifier), f"{req}: exact pin in install_requires"
        version = pins.get(req.name.lower().replace("_", "-"))
        assert version is not None, f"{req.name} not pinned in constraints.txt"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} vs {req}"


# Runs inside the fresh venv, from a temporary directory: the installed copy, its native
# op against the pure-PyTorch reference.
IN_VENV = r"""
import json, os, sys
import torch
import denseshift_speech
from denseshift_speech.kernels import _C  # the compiled kernel came with the wheel
from denseshift_speech import kernels
from denseshift_speech.kernels import layout, reference
gen = torch.Generator().manual_seed(0)
n, k, bits = 5, 70, 3
codes = torch.randint(0, 2 ** bits, (n, k), dtype=torch.uint8, generator=gen)
packed = layout.pack_codes(codes, bits)
alpha, bias = torch.rand(n, generator=gen) + 0.25, torch.randn(n, generator=gen)
tiles, sums = torch.ops.denseshift.repack(packed, bits, k)
x = torch.randn(3, k, generator=gen)
y = torch.ops.denseshift.linear_tiled(x, tiles, sums, alpha, bias, bits, k, "exact")
ref = reference.linear_tiled(x, tiles, sums, alpha, bias, bits, k, "exact")
torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
print(json.dumps({"file": denseshift_speech.__file__, "native": kernels.native_available(),
                  "shape": list(y.shape)}))
"""


def _copy_checkout(dst):
    """The files git would ship (tracked + untracked, not ignored): no build/, .venv, data."""
    try:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                               check=True, capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "results", "data", "*.egg-info", "*.so", "__pycache__"))
        return
    for rel in filter(None, files):
        src = os.path.join(REPO, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dst, rel))


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
    """Build a wheel (--no-build-isolation: the extension compiles against this torch),
    install it with --no-deps into a new venv that sees this venv's packages through a
    .pth file (no torch download), and run it from outside the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    src, dist, venv, work = (tmp_path / d for d in ("src", "dist", "venv", "work"))
    _copy_checkout(src)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", ".", "-w", str(dist)],
                   cwd=src, env=env, check=True, capture_output=True)
    build_s = time.time() - t0
    wheels = glob.glob(str(dist / "denseshift_speech-*.whl"))
    assert len(wheels) == 1, wheels
    import zipfile
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert any(n.startswith("denseshift_speech/kernels/_C.") for n in names), "no compiled kernel in the wheel"
    assert "denseshift_speech/kernels/csrc/arch/arm/neon.cpp" in names

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()
    # this venv's site-packages after the new venv's own: torch, speechbrain, ... without
    # downloading them.  (.pth files found there are not run, so the editable finder of
    # the checkout stays out.)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    with open(os.path.join(site, "outer_venv.pth"), "w") as fh:
        fh.write("\n".join(sorted(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps",
                    "--no-index", wheels[0]], check=True, capture_output=True, env=env)

    work.mkdir()
    out = subprocess.run([py, "-c", IN_VENV], cwd=work, env=env, check=True,
                         capture_output=True, text=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["file"].startswith(str(venv)), info  # the installed copy, not the checkout
    assert info["native"] and info["shape"] == [3, 5]

    cli = str(venv / "bin" / "denseshift-speech")
    for verb in ("bench", "report", "stream", "export"):
        res = subprocess.run([cli, verb, "--help"], cwd=work, env=env, capture_output=True, text=True)
        assert res.returncode == 0 and "usage" in res.stdout.lower(), (verb, res.stderr[-2000:])

    # the demo runs the recipes of the checkout it sits in, on the installed package,
    # from any directory
    demo = [py, os.path.join(REPO, "recipes", "demo", "demo.py"), "--dry-run"]
    res = subprocess.run(demo, cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"root: {REPO}" in res.stdout and "recipes/librispeech/train.py" in res.stdout
    assert f"package: {venv}" in res.stdout, res.stdout
    print(f"wheel build {build_s:.0f} s")
