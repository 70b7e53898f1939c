import math


class Cube:
    def __init__(self, name: str, side: float) -> None:
        self.side = side

    def volume(self) -> float:
        return self.side**3


class Sphere:
    def __init__(self, name: str, radius: float) -> None:
        self.radius = radius

    def volume(self) -> float:
        return 4 / 3 * math.pi * self.radius**3
