class Square:
    def __init__(self, side: float = 1.0) -> None:
        self.side = side

    def area(self) -> float:
        return self.side**2


class Circle:
    def __init__(self, radius: float = 1.0) -> None:
        self.radius = radius

    def area(self) -> float:
        return 3.14159 * self.radius**2
