"""jarvis-serve core: everything but Ray. Importable and testable without a cluster."""
