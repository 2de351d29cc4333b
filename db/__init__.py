"""Everything that touches PostgreSQL: tables, the connection pool, the embedded server, all SQL."""
