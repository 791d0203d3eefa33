"""Company tools: registry, definitions, routing, number rewriting, cache in front, opening."""
