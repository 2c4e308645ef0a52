"""What `fanout run` loads at start-up: a worker pays only for its own sink's client."""

from __future__ import annotations

import json
import subprocess
import sys

# Clients a PostgreSQL worker has no use for; Elasticsearch's pulls in numpy and pyarrow
# (about 60 MiB and a second of CPU at every start).
OTHER_CLIENTS = ("elasticsearch", "clickhouse_connect", "chdb", "numpy", "pyarrow", "pandas")


def test_the_cli_and_the_postgres_sink_load_no_other_store_client() -> None:
    probe = (
        "import json, sys; import fanout.cli.main, sinks.postgres; "
        f"print(json.dumps([m for m in {OTHER_CLIENTS!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
