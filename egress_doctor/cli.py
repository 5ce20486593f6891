def main() -> int:  # replaced below
    return 0
