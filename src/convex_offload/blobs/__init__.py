"""Blob stores behind one small interface: S3 and S3-compatible (LocalStack, MinIO, R2), Convex file
storage, and a local folder. The offloader never knows which one it talks to."""
