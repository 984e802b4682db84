"""Neural-network building blocks (flax linen)."""

from genjax.nn.conv import DownConv, UpConv, down_conv, up_conv

__all__ = ["UpConv", "DownConv", "up_conv", "down_conv"]
