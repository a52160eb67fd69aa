"""Backbones, heads, where a regularizer goes in a network (`insertion`, `regularizers`) and the LightningModules."""
