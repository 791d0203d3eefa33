"""Tools the assistant can call: a registry with JSON schemas and the company tools."""
