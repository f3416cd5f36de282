"""The Python ConvexStore: @mastra/convex's storage domains over the same wire protocol."""
