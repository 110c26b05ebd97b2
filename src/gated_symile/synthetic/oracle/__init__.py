"""Oracle yardsticks: what the generative model allows, for every evaluated synthetic cell.

For a cell (dataset, p) the *oracle* is the top-1 of the Bayes-optimal scorer, which knows the
generative model and the misalignment process and picks the candidate with the highest posterior
probability of being the true partner; the *pairwise oracle* is the same scorer restricted to
pairwise information (the score an ideal CLIP computes); *chance* is 1 / pool. They are estimated
by simulating the generator's latent model through the evaluation protocol (``core``), one display
model per generator family (``mimic``, ``ukb``, ``xnor``, ``xor``); ``cells`` computes one cell,
``testability`` rejects settings under which no claim can be tested. Derivations: docs/oracle.md.
No torch: the oracle runs in the data environment.
"""

from gated_symile.synthetic.oracle.cells import FORMAT, MisalignSettings, oracle_cell
from gated_symile.synthetic.oracle.testability import (
    check_testable,
    untestable_settings,
)

__all__ = ["FORMAT", "MisalignSettings", "check_testable", "oracle_cell", "untestable_settings"]
