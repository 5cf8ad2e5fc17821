from sophia.cli import main as cli_main
from sophia.export.stage import main

cli_main(main)
