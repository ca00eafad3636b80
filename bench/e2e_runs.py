"""bench.e2e_lag, keeping every run's lag: `python -m bench.e2e_runs [e2e_lag's arguments]`.

bench.e2e_lag reports percentiles; the distribution plot needs each run's own lag. This runs
e2e_lag's `main` unchanged and, just before each of its benchmark databases is dropped
(`common.before_drop`), reads the lags of the measured batch (the runs scheduled latest: the
warm-up runs are due earlier). After e2e_lag's own output it prints one JSON line:
`{"lags": [[seconds, ...], ...]}`, one list per repeat, in order.
"""

from __future__ import annotations

import json
import sys

import psycopg2

from bench import common, e2e_lag

MEASURED_LAGS = """
    SELECT EXTRACT(EPOCH FROM started_at - scheduled_for)
    FROM runs
    WHERE scheduled_for = (SELECT max(scheduled_for) FROM runs) AND started_at IS NOT NULL
    ORDER BY 1
"""


def main(argv: list[str] | None = None) -> None:
    lags: list[list[float]] = []

    def keep_lags(url: str) -> None:
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(MEASURED_LAGS)
                lags.append([round(float(lag), 4) for (lag,) in cur.fetchall()])
        finally:
            conn.close()

    common.before_drop(keep_lags)
    e2e_lag.main(argv)
    print(json.dumps({"lags": lags}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
