"""pCSAT: how the customer probably felt, apart from the QA score, from signals the AutoQA scorers compute."""

from qastream_scoring.pcsat.model import PcsatModel, current

__all__ = ["PcsatModel", "current"]
