"""Tools around models: ``comp_graph_tools.GraphInference`` runs a dumped ``.tym`` model."""
from . import comp_graph_tools  # noqa: F401
from . import module_utils  # noqa: F401,E402
