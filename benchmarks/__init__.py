"""Benchmarks of relay_diffusion: run them all with `python -m benchmarks` (see README.md).

The scripts in this folder also run standalone (`python benchmarks/ops.py ...`); they import their
shared helpers as the top-level module `common` and are run by `python -m benchmarks` as separate
processes, so importing this package imports none of them."""
