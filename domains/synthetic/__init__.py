"""Offline procedural domains: scenes rendered with consistent image, mask and depth."""
