"""`python -m evalharness` runs the CLI."""

from evalharness.cli import main

if __name__ == "__main__":
    main()
