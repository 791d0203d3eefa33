"""The LLM stage: orchestrator (tools, then the model), the history window, the conversation log."""
