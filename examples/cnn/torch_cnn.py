"""The model to port: a small torch CNN (Conv2d, BatchNorm2d, ReLU, pooling, Linear)."""

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32), nn.ReLU(),
                                  nn.Linear(32, num_classes))

    def forward(self, images):
        hidden = self.pool(self.relu(self.bn1(self.conv1(images))))
        hidden = self.relu(self.bn2(self.conv2(hidden)))
        return self.head(hidden)


def build() -> SmallCNN:
    """The factory ``paddleport diff --torch examples/cnn/torch_cnn.py:build`` calls."""
    torch.manual_seed(0)
    return SmallCNN()
