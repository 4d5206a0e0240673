"""Everything that crosses a process boundary, defined once (DESIGN.md).

- ``streams``: Redis stream names, consumer groups, keys and their TTLs, the DAG id.
- ``messages``: every Redis stream entry and WebSocket payload, and the per-video progress hash.
- ``settings``: the settings base every service subclasses, and the generated secrets.
- ``assets``: where the shared weights and clips are.

The bottom of the import graph: contracts imports only pydantic and the standard library; the
processing library, the backend, the bridge, Airflow's tasks and the Spark application import it.
"""
