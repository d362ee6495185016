"""The metadata store (layer 1): one store per noun (runs, datasets, models, ...), bundled.

`protocol.py` is the contract, with the transaction rule every store keeps; `sql/` implements
it on SQLite and PostgreSQL. Services only see the Protocols, so a store behind `mloop server`
can take the SQL store's place unchanged.
"""
