"""Build hook: the wheel carries the repository's top-level `configs/` and `data_manifests/`.

Those directories stay at the top of the repository (where users edit and cite them), outside
the `pipelines` package; setuptools' package data can only take files from inside a package, so
this copies them into the built `pipelines/` (as `pipelines/configs/...`), where
`pipelines.config.find_config` and `shipped_dir` look after the source tree. Everything else is
in pyproject.toml.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("configs", "data_manifests")
SUFFIXES = (".yaml", ".yml", ".json")


class BuildPyWithConfigs(build_py):
    """build_py, plus the shipped YAML/JSON copied under pipelines/ in the build directory."""

    def run(self):
        super().run()
        for name in SHIPPED:
            for source in sorted(Path(name).rglob("*")):
                if source.suffix in SUFFIXES:
                    target = Path(self.build_lib, "pipelines", source)
                    self.mkpath(str(target.parent))
                    self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildPyWithConfigs})
