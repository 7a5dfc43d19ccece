"""A problem with user input, located precisely enough to fix: file, frame and field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameProblem:
    file: str
    frame: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.frame is None else f"{self.file}: frame {self.frame}"
        return f"{where}: {self.field}: {self.message}"


class InputError(ValueError):
    """Raised for input that cannot be used at all; carries the located problem."""

    def __init__(self, problem: FrameProblem):
        super().__init__(str(problem))
        self.problem = problem
