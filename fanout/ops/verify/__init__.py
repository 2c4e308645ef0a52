"""``fanout verify``: is each sink's target exactly what the source holds? (and ``--across``:
do the sinks agree with each other). Read-only. See docs/OPERATIONS.md, "verify and repair".

Modules: ``source`` (the source PostgreSQL), ``postgres`` / ``clickhouse`` / ``elasticsearch``
(one reader per sink, ``targets.TargetReader``), ``canonical`` (values compared under the sinks'
semantics), ``ranges`` (range hashes, narrowed), ``compare`` (one table), ``settle`` (waiting
for the sink), ``report``, ``run`` (the command's flow)."""
