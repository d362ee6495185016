"""The metadata store (layer 1): runs, datasets, lineage and events behind one Protocol.

`protocol.py` is the contract; `sql/` implements it on SQLite and PostgreSQL. Services only see
the Protocol, so a store behind `mloop server` can take the SQL store's place unchanged.
"""
