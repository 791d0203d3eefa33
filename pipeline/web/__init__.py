"""The web layer: HTTP helpers, the WebSocket pump, OpenAI shapes, static pages, a Python client."""
