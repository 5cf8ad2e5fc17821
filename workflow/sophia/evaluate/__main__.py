from sophia.cli import main as cli_main
from sophia.evaluate.stage import main

cli_main(main)
