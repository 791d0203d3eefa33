"""Postgres (asyncpg): pool, migrations, embedded server, company data, conversation rows, seed."""
