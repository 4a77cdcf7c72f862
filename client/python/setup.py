"""Installs livekit_ffi_broker.pth into site-packages beside the package (wheel and editable
installs alike); everything else is in pyproject.toml."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "livekit_ffi_broker.pth"


class build_py_with_pth(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / PTH
        if getattr(self, "editable_mode", False):
            # Editable wheels take no files from build_lib; the unpacked wheel is install_lib.
            target = Path(self.get_finalized_command("install").install_lib)
        else:
            target = Path(self.build_lib)
        target.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(source), str(target / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs = [*outputs, str(Path(self.build_lib) / PTH)]
        return outputs


setup(cmdclass={"build_py": build_py_with_pth})
