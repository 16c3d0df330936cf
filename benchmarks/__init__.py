"""Benchmarks that print JSON and write their results under benchmarks/results/.

`benchmarks.load`: the load benchmark behind `puls bench load` and `puls bench soak`.
"""

__all__: list[str] = []
