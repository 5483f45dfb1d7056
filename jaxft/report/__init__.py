"""Study report: exact-match, throughput and repetition tables, figures and samples of a runs dir.

Lazy exports, so `import jaxft.report.repetition` does not pull in matplotlib.
"""

__all__ = ["build_report", "main", "repetition_score", "wilson_interval"]


def __getattr__(name):
    if name in ("build_report", "main"):
        from jaxft.report import cli
        return getattr(cli, name)
    if name == "repetition_score":
        from jaxft.report.repetition import repetition_score
        return repetition_score
    if name == "wilson_interval":
        from jaxft.report.tables import wilson_interval
        return wilson_interval
    raise AttributeError(name)
