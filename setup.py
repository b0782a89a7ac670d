"""Builds the C driver (`tracers/vmexec`) as part of the package build.

setuptools only knows how to build extension modules, so the driver is
declared as one and linked as an executable instead; setuptools then places
it like any extension (in the wheel, or in the source tree for editable
installs).
"""
import ast
import glob
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py



def _assets() -> tuple[str, ...]:
    """The repository files the commands read (kernel patches and fragments, the guest init, the anatomy
    plugin, the RFC replica): bench.measure.environment.ASSETS, read without importing the package."""
    tree = ast.parse(open("bench/measure/environment.py").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ASSETS":
            return ast.literal_eval(node.value)
    raise SystemExit("setup.py: bench/measure/environment.py defines no ASSETS")


ASSETS = _assets()


class Executable(Extension):
    """A C program built and installed inside a package."""


class build_ext_with_executables(build_ext):
    def get_ext_filename(self, fullname):
        # Called with the full dotted name or with its last part alone.
        names = {n for e in self.extensions if isinstance(e, Executable)
                 for n in (e.name, e.name.rpartition(".")[2])}
        if fullname in names:
            return os.path.join(*fullname.split("."))
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if not isinstance(ext, Executable):
            return super().build_extension(ext)
        target = self.get_ext_fullpath(ext.name)
        objects = self.compiler.compile(
            ext.sources, output_dir=self.build_temp, extra_postargs=ext.extra_compile_args
        )
        self.compiler.link_executable(
            objects, os.path.basename(target), output_dir=os.path.dirname(target)
        )


class build_py_with_assets(build_py):
    """Copies ASSETS into the wheel under bench/data/, in the repository's layout, so an installed package
    has what a clone has (bench.measure.environment.asset finds them there)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):     # an editable install reads the clone itself
            return
        for pattern in ASSETS:
            for source in sorted(glob.glob(pattern)):
                target = os.path.join(self.build_lib, "bench", "data", source)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(source, target)      # keeps guest-init.sh executable


setup(
    ext_modules=[
        Executable(
            "tracers.vmexec",
            sources=sorted(glob.glob("tracers/*.c") + glob.glob("tracee/*.c")),
            depends=glob.glob("tracers/*.h") + glob.glob("tracee/*.h"),
            # -fno-stack-protector: the loop may run on a borrowed thread whose
            # %fs (and so its stack canary) belongs to another process.
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-fno-stack-protector", "-std=gnu11"],
        )
    ],
    cmdclass={"build_ext": build_ext_with_executables, "build_py": build_py_with_assets},
)
