"""Watch your own model: a small ResNet on generated images, trained by its own loop, streamed into
DeepScope (docs/watch.md). Runs offline on the CPU in about a minute:

    deepscope serve &                                   # the playground, http://127.0.0.1:8000
    DEEPSCOPE_URL=http://127.0.0.1:8000 python examples/watch_resnet.py

Without DEEPSCOPE_URL the run goes to a file in DEEPSCOPE_DATA_DIR/watched/, which deepscope serve loads.
"""

import torch
from torch import nn

import deepscope


class Block(nn.Module):
    """Two 3x3 convolutions with batchnorm and a skip connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


class ResNet(nn.Module):
    def __init__(self, classes: int = 4, channels: int = 16, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[Block(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


def stripes(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of stripes in one of four directions, with noise: a task a CNN learns in a few epochs."""
    y = torch.randint(0, 4, (n,), generator=generator)
    grid = torch.arange(16.0)
    u, v = grid[None, :, None], grid[None, None, :]
    patterns = torch.stack([torch.sin(u + 0 * v), torch.sin(v + 0 * u), torch.sin((u + v) / 1.4),
                            torch.sin((u - v) / 1.4)]).squeeze(1)
    x = patterns[y][:, None].expand(n, 3, 16, 16) + 0.8 * torch.randn(n, 3, 16, 16, generator=generator)
    return x, y


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = stripes(2048, gen)
    x_val, y_val = stripes(512, gen)
    model = ResNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    epochs, batch = 6, 64
    steps = epochs * (len(x) // batch)
    with deepscope.watch(model, optimizer, name="resnet-try-3", total_steps=steps) as run:
        for epoch in range(epochs):
            model.train()
            for i in range(0, len(x), batch):
                loss = nn.functional.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                run.log(loss=loss)
            model.eval()
            with torch.no_grad():  # validation: never recorded
                val_loss = nn.functional.cross_entropy(model(x_val), y_val)
                val_acc = (model(x_val).argmax(1) == y_val).float().mean()
            run.log(val_loss=val_loss, val_acc=val_acc, epoch=epoch)
            print(f"epoch {epoch}: validation accuracy {float(val_acc):.3f}")
    print(f"watched: {run.url or run.file}")


if __name__ == "__main__":
    main()
