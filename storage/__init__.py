"""Storage: the typed models, the database engines and units of work, migrations and queries."""
