"""Bridges from Python agent frameworks to Mastra v2 messages in a Convex deployment.

- `convex_offload.integrations.pydantic_ai`: Pydantic AI message history ↔ Mastra messages,
  `load_history` / `save_history` for a thread (extra `convex-offload[pydantic-ai]`).
- `convex_offload.integrations.openai_agents`: an OpenAI Agents SDK session kept as Mastra
  messages (extra `convex-offload[openai-agents]`).

Each module imports its framework itself, so `convex_offload` imports without them.
"""
