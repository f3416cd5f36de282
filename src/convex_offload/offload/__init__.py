"""Attachment offloading: find base64 payloads, upload them, reference them, restore them exactly."""
