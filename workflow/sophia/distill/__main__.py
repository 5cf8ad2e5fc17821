from sophia.cli import main as cli_main
from sophia.distill.stage import main

cli_main(main)
