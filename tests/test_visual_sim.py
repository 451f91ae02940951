"""pytest entry for the visual simulation (the module name does not match `test_*.py`).

The simulation itself, runnable as a script too, lives in tests/visual_sim_mma_v2.py.
"""
from tests.visual_sim_mma_v2 import test_visual_sim_mma_v2  # noqa: F401  (collected here)
