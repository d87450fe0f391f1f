"""The hand-written Paddle port of ``torch_cnn.SmallCNN``: same attribute names, so no rules file is needed."""

from paddle import nn


class SmallCNN(nn.Layer):
    def __init__(self, num_classes: int = 10, bn_momentum: float = 0.9):
        super().__init__()
        # Paddle's BatchNorm momentum weighs the old statistics: torch's momentum 0.1 is Paddle's 0.9.
        self.conv1 = nn.Conv2D(3, 8, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2D(8, momentum=bn_momentum)
        self.conv2 = nn.Conv2D(8, 16, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2D(16, momentum=bn_momentum)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2D(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Linear(16, 32), nn.ReLU(),
                                  nn.Linear(32, num_classes))

    def forward(self, images):
        hidden = self.pool(self.relu(self.bn1(self.conv1(images))))
        hidden = self.relu(self.bn2(self.conv2(hidden)))
        return self.head(hidden)


def build() -> SmallCNN:
    return SmallCNN()
