from sophia.cli import main as cli_main
from sophia.verifier.stage import main

cli_main(main)
