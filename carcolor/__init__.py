"""carcolor: MobileNetV2 vs MobileNetV1, Adam vs Adamax, on car-colour classification (DVM-Car)."""

__version__ = "0.1.0"
