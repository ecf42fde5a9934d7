"""Test support that is not part of the product: the wheel and the PyInstaller build leave
this package out. Tests and benchmarks import it from the source tree."""
