"""The benchmark's own checks, run by ``python3 dev.py bench --check``, not by the suite."""
