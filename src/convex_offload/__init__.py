"""convex-offload: a Python ConvexStore for @mastra/convex with attachment offloading."""

__all__: list[str] = []
