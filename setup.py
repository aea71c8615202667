"""Build of the native DenseShift kernel (metadata lives in setup.cfg).

`pip install --no-build-isolation -e '.[test]'` compiles denseshift_speech.kernels._C
(inside the kernels package that imports it) from the C++ files under
denseshift_speech/kernels/csrc/ (core/, torch/, arch/) with the torch in the
environment.  Each ISA file selects its instruction set with `#pragma GCC target`, so
no per-file flags are needed and dispatch happens at run time.  If the compiler or torch
headers are missing the build is skipped with a warning and the package uses the
pure-PyTorch reference (denseshift_speech.kernels warns about it at import).
"""
import glob
import os
import platform
import sys

from setuptools import setup

ext_modules, cmdclass = [], {}
CSRC = os.path.join("denseshift_speech", "kernels", "csrc")


def target_arch() -> str:
    """Kernel folder for the machine the extension is built for (csrc/arch/<folder>)."""
    machine = (os.environ.get("DENSESHIFT_TARGET_ARCH") or platform.machine()).lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        return "x86"
    if machine in ("aarch64", "arm64"):
        return "arm"
    return ""  # scalar reference only


def native_sources(here: str) -> list:
    """core/ (layouts, scalar reference, feature detection), torch/ (op glue) and the
    SIMD files of the target architecture; csrc/tests/ (the standalone driver) is not
    part of the extension."""
    pick = ["core", "torch"] + ([os.path.join("arch", target_arch())] if target_arch() else [])
    out = []
    for sub in pick:
        out += sorted(glob.glob(os.path.join(CSRC, sub, "*.cpp")))
    return out

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except Exception as err:  # torch missing: pure-Python install
    print(f"warning: torch not importable ({err}); skipping the native DenseShift kernel",
          file=sys.stderr)
else:
    here = os.path.dirname(os.path.abspath(__file__))
    sources = native_sources(here)

    class OptionalBuildExtension(BuildExtension):
        """Build the kernel if possible; never fail the install because of it."""

        def build_extensions(self):
            try:
                super().build_extensions()
            except Exception as err:  # compiler missing, header mismatch, ...
                print(f"warning: building the native DenseShift kernel failed ({err}); "
                      "the pure-PyTorch reference will be used", file=sys.stderr)

        def copy_extensions_to_source(self):
            try:
                super().copy_extensions_to_source()
            except Exception as err:
                print(f"warning: native DenseShift kernel not installed ({err})", file=sys.stderr)

    ext_modules = [CppExtension(
        "denseshift_speech.kernels._C", sources, include_dirs=[os.path.join(here, CSRC, "core")],
        extra_compile_args=["-O3", "-g0", "-fno-math-errno", "-ffp-contract=off", "-fopenmp", "-Wno-maybe-uninitialized",
                            "-Wno-uninitialized"],
        extra_link_args=["-fopenmp"],
    )]
    cmdclass = {"build_ext": OptionalBuildExtension.with_options(no_python_abi_suffix=False)}

setup(ext_modules=ext_modules, cmdclass=cmdclass)
