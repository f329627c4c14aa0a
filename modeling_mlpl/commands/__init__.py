"""The command-line programs (`mlpl-train`, `mlpl-pseudo-label`, ...; `run_scripts/*.py` are thin wrappers).

Each module has `main(argv=None) -> int`, flags + one call into the library."""
