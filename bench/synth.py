"""Fast synthetic visits for benchmarks (vectorised; not the demo generator's realism)."""

from __future__ import annotations

import numpy as np
import polars as pl

FACILITIES = ["ZAC", "IZA", "CIU", "QZT", "MAR"]
ROLES = ["staff", "family", "lawyer", "contractor", "official"]
ROLE_P = [0.45, 0.35, 0.1, 0.07, 0.03]


def visits(n: int, seed: int = 1) -> pl.DataFrame:
    """n visits over two years at five prisons in the canonical English layout."""
    rng = np.random.default_rng(seed)
    fac = rng.integers(0, len(FACILITIES), n)
    start = np.datetime64("2019-01-01T00:00")
    minutes = np.sort(rng.integers(0, 2 * 365 * 24 * 60, n))
    entered = (start + minutes.astype("timedelta64[m]")).astype("datetime64[us]")
    stay = rng.integers(20, 240, n).astype("timedelta64[m]").astype("timedelta64[us]")
    role = rng.choice(len(ROLES), n, p=ROLE_P)
    digits = rng.integers(0, 10**8, n)
    names = np.array(
        [
            "José Pérez",
            "Ana López",
            "Carlos Cruz",
            "Rosa Ayala",
            "Luis Flores",
            "Marta Romero",
            "Óscar Rivera",
            "Gloria Mejía",
        ]
    )
    df = pl.DataFrame(
        {
            "record_id": pl.int_range(0, n, eager=True).cast(pl.String),
            "facility": np.array(FACILITIES)[fac],
            "checkpoint": "Garita Principal",
            "logbook": (minutes // (30 * 24 * 60)).astype(str),
            "page": (np.arange(n) // 25 + 1).astype(str),
            "line": (np.arange(n) % 25 + 1).astype(str),
            "entered_at": pl.Series(entered).dt.to_string("%Y-%m-%dT%H:%M:%S"),
            "exited_at": pl.Series(entered + stay).dt.to_string("%Y-%m-%dT%H:%M:%S"),
            "name": names[rng.integers(0, len(names), n)],
            "id_type": "DUI",
            "id_number": pl.Series(digits).cast(pl.String).str.zfill(8) + "-0",
            "role": np.array(ROLES)[role],
            "inmate_id": pl.Series(rng.integers(1, 5000, n)).cast(pl.String),
            "party_size": "1",
        }
    )
    return df
