"""Postgres (asyncpg): versioned migrations, company data, conversation history."""
