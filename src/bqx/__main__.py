"""``python -m bqx``: the same CLI as the ``bqx`` console script."""

from bqx.cli import main

if __name__ == "__main__":
    main()
