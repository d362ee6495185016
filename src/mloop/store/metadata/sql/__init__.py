"""The SQL metadata store on SQLite (default) and PostgreSQL.

The schema is declared once with SQLAlchemy (`tables.py`) and evolved by Alembic migrations,
applied on first use under a lock. Queries run through the DB-API driver directly (`db.py`):
importing SQLAlchemy alone takes ~0.2 s here, more than a whole `mloop runs list` may take,
so SQLAlchemy and Alembic are imported only to migrate and to pool PostgreSQL connections.
"""
