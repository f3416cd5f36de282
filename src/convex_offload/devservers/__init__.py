"""Local development servers: the local Convex stand-in and LocalStack, started on free loopback ports."""
