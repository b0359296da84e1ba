"""`python -m endcall …`: the `endcall` command (`endcall.cli`)."""

from endcall.cli import main

if __name__ == "__main__":
    main(prog_name="endcall")
