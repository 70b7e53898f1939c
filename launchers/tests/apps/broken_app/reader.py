from pathlib import Path


def table() -> str:
    # A data file next to the module: the code snapshot holds source files only.
    return (Path(__file__).parent / "table.csv").read_text()
