"""Re-ID head: global pooling, a bottleneck with BatchNorm, and an identity classifier."""

import torch
from torch import nn


class ReIDHead(nn.Module):
    """Pooled features -> embedding (Linear + BN, or BN alone: BNNeck) -> classifier.

    The embedding is the retrieval feature at evaluation; the classifier is used in training.
    Layout and initialisation follow layumi's ClassBlock (Linear 2048->512, BN, Dropout).
    """

    def __init__(self, in_features: int, num_classes: int, embedding_dim: int | None = 512, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        if embedding_dim:
            linear = nn.Linear(in_features, embedding_dim)
            nn.init.kaiming_normal_(linear.weight, mode="fan_out")
            nn.init.zeros_(linear.bias)
            layers.append(linear)
        self.embedding_dim = embedding_dim or in_features
        batch_norm = nn.BatchNorm1d(self.embedding_dim)
        nn.init.normal_(batch_norm.weight, 1.0, 0.02)
        nn.init.zeros_(batch_norm.bias)
        layers.append(batch_norm)
        self.bottleneck = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embedding_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (embedding, logits) for pooled features [B, in_features]."""
        embedding = self.bottleneck(pooled)
        return embedding, self.classifier(self.dropout(embedding))
