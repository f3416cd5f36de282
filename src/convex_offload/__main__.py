"""`python -m convex_offload`: the `convex-offload` command line."""

from convex_offload.cli import main

if __name__ == "__main__":
    main()
