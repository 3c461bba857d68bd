"""A pytest plugin for benchmarks/mutation.py's test runs (`-p benchmarks.mutation_plugin`):
hypothesis with no example database, so failing examples found for one mutant are not replayed
against the next, and derandomized, so a rerun draws the same examples."""

from hypothesis import settings

settings.register_profile("mutation", database=None, derandomize=True)
settings.load_profile("mutation")
