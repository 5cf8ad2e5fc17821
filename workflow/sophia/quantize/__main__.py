from sophia.cli import main as cli_main
from sophia.quantize.stage import main

cli_main(main)
