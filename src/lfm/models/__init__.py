"""Backbones, heads and LightningModules."""
