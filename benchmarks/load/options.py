"""Parsing of the command-line values that are more than a number: `--concurrency 1,2,4` and
`--slo ttft_ms=500,tpot_ms=50,e2e_ms=3000`. Errors are ConfigError with the offending text.
"""

from __future__ import annotations

from benchmarks.load.errors import ConfigError
from benchmarks.load.metrics import SLO_KEYS


def parse_concurrency(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); each level a positive integer, in the order given."""
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--concurrency {text!r}: expected integers like 1,2,4") from None
    if not levels or min(levels) < 1:
        raise ConfigError(f"--concurrency {text!r}: expected positive integers like 1,2,4")
    return levels


def parse_slo(text: str | None) -> dict[str, float]:
    """'ttft_ms=500,tpot_ms=50' -> {'ttft_ms': 500.0, 'tpot_ms': 50.0}; keys are SLO_KEYS."""
    slo: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in SLO_KEYS:
            raise ConfigError(f"--slo {part!r}: expected one of {', '.join(SLO_KEYS)} =<ms>")
        try:
            slo[key] = float(value)
        except ValueError:
            raise ConfigError(f"--slo {part!r}: {value!r} is not a number of ms") from None
        if slo[key] <= 0:
            raise ConfigError(f"--slo {part!r}: must be positive")
    return slo
